output "vault_jwt_roles" {
  description = "JWT roles and the policy each grants."
  value       = module.platform.vault_jwt_roles
}

output "nomad_jobs" {
  description = "Submitted jobs and their modify index."
  value       = module.platform.nomad_jobs
}
