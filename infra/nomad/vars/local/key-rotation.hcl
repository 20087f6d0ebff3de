# Local stack: rotates the simulator account of the local paper deployment. The default role
# only reads the job's own path, so locally this job is validated, not run.
datacenters   = ["dc1"]
driver        = "raw_exec"
vault_address = "http://127.0.0.1:8200"
vault_role    = "nomad-workloads"

accounts = [
  { venue = "binance", account = "sim", deployment = "cross-exchange-paper" },
]
