# The engine: one job per strategy deployment (the "pluggable strategy job"). The job is named
# <strategy>-<deployment> (underscores become dashes), and that name is the `deployment` label of
# every metric and alert (monitoring/README.md) and the deployment of fleet.toml.
#
# Each deployment has two vars files: vars/<env>/engine.hcl (how engines run in that environment)
# and vars/<env>/engine/<job>.hcl (what this deployment trades).
#
# Exchange keys (secrets/README.md): with accounts, the engine reads its keys from Vault KV v2
# (exchanges/<venue>/<account>) itself, with the token Nomad gets for the job's own role
# arbfleet-<job> (workload identity; `arbfleet secrets apply` creates role and policy) and keeps
# renewed in secrets/vault_token. A template per account renders the entry into
# secrets/<venue>/api_key and api_secret; a new key version re-renders it and sends SIGHUP, on
# which the engine looks at Vault at once instead of at its next poll.
#
# Stores: the engine finds PostgreSQL (the timescaledb job) and Redis (the redis job) in Consul,
# among the instances tagged with its own Nomad namespace, and writes as a short-lived PostgreSQL
# user of its own from Vault's database secrets engine (runtime/platform/dbcreds.py). An environment
# without one of them leaves its service name empty; a store not (yet) registered is simply not
# configured, and the task restarts with it once it is (a template change). Instances are taken
# whatever their check says: a store that is down keeps its address, and the engine buffers and
# spills until it is back instead of restarting without it.

# --- the deployment ---------------------------------------------------------------------------

variable "strategy" {
  type        = string
  description = "Strategy plugin, as listed by `arbfleet strategies list` (e.g. cross_exchange)."
  validation {
    # Nomad has no regex(): a full match replaced by "" leaves nothing.
    condition     = var.strategy != "" && regex_replace(var.strategy, "^[a-z][a-z0-9_]{0,15}$", "") == ""
    error_message = "The strategy must be a plugin name of at most 16 lower case letters, digits and underscores."
  }
}

variable "deployment" {
  type        = string
  description = "Name of this deployment of the strategy (e.g. btc); the job is <strategy>-<deployment>, at most 32 characters (the engine's limit for a deployment name)."
  validation {
    condition     = var.deployment != "" && regex_replace(var.deployment, "^[a-z0-9][a-z0-9-]{0,14}$", "") == ""
    error_message = "The deployment must be at most 15 lower case letters, digits and dashes."
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
  description = "Exchange account per venue whose keys the engine takes from Vault; empty in paper mode. One engine at a time trades an account (a Consul lock in the engine)."
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

variable "source_dir" {
  type        = string
  default     = ""
  description = "raw_exec only: run the engine from this source tree (<venv>/bin/python -m runtime.cli.main, PYTHONPATH=source_dir) instead of the venv's installed arbfleet; the cluster tests run a worktree's code this way. Empty: <venv>/bin/arbfleet."
}

variable "shutdown_deadline_s" {
  type        = number
  default     = 10
  description = "Seconds the engine may take to stop on SIGTERM (shutdown.deadline_s: orders in flight report, the journal and stores flush). Nomad's kill_timeout is 10 s more, for releasing the account lock and closing venue clients."
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

variable "min_healthy_time" {
  type        = string
  default     = "30s"
  description = "How long a new engine's checks must pass before the deployment counts it healthy (a canary is promoted after this)."
}

variable "healthy_deadline" {
  type        = string
  default     = "3m"
  description = "A new engine not healthy by then is marked unhealthy."
}

variable "progress_deadline" {
  type        = string
  default     = "10m"
  description = "A deployment with no new healthy engine for this long fails and reverts to the last stable version; meanwhile Nomad replaces unhealthy ones. \"0s\": the first unhealthy engine fails the deployment."
}

# --- secrets ----------------------------------------------------------------------------------

variable "vault_address" {
  type        = string
  default     = ""
  description = "Vault address the engine reads its exchange keys from (vault.address); needed with accounts."
}

variable "vault_ca_file" {
  type        = string
  default     = ""
  description = "PEM file of the CA that signed the secrets store's certificate, on the client (raw_exec) or in the image (docker), for the engine's own Vault client (REQUESTS_CA_BUNDLE: hvac trusts only public CAs otherwise). Empty: the system's CAs."
}

variable "kv_mount" {
  type        = string
  default     = "exchanges"
  description = "KV v2 mount of the exchange keys (the secrets-store layout: runtime/platform/vault.py Layout)."
}

variable "vault_role" {
  type        = string
  default     = ""
  description = "Vault JWT auth role of the task. Empty: arbfleet-<job>, the deployment's own role, or the stack's generic nomad-workloads for a deployment without accounts."
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

# --- stores ---------------------------------------------------------------------------------

variable "postgres_service" {
  type        = string
  default     = "timescaledb"
  description = "Consul service of the PostgreSQL the writer sends ticks, opportunities, orders and fills to (instances tagged with the job's namespace). Empty: no PostgreSQL."
}

variable "postgres_ha" {
  type        = bool
  default     = false
  description = "The PostgreSQL service is a primary with standbys (infra/nomad/ha/postgres-ha.nomad.hcl, Patroni): the DSN names every member and asks for the primary (target_session_attrs=read-write), so after a failover the writer reconnects to the new primary by itself, with no restart."
}

variable "postgres_database" {
  type        = string
  default     = "postgres"
  description = "Database on that server the tables are created in (migrations run on start, owned by the arbfleet_writer group)."
}

variable "database_mount" {
  type        = string
  default     = "database"
  description = "Vault database secrets engine the engine takes its PostgreSQL user from (the secrets-store layout: runtime/platform/vault.py Layout)."
}

variable "redis_service" {
  type        = string
  default     = "redis"
  description = "Consul service of the Redis that holds strategy state snapshots (instances tagged with the job's namespace). Empty: no Redis."
}

# --- consul -----------------------------------------------------------------------------------

variable "consul_address" {
  type        = string
  default     = "http://127.0.0.1:8500"
  description = "Consul agent the engine registers its \"can trade\" TTL check with (service arbfleet-engine-ttl), takes its account locks from and watches the kill switch in (runtime/platform/consul.py)."
}

variable "consul_acl" {
  type        = bool
  default     = false
  description = "Consul has ACLs on: the engine reads its Consul token from secrets/consul_token, which comes the way vault_identity says: workload_identity, Nomad logs in to Consul with the task's consul_default identity (the auth method and binding rule `arbfleet platform apply` makes); legacy_token, a template reads it from the secrets store (consul_token_mount)."
}

variable "consul_token_mount" {
  type        = string
  default     = "secret"
  description = "With consul_acl and vault_identity = legacy_token: the KV v2 mount holding the engine's Consul token at <mount>/<namespace>/<job>/consul, field token (a token with the deployment's Consul role arbfleet-engine-<job>, written by provisioning; OpenBao has no Consul secrets engine)."
}
locals {
  # One config block per task for both drivers: what only docker takes is null under raw_exec,
  # and Nomad leaves null attributes out of a task's config. Docker tasks give args only: the
  # image's ENTRYPOINT runs them (Nomad appends a `command` to it, it does not replace it).
  docker       = var.driver == "docker"
  network_mode = local.docker ? "host" : null
  job_id       = "${replace(var.strategy, "_", "-")}-${var.deployment}"
  # Every deployment has its own role and policy (fleet.toml, applied by `arbfleet platform apply`): its database role and
  # its own accounts' keys.
  vault_role = var.vault_role != "" ? var.vault_role : "arbfleet-${local.job_id}"
  uses_vault = length(var.accounts) > 0 || (var.postgres_service != "" && var.database_mount != "")
  # The image's ENTRYPOINT is arbfleet (infra/images/engine); raw_exec runs the venv's, or the
  # source_dir's through the venv's python.
  from_source = !local.docker && var.source_dir != ""
  arbfleet    = local.docker ? null : local.from_source ? "${var.venv}/bin/python" : "${var.venv}/bin/arbfleet"
  args        = concat(local.from_source ? ["-m", "runtime.cli.main"] : [], ["run", "--config", "${NOMAD_TASK_DIR}/arbfleet.toml"])
  # One rendered file per venue and key field: secrets/<venue>/api_key, secrets/<venue>/api_secret.
  key_files = {
    for pair in setproduct(keys(var.accounts), ["api_key", "api_secret"]) :
    "${pair[0]}/${pair[1]}" => { venue = pair[0], account = var.accounts[pair[0]], field = pair[1] }
  }
  # ARBFLEET_* override the config file (runtime/config.py), so what only Nomad knows (address,
  # port, mode, Vault token, journal directory) is what the engine uses.
  env = merge(
    {
      ARBFLEET_MODE                 = var.mode
      ARBFLEET_HEALTH__HOST         = "${NOMAD_IP_http}"
      ARBFLEET_HEALTH__PORT         = "${NOMAD_PORT_http}"
      ARBFLEET_SHUTDOWN__DEADLINE_S = format("%g", var.shutdown_deadline_s)
      ARBFLEET_REDIS__DEPLOYMENT    = local.job_id
      # The account lock (one writer per account), the kill switch and the TTL check.
      ARBFLEET_CONSUL__ENABLED = "true"
      ARBFLEET_CONSUL__ADDRESS = var.consul_address
      # Kept across restarts of the allocation and moved with it (sticky ephemeral disk).
      ARBFLEET_JOURNAL__DIR = "${NOMAD_ALLOC_DIR}/data/journal"
    },
    !local.uses_vault ? {} : {
      ARBFLEET_VAULT__ADDRESS    = var.vault_address
      ARBFLEET_VAULT__TOKEN_FILE = "${NOMAD_SECRETS_DIR}/vault_token"
      ARBFLEET_VAULT__KV_MOUNT   = var.kv_mount
    },
    !local.uses_vault || var.vault_ca_file == "" ? {} : { REQUESTS_CA_BUNDLE = var.vault_ca_file },
    var.postgres_service == "" ? {} : merge(
      {
        ARBFLEET_POSTGRES__MIGRATE_ON_START = "true"
        ARBFLEET_POSTGRES__OWNER_ROLE       = "arbfleet_writer"
      },
      var.database_mount == "" ? {} : { ARBFLEET_VAULT__DATABASE_MOUNT = var.database_mount },
    ),
    var.redis_service == "" ? {} : { ARBFLEET_REDIS__ENVIRONMENT = "${NOMAD_NAMESPACE}" },
    !var.consul_acl ? {} : { ARBFLEET_CONSUL__TOKEN_FILE = "${NOMAD_SECRETS_DIR}/consul_token" },
    local.from_source ? { PYTHONPATH = var.source_dir } : {},
    { for venue, account in var.accounts : "ARBFLEET_VAULT__ACCOUNTS__${upper(venue)}" => account },
  )
  # Each store's instances tagged with the job's own namespace, whatever their health
  # (consul-template's "tag.name|any"), as environment variables for the engine.
  # A primary with standbys: one DSN with every member, whose list a failover does not change
  # (only the members' role tags), so the template is not re-rendered and the engine goes on.
  postgres_one = "{{ range service (printf \"%s.${var.postgres_service}|any\" (env \"NOMAD_NAMESPACE\")) }}ARBFLEET_POSTGRES__DSN=postgresql://{{ .Address }}:{{ .Port }}/${var.postgres_database}\n{{ end }}"
  postgres_all = "{{ with service (printf \"%s.${var.postgres_service}|any\" (env \"NOMAD_NAMESPACE\")) }}ARBFLEET_POSTGRES__DSN=postgresql://{{ range $i, $m := . }}{{ if $i }},{{ end }}{{ $m.Address }}:{{ $m.Port }}{{ end }}/${var.postgres_database}?target_session_attrs=read-write\n{{ end }}"
  stores = join("", compact([
    var.postgres_service == "" ? "" : var.postgres_ha ? local.postgres_all : local.postgres_one,
    var.redis_service == "" ? "" : "{{ range service (printf \"%s.${var.redis_service}|any\" (env \"NOMAD_NAMESPACE\")) }}ARBFLEET_REDIS__URL=redis://{{ .Address }}:{{ .Port }}/0\n{{ end }}",
  ]))
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

    # The canary starts beside the running engine, which keeps trading; the engine's account
    # lock keeps the canary from trading too, so /health means "alive and serving" and calls a
    # standby engine (waiting for the lock) healthy; "can trade" is the engine's own Consul TTL
    # check on arbfleet-engine-ttl (runtime/platform/consul.py), which Nomad does not watch. The canary is promoted once its check has passed
    # for min_healthy_time, the old engine stops and releases the lock; a canary that never
    # gets healthy reverts the job to the last stable version.
    update {
      max_parallel      = 1
      canary            = 1
      auto_promote      = true
      auto_revert       = true
      health_check      = "checks"
      min_healthy_time  = var.min_healthy_time
      healthy_deadline  = var.healthy_deadline
      progress_deadline = var.progress_deadline
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

    # The order journal lives in the allocation's data directory: it survives restarts of the
    # task (kill -9 included), and Nomad moves it to an allocation that replaces this one on
    # rescheduling. A canary starts with an empty journal: the engine it replaces has let its
    # orders in flight report before stopping (shutdown.open_orders = "keep").
    ephemeral_disk {
      sticky  = true
      migrate = true
    }

    task "engine" {
      driver = var.driver

      config {
        image        = local.docker ? var.image : null
        network_mode = local.network_mode
        command      = local.arbfleet
        args         = local.args
      }

      env = local.env

      # The engine re-reads secrets/vault_token itself when Vault refuses the old one, so a
      # re-issued token needs no restart.
      # One of the two, by Nomad generation (var.vault_identity).
      dynamic "vault" {
        for_each = var.vault_identity == "workload_identity" ? [local.vault_role] : []
        content {
          role        = vault.value
          change_mode = "noop"
        }
      }
      dynamic "vault" {
        for_each = var.vault_identity == "legacy_token" ? [var.vault_policies] : []
        content {
          policies    = vault.value
          change_mode = "noop"
        }
      }

      # With Consul ACLs, Nomad 1.7+ logs in to Consul with this identity and writes the task's
      # token to secrets/consul_token (ARBFLEET_CONSUL__TOKEN_FILE). Older Nomad has no such
      # identity: there the template below reads it from the secrets store.
      dynamic "identity" {
        for_each = var.consul_acl && var.vault_identity == "workload_identity" ? ["consul_default"] : []
        content {
          name = identity.value
          aud  = ["consul.io"]
          ttl  = "1h"
        }
      }

      # Nomad 1.6 and earlier with Consul ACLs: the token from the secrets store, read with the
      # task's own secrets-store token from <mount>/<namespace>/<job>/consul (the path the
      # generic nomad-workloads policy gives a job). OpenBao has no Consul secrets engine, so it
      # is a token provisioning made with the deployment's Consul role; a new version restarts
      # the engine, which reads its token at start (releasing its locks and taking them again).
      dynamic "template" {
        for_each = var.consul_acl && var.vault_identity == "legacy_token" ? [var.consul_token_mount] : []
        content {
          data        = "{{ with secret (printf \"${template.value}/data/%s/${local.job_id}/consul\" (env \"NOMAD_NAMESPACE\")) }}{{ .Data.data.token }}{{ end }}"
          destination = "secrets/consul_token"
          perms       = "0600"
          change_mode = "restart"
        }
      }

      # The config is part of the job: changing it is a new job version (and a canary).
      template {
        data        = var.engine_config
        destination = "local/arbfleet.toml"
        # TOML's [[tables]] and any {{ }} reach the engine untouched.
        left_delimiter  = "<%"
        right_delimiter = "%>"
      }

      # Where the stores are, from Consul; a store moving (or appearing) restarts the engine,
      # which flushes and reconnects within its shutdown deadline.
      dynamic "template" {
        for_each = local.stores == "" ? [] : [local.stores]
        content {
          data        = template.value
          destination = "local/stores.env"
          env         = true
          change_mode = "restart"
        }
      }

      dynamic "template" {
        for_each = local.key_files
        content {
          data          = <<-EOT
            {{ with secret "${var.kv_mount}/data/${template.value.venue}/${template.value.account}" }}{{ .Data.data.${template.value.field} }}{{ end }}
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
      kill_timeout = "${var.shutdown_deadline_s + 10}s"

      resources {
        cpu        = var.cpu
        memory     = var.memory
        memory_max = var.memory_max
      }
    }
  }
}
