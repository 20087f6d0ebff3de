# Provider-free, so tests prove offline that Terraform renders secrets/policies/*.tmpl exactly
# as `arbfleet secrets apply` (runtime/platform/vault.py, string.Template) does.
locals {
  deployment_policies = {
    for job, d in var.deployments : "arbfleet-deployment-${job}" => join("", concat(
      [templatefile("${var.secrets_dir}/policies/deployment.hcl.tmpl", { db_mount = var.db_mount, db_role = var.db_role })],
      [for venue in sort(keys(d.accounts)) : templatefile("${var.secrets_dir}/policies/deployment-account.hcl.tmpl", {
        kv_mount = var.kv_mount, venue = venue, account = d.accounts[venue]
      })],
    ))
  }
}
