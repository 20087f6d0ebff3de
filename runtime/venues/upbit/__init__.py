"""Upbit: the registration (``arbfleet.venues`` entry point ``upbit``).

``feed``: websocket messages; ``rest``: JWT-authenticated orders; ``signing``: the JWTs.
"""

from __future__ import annotations

from runtime.venues.contract import Venue
from runtime.venues.upbit.feed import UpbitParser, open_feed
from runtime.venues.upbit.rest import UpbitClient

VENUE = Venue(
    name="upbit",
    symbol_format="{quote}-{base}",
    ws_url="wss://api.upbit.com/websocket/v1",
    rest_url="https://api.upbit.com",
    parser=UpbitParser,
    feed=open_feed,
    client=UpbitClient,
)
