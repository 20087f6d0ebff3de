# Generated from infra/terraform/cdk/fleet.toml by `python infra/terraform/cdk/app.py
# --write-vars`: edit the deployment there, then regenerate.

strategy            = "cross_exchange"
deployment          = "btc"
mode                = "live"
venues              = ["binance", "upbit"]
exchange_datacenter = "sin"

accounts = {
  binance = "main"
  upbit   = "main"
}

engine_config = <<-EOT
  log_level = "INFO"

  [[strategies]]
  plugin = "cross_exchange"
  id = "xex-btc"

  [strategies.config]
  min_spread_bps = 40.0
  max_quantity = 0.01

  [risk]
  max_order_notional = 5000.0
  max_daily_loss = 500.0
EOT
