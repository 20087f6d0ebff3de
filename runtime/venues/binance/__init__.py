"""Binance spot: the registration (``arbfleet.venues`` entry point ``binance``).

``feed``: websocket messages and depth snapshots; ``rest``: signed orders; ``signing``: HMAC.
"""

from __future__ import annotations

from runtime.venues.binance.feed import BinanceParser, open_feed
from runtime.venues.binance.rest import BinanceClient
from runtime.venues.contract import Venue

VENUE = Venue(
    name="binance",
    symbol_format="{base}{quote}",
    ws_url="wss://stream.binance.com:9443",
    rest_url="https://api.binance.com",
    parser=BinanceParser,
    feed=open_feed,
    client=BinanceClient,
)
