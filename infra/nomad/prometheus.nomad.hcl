# Prometheus: scrapes the engines, Nomad and tagged exporters found through Consul, and
# evaluates the alert and recording rules of monitoring/.
#
# The configuration is monitoring/prometheus/prometheus.yml and rules/*.yml, passed in as
# variables by `arbfleet deploy` (the job parse API does not read files). It expects the Consul
# agent at 127.0.0.1:8500, so the docker task uses host networking.
#
# Upstream Prometheus is required: Debian's build has no Consul service discovery. Locally it is
# the toolchain's build (~/.cache/arbfleet/toolchain/bin/prometheus).

# --- placement -------------------------------------------------------------------------------

variable "datacenters" {
  type        = list(string)
  description = "Datacenters the job may be placed in."
}

variable "port" {
  type        = number
  default     = 0
  description = "Static port for the web UI and API; 0 for a port Nomad picks (find it in Consul)."
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
  default     = "prom/prometheus:v2.54.1"
  description = "Docker image (driver docker); the same version as the toolchain's build."
}

variable "toolchain_bin" {
  type        = string
  default     = ""
  description = "Directory of the toolchain's upstream prometheus binary on the client (driver raw_exec). `arbfleet deploy` fills it in for the local stack."
}

variable "retention" {
  type        = string
  default     = "15d"
  description = "How long samples are kept (--storage.tsdb.retention.time)."
}

variable "cpu" {
  type        = number
  default     = 500
  description = "CPU reservation in MHz."
}

variable "memory" {
  type        = number
  default     = 512
  description = "Memory reservation in MB."
}

variable "memory_max" {
  type        = number
  default     = 1024
  description = "Memory limit in MB (above memory only where the cluster enables memory oversubscription)."
}

# --- configuration (from monitoring/, filled in by `arbfleet deploy`) ------------------------

variable "prometheus_config" {
  type        = string
  description = "Content of monitoring/prometheus/prometheus.yml."
}

variable "prometheus_rules" {
  type        = map(string)
  description = "Rule files by name: the content of monitoring/prometheus/rules/*.yml."
}

# --- storage ---------------------------------------------------------------------------------

variable "host_volume" {
  type        = string
  default     = "arbfleet-data"
  description = "Host volume holding the TSDB; with the docker driver it is mounted at /prometheus (the image's data directory)."
}

variable "host_volume_path" {
  type        = string
  default     = ""
  description = "Path of the host volume on the client (driver raw_exec only: raw_exec cannot mount volumes, so the task uses the path itself; the TSDB goes to <path>/prometheus). `arbfleet deploy` fills it in for the local stack."
}

locals {
  # One config block per task for both drivers: what only docker takes is null under raw_exec,
  # and Nomad leaves null attributes out of a task's config. Docker tasks give args only: the
  # image's ENTRYPOINT runs them (Nomad appends a `command` to it, it does not replace it).
  docker       = var.driver == "docker"
  network_mode = local.docker ? "host" : null
  data_dir     = local.docker ? "/prometheus" : "${var.host_volume_path}/prometheus"
  prometheus_args = [
    "--config.file=${NOMAD_TASK_DIR}/prometheus.yml",
    "--storage.tsdb.path=${local.data_dir}",
    "--storage.tsdb.retention.time=${var.retention}",
    "--web.listen-address=${NOMAD_ADDR_http}",
  ]
}

job "prometheus" {
  datacenters = var.datacenters
  type        = "service"

  group "prometheus" {
    count = 1

    # One instance owning its TSDB directory: no canary; a bad config or binary reverts.
    update {
      max_parallel     = 1
      health_check     = "checks"
      min_healthy_time = "10s"
      healthy_deadline = "3m"
      auto_revert      = true
    }

    network {
      port "http" {
        static = var.port
      }
    }

    # Requesting the volume also places the job on a client that has it, for both drivers.
    volume "data" {
      type   = "host"
      source = var.host_volume
    }

    # raw_exec only: the TSDB directory inside the host volume must exist.
    dynamic "task" {
      for_each = local.docker ? [] : ["prepare"]
      labels   = [task.value]
      content {
        driver = "raw_exec"
        lifecycle {
          hook = "prestart"
        }
        config {
          command = "/bin/mkdir"
          args    = ["-p", local.data_dir]
        }
        resources {
          cpu    = 20
          memory = 16
        }
      }
    }

    task "prometheus" {
      driver = var.driver

      # The image's ENTRYPOINT is /bin/prometheus.
      config {
        image        = local.docker ? var.image : null
        network_mode = local.network_mode
        command      = local.docker ? null : "${var.toolchain_bin}/prometheus"
        args         = local.prometheus_args
      }

      dynamic "volume_mount" {
        for_each = local.docker ? [1] : []
        content {
          volume      = "data"
          destination = "/prometheus"
        }
      }

      # The files are rendered verbatim: their own {{ }} (alert templates) must reach Prometheus
      # untouched, hence delimiters that occur in none of them (tests/infra checks that).
      template {
        data            = var.prometheus_config
        destination     = "local/prometheus.yml"
        left_delimiter  = "<%"
        right_delimiter = "%>"
        change_mode     = "signal"
        change_signal   = "SIGHUP"
      }

      dynamic "template" {
        for_each = var.prometheus_rules
        content {
          data            = template.value
          destination     = "local/rules/${template.key}"
          left_delimiter  = "<%"
          right_delimiter = "%>"
          change_mode     = "signal"
          change_signal   = "SIGHUP"
        }
      }

      service {
        name     = "prometheus"
        provider = "consul"
        port     = "http"
        # Scraped by its own consul-services job.
        tags = ["prometheus"]

        check {
          name     = "ready"
          type     = "http"
          path     = "/-/ready"
          interval = "10s"
          timeout  = "2s"
        }
      }

      kill_signal  = "SIGTERM"
      kill_timeout = "30s"

      resources {
        cpu        = var.cpu
        memory     = var.memory
        memory_max = var.memory_max
      }
    }
  }
}
