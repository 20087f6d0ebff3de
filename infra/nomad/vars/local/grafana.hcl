# Local stack: Grafana is not packaged in Debian and there is no Docker engine, so nothing runs
# (count = 0); the job is still validated and planned against the local Nomad.
datacenters = ["dc1"]
count       = 0
