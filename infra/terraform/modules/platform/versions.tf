terraform {
  # modules/nomad-job-vars (decode_tfvars) needs 1.8+.
  required_version = ">= 1.8"

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
