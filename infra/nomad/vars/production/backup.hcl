# Production: pg_dump from the server's own image and redis-cli from Redis', into the backups
# host volume (mounted at /backups; shipping it off the node is the volume's job).
datacenters    = ["fsn1"]
driver         = "docker"
postgres_image = "postgres:15"
redis_image    = "redis:7.2"
host_volume    = "backups"
schedule       = "15 3 * * *"
retention_days = 14
