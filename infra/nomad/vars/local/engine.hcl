# Local stack: every engine deployment runs `<venv>/bin/arbfleet run` under raw_exec (venv is
# filled in by `arbfleet deploy`: the virtual environment it runs from).
datacenters  = ["dc1"]
driver       = "raw_exec"
kill_timeout = "20s"

cpu        = 500
memory     = 256
memory_max = 384
