# The module against a mocked Hetzner provider: no token, no network. IDs are numeric strings
# because the provider's *_id arguments are numbers. The runs that assert on resources apply
# (to the mock): mocked computed values such as ids are known after apply in both Terraform and
# OpenTofu, where at plan time only Terraform 1.11+ could fill them in (`override_during = plan`,
# which OpenTofu rejects). The runs that expect a validation to fail only plan.
mock_provider "hcloud" {
  mock_resource "hcloud_network" {
    defaults = { id = "101" }
  }
  mock_resource "hcloud_firewall" {
    defaults = { id = "201" }
  }
  mock_resource "hcloud_placement_group" {
    defaults = { id = "301" }
  }
  mock_resource "hcloud_server" {
    defaults = { id = "401", ipv4_address = "192.0.2.10" }
  }
}

variables {
  name              = "arbtest"
  ssh_allowed_cidrs = ["203.0.113.0/24"]
  api_allowed_cidrs = ["198.51.100.7/32"]
  ssh_keys          = ["ops"]
  servers           = { count = 3 }
  client_groups = {
    data     = { count = 2, datacenter = "fsn1", volume_size = 20 }
    exchange = { count = 1, location = "hel1", datacenter = "hel1-exchange" }
  }
  tls = {
    ca_pem          = "-----BEGIN CERTIFICATE-----\nTEST-CA\n-----END CERTIFICATE-----\n"
    server_cert_pem = "-----BEGIN CERTIFICATE-----\nTEST-SERVER\n-----END CERTIFICATE-----\n"
    client_cert_pem = "-----BEGIN CERTIFICATE-----\nTEST-CLIENT\n-----END CERTIFICATE-----\n"
  }
}

run "node_groups" {
  command = apply

  assert {
    condition     = length([for s in hcloud_server.this : s if s.labels.role == "server"]) == 3
    error_message = "three server nodes expected"
  }
  assert {
    condition     = length([for s in hcloud_server.this : s if s.labels.role == "client"]) == 3
    error_message = "three client nodes expected (two data, one exchange)"
  }
  assert {
    condition = hcloud_server.this["arbtest-exchange-1"].labels == tomap({
      cluster = "arbtest", role = "client", group = "exchange", datacenter = "hel1-exchange"
    })
    error_message = "exchange client labels wrong"
  }
  assert {
    condition     = hcloud_server.this["arbtest-exchange-1"].location == "hel1"
    error_message = "exchange client must be placed in its group's location"
  }
  assert {
    condition     = keys(hcloud_volume.this) == ["arbtest-data-1", "arbtest-data-2"]
    error_message = "only data nodes get volumes"
  }
  assert {
    condition     = alltrue([for v in hcloud_volume.this : v.size == 20 && v.format == "ext4" && !v.automount])
    error_message = "data volumes: 20 GB ext4, mounted by cloud-init"
  }
  assert {
    condition     = alltrue([for p in hcloud_placement_group.this : p.type == "spread"]) && length(hcloud_placement_group.this) == 3
    error_message = "one spread placement group per node group"
  }
  assert {
    condition     = output.server_private_ips == ["10.42.1.10", "10.42.1.11", "10.42.1.12"]
    error_message = "servers must get fixed addresses from .10"
  }
  assert {
    condition     = [for n in hcloud_server.this["arbtest-server-2"].network : n.ip] == ["10.42.1.11"]
    error_message = "server-2 must sit at its fixed private address"
  }
}

run "firewalls" {
  command = apply

  assert {
    condition = toset([for r in hcloud_firewall.this["server"].rule : "${r.direction}/${r.protocol}/${r.port}"]) == toset([
      "in/tcp/22", "in/tcp/4646", "in/tcp/8200", "in/tcp/8501",
    ])
    error_message = "servers expose SSH and the three HTTPS APIs, nothing else"
  }
  assert {
    condition     = [for r in hcloud_firewall.this["client"].rule : r.port] == ["22"]
    error_message = "clients expose SSH only"
  }
  assert {
    condition     = alltrue([for r in hcloud_firewall.this["server"].rule : r.source_ips == toset(r.port == "22" ? ["203.0.113.0/24"] : ["198.51.100.7/32"])])
    error_message = "SSH limited to ssh_allowed_cidrs, APIs to api_allowed_cidrs"
  }
  assert {
    condition     = hcloud_server.this["arbtest-server-1"].firewall_ids == toset([201])
    error_message = "servers attach the firewall at creation"
  }
}

run "no_admin_cidrs_no_inbound" {
  command = apply

  variables {
    ssh_allowed_cidrs = []
    api_allowed_cidrs = []
  }

  assert {
    condition     = length(hcloud_firewall.this["server"].rule) == 0 && length(hcloud_firewall.this["client"].rule) == 0
    error_message = "without admin CIDRs nothing may be reachable from outside"
  }
}

run "cloud_init" {
  command = apply

  assert {
    condition     = startswith(output.user_data["arbtest-server-1"], "#cloud-config\n")
    error_message = "user data must be a cloud-config"
  }
  # The agent configs as written to disk, from the rendered data itself.
  assert {
    condition = alltrue([
      for snippet in [
        "acl {\n  enabled                  = true\n  default_policy           = \"deny\"",
        "verify_incoming        = true",
        "verify_server_hostname = true",
        "retry_join = [\"10.42.1.10\",\"10.42.1.11\",\"10.42.1.12\"]",
        "bootstrap_expect = 3",
      ] : strcontains(one([for f in output.bootstrap["arbtest-server-1"].files : f.content if f.path == "/etc/consul.d/consul.hcl"]), snippet)
    ])
    error_message = "consul server config lacks ACLs, TLS, gossip encryption or joins"
  }
  assert {
    condition = alltrue([
      for snippet in [
        "acl {\n  enabled = true\n}",
        "http                   = true",
        "rpc                    = true",
        "jwt_auth_backend_path = \"jwt-nomad\"",
      ] : strcontains(one([for f in output.bootstrap["arbtest-server-1"].files : f.content if f.path == "/etc/nomad.d/nomad.hcl"]), snippet)
    ])
    error_message = "nomad server config lacks ACLs, TLS, gossip encryption or workload identity"
  }
  assert {
    condition = alltrue([
      for snippet in [
        "tls_cert_file   = \"/etc/vault.d/tls/agent.pem\"",
        "leader_api_addr     = \"https://10.42.1.12:8200\"",
        "storage \"raft\"",
      ] : strcontains(one([for f in output.bootstrap["arbtest-server-1"].files : f.content if f.path == "/etc/vault.d/vault.hcl"]), snippet)
    ])
    error_message = "vault config lacks TLS listener or raft retry_join"
  }
  assert {
    condition = alltrue([
      for snippet in [
        "datacenter = \"hel1-exchange\"",
        "node_class = \"exchange\"",
        "retry_join = [\"10.42.1.10:4647\",\"10.42.1.11:4647\",\"10.42.1.12:4647\"]",
      ] : strcontains(one([for f in output.bootstrap["arbtest-exchange-1"].files : f.content if f.path == "/etc/nomad.d/nomad.hcl"]), snippet)
    ])
    error_message = "exchange client must join the servers in its own Nomad datacenter"
  }
  assert {
    condition     = strcontains(one([for f in output.bootstrap["arbtest-data-1"].files : f.content if f.path == "/etc/nomad.d/nomad.hcl"]), "host_volume \"redis-data\" {\n    path      = \"/opt/arbfleet/volumes/redis-data\"")
    error_message = "data clients must offer the host volumes"
  }
  assert {
    condition     = !anytrue([for f in output.bootstrap["arbtest-exchange-1"].files : startswith(f.path, "/etc/vault.d")])
    error_message = "clients must not get Vault server files"
  }
  assert {
    condition     = alltrue([for name, u in output.user_data : !strcontains(u, "PRIVATE KEY") && !can(regex("encrypt +=", u))])
    error_message = "user_data must carry no private key and no gossip key (they are pushed after boot)"
  }
  assert {
    condition     = !anytrue([for f in output.bootstrap["arbtest-server-1"].files : endswith(f.path, "-key.pem") || endswith(f.path, "gossip.hcl")])
    error_message = "the bootstrap must write no key file"
  }
  assert {
    condition = output.key_files["arbtest-server-1"].files == [
      { path = "/etc/consul.d/tls/agent-key.pem", owner = "root", group = "consul", mode = "0640", secret = "server-key.pem", template = "$${secret}" },
      { path = "/etc/nomad.d/tls/agent-key.pem", owner = "root", group = "root", mode = "0600", secret = "server-key.pem", template = "$${secret}" },
      { path = "/etc/vault.d/tls/agent-key.pem", owner = "root", group = "vault", mode = "0640", secret = "server-key.pem", template = "$${secret}" },
      { path = "/etc/consul.d/gossip.hcl", owner = "root", group = "consul", mode = "0640", secret = "consul-gossip.key", template = "encrypt = \"$${secret}\"\n" },
      { path = "/etc/nomad.d/gossip.hcl", owner = "root", group = "root", mode = "0600", secret = "nomad-gossip.key", template = "server {\n  encrypt = \"$${secret}\"\n}\n" },
    ]
    error_message = "servers get the server key for each agent and both gossip keys after boot, none world-readable"
  }
  assert {
    condition     = [for f in output.key_files["arbtest-data-1"].files : f.secret] == ["client-key.pem", "client-key.pem", "consul-gossip.key"]
    error_message = "clients get the client key and Consul's gossip key only"
  }
  assert {
    condition     = join(" ", output.key_files["arbtest-server-1"].services) == "consul vault nomad" && output.key_files["arbtest-server-1"].private_ip == "10.42.1.10"
    error_message = "push-keys starts the server's three agents in order, at its private address"
  }
  assert {
    condition     = strcontains(output.user_data["arbtest-server-1"], "systemctl enable consul vault nomad") && !strcontains(output.user_data["arbtest-server-1"], "--now")
    error_message = "server runcmd must enable the three agents, not start them before their keys"
  }
}

run "even_server_count_rejected" {
  command = plan
  variables {
    servers = { count = 2 }
  }
  expect_failures = [var.servers]
}

run "cidr_typo_rejected" {
  command = plan
  variables {
    ssh_allowed_cidrs = ["203.0.113.0/33"]
  }
  expect_failures = [var.ssh_allowed_cidrs]
}

run "ssh_from_anywhere_rejected" {
  command = plan
  variables {
    ssh_allowed_cidrs = ["203.0.113.0/24", "::/0"]
  }
  expect_failures = [var.ssh_allowed_cidrs]
}

run "apis_from_anywhere_rejected" {
  command = plan
  variables {
    api_allowed_cidrs = ["0.0.0.0/0"]
  }
  expect_failures = [var.api_allowed_cidrs]
}

run "no_ssh_keys_rejected" {
  command = plan
  variables {
    ssh_keys = []
  }
  expect_failures = [var.ssh_keys]
}

run "subnet_typo_rejected" {
  command = plan
  variables {
    subnet_cidr = "10.42.1.0/2x"
  }
  expect_failures = [var.subnet_cidr]
}

run "private_key_in_tls_rejected" {
  command = plan
  variables {
    tls = {
      ca_pem          = "-----BEGIN CERTIFICATE-----\nTEST-CA\n-----END CERTIFICATE-----\n"
      server_cert_pem = "-----BEGIN CERTIFICATE-----\nX\n-----END CERTIFICATE-----\n-----BEGIN PRIVATE KEY-----\nK\n-----END PRIVATE KEY-----\n"
      client_cert_pem = "-----BEGIN CERTIFICATE-----\nTEST-CLIENT\n-----END CERTIFICATE-----\n"
    }
  }
  expect_failures = [var.tls]
}

run "group_outside_network_zone_rejected" {
  command = plan
  variables {
    client_groups = { asia = { count = 1, location = "sin", datacenter = "sin" } }
  }
  expect_failures = [hcloud_network_subnet.this]
}
