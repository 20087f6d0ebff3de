variable "hcloud_token" {
  description = "Hetzner Cloud API token of the production project."
  type        = string
  sensitive   = true
}

variable "admin_cidrs" {
  description = "Operators' and CI's CIDR blocks: SSH and the servers' HTTPS APIs."
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

variable "tls" {
  description = "PEM CA, server and client certificates (see modules/cluster/README.md for the SANs); the private keys and gossip keys are pushed after boot (`arbfleet cluster push-keys`), never through Terraform."
  type = object({
    ca_pem          = string
    server_cert_pem = string
    client_cert_pem = string
  })
  sensitive = true
}
