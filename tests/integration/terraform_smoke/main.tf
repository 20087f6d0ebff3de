# The smallest useful Terraform config against the local stack: a Nomad namespace, through the
# nomad provider installed from the offline mirror.
terraform {
  required_version = ">= 1.10"
  required_providers {
    nomad = {
      source  = "hashicorp/nomad"
      version = "1.4.20"
    }
  }
}

variable "namespace" {
  description = "Name of the Nomad namespace to create."
  type        = string
}

provider "nomad" {}

resource "nomad_namespace" "this" {
  name        = var.namespace
  description = "created by the arbfleet terraform smoke test"
}

output "namespace" {
  description = "The namespace Terraform created."
  value       = nomad_namespace.this.name
}
