variable "secrets_dir" {
  description = "Path of the repository's secrets/ directory (policy templates)."
  type        = string
}

variable "kv_mount" {
  description = "Exchange keys' KV v2 mount."
  type        = string
}

variable "db_mount" {
  description = "Database secrets engine mount."
  type        = string
}

variable "db_role" {
  description = "Dynamic database role the engines use."
  type        = string
}

variable "deployments" {
  description = "Strategy deployments: Nomad engine job => exchange account per venue."
  type = map(object({
    accounts = map(string)
  }))
}
