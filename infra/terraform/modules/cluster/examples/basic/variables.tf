variable "hcloud_token" {
  description = "Hetzner Cloud API token."
  type        = string
  sensitive   = true
}

variable "admin_cidrs" {
  description = "CIDR blocks allowed to SSH and to reach the servers' APIs."
  type        = list(string)
}

variable "tls_dir" {
  description = "Directory holding ca.pem, server.pem, server-key.pem, client.pem, client-key.pem."
  type        = string
}

variable "consul_gossip_key" {
  description = "Output of `consul keygen`."
  type        = string
  sensitive   = true
}

variable "nomad_gossip_key" {
  description = "Output of `nomad operator gossip keyring generate`."
  type        = string
  sensitive   = true
}
