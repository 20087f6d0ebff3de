# Local stack: every engine deployment runs `<venv>/bin/arbfleet run` under raw_exec (venv is
# filled in by `arbfleet deploy`: the virtual environment it runs from).
datacenters   = ["dc1"]
driver        = "raw_exec"
vault_address = "http://127.0.0.1:8200"

# Quicker rollouts than production: a canary is promoted after 10 s of passing checks, and one
# that is not healthy within 60 s fails the deployment at once, which reverts.
min_healthy_time  = "10s"
healthy_deadline  = "60s"
progress_deadline = "0s"

# Nomad allows 10 s more before SIGKILL.
shutdown_deadline_s = 10

cpu        = 500
memory     = 256
memory_max = 384
