terraform {
  # Terraform 1.10+ and OpenTofu 1.10+ (infra/terraform/README.md: what is tested).
  required_version = ">= 1.10"

  # Pins of infra/toolchain.toml. None of them can be had offline on the CI machines
  # (docs/toolchain.md): CI there checks this module's formatting only.
  required_providers {
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
