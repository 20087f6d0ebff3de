provider "hcloud" {
  token = var.hcloud_token
}

# Nomad datacenters are the names infra/nomad/vars/production/*.hcl target. All groups are in
# eu-central: one Hetzner private network cannot reach another zone, so the "sin" datacenter
# the engines prefer (closest to Binance and Upbit) needs a cluster of its own there (another
# Nomad region) — not provisioned yet.
module "cluster" {
  source = "../../../modules/cluster"

  name              = "arbfleet-prod"
  ssh_allowed_cidrs = var.admin_cidrs
  api_allowed_cidrs = var.admin_cidrs
  ssh_keys          = var.ssh_keys

  servers = { count = 3, location = "fsn1", datacenter = "fsn1" }
  client_groups = {
    data   = { count = 2, location = "fsn1", datacenter = "fsn1", server_type = "cpx31", volume_size = 100 }
    engine = { count = 2, location = "fsn1", datacenter = "fsn1", server_type = "cpx21" }
  }

  tls = var.tls
}
