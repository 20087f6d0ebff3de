# Local stack: Debian's pgBackRest and redis-cli under raw_exec, into <stack>/volumes/backups.
datacenters   = ["dc1"]
driver        = "raw_exec"
redis_bin_dir = "/usr/bin"
