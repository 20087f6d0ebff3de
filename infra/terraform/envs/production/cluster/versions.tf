terraform {
  # Terraform 1.10+ and OpenTofu 1.10+ (infra/terraform/README.md: what is tested).
  required_version = ">= 1.10"

  required_providers {
    hcloud = {
      source  = "hetznercloud/hcloud"
      version = "1.57.0"
    }
  }
}
