variable "secrets_dir" {
  description = "Path of the repository's secrets/ directory: policy templates and database statements are rendered from it, as `arbfleet secrets apply` does."
  type        = string
}

# --- Vault ------------------------------------------------------------------------------

variable "kv" {
  description = "Exchange keys mount (secrets/vault.toml [kv]): KV v2 path, versions kept, check-and-set required."
  type = object({
    mount        = optional(string, "exchanges")
    max_versions = optional(number, 10)
    cas_required = optional(bool, true)
  })
  default = {}
}

variable "create_workload_secret_mount" {
  description = "Create the KV v2 mount `secret/` the platform jobs read (`secret/<namespace>/<job>/*`). False where it exists already (a Vault dev server mounts it)."
  type        = bool
  default     = true
}

variable "jwt" {
  description = "Nomad workload identity (secrets/vault.toml [jwt]): JWT auth mount, audience, the key rotation job, and where Vault fetches Nomad's signing keys (jwks_url; jwks_ca_pem when Nomad's HTTPS uses a private CA)."
  type = object({
    auth_mount   = optional(string, "jwt-nomad")
    audience     = optional(string, "vault.io")
    rotation_job = optional(string, "key-rotation")
    jwks_url     = string
    jwks_ca_pem  = optional(string)
  })
}

variable "deployments" {
  description = "Strategy deployments (secrets/vault.toml [deployments]): Nomad engine job name => exchange account per venue. Each gets a policy and a JWT role `arbfleet-<job>`."
  type = map(object({
    accounts = map(string)
    # Accounts the engine locks without keys in Vault (a paper deployment's simulator accounts,
    # its config's [consul.accounts]): its Consul policy may write their lock keys too.
    locks = optional(map(string), {})
  }))
  default = {}

  validation {
    condition     = alltrue(flatten([for d in values(var.deployments) : [for a in values(d.accounts) : !startswith(a, "_")]]))
    error_message = "account names must not start with \"_\" (exchanges/<venue>/_management is the venue's management credential)."
  }
}

variable "database" {
  description = "Database secrets engine (secrets/vault.toml [database]) and the PostgreSQL connection Vault uses (user arbfleet_vault, made by secrets/database/roles.sql; its password in database_password). Null: not configured (the local stack leaves it to `arbfleet secrets apply`)."
  type = object({
    mount          = optional(string, "database")
    connection     = optional(string, "arbfleet-postgres")
    role           = optional(string, "arbfleet-engine")
    default_ttl    = optional(number, 3600)
    max_ttl        = optional(number, 86400)
    connection_url = string
    username       = optional(string, "arbfleet_vault")
  })
  default = null
}

variable "database_password" {
  description = "Initial password of the database user; Vault rotates it right after configuring the connection, so it is only ever good once."
  type        = string
  default     = null
  sensitive   = true
}

# --- Consul -----------------------------------------------------------------------------

variable "consul_acls" {
  description = "Create Consul ACL policies (false where ACLs are off, as on a dev agent)."
  type        = bool
  default     = true
}

variable "kill_switch" {
  description = "Write the cluster kill switch `arbfleet/kill-switch` (engines stop new orders while it exists). Null (default): Terraform leaves the key alone; its absence means trade. Set only to bring a cluster up halted: while set, an apply re-creates a key an operator deleted."
  type = object({
    reason = string
    who    = optional(string, "terraform")
  })
  default = null
}

# --- Nomad ------------------------------------------------------------------------------

variable "nomad_acls" {
  description = "Create Nomad ACL policies (false where ACLs are off, as on a dev agent)."
  type        = bool
  default     = true
}

variable "namespaces" {
  description = "Nomad namespaces to create, name => description."
  type        = map(string)
  default = {
    arbfleet = "Arbfleet engines and platform jobs"
  }
}

variable "jobs" {
  description = "Nomad jobs by name: the job spec (infra/nomad/<job>.nomad.hcl) and the contents of its vars files in order, exactly as given to `nomad job run -var-file`."
  type = map(object({
    jobspec   = string
    var_files = list(string)
  }))
  default = {}
}

variable "generated_vars" {
  description = "tfvars-syntax content with values runtime/ops/deploy.py fills in (file contents, local paths): passed to each job only for variables it declares and its vars files leave unset."
  type        = string
  default     = ""
}

variable "wait_for_deployments" {
  description = "Wait until each job's deployment is successful (a failed canary fails the apply)."
  type        = bool
  default     = true
}
