# TimescaleDB (PostgreSQL): ticks, opportunities, orders and fills from the engines' writers.
# One stateful instance on a host volume. The superuser password comes from Vault
# (secret/<namespace>/timescaledb/postgres, key `password`) through workload identity.
#
# Locally the image is replaced by Debian's PostgreSQL (no TimescaleDB package there: the schema
# code falls back to native partitioning). raw_exec runs tasks as root, which PostgreSQL refuses,
# and the task `user` does not help: the postgres user cannot enter Nomad's data directory (mode
# 0700) to start in its task directory. So a root prestart task prepares the data directory, and
# the server starts through `setpriv`, which switches to postgres and then execs the server
# (no parent process left in between: Nomad's signals reach PostgreSQL itself; `runuser` would
# stay as the parent and SIGKILL the server 2 s after forwarding a SIGTERM).

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
  default     = "postgres:15"
  description = "Docker image (driver docker); PostgreSQL 15 like the local stack, so dumps restore both ways. PostgreSQL's own image: native partitioning; a TimescaleDB image (whose compression and retention are under the Timescale License, docs/components.md) is the operator's choice."
}

variable "postgres_bin_dir" {
  type        = string
  default     = "/usr/lib/postgresql/15/bin"
  description = "Directory of postgres, initdb and pg_isready on the client (driver raw_exec)."
}

variable "postgres_settings" {
  type        = map(string)
  default     = {}
  description = "Server settings passed as `-c name=value` (shared_buffers, max_connections, ...)."
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
  default     = 768
  description = "Memory limit in MB (above memory only where the cluster enables memory oversubscription)."
}

# --- storage ---------------------------------------------------------------------------------

variable "host_volume" {
  type        = string
  default     = "arbfleet-data"
  description = "Host volume holding the data; with the docker driver it is mounted at /var/lib/postgresql/data (the image's PGDATA)."
}

variable "host_volume_path" {
  type        = string
  default     = ""
  description = "Path of the host volume on the client (driver raw_exec only: raw_exec cannot mount volumes, so the task uses the path itself; the data goes to <path>/timescaledb). `arbfleet deploy` fills it in for the local stack."
}

variable "backup_volume" {
  type        = string
  default     = "arbfleet-data"
  description = "Host volume holding the pgBackRest repository the server archives its WAL to (the backup job writes its backups there); with the docker driver it is mounted at /backups. With raw_exec the repository is <host_volume_path>/backups/pgbackrest."
}

variable "exporter_image" {
  type        = string
  default     = "ghcr.io/arbfleet/arbfleet:0.1.0"
  description = "Docker image with arbfleet (driver docker): its `arbfleet db backup-exporter` serves the backups' metrics."
}

variable "venv" {
  type        = string
  default     = ""
  description = "Python virtual environment with arbfleet's dependencies, on the client (driver raw_exec). `arbfleet deploy` fills it in for the local stack."
}

variable "source_dir" {
  type        = string
  default     = ""
  description = "The checkout whose runtime/ the backup exporter runs (driver raw_exec): the one `arbfleet deploy` ran from, which fills it in."
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
  data_dir     = local.docker ? "/var/lib/postgresql/data" : "${var.host_volume_path}/timescaledb"
  backup_dir   = local.docker ? "/backups" : "${var.host_volume_path}/backups"
  # pgBackRest reads its options from the environment: the server's archive_command (and the
  # restore_command `arbfleet db restore` leaves behind) find the repository through these, and
  # the backup job sets the same. The stanza and repository layout are runtime/persistence/backup.py's.
  pgbackrest_env = {
    PGBACKREST_STANZA          = "arbfleet"
    PGBACKREST_REPO1_PATH      = "${local.backup_dir}/pgbackrest"
    PGBACKREST_PG1_PATH        = local.data_dir
    PGBACKREST_LOCK_PATH       = "${local.backup_dir}/pgbackrest-lock"
    PGBACKREST_LOG_LEVEL_FILE  = "off"
    PGBACKREST_ARCHIVE_TIMEOUT = "120"
  }
  pg_isready = local.docker ? "pg_isready" : "${var.postgres_bin_dir}/pg_isready"
  # Host networking with both drivers: the server listens on the address and port Nomad allocated.
  server_args = concat(
    ["-c", "listen_addresses=${NOMAD_IP_db}", "-p", "${NOMAD_PORT_db}"],
    # Every WAL segment goes to the pgBackRest repository: point-in-time restore needs them all.
    ["-c", "archive_mode=on", "-c", "archive_command=pgbackrest archive-push %p"],
    flatten([for name, value in var.postgres_settings : ["-c", "${name}=${value}"]]),
  )
  exporter_args = [
    "db", "backup-exporter", "--backups", local.backup_dir,
    "--listen", "${NOMAD_IP_metrics}:${NOMAD_PORT_metrics}",
  ]
  password_template = <<-EOT
    {{ with secret (printf "secret/data/%s/timescaledb/postgres" (env "NOMAD_NAMESPACE")) }}{{ .Data.data.password }}{{ end }}
  EOT
}

job "timescaledb" {
  datacenters = var.datacenters
  type        = "service"

  group "timescaledb" {
    count = 1

    # A single stateful instance: no canary (two servers cannot share one data directory), and
    # no automatic revert of a version that may already have touched the data.
    update {
      max_parallel     = 1
      health_check     = "checks"
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
      port "metrics" {}
    }

    # Requesting the volume also places the job on a client that has it, for both drivers.
    volume "data" {
      type   = "host"
      source = var.host_volume
    }
    volume "backups" {
      type   = "host"
      source = var.backup_volume
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

    # raw_exec only (the image's entrypoint does this itself): create the data directory for the
    # postgres user and initialise it once, with the password from Vault.
    dynamic "task" {
      for_each = local.docker ? [] : ["initdb"]
      labels   = [task.value]
      content {
        driver = "raw_exec"
        lifecycle {
          hook = "prestart"
        }
        config {
          command = "/bin/sh"
          args = ["-ec", <<-EOT
            mkdir -p "$1"
            chown postgres:postgres "$1"
            chmod 0700 "$1"
            if [ ! -s "$1/PG_VERSION" ]; then
              # The postgres user cannot enter Nomad's data directory (mode 0700), so initdb
              # gets its own copy of the password, removed again on exit.
              pwfile=$(mktemp)
              trap 'rm -f "$pwfile"' EXIT
              cp "$NOMAD_SECRETS_DIR/postgres-password" "$pwfile"
              chown postgres "$pwfile"
              cd /
              setpriv --reuid=postgres --regid=postgres --init-groups -- "$2/initdb" -D "$1" \
                -U postgres --auth=scram-sha-256 --pwfile="$pwfile" --encoding=UTF8
            fi
            # The WAL archive (and pgBackRest's lock directory) must exist before the server's
            # first archive_command: the stanza is created from the data directory alone
            # (idempotent; the same after a restore).
            mkdir -p "$3" "$4"
            chown postgres:postgres "$3" "$4"
            cd /
            setpriv --reuid=postgres --regid=postgres --init-groups -- pgbackrest stanza-create --no-online
            EOT
            , "initdb", local.data_dir, var.postgres_bin_dir, local.pgbackrest_env.PGBACKREST_REPO1_PATH,
            local.pgbackrest_env.PGBACKREST_LOCK_PATH,
          ]
        }
        env = local.pgbackrest_env
        template {
          data        = local.password_template
          destination = "secrets/postgres-password"
        }
        resources {
          cpu    = 100
          memory = 64
        }
      }
    }

    task "postgres" {
      driver = var.driver

      # The image's entrypoint initialises the data directory and runs `postgres`; raw_exec
      # switches to the postgres user with setpriv, and -k "": no Unix socket (the default
      # directory belongs to the system's own PostgreSQL).
      config {
        image        = local.docker ? var.image : null
        network_mode = local.network_mode
        command      = local.docker ? null : "/usr/bin/setpriv"
        args = concat(
          local.docker ? ["postgres"] : [
            "--reuid=postgres", "--regid=postgres", "--init-groups", "--",
            "${var.postgres_bin_dir}/postgres", "-D", local.data_dir, "-k", "",
          ],
          local.server_args,
        )
      }

      dynamic "volume_mount" {
        for_each = local.docker ? { data = local.data_dir, backups = local.backup_dir } : {}
        content {
          volume      = volume_mount.key
          destination = volume_mount.value
        }
      }

      # The image's entrypoint initialises an empty data directory with this password; PGDATA
      # is where the volume is mounted (the -ha image, which carries pgBackRest, defaults elsewhere).
      env = merge(local.pgbackrest_env, {
        POSTGRES_PASSWORD_FILE = "${NOMAD_SECRETS_DIR}/postgres-password"
        PGDATA                 = local.data_dir
      })

      template {
        data        = local.password_template
        destination = "secrets/postgres-password"
        # Only read at initialisation: a rotated password is set with ALTER ROLE, not a restart.
        change_mode = "noop"
      }

      service {
        name     = "timescaledb"
        provider = "consul"
        port     = "db"
        # Engines look for the instance tagged with their own namespace (engine.nomad.hcl).
        tags = ["${NOMAD_NAMESPACE}"]

        check {
          name     = "pg_isready"
          type     = "script"
          command  = local.pg_isready
          args     = ["-h", "${NOMAD_IP_db}", "-p", "${NOMAD_PORT_db}", "-q"]
          interval = "5s"
          timeout  = "3s"
        }
      }

      # SIGINT is PostgreSQL's "fast" shutdown: roll back open transactions, checkpoint, exit.
      # 30 s is the most a client allows by default (max_kill_timeout).
      kill_signal  = "SIGINT"
      kill_timeout = "30s"

      resources {
        cpu        = var.cpu
        memory     = var.memory
        memory_max = var.memory_max
      }
    }

    # The backups' age, size and last run as metrics (arbfleet_backup_*): the backup job is a
    # periodic batch job with nothing to scrape, and this group runs on the backups' node.
    task "backup-metrics" {
      driver = var.driver
      # pgBackRest's repository belongs to the postgres image's user (uid 70; files 0640): the
      # engine image's own user (10001) could not read backup.info. raw_exec runs as root.
      user = local.docker ? "70:70" : ""

      # The image's ENTRYPOINT is arbfleet (infra/images/engine).
      config {
        image        = local.docker ? var.exporter_image : null
        network_mode = local.network_mode
        command      = local.docker ? null : "${var.venv}/bin/python"
        args         = concat(local.docker ? [] : ["-m", "runtime.cli.main"], local.exporter_args)
      }

      dynamic "volume_mount" {
        for_each = local.docker ? [1] : []
        content {
          volume      = "backups"
          destination = "/backups"
          read_only   = true
        }
      }

      env {
        PYTHONPATH = var.source_dir
      }

      service {
        name     = "arbfleet-backup"
        provider = "consul"
        port     = "metrics"
        # Prometheus scrapes services tagged "prometheus" (monitoring/thresholds.toml).
        tags = ["${NOMAD_NAMESPACE}", "prometheus"]
        meta {
          metrics_path = "/metrics"
        }
        # A monitoring sidecar never holds up a database deployment.
        on_update = "ignore"

        check {
          type     = "http"
          path     = "/metrics"
          interval = "10s"
          timeout  = "3s"
        }
      }

      resources {
        cpu    = 50
        memory = 96
      }
    }
  }
}
