# Exchange API key rotation (periodic batch): one task per account runs
# `arbfleet secrets rotate VENUE ACCOUNT`, the dual-key overlap of secrets/rotation.md: create a
# new key at the venue, write a new KV version with check-and-set, wait until every engine
# trading the account (found in Consul) reports it in use, revoke the old key. Exit status 3 means
# an operator must act (a venue without a key API); the task then fails and the next run repeats
# the instruction.
#
# The tasks log in with the rotation role (arbfleet-key-rotation, created by
# `arbfleet secrets apply`), which may write new versions under exchanges/.

# --- placement and schedule ------------------------------------------------------------------

variable "datacenters" {
  type        = list(string)
  description = "Datacenters the job may be placed in."
}

variable "schedule" {
  type        = string
  default     = "0 6 1 * *"
  description = "Cron expression (UTC) of the rotation runs; monthly, as the seeds rotate keys."
}

variable "accounts" {
  type = list(object({
    venue   = string
    account = string
  }))
  description = "Accounts to rotate (their KV entries are exchanges/<venue>/<account>)."
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
  default     = ""
  description = "Docker image of the engine, which has the `arbfleet` command (driver docker)."
}

variable "venv" {
  type        = string
  default     = ""
  description = "Python virtual environment with arbfleet installed, on the client (driver raw_exec). `arbfleet deploy` fills it in for the local stack."
}

# --- secrets ---------------------------------------------------------------------------------

variable "vault_address" {
  type        = string
  description = "Vault address the rotate command writes the new key versions to (VAULT_ADDR)."
}

variable "vault_role" {
  type        = string
  default     = "arbfleet-key-rotation"
  description = "Vault JWT auth role of the rotation tasks; its policy (secrets/policies/key-rotation.hcl.tmpl) may write new key versions."
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
  docker = var.driver == "docker"
}

job "key-rotation" {
  datacenters = var.datacenters
  type        = "batch"

  periodic {
    cron             = var.schedule
    time_zone        = "UTC"
    prohibit_overlap = true
  }

  group "rotate" {
    # A rotation that stopped half-way is resumed by the next attempt (secrets/rotation.md);
    # beyond that a human looks at it.
    restart {
      attempts = 1
      delay    = "1m"
      mode     = "fail"
    }
    reschedule {
      attempts  = 0
      unlimited = false
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

    dynamic "task" {
      for_each = { for a in var.accounts : "${a.venue}-${a.account}" => a }
      labels   = [task.key]
      content {
        driver = var.driver

        # The image's ENTRYPOINT is arbfleet (infra/images/engine).
        config {
          image   = local.docker ? var.image : null
          command = local.docker ? null : "${var.venv}/bin/arbfleet"
          args    = ["secrets", "rotate", task.value.venue, task.value.account]
        }

        # The Vault token comes in VAULT_TOKEN (the vault block's default).
        env {
          VAULT_ADDR = var.vault_address
        }

        resources {
          cpu    = 100
          memory = 128
        }
      }
    }
  }
}
