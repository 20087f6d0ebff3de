# Production: the official image, provisioned from monitoring/grafana/.
datacenters = ["fsn1"]
count       = 1
image       = "grafana/grafana:11.3.0"
port        = 3000
