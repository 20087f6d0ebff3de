# The engine: one job per strategy deployment (the "pluggable strategy job"). The job is named
# <strategy>-<deployment> (underscores become dashes), and that name is the `deployment` label of
# every metric and alert (monitoring/README.md).
#
# Each deployment has two vars files: vars/<env>/engine.hcl (how engines run in that environment)
# and vars/<env>/engine/<job>.hcl (what this deployment trades).
#
# Exchange keys come from Vault through workload identity: the job reads
# secret/<namespace>/<job>/exchanges/<venue>/<account> (keys `api_key`, `api_secret`), rendered
# to secrets/<venue>/api_key and api_secret, the directory layout runtime.config.DirectorySecrets
# reads. A new key version is re-rendered in place and the engine gets SIGHUP to reload it.

# --- the deployment ---------------------------------------------------------------------------

variable "strategy" {
  type        = string
  description = "Strategy plugin, as listed by `arbfleet strategies list` (e.g. cross_exchange)."
  validation {
    condition     = can(regex("^[a-z][a-z0-9_]{0,31}$", var.strategy))
    error_message = "The strategy must be a plugin name: lower case letters, digits and underscores."
  }
}

variable "deployment" {
  type        = string
  description = "Name of this deployment of the strategy (e.g. btc-main); the job is <strategy>-<deployment>."
  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9-]{0,31}$", var.deployment))
    error_message = "The deployment must be lower case letters, digits and dashes."
  }
}

variable "mode" {
  type        = string
  description = "paper (simulated fills) or live (real orders). Overrides the config's own mode, so the Consul meta and the engine agree."
  validation {
    condition     = contains(["paper", "live"], var.mode)
    error_message = "The mode must be paper or live."
  }
}

variable "venues" {
  type        = list(string)
  description = "Venues the deployment trades on (the `venues` label of its metrics)."
}

variable "accounts" {
  type        = map(string)
  default     = {}
  description = "Exchange account per venue whose API keys are rendered from Vault; empty in paper mode. One engine at a time trades an account (a Consul lock in the engine)."
}

variable "engine_config" {
  type        = string
  description = "The engine's TOML config (strategies, venues, risk limits); rendered to local/arbfleet.toml."
}

# --- placement --------------------------------------------------------------------------------

variable "datacenters" {
  type        = list(string)
  description = "Datacenters the job may be placed in."
}

variable "exchange_datacenter" {
  type        = string
  default     = ""
  description = "Datacenter closest to the venues' matching engines, preferred (an affinity, not a constraint: the job still runs elsewhere if that one is full or down). Empty: no preference."
}

# --- task -------------------------------------------------------------------------------------

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
  default     = ""
  description = "Docker image of the engine, which has the `arbfleet` command (driver docker)."
}

variable "venv" {
  type        = string
  default     = ""
  description = "Python virtual environment with arbfleet installed, on the client (driver raw_exec); the task runs <venv>/bin/arbfleet. `arbfleet deploy` fills it in for the local stack."
}

variable "kill_timeout" {
  type        = string
  default     = "20s"
  description = "Time from SIGTERM to SIGKILL. The engine stops feeds and strategies, waits up to 2 s for orders in flight (Engine._drain_orders), closes venue clients and releases its account lock; keep this well above that."
}

variable "cpu" {
  type        = number
  default     = 1000
  description = "CPU reservation in MHz (one asyncio loop: about one core)."
}

variable "memory" {
  type        = number
  default     = 256
  description = "Memory reservation in MB (the engine's budget is 200 MB RSS)."
}

variable "memory_max" {
  type        = number
  default     = 384
  description = "Memory limit in MB (above memory only where the cluster enables memory oversubscription)."
}

# --- secrets ----------------------------------------------------------------------------------

variable "vault_role" {
  type        = string
  default     = "nomad-workloads"
  description = "Vault JWT auth role the task logs in with (workload identity)."
}

locals {
  job_id   = "${replace(var.strategy, "_", "-")}-${var.deployment}"
  arbfleet = var.driver == "docker" ? "arbfleet" : "${var.venv}/bin/arbfleet"
  args     = ["run", "--config", "${NOMAD_TASK_DIR}/arbfleet.toml"]
  # One rendered file per venue and key field: secrets/<venue>/api_key, secrets/<venue>/api_secret.
  key_files = {
    for pair in setproduct(keys(var.accounts), ["api_key", "api_secret"]) :
    "${pair[0]}/${pair[1]}" => { venue = pair[0], account = var.accounts[pair[0]], field = pair[1] }
  }
}

job "engine" {
  id          = local.job_id
  name        = local.job_id
  datacenters = var.datacenters
  type        = "service"

  meta {
    strategy = var.strategy
    mode     = var.mode
  }

  dynamic "affinity" {
    for_each = var.exchange_datacenter == "" ? [] : [var.exchange_datacenter]
    content {
      attribute = "${node.datacenter}"
      value     = affinity.value
      weight    = 100
    }
  }

  group "engine" {
    # One engine per deployment: an account has a single writer.
    count = 1

    # The canary starts beside the running engine, which keeps trading (the account lock keeps
    # the canary from trading too); it is promoted once its health check has passed for
    # min_healthy_time, and a canary that never gets healthy reverts the job to the last
    # stable version.
    update {
      max_parallel      = 1
      canary            = 1
      auto_promote      = true
      auto_revert       = true
      health_check      = "checks"
      min_healthy_time  = "30s"
      healthy_deadline  = "3m"
      progress_deadline = "10m"
    }

    restart {
      attempts = 3
      interval = "5m"
      delay    = "10s"
      mode     = "delay"
    }

    network {
      port "http" {}
    }

    task "engine" {
      driver = var.driver

      dynamic "config" {
        for_each = var.driver == "docker" ? [1] : []
        content {
          image        = var.image
          network_mode = "host"
          command      = local.arbfleet
          args         = local.args
        }
      }
      dynamic "config" {
        for_each = var.driver == "raw_exec" ? [1] : []
        content {
          command = local.arbfleet
          args    = local.args
        }
      }

      # ARBFLEET_* override the config file (runtime/config.py), so what Nomad knows (port,
      # mode, secrets directory) is what the engine uses.
      env {
        ARBFLEET_MODE         = var.mode
        ARBFLEET_HEALTH__HOST = "${NOMAD_IP_http}"
        ARBFLEET_HEALTH__PORT = "${NOMAD_PORT_http}"
        ARBFLEET_SECRETS_DIR  = "${NOMAD_SECRETS_DIR}"
      }

      # The engine reads no Vault token itself: the templates below pick up a re-issued token
      # on their own, so a new token needs no restart.
      vault {
        role        = var.vault_role
        change_mode = "noop"
      }

      # The config is part of the job: changing it is a new job version (and a canary).
      template {
        data        = var.engine_config
        destination = "local/arbfleet.toml"
        # TOML's [[tables]] and any {{ }} reach the engine untouched.
        left_delimiter  = "<%"
        right_delimiter = "%>"
      }

      dynamic "template" {
        for_each = local.key_files
        content {
          data          = <<-EOT
            {{ with secret (printf "secret/data/%s/${local.job_id}/exchanges/${template.value.venue}/${template.value.account}" (env "NOMAD_NAMESPACE")) }}{{ .Data.data.${template.value.field} }}{{ end }}
          EOT
          destination   = "secrets/${template.key}"
          change_mode   = "signal"
          change_signal = "SIGHUP"
        }
      }

      service {
        name     = "arbfleet-engine"
        provider = "consul"
        port     = "http"

        # Prometheus turns these into the labels every alert and dashboard uses.
        meta {
          deployment = local.job_id
          strategy   = var.strategy
          mode       = var.mode
          venues     = join(",", var.venues)
        }

        check {
          name     = "health"
          type     = "http"
          path     = "/health"
          interval = "10s"
          timeout  = "2s"

          # Restart an engine whose /health keeps failing; the grace covers start-up (config
          # validation, plugin loading, first book snapshots).
          check_restart {
            limit           = 3
            grace           = "60s"
            ignore_warnings = false
          }
        }
      }

      kill_signal  = "SIGTERM"
      kill_timeout = var.kill_timeout

      resources {
        cpu        = var.cpu
        memory     = var.memory
        memory_max = var.memory_max
      }
    }
  }
}
