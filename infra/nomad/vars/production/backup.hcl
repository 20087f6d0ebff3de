# Production: pgBackRest from the server's own image (infra/images/postgres) and redis-cli
# from Redis', into the backups host volume (mounted at /backups; shipping it off the node is the
# volume's job). The database's volume is mounted read-only: pgBackRest reads its files.
datacenters     = ["fsn1"]
driver          = "docker"
postgres_image  = "ghcr.io/arbfleet/postgres:15-pgbackrest"
redis_image     = "redis:7.2"
host_volume     = "backups"
database_volume = "timescaledb-data"
schedule        = "15 3 * * *"
