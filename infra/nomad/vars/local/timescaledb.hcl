# Local stack: Debian's PostgreSQL 15 under raw_exec (no TimescaleDB package here; the schema
# falls back to native partitioning). Data in the arbfleet-data host volume.
datacenters      = ["dc1"]
driver           = "raw_exec"
postgres_bin_dir = "/usr/lib/postgresql/15/bin"

postgres_settings = {
  shared_buffers  = "64MB"
  max_connections = "50"
}

cpu        = 200
memory     = 256
memory_max = 384
