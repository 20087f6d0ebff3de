# Local stack: Debian's redis-server under raw_exec, data in the arbfleet-data host volume
# (host_volume_path is filled in by `arbfleet deploy` from the stack directory).
datacenters = ["dc1"]
driver      = "raw_exec"

# Small: the machine has two cores shared with builds. maxmemory = 75% of memory = 96 MB.
cpu        = 100
memory     = 128
memory_max = 160
