# Production: one member on each of two clients, PostgreSQL 15 with Patroni from
# infra/images/postgres, data on the postgres-data host volume of each client.
datacenters  = ["fsn1"]
driver       = "docker"
image        = "ghcr.io/arbfleet/postgres:15-pgbackrest"
allowed_cidr = "10.42.1.0/24" # the cluster module's subnet_cidr

postgres_settings = {
  shared_buffers       = "2GB"
  effective_cache_size = "6GB"
  max_connections      = "200"
  wal_compression      = "on"
}

cpu              = 2000
memory           = 8192
postgres_bin_dir = "/usr/local/bin" # the image's PostgreSQL
