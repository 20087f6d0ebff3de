output "network_id" {
  description = "ID of the private network."
  value       = hcloud_network.this.id
}

output "firewall_ids" {
  description = "Firewall ID per role (server, client)."
  value       = { for role, fw in hcloud_firewall.this : role => fw.id }
}

output "server_private_ips" {
  description = "Fixed private IPs of the server nodes (Consul, Nomad and Vault join targets)."
  value       = local.server_ips
}

output "nodes" {
  description = "Every node by name: role, group, Nomad datacenter, location, private IP, public IPv4 and labels."
  value = {
    for name, s in hcloud_server.this : name => {
      role        = local.nodes[name].role
      group       = local.nodes[name].group
      datacenter  = local.nodes[name].datacenter
      location    = s.location
      private_ip  = local.nodes[name].ip
      ipv4        = s.ipv4_address
      labels      = s.labels
      server_type = s.server_type
    }
  }
}

output "volume_ids" {
  description = "Data volume ID per data node."
  value       = { for name, v in hcloud_volume.this : name => v.id }
}

output "nomad_addr" {
  description = "Nomad HTTPS API of the first server, on the private network."
  value       = "https://${local.server_ips[0]}:4646"
}

output "vault_addr" {
  description = "Vault HTTPS API of the first server, on the private network."
  value       = "https://${local.server_ips[0]}:8200"
}

output "user_data" {
  description = "Rendered cloud-config per node (certificates only: no private key, no gossip key)."
  value       = { for name, c in module.cloud_init : name => c.user_data }
  sensitive   = true
}

output "bootstrap" {
  description = "Per node, what its cloud-config sets up as data (users, directories, files with owner, group, mode): what the bootstrap test applies and the testinfra suite checks."
  value       = { for name, c in module.cloud_init : name => c.bootstrap }
  sensitive   = true
}

output "key_files" {
  description = "Per node: its private address, the secret files `arbfleet cluster push-keys` writes after boot (path, owner, group, mode, secret, template; no values) and the units it then starts."
  value = {
    for name, c in module.cloud_init : name => {
      private_ip = local.nodes[name].ip
      files      = c.key_files
      services   = c.services
    }
  }
}
