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
