output "user_data" {
  description = "The #cloud-config document for the node."
  value       = local.user_data
  sensitive   = true
}

output "bootstrap" {
  description = "What the cloud-config sets up, as data: users, directories and files (path, owner, group, mode, content). Tests apply it to a scratch root; the testinfra suite checks the same list."
  value = {
    users       = local.users
    directories = local.directories
    files       = local.files
    runcmd      = local.runcmd
  }
  sensitive = true
}
