# The smallest useful Terraform config against the local stack: a KV v2 mount and a policy in
# Vault, through the vault provider installed from the offline mirror.
terraform {
  required_version = ">= 1.10"
  required_providers {
    vault = {
      source  = "hashicorp/vault"
      version = "1.9.0"
    }
  }
}

variable "name" {
  description = "Name of the KV mount and of the policy to create."
  type        = string
}

provider "vault" {}

resource "vault_mount" "this" {
  path    = var.name
  type    = "kv"
  options = { version = "2" }
}

resource "vault_policy" "this" {
  name   = var.name
  policy = <<-EOT
    path "${vault_mount.this.path}/data/*" {
      capabilities = ["read"]
    }
  EOT
}

output "mount" {
  description = "The path of the KV mount Terraform created."
  value       = vault_mount.this.path
}
