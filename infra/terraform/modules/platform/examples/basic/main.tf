# Vault layout, Consul policies and one engine deployment against an ACL-enabled cluster.
# Provider addresses and tokens come from the environment (VAULT_ADDR/VAULT_TOKEN,
# CONSUL_HTTP_ADDR/CONSUL_HTTP_TOKEN, NOMAD_ADDR/NOMAD_TOKEN).
provider "vault" {}
provider "consul" {}
provider "nomad" {}

locals {
  nomad_dir = "${path.root}/../../../../../nomad"
}

module "platform" {
  source = "../.."

  secrets_dir = "${path.root}/../../../../../../secrets"
  jwt = {
    jwks_url = var.nomad_jwks_url
  }
  deployments = {
    "cross-exchange-btc" = { accounts = { binance = "main", upbit = "main" } }
  }

  jobs = {
    "cross-exchange-btc" = {
      jobspec = file("${local.nomad_dir}/engine.nomad.hcl")
      var_files = [
        file("${local.nomad_dir}/vars/production/engine.hcl"),
        file("${local.nomad_dir}/vars/production/engine/cross-exchange-btc.hcl"),
      ]
    }
  }
}
