# Production: the official image, AOF on its own host volume (redis-data, mounted at /data).
datacenters = ["fsn1"]
driver      = "docker"
image       = "redis:7.2" # BSD-3-Clause; 7.4+ is RSAL/SSPL (docs/components.md)
host_volume = "redis-data"

# maxmemory = 75% of memory = 768 MB.
cpu        = 500
memory     = 1024
memory_max = 1280
