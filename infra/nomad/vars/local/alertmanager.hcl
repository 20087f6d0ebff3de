# Local stack: Debian's prometheus-alertmanager under raw_exec. It starts once Vault holds
# secret/default/alertmanager/slack (webhook_url) and .../pagerduty (routing_key).
datacenters      = ["dc1"]
driver           = "raw_exec"
alertmanager_bin = "/usr/bin/prometheus-alertmanager"
