# Production: TimescaleDB on PostgreSQL 15 (the local stack's major version), data on its own
# host volume (timescaledb-data, mounted at /var/lib/postgresql/data).
datacenters = ["fsn1"]
driver      = "docker"
image       = "postgres:15" # PostgreSQL licence, native partitioning (docs/components.md)
host_volume = "timescaledb-data"

postgres_settings = {
  shared_buffers       = "2GB"
  effective_cache_size = "6GB"
  max_connections      = "200"
  wal_compression      = "on"
}

cpu        = 2000
memory     = 8192
memory_max = 8704
