# An engine: its own services and TTL checks, the kill switch (read), its account locks
# (sessions and keys under arbfleet/locks/), and the stores it finds in Consul (Nomad renders
# the engine's stores template with this token).
service "timescaledb" {
  policy = "read"
}
service "redis" {
  policy = "read"
}
service_prefix "arbfleet-" {
  policy = "write"
}
node_prefix "" {
  policy = "read"
}
session_prefix "" {
  policy = "write"
}
key_prefix "arbfleet/" {
  policy = "read"
}
key_prefix "arbfleet/locks/" {
  policy = "write"
}
