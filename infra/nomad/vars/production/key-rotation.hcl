# Production: the engine image has the `arbfleet` command; the tasks use the rotation role
# (arbfleet-key-rotation, the default).
datacenters   = ["fsn1"]
driver        = "docker"
image         = "ghcr.io/arbfleet/arbfleet:0.1.0"
vault_address = "https://vault.service.consul:8200"
schedule      = "0 6 1 * *"
# accounts: every exchange account of the fleet's production deployments (fleet.toml), filled in
# by `arbfleet deploy`.
