# Generated from infra/terraform/cdk/fleet.toml by `python infra/terraform/cdk/app.py
# --write-vars`: edit the deployment there, then regenerate.

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
