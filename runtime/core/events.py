"""Normalized market events: what every feed adapter produces and every strategy consumes.

Events are frozen msgspec Structs. Building one costs a single allocation, a plugin cannot mutate
an event another plugin (or the order book) still holds, and the same classes encode to JSON for
replay files. ``gc=False`` is safe because events hold only scalars and tuples of floats, which
cannot form reference cycles.

Every event carries two clocks: ``venue_ts_ms`` (the venue's own event time in milliseconds since
the epoch, 0 when the venue sends none, as with Binance spot book tickers) and ``local_ts_ns``
(``time.time_ns()`` when the frame arrived here). Symbols are normalized to ``BASE/QUOTE``
(``BTC/USDT``, ``BTC/KRW``) whatever the venue calls them.
"""

from __future__ import annotations

from typing import Final, Literal, TypeAlias

import msgspec

Side: TypeAlias = Literal["buy", "sell"]
BUY: Final = "buy"
SELL: Final = "sell"

Level: TypeAlias = tuple[float, float]
"""One price level: (price, size)."""


class BookTicker(msgspec.Struct, frozen=True, gc=False):
    """The best bid and ask of one venue and symbol: the top of its book."""

    venue: str
    symbol: str
    bid: float
    bid_size: float
    ask: float
    ask_size: float
    seq: int
    """The venue's book update id (Binance ``u``) or its event time where it has none."""
    venue_ts_ms: int
    local_ts_ns: int

    @property
    def mid(self) -> float:
        return (self.bid + self.ask) * 0.5


class DepthUpdate(msgspec.Struct, frozen=True, gc=False):
    """Changed L2 levels (a diff) or a whole book (a snapshot) of one venue and symbol.

    In a diff a size of 0 removes the level. ``first_seq``..``last_seq`` is the range of venue
    update ids the message covers; a diff whose ``first_seq`` is not the previous ``last_seq + 1``
    means updates were lost and the book must be resynchronized from a snapshot.
    """

    venue: str
    symbol: str
    first_seq: int
    last_seq: int
    bids: tuple[Level, ...]
    asks: tuple[Level, ...]
    is_snapshot: bool
    venue_ts_ms: int
    local_ts_ns: int


class Trade(msgspec.Struct, frozen=True, gc=False):
    """One public trade; ``aggressor`` is the side of the order that took liquidity."""

    venue: str
    symbol: str
    price: float
    size: float
    aggressor: Side
    trade_id: int
    venue_ts_ms: int
    local_ts_ns: int


MarketEvent: TypeAlias = BookTicker | DepthUpdate | Trade
