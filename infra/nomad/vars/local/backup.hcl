# Local stack: Debian's pg_dump and redis-cli under raw_exec, into <stack>/volumes/backups.
datacenters      = ["dc1"]
driver           = "raw_exec"
postgres_bin_dir = "/usr/lib/postgresql/15/bin"
redis_bin_dir    = "/usr/bin"
retention_days   = 3
