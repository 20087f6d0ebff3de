# Nomad var files are flat attribute assignments, the tfvars syntax, so Terraform can read them
# itself: `nomad_job`'s hcl2.vars then gets exactly what `nomad job run -var-file` would.
locals {
  declared  = regexall("(?m)^variable\\s+\"([^\"]+)\"", var.jobspec)[*][0]
  generated = var.generated_vars == "" ? {} : provider::terraform::decode_tfvars(var.generated_vars)

  # Vars files win over generated values (runtime.deploy's rule).
  values = merge(
    { for k, v in local.generated : k => v if contains(local.declared, k) },
    [for content in var.var_files : provider::terraform::decode_tfvars(content)]...
  )
}
