# Needs only that `tofu init` (or `terraform init`) finds the pinned hcloud provider in the
# offline mirror, under the registry hostname a bare source means to that CLI.
terraform {
  required_version = ">= 1.10"
  required_providers {
    hcloud = {
      source  = "hetznercloud/hcloud"
      version = "1.57.0"
    }
  }
}

variable "hcloud_token" {
  description = "Hetzner Cloud API token (never used: this config is only validated)."
  type        = string
  sensitive   = true
  default     = "0000000000000000000000000000000000000000000000000000000000000000"
}

provider "hcloud" {
  token = var.hcloud_token
}

resource "hcloud_network" "this" {
  name     = "arbfleet-mirror-check"
  ip_range = "10.90.0.0/16"
}
