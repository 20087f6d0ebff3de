variable "name" {
  description = "Cluster name: prefix of every resource name and the `cluster` label."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,30}[a-z0-9]$", var.name))
    error_message = "name must be 3-32 characters of lowercase letters, digits and dashes, starting with a letter."
  }
}

variable "labels" {
  description = "Extra labels for every resource (the module sets cluster, role, group and datacenter)."
  type        = map(string)
  default     = {}
}

variable "network_cidr" {
  description = "IP range of the private network."
  type        = string
  default     = "10.42.0.0/16"

  validation {
    condition     = can(cidrhost(var.network_cidr, 0))
    error_message = "network_cidr must be a CIDR block such as 10.42.0.0/16."
  }
}

variable "subnet_cidr" {
  description = "IP range of the nodes' subnet, inside network_cidr. Servers get fixed addresses from .10 on (retry_join targets), clients from .100 on."
  type        = string
  default     = "10.42.1.0/24"

  validation {
    condition     = can(cidrhost(var.subnet_cidr, 0))
    error_message = "subnet_cidr must be a CIDR block such as 10.42.1.0/24."
  }
}

variable "network_zone" {
  description = "Hetzner network zone of the subnet. A private network cannot reach servers of another zone, so every node group's location must be in it."
  type        = string
  default     = "eu-central"

  validation {
    condition     = contains(["eu-central", "us-east", "us-west", "ap-southeast"], var.network_zone)
    error_message = "network_zone must be one of eu-central, us-east, us-west, ap-southeast."
  }
}

variable "ssh_allowed_cidrs" {
  description = "CIDR blocks allowed to reach SSH (22/tcp) on every node. Empty: no SSH from outside."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for c in var.ssh_allowed_cidrs : can(cidrhost(c, 0))])
    error_message = "ssh_allowed_cidrs must contain CIDR blocks only (e.g. 203.0.113.0/24)."
  }

  validation {
    condition     = alltrue([for c in var.ssh_allowed_cidrs : !endswith(c, "/0")])
    error_message = "ssh_allowed_cidrs must not contain 0.0.0.0/0 or ::/0: SSH are for the admin CIDRs, never the whole internet."
  }
}

variable "api_allowed_cidrs" {
  description = "CIDR blocks (operators, CI) allowed to reach the servers' HTTPS APIs: Nomad 4646, Vault 8200, Consul 8501. Empty: APIs reachable on the private network only."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for c in var.api_allowed_cidrs : can(cidrhost(c, 0))])
    error_message = "api_allowed_cidrs must contain CIDR blocks only (e.g. 203.0.113.0/24)."
  }

  validation {
    condition     = alltrue([for c in var.api_allowed_cidrs : !endswith(c, "/0")])
    error_message = "api_allowed_cidrs must not contain 0.0.0.0/0 or ::/0: the APIs are for the admin CIDRs, never the whole internet."
  }
}

variable "ssh_keys" {
  description = "Names or IDs of Hetzner SSH keys installed on every node (at least one: without, Hetzner mails each node's root password)."
  type        = list(string)

  validation {
    condition     = length(var.ssh_keys) > 0
    error_message = "ssh_keys must name at least one Hetzner SSH key."
  }
}

variable "image" {
  description = "Image of every node (cloud-init and systemd required)."
  type        = string
  default     = "debian-12"
}

variable "region" {
  description = "Nomad region of the cluster."
  type        = string
  default     = "global"
}

variable "servers" {
  description = "The server group (Consul, Vault and Nomad servers): count (1, 3 or 5 for a quorum), Hetzner server type and location, Nomad datacenter."
  type = object({
    count       = number
    server_type = optional(string, "cx22")
    location    = optional(string, "fsn1")
    datacenter  = optional(string, "fsn1")
  })
  default = { count = 3 }

  validation {
    condition     = contains([1, 3, 5], var.servers.count)
    error_message = "servers.count must be 1, 3 or 5: an even number of raft voters adds no fault tolerance and risks split votes."
  }
}

variable "client_groups" {
  description = "Client node groups by name: count, Hetzner server type and location, Nomad datacenter (what jobs target, e.g. the one nearest an exchange), and volume_size (GB; > 0 makes it a data group whose nodes get a volume holding the host volumes)."
  type = map(object({
    count       = number
    server_type = optional(string, "cx22")
    location    = optional(string, "fsn1")
    datacenter  = string
    volume_size = optional(number, 0)
  }))
  default = {}

  validation {
    condition     = alltrue([for g in values(var.client_groups) : g.count >= 0 && g.count <= 10 && floor(g.count) == g.count])
    error_message = "client_groups[*].count must be a whole number from 0 to 10 (a spread placement group holds at most 10 servers)."
  }

  validation {
    condition     = alltrue([for g in values(var.client_groups) : g.volume_size == 0 || g.volume_size >= 10])
    error_message = "client_groups[*].volume_size must be 0 (no volume) or at least 10 GB (Hetzner's minimum)."
  }

  validation {
    condition     = alltrue([for k in keys(var.client_groups) : can(regex("^[a-z][a-z0-9-]{0,20}$", k))])
    error_message = "client_groups keys must be short lowercase names (letters, digits, dashes)."
  }
}

variable "host_volumes" {
  description = "Nomad host volumes on each data node (a group with volume_size > 0): name => owner, group and octal mode of its directory. The defaults match the users of the production images."
  type = map(object({
    owner = string
    group = string
    mode  = string
  }))
  default = {
    "backups"          = { owner = "70", group = "70", mode = "0700" }
    "prometheus-data"  = { owner = "65534", group = "65534", mode = "0700" }
    "redis-data"       = { owner = "999", group = "999", mode = "0700" }
    "timescaledb-data" = { owner = "70", group = "70", mode = "0700" }
  }

  validation {
    condition     = alltrue([for v in values(var.host_volumes) : can(regex("^0[0-7]{3}$", v.mode))])
    error_message = "host_volumes[*].mode must be an octal mode such as 0700."
  }
}

variable "volume_delete_protection" {
  description = "Protect data volumes from deletion (turn off only for throwaway clusters)."
  type        = bool
  default     = true
}

variable "versions" {
  description = "Agent versions the nodes install from releases.hashicorp.com: the operator's choice, independent of infra/toolchain.toml (the bootstrap test installs the toolchain's open-source builds instead). The defaults are HashiCorp's current releases, under the Business Source License: docs/components.md says what that means and which open-source versions work."
  type = object({
    consul = string
    nomad  = string
    vault  = string
  })
  default = { consul = "1.21.0", nomad = "1.10.5", vault = "1.21.0" }
}

variable "tls" {
  description = "PEM certificates made outside Terraform (no tls provider here): the CA, a server certificate (SANs: server.<consul datacenter>.consul, server.<region>.nomad, localhost, 127.0.0.1 and the servers' private IPs) and a client certificate (client.<consul datacenter>.consul, client.<region>.nomad, localhost, 127.0.0.1). Public material only: the private keys and gossip keys never pass through Terraform; `arbfleet cluster push-keys` puts them on the nodes after boot (output key_files)."
  type = object({
    ca_pem          = string
    server_cert_pem = string
    client_cert_pem = string
  })

  validation {
    condition     = alltrue([for v in values(var.tls) : can(regex("-----BEGIN CERTIFICATE-----", v)) && !can(regex("PRIVATE KEY", v))])
    error_message = "every tls value must be a PEM certificate, and none may carry a private key."
  }
}
