output "user_data" {
  description = "The #cloud-config document for the node (no private key, no gossip key)."
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

output "key_files" {
  description = "The secret files the node gets after boot, without their values: path, owner, group, mode, `secret` (the file of the operator's keys directory that fills it) and `template` (`$${secret}` replaced by that file's text)."
  value       = local.key_files
}

output "services" {
  description = "The agents' systemd units in start order, started once the key files are in place."
  value       = local.services
}
