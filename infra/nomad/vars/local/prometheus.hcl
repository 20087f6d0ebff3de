# Local stack: the toolchain's upstream Prometheus (Debian's lacks Consul service discovery)
# under raw_exec; toolchain_bin and host_volume_path are filled in by `arbfleet deploy`.
datacenters = ["dc1"]
driver      = "raw_exec"
retention   = "1d"

cpu        = 200
memory     = 256
memory_max = 384
