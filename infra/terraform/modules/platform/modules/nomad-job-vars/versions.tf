terraform {
  # decode_tfvars/encode_expr: functions of Terraform's built-in provider, 1.8+.
  required_version = ">= 1.8"

  required_providers {
    terraform = {
      source = "terraform.io/builtin/terraform"
    }
  }
}
