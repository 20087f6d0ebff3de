# Production: the official image; Slack and PagerDuty secrets from Vault.
datacenters = ["fsn1"]
driver      = "docker"
image       = "prom/alertmanager:v0.27.0"
