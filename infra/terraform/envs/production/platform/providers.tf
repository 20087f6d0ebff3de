# Tokens come from the environment (VAULT_TOKEN, CONSUL_HTTP_TOKEN, NOMAD_TOKEN), never from
# files in the repository or variables that would land in state.
provider "vault" {
  address      = var.vault_addr
  ca_cert_file = var.ca_file
}

provider "consul" {
  address = var.consul_addr
  scheme  = "https"
  ca_file = var.ca_file
}

provider "nomad" {
  address = var.nomad_addr
  ca_file = var.ca_file
}
