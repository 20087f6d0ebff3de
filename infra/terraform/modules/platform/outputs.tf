output "kv_mount" {
  description = "Path of the exchange keys' KV v2 mount."
  value       = vault_mount.this[var.kv.mount].path
}

output "jwt_auth_accessor" {
  description = "Accessor of the JWT auth mount (templated policies name it)."
  value       = vault_jwt_auth_backend.this.accessor
}

output "vault_policies" {
  description = "Names of the Vault policies the module manages."
  value       = sort(keys(vault_policy.this))
}

output "vault_jwt_roles" {
  description = "JWT role name => the one policy it grants."
  value       = { for name, r in vault_jwt_auth_backend_role.this : name => one(r.token_policies) }
}

output "nomad_jobs" {
  description = "Submitted Nomad jobs: name => modify index."
  value       = { for name, j in nomad_job.this : name => j.modify_index }
}
