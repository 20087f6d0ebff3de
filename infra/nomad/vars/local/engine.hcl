# Local stack: every engine deployment runs `<venv>/bin/arbfleet run` under raw_exec (venv is
# filled in by `arbfleet deploy`: the virtual environment it runs from).
datacenters   = ["dc1"]
driver        = "raw_exec"
vault_address = "http://127.0.0.1:8200"

# Nomad allows 10 s more before SIGKILL.
shutdown_deadline_s = 10

cpu        = 500
memory     = 256
memory_max = 384
