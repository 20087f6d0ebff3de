# Cloud-agnostic: renders a node's cloud-config from templates and data only (no provider), so
# another cloud's module can reuse it, and tests can render it without any provider at all.
locals {
  is_server  = var.role == "server"
  tls_dir    = { consul = "/etc/consul.d/tls", nomad = "/etc/nomad.d/tls", vault = "/etc/vault.d/tls" }
  volume_dir = "/opt/arbfleet/volumes"

  template_vars = {
    advertise_ip        = var.advertise_ip
    bootstrap_expect    = length(var.server_ips)
    consul_datacenter   = var.consul_datacenter
    datacenter          = var.datacenter
    host_volumes        = var.host_volumes
    node_class          = var.node_class
    node_name           = var.node_name
    region              = var.region
    server              = local.is_server
    server_ips          = var.server_ips
    tls_dir             = local.tls_dir
    vault_jwt_auth_path = var.vault_jwt_auth_path
    versions            = var.versions
    volume_dir          = local.volume_dir
  }

  # Consul and Vault run as their own users; Nomad stays root because a client must create
  # task namespaces, cgroups and mounts (the docker driver), and servers share its unit.
  users = local.is_server ? ["consul", "vault"] : ["consul"]

  # Config directories are readable by the service's group only (they hold the gossip key and
  # TLS keys once pushed); data directories by the service user only.
  directories = concat(
    [
      { path = "/etc/consul.d", owner = "root", group = "consul", mode = "0750" },
      { path = local.tls_dir.consul, owner = "root", group = "consul", mode = "0750" },
      { path = "/opt/consul", owner = "consul", group = "consul", mode = "0750" },
      { path = "/etc/nomad.d", owner = "root", group = "root", mode = "0700" },
      { path = local.tls_dir.nomad, owner = "root", group = "root", mode = "0700" },
      { path = "/opt/nomad", owner = "root", group = "root", mode = "0700" },
    ],
    local.is_server ? [
      { path = "/etc/vault.d", owner = "root", group = "vault", mode = "0750" },
      { path = local.tls_dir.vault, owner = "root", group = "vault", mode = "0750" },
      { path = "/opt/vault", owner = "vault", group = "vault", mode = "0750" },
      { path = "/opt/vault/data", owner = "vault", group = "vault", mode = "0700" },
    ] : [],
    length(var.host_volumes) > 0 ? [
      { path = local.volume_dir, owner = "root", group = "root", mode = "0755" },
    ] : [],
    [for name in sort(keys(var.host_volumes)) : merge(var.host_volumes[name], { path = "${local.volume_dir}/${name}" })],
  )

  agents = local.is_server ? ["consul", "nomad", "vault"] : ["consul", "nomad"]

  # Only public TLS material rides in user_data: a cloud's metadata service hands user_data back
  # to anything on the machine that asks (and the cloud API keeps it), so private keys and
  # gossip keys are not in it.
  tls_files = flatten([
    for agent in local.agents : [
      { path = "${local.tls_dir[agent]}/ca.pem", owner = "root", group = agent == "nomad" ? "root" : agent, mode = "0644", content = var.tls.ca_pem },
      { path = "${local.tls_dir[agent]}/agent.pem", owner = "root", group = agent == "nomad" ? "root" : agent, mode = "0644", content = var.tls.cert_pem },
    ]
  ])

  # The secret files a node gets after boot (`arbfleet cluster push-keys`, over SSH): where,
  # with which owner and mode, which file of the operator's keys directory (`secret`) and how it
  # is written (`template`, `$${secret}` replaced by that file's text). No secret value here.
  # Gossip keys sit in files of their own that the agents read with their config directory.
  key_files = concat(
    [
      for agent in local.agents : {
        path = "${local.tls_dir[agent]}/agent-key.pem", owner = "root", group = agent == "nomad" ? "root" : agent,
        mode = agent == "nomad" ? "0600" : "0640", secret = "${var.role}-key.pem", template = "$${secret}"
      }
    ],
    [
      { path = "/etc/consul.d/gossip.hcl", owner = "root", group = "consul", mode = "0640", secret = "consul-gossip.key", template = "encrypt = \"$${secret}\"\n" },
    ],
    local.is_server ? [
      { path = "/etc/nomad.d/gossip.hcl", owner = "root", group = "root", mode = "0600", secret = "nomad-gossip.key", template = "server {\n  encrypt = \"$${secret}\"\n}\n" },
    ] : [],
  )

  files = concat(
    [
      { path = "/etc/consul.d/consul.hcl", owner = "root", group = "consul", mode = "0640", content = templatefile("${path.module}/templates/consul.hcl.tftpl", local.template_vars) },
      { path = "/etc/nomad.d/nomad.hcl", owner = "root", group = "root", mode = "0600", content = templatefile("${path.module}/templates/nomad.hcl.tftpl", local.template_vars) },
      { path = "/etc/systemd/system/consul.service", owner = "root", group = "root", mode = "0644", content = file("${path.module}/templates/consul.service") },
      { path = "/etc/systemd/system/nomad.service", owner = "root", group = "root", mode = "0644", content = file("${path.module}/templates/nomad.service") },
      { path = "/usr/local/sbin/arbfleet-install-hashicorp", owner = "root", group = "root", mode = "0755", content = templatefile("${path.module}/templates/install-hashicorp.sh.tftpl", local.template_vars) },
    ],
    local.is_server ? [
      { path = "/etc/vault.d/vault.hcl", owner = "root", group = "vault", mode = "0640", content = templatefile("${path.module}/templates/vault.hcl.tftpl", local.template_vars) },
      { path = "/etc/systemd/system/vault.service", owner = "root", group = "root", mode = "0644", content = file("${path.module}/templates/vault.service") },
    ] : [],
    local.tls_files,
  )

  # In start order; the push of the keys starts them (the units wait for their key files).
  services = local.is_server ? ["consul", "vault", "nomad"] : ["consul", "nomad"]

  runcmd = concat(
    # The data volume is attached after the server exists, so wait for it, then mount it by
    # its stable by-id path (its /mnt/HC_Volume_<id> automount path is unknown at render time).
    length(var.host_volumes) > 0 ? [
      "for i in $(seq 60); do ls /dev/disk/by-id/scsi-0HC_Volume_* >/dev/null 2>&1 && break; sleep 5; done",
      "dev=$(ls /dev/disk/by-id/scsi-0HC_Volume_* | head -n1) && mkdir -p ${local.volume_dir} && echo \"$dev ${local.volume_dir} ext4 discard,nofail,defaults 0 0\" >> /etc/fstab && mount ${local.volume_dir}",
    ] : [],
    # `install -d` also fixes owner and mode of a directory write_files already created.
    [for d in local.directories : "install -d -o ${d.owner} -g ${d.group} -m ${d.mode} ${d.path}"],
    [
      "/usr/local/sbin/arbfleet-install-hashicorp",
      "systemctl daemon-reload",
      # Enabled, not started: their keys arrive after boot (key_files), and the units'
      # ConditionFileNotEmpty on the key files keeps a reboot before that from crash-looping.
      "systemctl enable ${join(" ", local.services)}",
    ],
  )

  cloud_config = {
    users = concat(["default"], [
      for u in local.users : { name = u, system = true, shell = "/usr/sbin/nologin", lock_passwd = true, homedir = "/nonexistent", no_create_home = true }
    ])
    packages = ["curl", "unzip"]
    # Deferred to the final stage: the files belong to users the users module creates, and
    # the installer needs the packages.
    write_files = [
      for f in local.files : { path = f.path, owner = "${f.owner}:${f.group}", permissions = f.mode, content = f.content, defer = true }
    ]
    runcmd = local.runcmd
  }

  user_data = "#cloud-config\n${yamlencode(local.cloud_config)}"
}
