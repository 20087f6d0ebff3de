terraform {
  # Terraform 1.10+ and OpenTofu 1.10+ (infra/terraform/README.md: what is tested).
  required_version = ">= 1.10"

  required_providers {
    # Built into Terraform and OpenTofu: encode_tfvars for the values runtime/ops/deploy.py
    # generates.
    terraform = {
      source = "terraform.io/builtin/terraform"
    }
    vault = {
      source  = "hashicorp/vault"
      version = "5.0.0"
    }
    consul = {
      source  = "hashicorp/consul"
      version = "2.21.0"
    }
    nomad = {
      source  = "hashicorp/nomad"
      version = "2.5.2"
    }
  }
}
