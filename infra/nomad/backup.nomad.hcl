# Backups (periodic batch): a pg_dump of TimescaleDB and an RDB snapshot of Redis, written to a
# host volume, keeping `retention_days` days. Each task deletes old files only after its own dump
# succeeded, so a failing backup never eats the last good one.
#
# The servers are found through Consul (services `timescaledb` and `redis`); the PostgreSQL
# credentials come from Vault (secret/<namespace>/backup/postgres, keys `username`, `password`).

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
  default     = 14
  description = "Dumps and snapshots older than this many days are deleted after a successful run."
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
  default     = "postgres:15"
  description = "Docker image providing pg_dump (driver docker): the server's own image, so the versions match."
}

variable "redis_image" {
  type        = string
  default     = "redis:7.2"
  description = "Docker image providing redis-cli (driver docker)."
}

variable "postgres_bin_dir" {
  type        = string
  default     = "/usr/lib/postgresql/15/bin"
  description = "Directory of pg_dump on the client (driver raw_exec)."
}

variable "redis_bin_dir" {
  type        = string
  default     = "/usr/bin"
  description = "Directory of redis-cli on the client (driver raw_exec)."
}

variable "database" {
  type        = string
  default     = "postgres"
  description = "Database to dump."
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
  backup_dir = var.driver == "docker" ? "/backups" : "${var.host_volume_path}/backups"
  pg_dump    = var.driver == "docker" ? "pg_dump" : "${var.postgres_bin_dir}/pg_dump"
  redis_cli  = var.driver == "docker" ? "redis-cli" : "${var.redis_bin_dir}/redis-cli"

  # $1 backup directory, $2 the dump tool, $3 retention in days. The file is written under a
  # temporary name and renamed, so a half-written dump never counts as a backup.
  pg_dump_script = <<-EOT
    dir="$1/postgres"
    mkdir -p "$dir"
    out="$dir/arbfleet-$(date -u +%Y%m%dT%H%M%SZ).dump"
    "$2" --format=custom --file="$out.partial" --dbname="$PGDATABASE"
    mv "$out.partial" "$out"
    find "$dir" -name 'arbfleet-*.dump' -mtime +"$3" -delete
    ls -l "$out"
  EOT
  redis_script   = <<-EOT
    dir="$1/redis"
    mkdir -p "$dir"
    out="$dir/redis-$(date -u +%Y%m%dT%H%M%SZ).rdb"
    "$2" -h "$REDIS_HOST" -p "$REDIS_PORT" --rdb "$out.partial"
    mv "$out.partial" "$out"
    find "$dir" -name 'redis-*.rdb' -mtime +"$3" -delete
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

    task "postgres" {
      driver = var.driver

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

      dynamic "config" {
        for_each = var.driver == "docker" ? [1] : []
        content {
          image        = var.postgres_image
          network_mode = "host"
          command      = "/bin/sh"
          args         = ["-ec", local.pg_dump_script, "pg-backup", local.backup_dir, local.pg_dump, format("%d", var.retention_days)]
        }
      }
      dynamic "config" {
        for_each = var.driver == "raw_exec" ? [1] : []
        content {
          command = "/bin/sh"
          args    = ["-ec", local.pg_dump_script, "pg-backup", local.backup_dir, local.pg_dump, format("%d", var.retention_days)]
        }
      }

      dynamic "volume_mount" {
        for_each = var.driver == "docker" ? [1] : []
        content {
          volume      = "backups"
          destination = "/backups"
        }
      }

      env {
        PGDATABASE = var.database
      }

      template {
        data        = <<-EOT
          {{ range service "timescaledb" }}PGHOST={{ .Address }}
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

      dynamic "config" {
        for_each = var.driver == "docker" ? [1] : []
        content {
          image        = var.redis_image
          network_mode = "host"
          command      = "/bin/sh"
          args         = ["-ec", local.redis_script, "redis-backup", local.backup_dir, local.redis_cli, format("%d", var.retention_days)]
        }
      }
      dynamic "config" {
        for_each = var.driver == "raw_exec" ? [1] : []
        content {
          command = "/bin/sh"
          args    = ["-ec", local.redis_script, "redis-backup", local.backup_dir, local.redis_cli, format("%d", var.retention_days)]
        }
      }

      dynamic "volume_mount" {
        for_each = var.driver == "docker" ? [1] : []
        content {
          volume      = "backups"
          destination = "/backups"
        }
      }

      template {
        data        = <<-EOT
          {{ range service "redis" }}REDIS_HOST={{ .Address }}
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
