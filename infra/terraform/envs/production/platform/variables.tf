variable "nomad_addr" {
  description = "Nomad HTTPS API (`terraform -chdir=../cluster output -raw nomad_addr`)."
  type        = string
}

variable "vault_addr" {
  description = "Vault HTTPS API (`terraform -chdir=../cluster output -raw vault_addr`)."
  type        = string
}

variable "consul_addr" {
  description = "Consul HTTPS API, host:port (a server's private IP, port 8501)."
  type        = string
}

variable "ca_file" {
  description = "Path of the cluster's CA certificate (PEM)."
  type        = string
}

variable "deployments" {
  description = "Strategy deployments: job => exchange account per venue. Kept in deployments.auto.tfvars.json, which tests/infra/test_terraform.py holds equal to secrets/vault.toml."
  type = map(object({
    accounts = map(string)
  }))
}

variable "database_connection_url" {
  description = "PostgreSQL connection URL template for Vault (`postgresql://{{username}}:{{password}}@host:5432/arbfleet`)."
  type        = string
}

variable "database_password" {
  description = "Initial password of arbfleet_vault; Vault rotates it at once."
  type        = string
  sensitive   = true
}
