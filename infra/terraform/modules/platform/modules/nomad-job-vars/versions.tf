terraform {
  # Terraform 1.10+ and OpenTofu 1.10+ (infra/terraform/README.md: what is tested).
  required_version = ">= 1.10"

  required_providers {
    # Built into Terraform and OpenTofu: decode_tfvars and encode_expr.
    terraform = {
      source = "terraform.io/builtin/terraform"
    }
  }
}
