# Three servers, two data clients with volumes, and exchange-facing clients in their own Nomad
# datacenter. PEM files and gossip keys are made outside Terraform (see the module README).
provider "hcloud" {
  token = var.hcloud_token
}

module "cluster" {
  #checkov:skip=CKV_ARBFLEET_3:an example, torn down after trying it (volume_delete_protection = false below)
  source = "../.."

  name              = "arbfleet-example"
  ssh_allowed_cidrs = var.admin_cidrs
  api_allowed_cidrs = var.admin_cidrs
  ssh_keys          = var.ssh_keys

  servers = { count = 3 }
  client_groups = {
    data     = { count = 2, datacenter = "fsn1", volume_size = 50 }
    exchange = { count = 2, location = "hel1", datacenter = "hel1", server_type = "cpx21" }
  }

  tls = {
    ca_pem          = file("${var.tls_dir}/ca.pem")
    server_cert_pem = file("${var.tls_dir}/server.pem")
    client_cert_pem = file("${var.tls_dir}/client.pem")
  }

  volume_delete_protection = false # an example: easy to tear down
}
