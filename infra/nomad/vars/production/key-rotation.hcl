# Production: the engine image has the `arbfleet` command; the key-rotation Vault role may write
# the engines' exchange KV entries (secrets/ holds the policy).
datacenters   = ["fsn1"]
driver        = "docker"
image         = "ghcr.io/arbfleet/arbfleet:0.1.0"
vault_address = "https://vault.service.consul:8200"
vault_role    = "key-rotation"
schedule      = "0 6 1 * *"

accounts = [
  { venue = "binance", account = "main", deployment = "cross-exchange-btc" },
  { venue = "upbit", account = "main", deployment = "cross-exchange-btc" },
]
