# Backups (periodic batch): a full pgBackRest backup of TimescaleDB and an RDB snapshot of Redis,
# written to a host volume. pgBackRest expires backups (and the WAL archive before the oldest one
# kept) older than `retention_days` after each successful backup; the Redis task deletes older
# snapshots only after its own succeeded, so a failing run never eats the last good backup.
# Each task records its last run (`<backups>/status/<task>.last-run`: epoch and exit code), which
# `arbfleet db backup-exporter` turns into metrics. `arbfleet db restore` restores either store.
#
# pgBackRest backs up the server's data directory (on the same node: the job requests the
# database's volume too) while the server runs, through a superuser connection. The servers are
# found through Consul (services `timescaledb` and `redis`, tagged with the namespace); the
# PostgreSQL credentials come from Vault (secret/<namespace>/backup/postgres: `username`, `password`).

# --- placement and schedule ------------------------------------------------------------------

variable "datacenters" {
  type        = list(string)
  description = "Datacenters the job may be placed in."
}

variable "schedule" {
  type        = string
  default     = "15 3 * * *"
  description = "Cron expression (UTC) of the backup runs."
}

variable "retention_days" {
  type        = number
  default     = 7
  description = "Backups and snapshots older than this many days are deleted after a successful run (pgBackRest keeps the newest full backup older than that, so any moment of the last retention_days days can be restored), and the WAL archive with them."
}

# --- tasks -----------------------------------------------------------------------------------

variable "driver" {
  type        = string
  description = "Task driver: docker in production, raw_exec on the local stack (no Docker engine there)."
  validation {
    condition     = contains(["docker", "raw_exec"], var.driver)
    error_message = "The driver must be docker or raw_exec."
  }
}

variable "postgres_image" {
  type        = string
  default     = "ghcr.io/arbfleet/postgres:15-pgbackrest"
  description = "Docker image providing pgBackRest (driver docker): the server's own image (infra/images/postgres), so the versions match."
}

variable "redis_image" {
  type        = string
  default     = "redis:7.2"
  description = "Docker image providing redis-cli (driver docker)."
}

variable "redis_bin_dir" {
  type        = string
  default     = "/usr/bin"
  description = "Directory of redis-cli on the client (driver raw_exec)."
}

variable "database_volume" {
  type        = string
  default     = "arbfleet-data"
  description = "Host volume of the TimescaleDB job's data directory, which pgBackRest reads (mounted read-only at /var/lib/postgresql/data with docker; <host_volume_path>/timescaledb with raw_exec)."
}

# --- storage ---------------------------------------------------------------------------------

variable "host_volume" {
  type        = string
  default     = "arbfleet-data"
  description = "Host volume receiving the backups; with the docker driver it is mounted at /backups."
}

variable "host_volume_path" {
  type        = string
  default     = ""
  description = "Path of the host volume on the client (driver raw_exec only: raw_exec cannot mount volumes, so the tasks use the path itself; backups go to <path>/backups). `arbfleet deploy` fills it in for the local stack."
}

# --- secrets ---------------------------------------------------------------------------------

variable "vault_role" {
  type        = string
  default     = "nomad-workloads"
  description = "Vault JWT auth role the tasks log in with (workload identity)."
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
  backup_dir   = local.docker ? "/backups" : "${var.host_volume_path}/backups"
  redis_cli    = local.docker ? "redis-cli" : "${var.redis_bin_dir}/redis-cli"
  # The same options as the server's (timescaledb.nomad.hcl), and the retention.
  pgbackrest_env = {
    PGBACKREST_STANZA                    = "arbfleet"
    PGBACKREST_REPO1_PATH                = "${local.backup_dir}/pgbackrest"
    PGBACKREST_PG1_PATH                  = local.docker ? "/var/lib/postgresql/data" : "${var.host_volume_path}/timescaledb"
    PGBACKREST_LOCK_PATH                 = "${local.backup_dir}/pgbackrest-lock"
    PGBACKREST_LOG_LEVEL_FILE            = "off"
    PGBACKREST_START_FAST                = "y"
    PGBACKREST_REPO1_RETENTION_FULL_TYPE = "time"
    PGBACKREST_REPO1_RETENTION_FULL      = format("%d", var.retention_days)
  }
  # raw_exec runs tasks as root; the repository belongs to postgres, whose server archives into it.
  as_postgres = local.docker ? "" : "setpriv --reuid=postgres --regid=postgres --init-groups --"

  # $1 backup directory, $2 the task's name. The exit code of every run is recorded for the
  # metrics, whatever happens before.
  record_run = <<-EOT
    mkdir -p "$1/status"
    trap 'echo "$(date -u +%s) $?" > "$1/status/$2.last-run"' EXIT
  EOT
  # libpq takes the server from PGHOST; pgBackRest passes a port of its own (default 5432).
  pg_backup_script = <<-EOT
    ${local.record_run}
    export PGBACKREST_PG1_PORT="$PGPORT"
    cd /
    ${local.as_postgres} pgbackrest stanza-create
    ${local.as_postgres} pgbackrest backup --type=full
    ${local.as_postgres} pgbackrest info
  EOT
  # $3 the dump tool, $4 retention in days. The file is written under a temporary name and
  # renamed, so a half-written snapshot never counts as a backup.
  redis_script = <<-EOT
    ${local.record_run}
    dir="$1/redis"
    mkdir -p "$dir"
    out="$dir/redis-$(date -u +%Y%m%dT%H%M%SZ).rdb"
    "$3" -h "$REDIS_HOST" -p "$REDIS_PORT" --rdb "$out.partial"
    mv "$out.partial" "$out"
    find "$dir" -name 'redis-*.rdb' -mtime +"$4" -delete
    ls -l "$out"
  EOT
}

job "backup" {
  datacenters = var.datacenters
  type        = "batch"

  periodic {
    cron             = var.schedule
    time_zone        = "UTC"
    prohibit_overlap = true
  }

  group "backup" {
    # A failed run is retried once, then reported as failed (and alerted on); the next run
    # comes with the schedule.
    restart {
      attempts = 1
      delay    = "30s"
      mode     = "fail"
    }
    reschedule {
      attempts  = 0
      unlimited = false
    }

    volume "backups" {
      type   = "host"
      source = var.host_volume
    }
    # pgBackRest reads the server's files: requesting the volume places the run on its node.
    volume "database" {
      type      = "host"
      source    = var.database_volume
      read_only = true
    }

    task "postgres" {
      driver = var.driver
      # The image's postgres user owns the repository the server archives into (raw_exec runs as
      # root and switches with setpriv instead).
      user = local.docker ? "postgres" : ""

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

      # The image's entrypoint runs a command it does not know as given.
      config {
        image        = local.docker ? var.postgres_image : null
        network_mode = local.network_mode
        command      = local.docker ? null : "/bin/sh"
        args         = concat(local.docker ? ["/bin/sh"] : [], ["-ec", local.pg_backup_script, "pg-backup", local.backup_dir, "postgres"])
      }

      dynamic "volume_mount" {
        for_each = local.docker ? { backups = "/backups", database = local.pgbackrest_env.PGBACKREST_PG1_PATH } : {}
        content {
          volume      = volume_mount.key
          destination = volume_mount.value
          read_only   = volume_mount.key == "database"
        }
      }

      env = local.pgbackrest_env

      # The instance of this namespace's fleet (another fleet's may share the cluster).
      template {
        data        = <<-EOT
          {{ range service (printf "%s.timescaledb" (env "NOMAD_NAMESPACE")) }}PGHOST={{ .Address }}
          PGPORT={{ .Port }}
          {{ end }}
        EOT
        destination = "local/target.env"
        env         = true
      }

      template {
        data        = <<-EOT
          {{ with secret (printf "secret/data/%s/backup/postgres" (env "NOMAD_NAMESPACE")) }}PGUSER={{ .Data.data.username }}
          PGPASSWORD={{ .Data.data.password }}
          {{ end }}
        EOT
        destination = "secrets/postgres.env"
        env         = true
      }

      resources {
        cpu    = 200
        memory = 256
      }
    }

    task "redis" {
      driver = var.driver

      config {
        image        = local.docker ? var.redis_image : null
        network_mode = local.network_mode
        command      = local.docker ? null : "/bin/sh"
        args         = concat(local.docker ? ["/bin/sh"] : [], ["-ec", local.redis_script, "redis-backup", local.backup_dir, "redis", local.redis_cli, format("%d", var.retention_days)])
      }

      dynamic "volume_mount" {
        for_each = local.docker ? [1] : []
        content {
          volume      = "backups"
          destination = "/backups"
        }
      }

      template {
        data        = <<-EOT
          {{ range service (printf "%s.redis" (env "NOMAD_NAMESPACE")) }}REDIS_HOST={{ .Address }}
          REDIS_PORT={{ .Port }}
          {{ end }}
        EOT
        destination = "local/target.env"
        env         = true
      }

      resources {
        cpu    = 100
        memory = 64
      }
    }
  }
}
