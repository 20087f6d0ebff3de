variable "role" {
  description = "Agent role of the node: \"server\" (Consul, Vault and Nomad servers) or \"client\" (Consul and Nomad clients)."
  type        = string

  validation {
    condition     = contains(["server", "client"], var.role)
    error_message = "role must be \"server\" or \"client\"."
  }
}

variable "node_name" {
  description = "Node name the agents register under (the server's hostname)."
  type        = string
}

variable "advertise_ip" {
  description = "Private IP the agents bind to and advertise."
  type        = string
}

variable "server_ips" {
  description = "Private IPs of every server node: retry_join targets for Consul, Nomad and Vault raft."
  type        = list(string)
}

variable "region" {
  description = "Nomad region."
  type        = string
}

variable "datacenter" {
  description = "Nomad datacenter of this node: the name jobs target (`datacenters`, `node.datacenter`)."
  type        = string
}

variable "consul_datacenter" {
  description = "Consul datacenter (one per cluster: Consul LAN gossip spans the whole private network)."
  type        = string
}

variable "node_class" {
  description = "Nomad node_class of a client (its node group); ignored on servers."
  type        = string
  default     = ""
}

variable "versions" {
  description = "Versions of the agents installed from releases.hashicorp.com (or copied from ARBFLEET_HASHICORP_BIN_DIR)."
  type = object({
    consul = string
    nomad  = string
    vault  = string
  })
}

variable "tls" {
  description = "PEM CA certificate and this role's certificate (see the cluster module's README for the SANs each needs). The private key is not an input: it reaches the node after boot (output key_files)."
  type = object({
    ca_pem   = string
    cert_pem = string
  })
}

variable "vault_jwt_auth_path" {
  description = "Vault JWT auth mount that trusts Nomad's workload identities (the platform module creates it)."
  type        = string
  default     = "jwt-nomad"
}

variable "host_volumes" {
  description = "Nomad host volumes of a data client, created under /opt/arbfleet/volumes on the attached volume: name => owner, group (numeric ids of the image's user are fine) and octal mode."
  type = map(object({
    owner = string
    group = string
    mode  = string
  }))
  default = {}
}
