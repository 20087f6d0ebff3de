# OpenTofu (or Terraform) applying against the local Nomad with no provider to download: the
# nomad provider cannot be had on machines without internet (see docs/toolchain.md), so this
# config drives the pinned `nomad` CLI from the built-in terraform_data resource. It proves
# init, apply, a no-op re-plan and destroy against the real cluster; the platform module uses
# the provider.
terraform {
  required_version = ">= 1.10"
}

variable "namespace" {
  description = "Name of the Nomad namespace to create."
  type        = string
}

resource "terraform_data" "namespace" {
  input = var.namespace

  provisioner "local-exec" {
    command = "nomad namespace apply -description='created by terraform' ${self.input}"
  }

  provisioner "local-exec" {
    when    = destroy
    command = "nomad namespace delete ${self.input}"
  }
}

output "namespace" {
  description = "The namespace Terraform created."
  value       = terraform_data.namespace.output
}
