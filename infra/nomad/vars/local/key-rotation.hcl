# Local stack: validated, not run. Running it needs `arbfleet secrets apply` (the rotation role
# and the exchanges/ mount) and a simulator account with a key in Vault.
datacenters   = ["dc1"]
driver        = "raw_exec"
vault_address = "http://127.0.0.1:8200"

accounts = [
  { venue = "binance", account = "sim" },
]
