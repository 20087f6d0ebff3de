output "nodes" {
  description = "Production nodes: role, group, datacenter, addresses."
  value       = module.cluster.nodes
}

output "nomad_addr" {
  description = "Nomad API (private network): envs/production/platform's nomad_addr."
  value       = module.cluster.nomad_addr
}

output "vault_addr" {
  description = "Vault API (private network): envs/production/platform's vault_addr."
  value       = module.cluster.vault_addr
}

output "key_files" {
  description = "What `arbfleet cluster push-keys` writes on each node after boot (no secret values)."
  value       = module.cluster.key_files
}
