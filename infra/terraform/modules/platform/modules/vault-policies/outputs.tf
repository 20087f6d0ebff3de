output "policies" {
  description = "Policy name => HCL: one per deployment and the key rotation policy."
  value = merge(local.deployment_policies, {
    "arbfleet-key-rotation" = templatefile("${var.secrets_dir}/policies/key-rotation.hcl.tmpl", { kv_mount = var.kv_mount })
  })
}
