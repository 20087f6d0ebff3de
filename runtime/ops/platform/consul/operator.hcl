# An operator: engages and releases the kill switch, inspects services and locks.
key "arbfleet/kill-switch" {
  policy = "write"
}
key_prefix "arbfleet/" {
  policy = "read"
}
service_prefix "" {
  policy = "read"
}
node_prefix "" {
  policy = "read"
}
session_prefix "" {
  policy = "read"
}
