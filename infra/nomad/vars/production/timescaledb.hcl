# Production: TimescaleDB on PostgreSQL 15 (the local stack's major version), data on its own
# host volume (timescaledb-data, mounted at /var/lib/postgresql/data).
datacenters = ["fsn1"]
driver      = "docker"
# PostgreSQL's image with pgBackRest added (infra/images/postgres): its archive_command.
# PostgreSQL licence, native partitioning (docs/components.md).
image         = "ghcr.io/arbfleet/postgres:15-pgbackrest"
host_volume   = "timescaledb-data"
backup_volume = "backups"

postgres_settings = {
  shared_buffers       = "2GB"
  effective_cache_size = "6GB"
  max_connections      = "200"
  wal_compression      = "on"
}

cpu        = 2000
memory     = 8192
memory_max = 8704
