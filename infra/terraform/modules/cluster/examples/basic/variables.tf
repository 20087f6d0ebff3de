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
  description = "Directory holding ca.pem, server.pem and client.pem (the keys stay out of Terraform: `arbfleet cluster push-keys`)."
  type        = string
}
