# cross_exchange in paper mode against the exchange simulator on 127.0.0.1:18900 (outside the
# stack's ports). No accounts in Vault: paper mode needs no keys; the simulator's "paper"
# accounts are locked in Consul all the same.
strategy            = "cross_exchange"
deployment          = "paper"
mode                = "paper"
venues              = ["binance", "upbit"]
exchange_datacenter = "dc1"

engine_config = <<-EOT
  log_level = "INFO"

  [venues.binance]
  ws_url = "ws://127.0.0.1:18900"
  rest_url = "http://127.0.0.1:18900"

  [venues.upbit]
  ws_url = "ws://127.0.0.1:18900/upbit/websocket/v1"
  rest_url = "http://127.0.0.1:18900/upbit"

  [[strategies]]
  plugin = "cross_exchange"
  id = "xex-btc"

  [strategies.config]
  min_spread_bps = 30.0
  max_quantity = 0.01

  # The simulator's accounts are locked as production's are: one engine at a time trades them
  # (a canary waits for the lock while the engine it replaces still trades).
  [consul.accounts]
  binance = "paper"
  upbit = "paper"
EOT
