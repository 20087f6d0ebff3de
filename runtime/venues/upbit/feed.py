"""Upbit public websocket messages: orderbook and trade, in the DEFAULT format.

Shapes follow Upbit's WebSocket reference (fixtures in ``tests/fixtures/ws_messages/upbit_*.json``).
Upbit sends each orderbook message as the whole visible book (up to 30 levels), so every message
becomes a snapshot ``DepthUpdate``; it has no update ids, so the message timestamp serves as the
sequence. Upbit sends binary frames holding UTF-8 JSON and numbers as JSON numbers. The SIMPLE
format (abbreviated keys) is not supported: subscribe with ``{"format": "DEFAULT"}``.

A frame whose objects repeat a key is dropped (``duplicate_key``). As for Binance, the fast path
proves there is none by counting colons: the wire structs declare every documented key, the
ones the engine does not use as optional, so a decode tells how many keys there should be.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, Final, Literal

import msgspec
from msgspec import UnsetType

from runtime.core.events import BUY, SELL, DepthUpdate, MarketEvent, Side, Trade
from runtime.core.frames import (
    DECODE_ERRORS,
    DropCounter,
    DropReason,
    Id,
    decode_error_reason,
    decode_object,
    levels_valid,
    value_reason,
)
from runtime.venues.base import WebsocketFeed
from runtime.venues.contract import FeedRequest, VenueFeed

VENUE: Final = "upbit"
_INF: Final = math.inf
_ORDERBOOK: Final = b'{"type":"orderbook"'
_TRADE: Final = b'{"type":"trade"'


class _UnitWire(msgspec.Struct, gc=False):
    ask_price: float
    bid_price: float
    ask_size: float
    bid_size: float


_UNSET: Final = msgspec.UNSET


class _OrderbookWire(msgspec.Struct, gc=False):
    type: str
    code: str
    timestamp: Id
    orderbook_units: tuple[_UnitWire, ...]
    # Documented, unused: declared only so that the colon count knows they were sent.
    total_ask_size: Any = _UNSET
    total_bid_size: Any = _UNSET
    stream_type: Any = _UNSET
    level: Any = _UNSET

    def counted_keys(self) -> int:
        """Keys in a frame that decoded into this if none repeats: see ``binance._counted_keys``."""
        sent = (self.total_ask_size, self.total_bid_size, self.stream_type, self.level)
        return 8 - sent.count(_UNSET) + 4 * len(self.orderbook_units)  # count: a loop in C


class _TradeWire(msgspec.Struct, gc=False):
    type: str
    code: str
    timestamp: Id
    trade_price: float
    trade_volume: float
    ask_bid: Literal["ASK", "BID"]
    sequential_id: Id
    trade_timestamp: Id
    trade_time: str | UnsetType = _UNSET
    """"HH:MM:SS": its two colons are counted too (see ``counted_keys``)."""
    trade_date: Any = _UNSET
    prev_closing_price: Any = _UNSET
    change: Any = _UNSET
    change_price: Any = _UNSET
    best_ask_price: Any = _UNSET
    best_ask_size: Any = _UNSET
    best_bid_price: Any = _UNSET
    best_bid_size: Any = _UNSET
    stream_type: Any = _UNSET

    def counted_keys(self) -> int:
        """Keys plus the colons of ``trade_time``; the caller makes sure no escape could have
        made a colon that the frame's bytes do not have."""
        sent = (
            self.trade_date,
            self.prev_closing_price,
            self.change,
            self.change_price,
            self.best_ask_price,
            self.best_ask_size,
            self.best_bid_price,
            self.best_bid_size,
            self.stream_type,
        )
        time_colons = 0
        if isinstance(self.trade_time, str):
            time_colons = 1 + self.trade_time.count(":")
        return 8 + len(sent) - sent.count(_UNSET) + time_colons


class UpbitParser:
    """Parses frames from one Upbit connection; see the module docstring."""

    venue: Final = VENUE

    def __init__(self, symbols: Mapping[str, str], drops: DropCounter | None = None) -> None:
        self._symbols = dict(symbols)
        self.drops = drops if drops is not None else DropCounter(VENUE)
        self._orderbook = msgspec.json.Decoder(_OrderbookWire)
        self._trade = msgspec.json.Decoder(_TradeWire)

    def parse(self, raw: bytes, local_ts_ns: int) -> MarketEvent | None:
        decoder: msgspec.json.Decoder[Any]
        if raw.startswith(_ORDERBOOK):
            decoder = self._orderbook
        elif raw.startswith(_TRADE):
            decoder = self._trade
        else:
            return self._parse_slow(raw, local_ts_ns)
        try:
            wire = decoder.decode(raw)
        except DECODE_ERRORS:
            return self._parse_slow(raw, local_ts_ns)
        # A backslash could spell a colon (\u003a) that counted_keys counts and the bytes lack.
        if raw.count(b":") != wire.counted_keys() or b"\\" in raw:
            return self._parse_slow(raw, local_ts_ns)
        return self._normalize(wire, raw, local_ts_ns)

    def _parse_slow(self, raw: bytes, local_ts_ns: int) -> MarketEvent | None:
        obj = decode_object(raw, self.drops)
        if obj is None:
            return None
        if "status" in obj and len(obj) == 1:
            self.drops.drop(DropReason.CONTROL, raw)
            return None
        if "error" in obj:
            self.drops.drop(DropReason.VENUE_ERROR, raw)
            return None
        wire_type = {"orderbook": _OrderbookWire, "trade": _TradeWire}.get(str(obj.get("type")))
        if wire_type is None:
            detail = "SIMPLE format is not supported" if "ty" in obj else ""
            self.drops.drop(DropReason.UNKNOWN_TYPE, raw, detail)
            return None
        try:
            wire = msgspec.convert(obj, wire_type)
        except msgspec.ValidationError as exc:
            self.drops.drop(decode_error_reason(exc), raw, str(exc))
            return None
        return self._normalize(wire, raw, local_ts_ns)

    def _normalize(self, wire: object, raw: bytes, local_ts_ns: int) -> MarketEvent | None:
        if isinstance(wire, _OrderbookWire):
            return self._snapshot(wire, raw, local_ts_ns)
        assert isinstance(wire, _TradeWire)
        return self._trade_event(wire, raw, local_ts_ns)

    def _snapshot(self, wire: _OrderbookWire, raw: bytes, ts: int) -> DepthUpdate | None:
        symbol = self._symbols.get(wire.code)
        if symbol is None:
            self.drops.drop(DropReason.UNKNOWN_SYMBOL, raw)
            return None
        units = wire.orderbook_units
        bids = tuple([(u.bid_price, u.bid_size) for u in units])
        asks = tuple([(u.ask_price, u.ask_size) for u in units])
        if not units or not (levels_valid(bids) and levels_valid(asks)):
            self.drops.drop(value_reason(*(n for level in bids + asks for n in level)), raw)
            return None
        seq = wire.timestamp
        return DepthUpdate(VENUE, symbol, seq, seq, bids, asks, True, wire.timestamp, ts)

    def _trade_event(self, wire: _TradeWire, raw: bytes, ts: int) -> Trade | None:
        symbol = self._symbols.get(wire.code)
        if symbol is None:
            self.drops.drop(DropReason.UNKNOWN_SYMBOL, raw)
            return None
        if not (0.0 < wire.trade_price < _INF and 0.0 < wire.trade_volume < _INF):
            self.drops.drop(value_reason(wire.trade_price, wire.trade_volume), raw)
            return None
        aggressor: Side = BUY if wire.ask_bid == "BID" else SELL
        return Trade(
            VENUE,
            symbol,
            wire.trade_price,
            wire.trade_volume,
            aggressor,
            wire.sequential_id,
            wire.trade_timestamp,
            ts,
        )


def subscription_message(
    venue_symbols: Sequence[str], trade_symbols: Sequence[str] = (), ticket: str | None = None
) -> bytes:
    """The JSON an Upbit client sends after connecting to choose its streams."""
    request: list[dict[str, Any]] = [
        {"ticket": ticket or str(uuid.uuid4())},
        {"type": "orderbook", "codes": list(venue_symbols)},
    ]
    if trade_symbols:
        request.append({"type": "trade", "codes": list(trade_symbols)})
    request.append({"format": "DEFAULT"})
    return msgspec.json.encode(request)


def open_feed(request: FeedRequest) -> VenueFeed:
    """One connection; the streams are chosen by a message sent once connected. Every orderbook
    message is a whole book, so no snapshot is ever fetched."""
    codes = [s.instrument.venue_symbol for s in request.streams]
    trade_codes = [s.instrument.venue_symbol for s in request.streams if s.trades]
    feed = WebsocketFeed(
        request.venue,
        request.ws_url,
        request.on_frame,
        stale_after_s=request.stale_after_s,
        subscribe=subscription_message(codes, trade_codes),
    )
    return VenueFeed(feed)
