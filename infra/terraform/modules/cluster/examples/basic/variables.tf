variable "hcloud_token" {
  description = "Hetzner Cloud API token."
  type        = string
  sensitive   = true
}

variable "admin_cidrs" {
  description = "CIDR blocks allowed to SSH and to reach the servers' APIs."
  type        = list(string)
}

variable "ssh_keys" {
  description = "Names or IDs of the Hetzner SSH keys of the operators, installed on every node (without one, Hetzner mails a root password)."
  type        = list(string)

  validation {
    condition     = length(var.ssh_keys) > 0
    error_message = "ssh_keys must name at least one Hetzner SSH key."
  }
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
