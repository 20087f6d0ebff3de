# Redis: the engines' state snapshots (positions, open orders, PnL) and the kill-switch mirror.
# One instance, AOF persistence on a host volume, a hard memory limit.

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
  default     = "redis:7.2"
  description = "Docker image (driver docker). Redis 7.2 is the last BSD-licensed line (7.4+ is RSAL/SSPL, docs/components.md)."
}

variable "redis_bin_dir" {
  type        = string
  default     = "/usr/bin"
  description = "Directory of redis-server and redis-cli on the client (driver raw_exec)."
}

variable "cpu" {
  type        = number
  default     = 200
  description = "CPU reservation in MHz."
}

variable "memory" {
  type        = number
  default     = 256
  description = "Memory reservation in MB. Redis' maxmemory is 75% of it: an AOF rewrite forks, and the copy-on-write pages need the rest."
}

variable "memory_max" {
  type        = number
  default     = 320
  description = "Memory limit in MB (above memory only where the cluster enables memory oversubscription)."
}

# --- storage ---------------------------------------------------------------------------------

variable "host_volume" {
  type        = string
  default     = "arbfleet-data"
  description = "Host volume holding the data; with the docker driver it is mounted at /data (the image's data directory)."
}

variable "host_volume_path" {
  type        = string
  default     = ""
  description = "Path of the host volume on the client (driver raw_exec only: raw_exec cannot mount volumes, so the task uses the path itself; the data goes to <path>/redis). `arbfleet deploy` fills it in for the local stack."
}

locals {
  # One config block per task for both drivers: what only docker takes is null under raw_exec,
  # and Nomad leaves null attributes out of a task's config. Docker tasks give args only: the
  # image's ENTRYPOINT runs them (Nomad appends a `command` to it, it does not replace it).
  docker       = var.driver == "docker"
  network_mode = local.docker ? "host" : null
  data_dir     = local.docker ? "/data" : "${var.host_volume_path}/redis"
  redis_cli    = local.docker ? "redis-cli" : "${var.redis_bin_dir}/redis-cli"
  # The task listens on the address and port Nomad allocated: docker tasks use host networking,
  # so the same arguments work with both drivers.
  redis_args = [
    "--bind", "${NOMAD_IP_redis}",
    "--port", "${NOMAD_PORT_redis}",
    "--dir", local.data_dir,
    "--appendonly", "yes",
    "--appendfsync", "everysec",
    "--save", "",
    "--maxmemory", "${floor(var.memory * 0.75)}mb",
    # The engines' state must never be evicted silently: when full, writes fail and say so.
    "--maxmemory-policy", "noeviction",
  ]
}

job "redis" {
  datacenters = var.datacenters
  type        = "service"

  group "redis" {
    count = 1

    # A single stateful instance: no canary (two servers cannot share one AOF directory), and
    # no automatic revert of a version that has already rewritten the data.
    update {
      max_parallel     = 1
      health_check     = "checks"
      min_healthy_time = "5s"
      healthy_deadline = "2m"
      auto_revert      = false
    }

    restart {
      attempts = 5
      interval = "10m"
      delay    = "5s"
      mode     = "delay"
    }

    network {
      port "redis" {}
    }

    # Requesting the volume also places the job on a client that has it, for both drivers.
    volume "data" {
      type   = "host"
      source = var.host_volume
    }

    # raw_exec only: the data directory inside the host volume must exist before redis starts.
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

    task "redis" {
      driver = var.driver

      config {
        image        = local.docker ? var.image : null
        network_mode = local.network_mode
        command      = local.docker ? null : "${var.redis_bin_dir}/redis-server"
        args         = concat(local.docker ? ["redis-server"] : [], local.redis_args)
      }

      dynamic "volume_mount" {
        for_each = local.docker ? [1] : []
        content {
          volume      = "data"
          destination = "/data"
        }
      }

      service {
        name     = "redis"
        provider = "consul"
        port     = "redis"
        # Engines look for the instance tagged with their own namespace (engine.nomad.hcl).
        tags = ["${NOMAD_NAMESPACE}"]

        # PING answers PONG only once the AOF is loaded; while loading it is an error reply,
        # and redis-cli exits 0 on error replies, hence the grep.
        check {
          name     = "redis ping"
          type     = "script"
          command  = "/bin/sh"
          args     = ["-c", "${local.redis_cli} -h $NOMAD_IP_redis -p $NOMAD_PORT_redis ping | grep -qx PONG"]
          interval = "5s"
          timeout  = "2s"
        }
      }

      # Let redis finish its AOF fsync and exit cleanly on SIGTERM.
      kill_signal  = "SIGTERM"
      kill_timeout = "15s"

      resources {
        cpu        = var.cpu
        memory     = var.memory
        memory_max = var.memory_max
      }
    }
  }
}
