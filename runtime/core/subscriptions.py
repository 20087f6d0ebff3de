"""What market data a strategy asks for: the engine subscribes feeds and routes events by it."""

from __future__ import annotations

import msgspec


class Subscription(msgspec.Struct, frozen=True):
    """Market data a strategy needs: tops always; L2 depth and trades when asked."""

    venue: str
    symbol: str
    depth: bool = False
    trades: bool = False
