# Vault, Consul and Nomad configured as secrets/ and infra/nomad/ describe them: the same
# layout `arbfleet secrets apply` and the local stack create, so a job behaves the same here
# and there.

locals {
  workload_role = "nomad-workloads"
  db            = var.database
  db_mount      = local.db == null ? "database" : local.db.mount
  db_role       = local.db == null ? "arbfleet-engine" : local.db.role

  # Every JWT role: one per deployment with its own policy, the rotation job's, and the generic
  # role of the platform jobs (templated policy: secret/<namespace>/<job>/* only).
  jwt_roles = merge(
    { for job, _ in var.deployments : "arbfleet-${job}" => { job = job, policy = "arbfleet-deployment-${job}" } },
    { "arbfleet-${var.jwt.rotation_job}" = { job = var.jwt.rotation_job, policy = "arbfleet-key-rotation" } },
  )

  policies = merge(
    module.vault_policies.policies,
    { (local.workload_role) = templatefile("${path.module}/templates/workload-policy.hcl.tftpl", { accessor = vault_jwt_auth_backend.this.accessor }) },
  )

  kv_mounts = merge(
    { (var.kv.mount) = "Exchange API keys: <venue>/<account>, one version per key (secrets/README.md)" },
    var.create_workload_secret_mount ? { secret = "Platform job secrets: <namespace>/<job>/*" } : {},
  )
}

# --- Vault --------------------------------------------------------------------------------

module "vault_policies" {
  source = "./modules/vault-policies"

  secrets_dir = var.secrets_dir
  kv_mount    = var.kv.mount
  db_mount    = local.db_mount
  db_role     = local.db_role
  deployments = var.deployments
}

resource "vault_mount" "this" {
  for_each = local.kv_mounts

  path        = each.key
  type        = "kv"
  options     = { version = "2" }
  description = each.value
}

resource "vault_kv_secret_backend_v2" "this" {
  mount        = vault_mount.this[var.kv.mount].path
  max_versions = var.kv.max_versions
  cas_required = var.kv.cas_required
}

resource "vault_jwt_auth_backend" "this" {
  path               = var.jwt.auth_mount
  type               = "jwt"
  description        = "Nomad workload identities"
  jwks_url           = var.jwt.jwks_url
  jwks_ca_pem        = var.jwt.jwks_ca_pem
  jwt_supported_algs = ["RS256", "EdDSA"]
  default_role       = local.workload_role
}

resource "vault_policy" "this" {
  for_each = local.policies

  name   = each.key
  policy = each.value
}

resource "vault_jwt_auth_backend_role" "this" {
  for_each = merge(
    { for role, r in local.jwt_roles : role => { bound_claims = { nomad_job_id = r.job }, policy = r.policy } },
    { (local.workload_role) = { bound_claims = null, policy = local.workload_role } },
  )

  backend                 = vault_jwt_auth_backend.this.path
  role_name               = each.key
  role_type               = "jwt"
  bound_audiences         = [var.jwt.audience]
  bound_claims            = each.value.bound_claims
  user_claim              = "/nomad_job_id"
  user_claim_json_pointer = true
  claim_mappings = {
    nomad_namespace = "nomad_namespace"
    nomad_job_id    = "nomad_job_id"
    nomad_task      = "nomad_task"
  }
  token_type     = "service"
  token_policies = [vault_policy.this[each.value.policy].name]
  # Periodic tokens Nomad renews for as long as the task runs.
  token_period           = 1800
  token_explicit_max_ttl = 0
}

resource "vault_database_secrets_mount" "this" {
  count = local.db == null ? 0 : 1

  path = local.db.mount

  postgresql {
    name              = local.db.connection
    connection_url    = local.db.connection_url
    username          = local.db.username
    password          = var.database_password
    allowed_roles     = [local.db.role]
    verify_connection = true
  }
}

resource "vault_database_secret_backend_role" "this" {
  count = local.db == null ? 0 : 1

  backend               = vault_database_secrets_mount.this[0].path
  name                  = local.db.role
  db_name               = local.db.connection
  creation_statements   = compact(split("\n", file("${var.secrets_dir}/database/creation.sql")))
  revocation_statements = compact(split("\n", file("${var.secrets_dir}/database/revocation.sql")))
  default_ttl           = local.db.default_ttl
  max_ttl               = local.db.max_ttl
}

# Vault changes arbfleet_vault's password at once, so only Vault knows it (secrets/README.md).
resource "vault_generic_endpoint" "this" {
  count = local.db == null ? 0 : 1

  path                 = "${vault_database_secrets_mount.this[0].path}/rotate-root/${local.db.connection}"
  data_json            = "{}"
  disable_read         = true
  disable_delete       = true
  ignore_absent_fields = true
}

# --- Consul -------------------------------------------------------------------------------

# The engines' Consul ACLs come from consul/engine-acl.json, which the cluster tests apply to a
# real Consul too (runtime/devstack/cluster_engines.py): one definition, not a copy.
locals {
  consul_acl = jsondecode(file("${path.module}/consul/engine-acl.json"))
}

resource "consul_acl_policy" "this" {
  for_each = var.consul_acls ? {
    "arbfleet-operator" = file("${path.module}/templates/consul-operator.hcl")
  } : {}

  name  = each.key
  rules = each.value
}

# One policy and role per deployment: its services and checks, sessions, the kill switch (read)
# and write on its own account lock keys only, so an engine cannot take another deployment's
# accounts (accounts with Vault keys, and `locks`, a paper deployment's simulator accounts).
resource "consul_acl_policy" "engine" {
  for_each = var.consul_acls ? var.deployments : {}

  name = format(local.consul_acl.engine_policy, each.key)
  rules = jsonencode(merge(local.consul_acl.engine_rules, {
    key = {
      for venue, account in merge(each.value.locks, each.value.accounts) :
      format(local.consul_acl.lock_key, venue, account) => { policy = "write" }
    }
  }))
}

resource "consul_acl_role" "engine" {
  for_each = var.consul_acls ? var.deployments : {}

  name     = format(local.consul_acl.engine_role, each.key)
  policies = [consul_acl_policy.engine[each.key].id]
}

# Engines log in to Consul with their Nomad workload identity (the engine job's `consul_default`
# identity, audience consul.io, when consul_acl = true) and get their deployment's role: Nomad
# writes the token to the task's secrets/consul_token.
resource "consul_acl_auth_method" "nomad_workloads" {
  count = var.consul_acls ? 1 : 0

  # No max_token_ttl: Nomad does not renew the Consul tokens it gets for workload identities,
  # so a token that expired would take the engine's TTL check, session and locks with it.
  name         = local.consul_acl.auth_method.name
  type         = local.consul_acl.auth_method.type
  display_name = local.consul_acl.auth_method.display_name
  config_json = jsonencode(merge(local.consul_acl.auth_method.config, {
    JWKSURL    = var.jwt.jwks_url
    JWKSCACert = var.jwt.jwks_ca_pem
  }))
}

resource "consul_acl_binding_rule" "engine_tasks" {
  count = var.consul_acls ? 1 : 0

  auth_method = consul_acl_auth_method.nomad_workloads[0].name
  description = local.consul_acl.binding_rule.description
  # Only the engine tasks of the deployments: a task merely named "engine" elsewhere gets
  # nothing. bind_type "role" (not "policy", which Consul has only since 1.16): the role named
  # after the job, so each engine gets its own deployment's policy.
  selector   = format(local.consul_acl.binding_rule.selector, join("|", keys(var.deployments)))
  bind_type  = local.consul_acl.binding_rule.bind_type
  bind_name  = local.consul_acl.binding_rule.bind_name
  depends_on = [consul_acl_role.engine]
}

resource "consul_keys" "this" {
  count = var.kill_switch == null ? 0 : 1

  key {
    path   = "arbfleet/kill-switch"
    value  = jsonencode({ reason = var.kill_switch.reason, who = var.kill_switch.who, when = plantimestamp() })
    delete = true
  }

  lifecycle {
    # The time of the first apply is the engagement time; later applies must not rewrite it.
    ignore_changes = [key]
  }
}

# --- Nomad --------------------------------------------------------------------------------

resource "nomad_namespace" "this" {
  for_each = var.namespaces

  name        = each.key
  description = each.value
}

resource "nomad_acl_policy" "this" {
  for_each = var.nomad_acls ? {
    "arbfleet-deployer" = templatefile("${path.module}/templates/nomad-deployer.hcl.tftpl", { namespaces = concat(["default"], keys(var.namespaces)) })
    "arbfleet-readonly" = templatefile("${path.module}/templates/nomad-readonly.hcl.tftpl", { namespaces = concat(["default"], keys(var.namespaces)) })
  } : {}

  name      = each.key
  rules_hcl = each.value
}

module "job_vars" {
  source   = "./modules/nomad-job-vars"
  for_each = var.jobs

  jobspec        = each.value.jobspec
  var_files      = each.value.var_files
  generated_vars = var.generated_vars
}

resource "nomad_job" "this" {
  for_each = var.jobs

  jobspec = each.value.jobspec
  hcl2 {
    vars = module.job_vars[each.key].vars
  }
  detach           = !var.wait_for_deployments
  purge_on_destroy = true

  # A job's Vault role and policy must exist before its tasks log in.
  depends_on = [vault_jwt_auth_backend_role.this, nomad_namespace.this]
}
