output "vault_jwt_roles" {
  description = "JWT roles and the policy each grants."
  value       = module.platform.vault_jwt_roles
}
