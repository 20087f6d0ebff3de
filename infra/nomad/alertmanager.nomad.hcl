# Alertmanager: routes Prometheus' alerts to Slack and PagerDuty (monitoring/alertmanager/).
#
# The configuration is passed in as a variable by `arbfleet deploy`. The Slack webhook URL and
# the PagerDuty routing key are rendered from Vault into the secrets directory
# (secret/<namespace>/alertmanager/slack `webhook_url`, .../pagerduty `routing_key`);
# Alertmanager reads those files when it sends, so rotating them needs no restart.
# Prometheus finds this job through its Consul service `alertmanager`.

# --- placement -------------------------------------------------------------------------------

variable "datacenters" {
  type        = list(string)
  description = "Datacenters the job may be placed in."
}

# --- task ------------------------------------------------------------------------------------

variable "driver" {
  type        = string
  description = "Task driver: docker in production, raw_exec on the local stack (no Docker engine there)."
  validation {
    condition     = contains(["docker", "raw_exec"], var.driver)
    error_message = "The driver must be docker or raw_exec."
  }
}

variable "image" {
  type        = string
  default     = "prom/alertmanager:v0.27.0"
  description = "Docker image (driver docker)."
}

variable "alertmanager_bin" {
  type        = string
  default     = "/usr/bin/prometheus-alertmanager"
  description = "Alertmanager binary on the client (driver raw_exec; Debian's package)."
}

variable "cpu" {
  type        = number
  default     = 100
  description = "CPU reservation in MHz."
}

variable "memory" {
  type        = number
  default     = 64
  description = "Memory reservation in MB."
}

variable "memory_max" {
  type        = number
  default     = 128
  description = "Memory limit in MB (above memory only where the cluster enables memory oversubscription)."
}

# --- configuration (from monitoring/, filled in by `arbfleet deploy`) ------------------------

variable "alertmanager_config" {
  type        = string
  description = "Content of monitoring/alertmanager/alertmanager.yml."
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

locals {
  # One config block per task for both drivers: what only docker takes is null under raw_exec,
  # and Nomad leaves null attributes out of a task's config. Docker tasks give args only: the
  # image's ENTRYPOINT runs them (Nomad appends a `command` to it, it does not replace it).
  docker       = var.driver == "docker"
  network_mode = local.docker ? "host" : null
  alertmanager_args = [
    "--config.file=${NOMAD_TASK_DIR}/alertmanager.yml",
    # Silences and the notification log; kept across restarts of this allocation.
    "--storage.path=${NOMAD_ALLOC_DIR}/data",
    "--web.listen-address=${NOMAD_ADDR_http}",
    # One instance: no HA gossip (it would otherwise listen on every interface, port 9094).
    "--cluster.listen-address=",
  ]
}

job "alertmanager" {
  datacenters = var.datacenters
  type        = "service"

  group "alertmanager" {
    count = 1

    update {
      max_parallel     = 1
      health_check     = "checks"
      min_healthy_time = "10s"
      healthy_deadline = "2m"
      auto_revert      = true
    }

    network {
      port "http" {}
    }

    ephemeral_disk {
      sticky = true
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

    task "alertmanager" {
      driver = var.driver

      # The image's ENTRYPOINT is /bin/alertmanager.
      config {
        image        = local.docker ? var.image : null
        network_mode = local.network_mode
        command      = local.docker ? null : var.alertmanager_bin
        args         = local.alertmanager_args
      }

      # Rendered verbatim (its own {{ }} are notification templates), except that the secret
      # file paths, written for the docker driver's /secrets, point at this task's secrets
      # directory wherever it is (raw_exec: inside the allocation directory).
      template {
        data            = replace(var.alertmanager_config, "/secrets/", "<% env \"NOMAD_SECRETS_DIR\" %>/")
        destination     = "local/alertmanager.yml"
        left_delimiter  = "<%"
        right_delimiter = "%>"
        change_mode     = "signal"
        change_signal   = "SIGHUP"
      }

      template {
        data        = <<-EOT
          {{ with secret (printf "secret/data/%s/alertmanager/slack" (env "NOMAD_NAMESPACE")) }}{{ .Data.data.webhook_url }}{{ end }}
        EOT
        destination = "secrets/slack-webhook-url"
        change_mode = "noop"
      }

      template {
        data        = <<-EOT
          {{ with secret (printf "secret/data/%s/alertmanager/pagerduty" (env "NOMAD_NAMESPACE")) }}{{ .Data.data.routing_key }}{{ end }}
        EOT
        destination = "secrets/pagerduty-routing-key"
        change_mode = "noop"
      }

      service {
        name     = "alertmanager"
        provider = "consul"
        port     = "http"
        tags     = ["prometheus"]

        check {
          name     = "healthy"
          type     = "http"
          path     = "/-/healthy"
          interval = "10s"
          timeout  = "2s"
        }
      }

      kill_signal  = "SIGTERM"
      kill_timeout = "10s"

      resources {
        cpu        = var.cpu
        memory     = var.memory
        memory_max = var.memory_max
      }
    }
  }
}
