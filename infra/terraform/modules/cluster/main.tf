locals {
  # Hetzner locations by network zone: a private network only connects servers of one zone.
  zone_of = {
    fsn1 = "eu-central", nbg1 = "eu-central", hel1 = "eu-central"
    ash  = "us-east", hil = "us-west", sin = "ap-southeast"
  }

  common_labels = merge(var.labels, { cluster = var.name })

  server_ips = [for i in range(var.servers.count) : cidrhost(var.subnet_cidr, 10 + i)]

  server_nodes = {
    for i in range(var.servers.count) : "${var.name}-server-${i + 1}" => {
      role        = "server"
      group       = "server"
      server_type = var.servers.server_type
      location    = var.servers.location
      datacenter  = var.servers.datacenter
      ip          = local.server_ips[i]
      volume_size = 0
    }
  }

  # Clients get fixed addresses too (.100 on, in group-name order) so their configs are
  # complete at plan time; adding a group after the last one keeps the others' addresses.
  client_list = flatten([
    for g in sort(keys(var.client_groups)) : [
      for i in range(var.client_groups[g].count) : {
        name        = "${var.name}-${g}-${i + 1}"
        role        = "client"
        group       = g
        server_type = var.client_groups[g].server_type
        location    = var.client_groups[g].location
        datacenter  = var.client_groups[g].datacenter
        volume_size = var.client_groups[g].volume_size
      }
    ]
  ])
  client_nodes = {
    for idx, n in local.client_list : n.name => merge(n, { ip = cidrhost(var.subnet_cidr, 100 + idx) })
  }

  nodes = merge(local.server_nodes, local.client_nodes)

  groups = merge(
    { server = { role = "server" } },
    { for g, v in var.client_groups : g => { role = "client" } if v.count > 0 },
  )

  # Hetzner firewalls filter public interfaces only; cluster traffic (RPC, gossip, raft) uses
  # the private network. Publicly each role needs SSH from the admin CIDRs, and servers their
  # HTTPS APIs for operators; clients take no inbound traffic (engines only dial out).
  firewall_rules = {
    server = concat(
      [for port in ["22"] : { port = port, source_ips = var.ssh_allowed_cidrs, description = "SSH" } if length(var.ssh_allowed_cidrs) > 0],
      [for port, what in { "4646" = "Nomad HTTPS API", "8200" = "Vault HTTPS API", "8501" = "Consul HTTPS API" } : { port = port, source_ips = var.api_allowed_cidrs, description = what } if length(var.api_allowed_cidrs) > 0],
    )
    client = [for port in ["22"] : { port = port, source_ips = var.ssh_allowed_cidrs, description = "SSH" } if length(var.ssh_allowed_cidrs) > 0]
  }

  tls_by_role = {
    server = { ca_pem = var.tls.ca_pem, cert_pem = var.tls.server_cert_pem }
    client = { ca_pem = var.tls.ca_pem, cert_pem = var.tls.client_cert_pem }
  }
}

resource "hcloud_network" "this" {
  name     = var.name
  ip_range = var.network_cidr
  labels   = local.common_labels
}

resource "hcloud_network_subnet" "this" {
  network_id   = hcloud_network.this.id
  type         = "cloud"
  network_zone = var.network_zone
  ip_range     = var.subnet_cidr

  lifecycle {
    precondition {
      condition     = alltrue([for n in values(local.nodes) : lookup(local.zone_of, n.location, "") == var.network_zone])
      error_message = "every node group's location must be in network_zone ${var.network_zone}: a Hetzner private network cannot reach another zone (run a second cluster as another Nomad region there)."
    }
  }
}

resource "hcloud_firewall" "this" {
  for_each = toset(["server", "client"])

  name   = "${var.name}-${each.key}"
  labels = merge(local.common_labels, { role = each.key })

  dynamic "rule" {
    for_each = local.firewall_rules[each.key]
    content {
      direction   = "in"
      protocol    = "tcp"
      port        = rule.value.port
      source_ips  = rule.value.source_ips
      description = rule.value.description
    }
  }
}

resource "hcloud_placement_group" "this" {
  for_each = local.groups

  name   = "${var.name}-${each.key}"
  type   = "spread"
  labels = merge(local.common_labels, { role = each.value.role, group = each.key })
}

module "cloud_init" {
  source   = "./modules/cloud-init"
  for_each = local.nodes

  role              = each.value.role
  node_name         = each.key
  advertise_ip      = each.value.ip
  server_ips        = local.server_ips
  region            = var.region
  datacenter        = each.value.datacenter
  consul_datacenter = var.name
  node_class        = each.value.group
  versions          = var.versions
  tls               = local.tls_by_role[each.value.role]
  host_volumes      = each.value.volume_size > 0 ? var.host_volumes : {}
}

resource "hcloud_server" "this" {
  for_each = local.nodes

  name               = each.key
  server_type        = each.value.server_type
  image              = var.image
  location           = each.value.location
  ssh_keys           = var.ssh_keys
  user_data          = module.cloud_init[each.key].user_data
  firewall_ids       = [hcloud_firewall.this[each.value.role].id]
  placement_group_id = hcloud_placement_group.this[each.value.group].id
  labels = merge(local.common_labels, {
    role       = each.value.role
    group      = each.value.group
    datacenter = each.value.datacenter
  })

  network {
    network_id = hcloud_network.this.id
    ip         = each.value.ip
  }

  public_net {
    ipv4_enabled = true
    ipv6_enabled = true
  }

  # The subnet must exist before a server can take an address in it.
  depends_on = [hcloud_network_subnet.this]

  lifecycle {
    # user_data only runs at first boot; changing it must not silently replace a node.
    ignore_changes = [user_data, ssh_keys, image]
  }
}

resource "hcloud_volume" "this" {
  for_each = { for k, n in local.nodes : k => n if n.volume_size > 0 }

  name              = "${each.key}-data"
  size              = each.value.volume_size
  server_id         = hcloud_server.this[each.key].id
  format            = "ext4"
  automount         = false # cloud-init mounts it at a stable path (/opt/arbfleet/volumes)
  delete_protection = var.volume_delete_protection
  labels            = merge(local.common_labels, { role = "client", group = each.value.group })
}
