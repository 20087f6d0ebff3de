# Grafana with the provisioned Prometheus datasource and the dashboards of monitoring/grafana/.
#
# Docker only: Grafana is not packaged in Debian, so the local stack cannot run it and its vars
# file sets count = 0 (the job is still validated and planned there).
# The provisioning files and dashboards are passed in as variables by `arbfleet deploy`; the
# admin password comes from Vault (secret/<namespace>/grafana/admin, key `password`).

# --- placement -------------------------------------------------------------------------------

variable "datacenters" {
  type        = list(string)
  description = "Datacenters the job may be placed in."
}

variable "count" {
  type        = number
  default     = 1
  description = "Instances to run: 0 where there is no Docker engine (the local stack)."
}

variable "port" {
  type        = number
  default     = 0
  description = "Static port for the web UI; 0 for a port Nomad picks (find it in Consul)."
}

# --- task ------------------------------------------------------------------------------------

variable "image" {
  type        = string
  default     = "grafana/grafana:11.3.0"
  description = "Docker image."
}

variable "cpu" {
  type        = number
  default     = 200
  description = "CPU reservation in MHz."
}

variable "memory" {
  type        = number
  default     = 256
  description = "Memory reservation in MB."
}

variable "memory_max" {
  type        = number
  default     = 512
  description = "Memory limit in MB (above memory only where the cluster enables memory oversubscription)."
}

# --- configuration (from monitoring/grafana/, filled in by `arbfleet deploy`) ----------------

variable "grafana_datasources" {
  type        = string
  description = "Content of monitoring/grafana/provisioning/datasources/arbfleet.yml."
}

variable "grafana_dashboard_providers" {
  type        = string
  description = "Content of monitoring/grafana/provisioning/dashboards/arbfleet.yml."
}

variable "grafana_dashboards" {
  type        = map(string)
  description = "Dashboards by file name: the content of monitoring/grafana/dashboards/*.json."
}

# --- secrets ---------------------------------------------------------------------------------

variable "vault_role" {
  type        = string
  default     = "nomad-workloads"
  description = "Vault JWT auth role the task logs in with (workload identity)."
}

variable "vault_identity" {
  type        = string
  default     = "workload_identity"
  description = "How a task gets its Vault/OpenBao token, the one difference between Nomad generations: workload_identity (Nomad 1.7 and later: the task's signed identity logs in to vault_role) or legacy_token (Nomad 1.6 and earlier, e.g. the open-source 1.6.1 our tests run: Nomad's servers create a token with vault_policies)."
  validation {
    condition     = contains(["workload_identity", "legacy_token"], var.vault_identity)
    error_message = "The vault_identity must be workload_identity or legacy_token."
  }
}

variable "vault_policies" {
  type        = list(string)
  default     = []
  description = "With vault_identity = legacy_token only: the policies of the task's token, those vault_role grants (`arbfleet deploy` fills them in on the local stack)."
}

job "grafana" {
  datacenters = var.datacenters
  type        = "service"

  group "grafana" {
    count = var.count

    # Stateless (dashboards and datasource are provisioned): a canary is cheap and safe.
    update {
      max_parallel     = 1
      canary           = 1
      auto_promote     = true
      auto_revert      = true
      health_check     = "checks"
      min_healthy_time = "10s"
      healthy_deadline = "3m"
    }

    network {
      port "http" {
        static = var.port
      }
    }

    # One of the two, by Nomad generation (var.vault_identity).
    dynamic "vault" {
      for_each = var.vault_identity == "workload_identity" ? [var.vault_role] : []
      content {
        role = vault.value
      }
    }
    dynamic "vault" {
      for_each = var.vault_identity == "legacy_token" ? [var.vault_policies] : []
      content {
        policies = vault.value
      }
    }

    task "grafana" {
      driver = "docker"

      config {
        image        = var.image
        network_mode = "host"
      }

      env {
        GF_SERVER_HTTP_ADDR                   = "${NOMAD_IP_http}"
        GF_SERVER_HTTP_PORT                   = "${NOMAD_PORT_http}"
        GF_PATHS_PROVISIONING                 = "/local/provisioning"
        GF_SECURITY_ADMIN_PASSWORD__FILE      = "/secrets/admin-password"
        GF_AUTH_ANONYMOUS_ENABLED             = "false"
        GF_ANALYTICS_REPORTING_ENABLED        = "false"
        GF_ANALYTICS_CHECK_FOR_UPDATES        = "false"
        GF_ANALYTICS_CHECK_FOR_PLUGIN_UPDATES = "false"
        # Read by the provisioning files (monitoring/README.md).
        ARBFLEET_DASHBOARDS_DIR = "/local/dashboards"
      }

      # PROMETHEUS_URL follows the Prometheus service in Consul.
      template {
        data        = <<-EOT
          {{ range service "prometheus" }}PROMETHEUS_URL=http://{{ .Address }}:{{ .Port }}
          {{ end }}
        EOT
        destination = "local/prometheus.env"
        env         = true
        change_mode = "restart"
      }

      template {
        data        = <<-EOT
          {{ with secret (printf "secret/data/%s/grafana/admin" (env "NOMAD_NAMESPACE")) }}{{ .Data.data.password }}{{ end }}
        EOT
        destination = "secrets/admin-password"
        change_mode = "noop"
      }

      # The provisioning files and dashboards are rendered verbatim: their ${...} are Grafana's
      # environment expansion and their {{ }} are Grafana's legend templates.
      template {
        data            = var.grafana_datasources
        destination     = "local/provisioning/datasources/arbfleet.yml"
        left_delimiter  = "<%"
        right_delimiter = "%>"
      }

      template {
        data            = var.grafana_dashboard_providers
        destination     = "local/provisioning/dashboards/arbfleet.yml"
        left_delimiter  = "<%"
        right_delimiter = "%>"
      }

      dynamic "template" {
        for_each = var.grafana_dashboards
        content {
          data            = template.value
          destination     = "local/dashboards/${template.key}"
          left_delimiter  = "<%"
          right_delimiter = "%>"
          # Grafana rescans the provisioned directory by itself.
          change_mode = "noop"
        }
      }

      service {
        name     = "grafana"
        provider = "consul"
        port     = "http"
        tags     = ["prometheus"]

        check {
          name     = "api health"
          type     = "http"
          path     = "/api/health"
          interval = "10s"
          timeout  = "2s"
        }
      }

      kill_timeout = "10s"

      resources {
        cpu        = var.cpu
        memory     = var.memory
        memory_max = var.memory_max
      }
    }
  }
}
