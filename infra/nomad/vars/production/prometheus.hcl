# Production: upstream Prometheus on its own host volume (prometheus-data, mounted at
# /prometheus; owned by the image's user nobody).
datacenters = ["fsn1"]
driver      = "docker"
image       = "prom/prometheus:v2.54.1"
host_volume = "prometheus-data"
port        = 9090
retention   = "30d"

cpu        = 1000
memory     = 2048
memory_max = 3072
