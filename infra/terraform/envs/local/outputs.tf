output "vault_jwt_roles" {
  description = "JWT roles on the local Vault and the policy each grants."
  value       = module.platform.vault_jwt_roles
}

output "nomad_jobs" {
  description = "Jobs submitted to the local Nomad."
  value       = module.platform.nomad_jobs
}
