# PostgreSQL with a streaming standby that takes over: one Patroni member per client, leader
# election through Consul (Patroni's Consul store: the leader key service/<scope>/leader is held
# by a Consul session, so a member whose node dies loses it when the session's TTL runs out and
# the standby takes it and promotes itself). Replication is synchronous (Patroni's
# synchronous_mode): a commit the primary acknowledged is on the standby too, so the standby that
# takes over has every row a writer was told is written.
#
# Writers find the members in Consul: Patroni registers each as the service <scope>, tagged with
# its role (primary/master or replica) and the extra tags of var.service_tags, with a check on its
# REST API that passes for its role only. The engine's DSN lists every member with
# target_session_attrs=read-write (engine.nomad.hcl, postgres_ha), so its writer reconnects to
# whichever member is primary, with no restart.
#
# Not in deploy's units (infra/nomad/*.nomad.hcl): the fleets run the single timescaledb job;
# this job runs on the multi-node cluster (tests/infra/test_cluster_failover.py, docs/cluster.md).
#
# raw_exec (the test cluster): Patroni runs as postgres through setpriv (PostgreSQL refuses root),
# with its data outside Nomad's data directory, which the postgres user cannot enter (mode 0700).

# --- placement -------------------------------------------------------------------------------

variable "datacenters" {
  type        = list(string)
  description = "Datacenters the job may be placed in."
}

variable "members" {
  type        = number
  default     = 2
  description = "Patroni members, one per client (distinct hosts): a primary and its standbys."
}

# --- patroni ---------------------------------------------------------------------------------

variable "scope" {
  type        = string
  default     = "postgres-ha"
  description = "Patroni's cluster name: its Consul keys are under service/<scope>/ and its members register the Consul service <scope> (the ACL of infra/terraform/modules/platform/consul/patroni-acl.json)."
}

variable "service_tags" {
  type        = list(string)
  default     = ["default"]
  description = "Extra tags on the members' Consul service besides their role; engines look for the tag of their Nomad namespace."
}

variable "allowed_cidr" {
  type        = string
  description = "Network the members and the writers connect from (pg_hba: replication and clients, password-checked)."
}

variable "consul_address" {
  type        = string
  default     = "127.0.0.1:8500"
  description = "Consul agent Patroni talks to (host:port, plain HTTP on the node's loopback)."
}

variable "ttl_s" {
  type        = number
  default     = 20
  description = "Patroni's leader TTL: Patroni gives Consul's session half of it (Consul may wait twice a session's TTL before invalidating it, and refuses one under 10 s); a dead primary's key goes after 10 to 20 s."
}

variable "session_checks" {
  type        = list(string)
  default     = ["serfHealth"]
  description = "Consul checks the leader's session is bound to: with serfHealth, the session (and the leader key) goes as soon as Consul's gossip declares the primary's node failed, before the TTL runs out. Empty: the TTL alone."
}

variable "loop_wait_s" {
  type        = number
  default     = 2
  description = "Seconds between Patroni's checks (a standby notices the free leader key within this)."
}

variable "retry_timeout_s" {
  type        = number
  default     = 5
  description = "How long Patroni retries Consul and PostgreSQL before demoting a primary; loop_wait_s + 2 * retry_timeout_s must not exceed ttl_s."
}

variable "postgres_settings" {
  type        = map(string)
  default     = {}
  description = "PostgreSQL settings every member runs with (shared_buffers, max_connections, ...), besides replication's own."
}

# --- task ------------------------------------------------------------------------------------

variable "driver" {
  type        = string
  description = "Task driver: docker in production, raw_exec on the test cluster."
  validation {
    condition     = contains(["docker", "raw_exec"], var.driver)
    error_message = "The driver must be docker or raw_exec."
  }
}

variable "image" {
  type        = string
  default     = "ghcr.io/arbfleet/postgres:15-pgbackrest"
  description = "Docker image (driver docker) with PostgreSQL 15 and Patroni (infra/images/postgres)."
}

variable "postgres_bin_dir" {
  type        = string
  default     = "/usr/lib/postgresql/15/bin"
  description = "Directory of postgres, initdb, pg_ctl, pg_basebackup and pg_rewind."
}

variable "patroni" {
  type        = string
  default     = "/usr/bin/patroni"
  description = "Patroni's program (driver raw_exec: Debian's patroni package)."
}

variable "data_root" {
  type        = string
  default     = "/var/lib/arbfleet-patroni"
  description = "Driver raw_exec: each member keeps its data in <data_root>/<node name> (the test cluster's nodes share one filesystem), a directory the postgres user can reach."
}

variable "host_volume" {
  type        = string
  default     = "postgres-data"
  description = "Driver docker: the host volume mounted at /var/lib/postgresql/data (the member's data in its patroni/ directory)."
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

# --- secrets ---------------------------------------------------------------------------------

variable "secrets_mount" {
  type        = string
  default     = "secret"
  description = "KV v2 mount holding <mount>/<namespace>/<scope>/patroni: consul_token (a token with the Patroni role), superuser_password, replication_password."
}

variable "vault_role" {
  type        = string
  default     = "nomad-workloads"
  description = "Vault JWT auth role the task logs in with (workload identity)."
}

variable "vault_identity" {
  type        = string
  default     = "workload_identity"
  description = "How the task gets its Vault/OpenBao token: workload_identity (Nomad 1.7 and later) or legacy_token (Nomad 1.6.1, the test cluster's: Nomad's servers create a token with vault_policies)."
  validation {
    condition     = contains(["workload_identity", "legacy_token"], var.vault_identity)
    error_message = "The vault_identity must be workload_identity or legacy_token."
  }
}

variable "vault_policies" {
  type        = list(string)
  default     = []
  description = "With vault_identity = legacy_token only: the policies of the task's token."
}

locals {
  # The member's directory (owned by postgres): its configuration, its .pgpass and data/.
  member_dir = var.driver == "docker" ? "/var/lib/postgresql/data" : "${var.data_root}/$${node.unique.name}"
  config     = "${local.member_dir}/patroni.yml"
  parameters = merge(var.postgres_settings, {
    wal_level             = "replica"
    hot_standby           = "on"
    wal_log_hints         = "on"
    max_wal_senders       = "10"
    max_replication_slots = "10"
  })
  # Patroni's configuration; the secrets from the store, each written as a JSON string (valid
  # YAML, whatever characters it holds). What only Nomad knows comes as PATRONI_* variables.
  patroni_yml = <<-EOT
    scope: ${var.scope}
    consul:
      host: ${var.consul_address}
      register_service: true
      service_tags: ${jsonencode(var.service_tags)}
      service_check_interval: 2s
      checks: ${jsonencode(var.session_checks)}
    {{ with secret (printf "${var.secrets_mount}/data/%s/${var.scope}/patroni" (env "NOMAD_NAMESPACE")) }}
      token: {{ .Data.data.consul_token | toJSON }}
    bootstrap:
      dcs:
        ttl: ${var.ttl_s}
        loop_wait: ${var.loop_wait_s}
        retry_timeout: ${var.retry_timeout_s}
        maximum_lag_on_failover: 1048576
        synchronous_mode: true
        postgresql:
          use_pg_rewind: true
          use_slots: true
          parameters: ${jsonencode(local.parameters)}
      initdb: [{encoding: UTF8}, data-checksums]
    postgresql:
      bin_dir: ${var.postgres_bin_dir}
      parameters:
        unix_socket_directories: ""
      pg_hba:
        - host replication replicator ${var.allowed_cidr} scram-sha-256
        - host all all ${var.allowed_cidr} scram-sha-256
      authentication:
        superuser:
          username: postgres
          password: {{ .Data.data.superuser_password | toJSON }}
        replication:
          username: replicator
          password: {{ .Data.data.replication_password | toJSON }}
    {{ end }}
  EOT
  env = {
    PATRONI_NAME                       = "$${node.unique.name}"
    PATRONI_RESTAPI_LISTEN             = "$${NOMAD_ADDR_api}"
    PATRONI_RESTAPI_CONNECT_ADDRESS    = "$${NOMAD_ADDR_api}"
    PATRONI_POSTGRESQL_LISTEN          = "$${NOMAD_ADDR_db}"
    PATRONI_POSTGRESQL_CONNECT_ADDRESS = "$${NOMAD_ADDR_db}"
    PATRONI_POSTGRESQL_DATA_DIR        = "${local.member_dir}/data"
    PATRONI_POSTGRESQL_PGPASS          = "${local.member_dir}/pgpass"
  }
}

job "postgres-ha" {
  datacenters = var.datacenters
  type        = "service"

  group "postgres" {
    count = var.members

    # One member per host: a standby on the primary's host dies with it.
    constraint {
      operator = "distinct_hosts"
      value    = "true"
    }

    # Members are replaced one at a time; Patroni moves the leader off a member it stops.
    update {
      max_parallel     = 1
      health_check     = "task_states"
      min_healthy_time = "10s"
      healthy_deadline = "5m"
      auto_revert      = false
    }

    restart {
      attempts = 5
      interval = "10m"
      delay    = "10s"
      mode     = "delay"
    }

    network {
      port "db" {}
      port "api" {}
    }

    dynamic "volume" {
      for_each = var.driver == "docker" ? [var.host_volume] : []
      labels   = ["data"]
      content {
        type   = "host"
        source = volume.value
      }
    }

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

    task "patroni" {
      driver = var.driver
      # PostgreSQL refuses root; raw_exec switches user itself (below), after preparing as root.
      user = var.driver == "docker" ? "postgres" : ""

      dynamic "config" {
        for_each = var.driver == "docker" ? [1] : []
        content {
          image        = var.image
          network_mode = "host"
          command      = "/bin/sh"
          args         = ["-ec", "install -m 0600 \"$NOMAD_SECRETS_DIR/patroni.yml\" \"$1\" && exec patroni \"$1\"", "patroni", local.config]
        }
      }
      # The configuration (secrets inside) goes where the postgres user can read it, 0600; exec
      # leaves Patroni itself as the task's process, so Nomad's SIGTERM reaches it (Patroni
      # then stops PostgreSQL and gives the leader key up).
      dynamic "config" {
        for_each = var.driver == "raw_exec" ? [1] : []
        content {
          command = "/bin/sh"
          args = ["-ec", <<-EOT
            mkdir -p "$3"
            chown postgres:postgres "$3"
            chmod 0700 "$3"
            install -o postgres -g postgres -m 0600 "$NOMAD_SECRETS_DIR/patroni.yml" "$1"
            cd /
            exec setpriv --reuid=postgres --regid=postgres --init-groups -- "$2" "$1"
            EOT
            , "patroni", local.config, var.patroni, local.member_dir,
          ]
        }
      }

      dynamic "volume_mount" {
        for_each = var.driver == "docker" ? [1] : []
        content {
          volume      = "data"
          destination = "/var/lib/postgresql/data"
        }
      }

      env = local.env

      template {
        data        = local.patroni_yml
        destination = "secrets/patroni.yml"
        perms       = "0600"
        # Patroni reads it at start; a rotated secret is applied by restarting one member at a time.
        change_mode = "noop"
      }

      kill_signal  = "SIGTERM"
      kill_timeout = "30s"

      resources {
        cpu    = var.cpu
        memory = var.memory
      }
    }
  }
}
