# Production: every engine deployment runs the engine image under docker.
datacenters   = ["fsn1", "sin"]
driver        = "docker"
image         = "ghcr.io/arbfleet/arbfleet:0.1.0"
vault_address = "https://vault.service.consul:8200"
# Consul has ACLs on (the cluster module): the engine uses its workload identity's token.
consul_acl = true

# Nomad allows 10 s more before SIGKILL.
shutdown_deadline_s = 10

cpu        = 2000
memory     = 256
memory_max = 384
