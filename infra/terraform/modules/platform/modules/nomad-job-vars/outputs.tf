output "vars" {
  description = "Variables for nomad_job's hcl2.vars. Nomad parses each like a CLI -var: strings as they are, anything else as an HCL expression, so non-strings are encoded as HCL."
  value       = { for k, v in local.values : k => can(tostring(v)) ? tostring(v) : provider::terraform::encode_expr(v) }
}

output "declared" {
  description = "Variables the job spec declares."
  value       = local.declared
}
