"""Binance spot public websocket messages: bookTicker, depthUpdate and trade, raw or combined.

Message shapes follow Binance's "WebSocket Streams" documentation (fixtures in
``tests/fixtures/ws_messages/binance_*.json``). Prices and sizes arrive as decimal strings;
msgspec's lax mode turns them into floats while decoding, so a message is parsed exactly once.

The fast path recognizes a message by its first bytes, which Binance always writes in the same
key order, and decodes straight into a typed struct. Anything that does not match (keys in another
order, a proxy that re-serialized the JSON) takes the slow path: decode to a dict, look at the
keys, convert. Both paths end in the same checks, so the fast path changes speed, not behaviour.

A frame in exactly the layout Binance writes (combined bookTicker and depth diffs) is parsed by
``_wire.Scanner``, the same step compiled (``_wire.c``), which makes the event the Python path
would make of it and hands every other frame to the Python path (``parse_python``), which decides.
Built without a C compiler the package runs the Python path alone (``COMPILED`` says which).

A frame whose objects repeat a key is dropped (``duplicate_key``): msgspec would keep the last
value, so ``{"u":9,"s":"BTCUSDT","s":"ETHUSDT",...}`` would move ETHUSDT's top. The fast paths
prove there is no repeat by counting the frame's colons (see ``_counted_keys``); only a frame
that does not pass that count pays for the exact check on the slow path.
"""

from __future__ import annotations

import asyncio
import math
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Annotated, Any, Final, Generic, TypeVar

import aiohttp
import msgspec
from loguru import logger

from runtime.core.errors import FeedError
from runtime.core.events import BUY, SELL, BookTicker, DepthUpdate, Level, MarketEvent, Side, Trade
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
from runtime.core.retry import Backoff
from runtime.venues.base import RestLimiter, WebsocketFeed
from runtime.venues.contract import FeedRequest, VenueFeed

try:
    from runtime.venues.binance._wire import Scanner
except ImportError:  # installed without a C compiler (pyproject.toml): the Python path alone
    Scanner = None  # type: ignore[assignment,misc]

COMPILED: Final = Scanner is not None
"""Whether the compiled scanner runs; tests/unit/test_compiled.py requires it."""

VENUE: Final = "binance"
_INF: Final = math.inf

_U: Final = ord("u")
_S: Final = ord("s")
_TICKER_STREAM: Final = b'bookTicker"'
_DEPTH_STREAM: Final = b"depth@"
_DEPTH: Final = b'{"e":"depthUpdate"'
_TRADE: Final = b'{"e":"trade"'
_COMBINED: Final = b'{"stream":"'
_NAME_AT: Final = len(_COMBINED)
_AT_BEFORE: Final = 96  # the '@' of "btcusdt@bookTicker" lies well before this offset

W = TypeVar("W")


class _BookTickerWire(msgspec.Struct, gc=False):
    u: Id
    s: str
    b: float
    B: float
    a: float
    A: float


class _DepthWire(msgspec.Struct, gc=False):
    e: str
    E: Id
    s: str
    U: Id
    u: Id
    b: tuple[Level, ...]
    a: tuple[Level, ...]


_Price = Annotated[float, msgspec.Meta(gt=0.0, le=sys.float_info.max)]
_Size = Annotated[float, msgspec.Meta(ge=0.0, le=sys.float_info.max)]


class _CheckedDepthWire(msgspec.Struct, gc=False):
    """``_DepthWire`` whose levels msgspec checks while decoding (in C): every price finite and
    positive, every size finite and not negative (NaN fails both), what ``levels_valid`` checks
    in Python. The fast path decodes into it; a frame it rejects takes the slow path, which
    decodes into ``_DepthWire`` and drops it with the reason it always had."""

    e: str
    E: Id
    s: str
    U: Id
    u: Id
    b: tuple[tuple[_Price, _Size], ...]
    a: tuple[tuple[_Price, _Size], ...]


class _TradeWire(msgspec.Struct, gc=False):
    e: str
    E: Id
    s: str
    t: Id
    p: float
    q: float
    T: Id
    m: bool
    M: Any = msgspec.UNSET
    """Documented as "ignore"; declared so that the colon count knows whether it was sent."""


class _Combined(msgspec.Struct, Generic[W], gc=False):
    stream: str
    data: W


class _DepthSnapshotWire(msgspec.Struct, gc=False):
    lastUpdateId: int
    bids: tuple[Level, ...]
    asks: tuple[Level, ...]


_TICKER_KEYS: Final = len(_BookTickerWire.__struct_fields__)
_COMBINED_TICKER_KEYS: Final = 2 + _TICKER_KEYS  # "stream" and "data" around it
_DEPTH_KEYS: Final = len(_DepthWire.__struct_fields__)
_COMBINED_DEPTH_KEYS: Final = 2 + _DEPTH_KEYS
_TRADE_KEYS: Final = len(_TradeWire.__struct_fields__) - 1  # without the optional "M"


def _counted_keys(wire: object) -> int:
    """How many keys a frame that decoded into ``wire`` has if no object repeats one.

    Every colon outside a JSON string separates a key from its value, so a frame has at least
    as many colons as keys, escapes or whitespace notwithstanding. A successful decode means each
    field's key is there at least once; so a frame with no more colons than this has each
    exactly once and no other. A frame with more (a repeat, an extra key, a colon in a string)
    is not necessarily bad: it takes the slow path, which checks exactly.
    """
    if isinstance(wire, _Combined):
        return 2 + _counted_keys(wire.data)
    if isinstance(wire, _TradeWire):
        return _TRADE_KEYS + (wire.M is not msgspec.UNSET)
    if isinstance(wire, _DepthWire):
        return _DEPTH_KEYS
    return _TICKER_KEYS


class BinanceParser:
    """Parses frames from one Binance connection; see the module docstring."""

    venue: Final = VENUE
    parse: Callable[[bytes, int], MarketEvent | None]
    """One frame to its event, or None after counting why not: the compiled scanner, which hands
    what it does not take to ``parse_python``; ``parse_python`` itself where it is not built."""

    def __init__(
        self,
        symbols: Mapping[str, str],
        drops: DropCounter | None = None,
        *,
        compiled: bool = COMPILED,
    ) -> None:
        """``compiled=False``: the Python path alone, what the tests hold the scanner to."""
        self._symbols = dict(symbols)
        self.drops = drops if drops is not None else DropCounter(VENUE)
        self._ticker = msgspec.json.Decoder(_BookTickerWire, strict=False)
        self._depth = msgspec.json.Decoder(_DepthWire, strict=False)
        self._trade = msgspec.json.Decoder(_TradeWire, strict=False)
        self._combined_ticker = msgspec.json.Decoder(_Combined[_BookTickerWire], strict=False)
        self._combined_depth = msgspec.json.Decoder(_Combined[_DepthWire], strict=False)
        self._combined_checked_depth = msgspec.json.Decoder(
            _Combined[_CheckedDepthWire], strict=False
        )
        self._combined_trade = msgspec.json.Decoder(_Combined[_TradeWire], strict=False)
        self.parse = self.parse_python
        if compiled and Scanner is not None:
            # The method itself: a frame the scanner takes costs no Python call at all.
            scanner = Scanner(self._symbols, VENUE, BookTicker, DepthUpdate, self.parse_python)
            self.parse = scanner.scan

    def parse_python(self, raw: bytes, local_ts_ns: int) -> MarketEvent | None:
        # The first key's first letter tells the kind: an index costs a third of a startswith.
        try:
            first_key = raw[2]
        except IndexError:
            return self._parse_slow(raw, local_ts_ns)
        # '{"stream":"btcusdt@bookTicker"': what the engine subscribes to, so the hottest path.
        # A frame with no '@' looks at offset 0, which never starts with the stream kind.
        kind_at = raw.find(b"@", _NAME_AT, _AT_BEFORE) + 1 if first_key == _S else 0
        if first_key == _S and raw.startswith(_TICKER_STREAM, kind_at):
            try:
                wire = self._combined_ticker.decode(raw).data
            except DECODE_ERRORS:
                return self._parse_slow(raw, local_ts_ns)
            if raw.count(b":") != _COMBINED_TICKER_KEYS:  # a repeat or more keys: _counted_keys
                return self._parse_slow(raw, local_ts_ns)
            # Inlined rather than a call to _book_ticker, which does the same: this is the
            # hottest line in the engine and a call costs a tenth of its budget.
            symbol = self._symbols.get(wire.s)
            if symbol is None:
                self.drops.drop(DropReason.UNKNOWN_SYMBOL, raw)
                return None
            bid = wire.b
            ask = wire.a
            # One chain: 0 < bid <= ask < inf, 0 <= bid size < inf, 0 <= ask size < inf
            # (NaN fails every comparison). Each operand is loaded once.
            if not (0.0 < bid <= ask < _INF > wire.B >= 0.0 <= wire.A < _INF):
                self.drops.drop(value_reason(bid, ask, wire.B, wire.A), raw)
                return None
            return BookTicker(VENUE, symbol, bid, wire.B, ask, wire.A, wire.u, 0, local_ts_ns)
        if kind_at and raw.startswith(_DEPTH_STREAM, kind_at):  # '"btcusdt@depth@100ms"'
            return self._combined_depth_fast(raw, local_ts_ns)
        if first_key == _U:  # '{"u":' - a raw bookTicker (single-stream connections)
            return self._decode_fast(self._ticker, raw, local_ts_ns)
        if raw.startswith(_DEPTH):
            return self._decode_fast(self._depth, raw, local_ts_ns)
        if raw.startswith(_TRADE):
            return self._decode_fast(self._trade, raw, local_ts_ns)
        if raw.startswith(_COMBINED):
            return self._parse_combined(raw, local_ts_ns)
        return self._parse_slow(raw, local_ts_ns)

    def _combined_depth_fast(self, raw: bytes, ts: int) -> MarketEvent | None:
        """A combined depth diff: ``_parse_combined`` and ``_depth_update`` with the levels
        checked by the decoder; any frame it does not take goes to the slow path."""
        try:
            wire = self._combined_checked_depth.decode(raw).data
        except DECODE_ERRORS:
            return self._parse_slow(raw, ts)
        if raw.count(b":") != _COMBINED_DEPTH_KEYS or wire.u < wire.U:
            return self._parse_slow(raw, ts)
        symbol = self._symbols.get(wire.s)
        if symbol is None:
            self.drops.drop(DropReason.UNKNOWN_SYMBOL, raw)
            return None
        return DepthUpdate(VENUE, symbol, wire.U, wire.u, wire.b, wire.a, False, wire.E, ts)

    def _parse_combined(self, raw: bytes, local_ts_ns: int) -> MarketEvent | None:
        at = raw.find(b"@", _NAME_AT, _AT_BEFORE)
        decoder: msgspec.json.Decoder[Any]
        if at < 0:
            return self._parse_slow(raw, local_ts_ns)
        if raw.startswith(b"bookTicker", at + 1):
            decoder = self._combined_ticker
        elif raw.startswith(b"depth", at + 1):
            decoder = self._combined_depth
        elif raw.startswith(b'trade"', at + 1):
            decoder = self._combined_trade
        else:
            return self._parse_slow(raw, local_ts_ns)
        try:
            envelope = decoder.decode(raw)
        except DECODE_ERRORS:
            return self._parse_slow(raw, local_ts_ns)
        if raw.count(b":") != _counted_keys(envelope):
            return self._parse_slow(raw, local_ts_ns)
        return self._normalize(envelope.data, raw, local_ts_ns)

    def _decode_fast(
        self, decoder: msgspec.json.Decoder[Any], raw: bytes, local_ts_ns: int
    ) -> MarketEvent | None:
        try:
            wire = decoder.decode(raw)
        except DECODE_ERRORS:
            return self._parse_slow(raw, local_ts_ns)
        if raw.count(b":") != _counted_keys(wire):
            return self._parse_slow(raw, local_ts_ns)
        return self._normalize(wire, raw, local_ts_ns)

    def _parse_slow(self, raw: bytes, local_ts_ns: int) -> MarketEvent | None:
        obj = decode_object(raw, self.drops)
        if obj is None:
            return None
        stream = None
        if isinstance(obj.get("data"), dict) and "stream" in obj:
            stream = obj["stream"]
            obj = obj["data"]
        if "result" in obj and "id" in obj:
            self.drops.drop(DropReason.CONTROL, raw)
            return None
        if "code" in obj and "msg" in obj:
            self.drops.drop(DropReason.VENUE_ERROR, raw)
            return None
        wire_type = _wire_type(obj, stream)
        if wire_type is None:
            self.drops.drop(DropReason.UNKNOWN_TYPE, raw)
            return None
        try:
            wire = msgspec.convert(obj, wire_type, strict=False)
        except msgspec.ValidationError as exc:
            self.drops.drop(decode_error_reason(exc), raw, str(exc))
            return None
        return self._normalize(wire, raw, local_ts_ns)

    def _normalize(self, wire: object, raw: bytes, local_ts_ns: int) -> MarketEvent | None:
        if isinstance(wire, _BookTickerWire):
            return self._book_ticker(wire, raw, local_ts_ns)
        if isinstance(wire, _DepthWire):
            return self._depth_update(wire, raw, local_ts_ns)
        assert isinstance(wire, _TradeWire)
        return self._trade_event(wire, raw, local_ts_ns)

    def _book_ticker(self, wire: _BookTickerWire, raw: bytes, ts: int) -> BookTicker | None:
        symbol = self._symbols.get(wire.s)
        if symbol is None:
            self.drops.drop(DropReason.UNKNOWN_SYMBOL, raw)
            return None
        if not (0.0 < wire.b <= wire.a < _INF and 0.0 <= wire.B < _INF and 0.0 <= wire.A < _INF):
            self.drops.drop(value_reason(wire.b, wire.a, wire.B, wire.A), raw)
            return None
        return BookTicker(VENUE, symbol, wire.b, wire.B, wire.a, wire.A, wire.u, 0, ts)

    def _depth_update(self, wire: _DepthWire, raw: bytes, ts: int) -> DepthUpdate | None:
        symbol = self._symbols.get(wire.s)
        if symbol is None:
            self.drops.drop(DropReason.UNKNOWN_SYMBOL, raw)
            return None
        if wire.u < wire.U or not (levels_valid(wire.b) and levels_valid(wire.a)):
            self.drops.drop(value_reason(*(n for level in wire.b + wire.a for n in level)), raw)
            return None
        return DepthUpdate(VENUE, symbol, wire.U, wire.u, wire.b, wire.a, False, wire.E, ts)

    def _trade_event(self, wire: _TradeWire, raw: bytes, ts: int) -> Trade | None:
        symbol = self._symbols.get(wire.s)
        if symbol is None:
            self.drops.drop(DropReason.UNKNOWN_SYMBOL, raw)
            return None
        if not (0.0 < wire.p < _INF and 0.0 < wire.q < _INF):
            self.drops.drop(value_reason(wire.p, wire.q), raw)
            return None
        # "m": the buyer was the maker, so the seller took liquidity.
        aggressor: Side = SELL if wire.m else BUY
        return Trade(VENUE, symbol, wire.p, wire.q, aggressor, wire.t, wire.T, ts)


def _wire_type(obj: dict[str, Any], stream: object) -> type[msgspec.Struct] | None:
    """The shape ``obj`` claims to have: by its stream's name in a combined frame, else by its
    event type; an object without one that has an update id claims to be a bookTicker."""
    if isinstance(stream, str):
        name = stream.partition("@")[2]
        if name == "bookTicker":
            return _BookTickerWire
        if name.startswith("depth"):
            return _DepthWire
        return _TradeWire if name == "trade" else None
    event = obj.get("e")
    if event == "depthUpdate":
        return _DepthWire
    if event == "trade":
        return _TradeWire
    if event is None and "u" in obj:
        return _BookTickerWire
    return None


def parse_depth_snapshot(body: bytes, symbol: str, local_ts_ns: int) -> DepthUpdate:
    """The body of ``GET /api/v3/depth`` as a snapshot event; FeedError if it is not one."""
    try:
        wire = msgspec.json.decode(body, type=_DepthSnapshotWire, strict=False)
    except DECODE_ERRORS as exc:
        raise FeedError(f"binance depth snapshot for {symbol} is not valid: {exc}") from exc
    if not (levels_valid(wire.bids) and levels_valid(wire.asks)):
        raise FeedError(f"binance depth snapshot for {symbol} has an invalid price or size")
    seq = wire.lastUpdateId
    return DepthUpdate(VENUE, symbol, seq, seq, wire.bids, wire.asks, True, 0, local_ts_ns)


def stream_names(subscriptions: list[tuple[str, bool, bool]]) -> list[str]:
    """Stream names for (venue symbol, depth?, trades?): ``btcusdt@bookTicker`` and friends."""
    names: list[str] = []
    for venue_symbol, depth, trades in subscriptions:
        lower = venue_symbol.lower()
        names.append(f"{lower}@bookTicker")
        if depth:
            names.append(f"{lower}@depth@100ms")
        if trades:
            names.append(f"{lower}@trade")
    return names


def combined_stream_url(ws_url: str, streams: list[str]) -> str:
    """``wss://host/stream?streams=a/b/c``: one connection for every stream."""
    return f"{ws_url.rstrip('/')}/stream?streams={'/'.join(streams)}"


class DepthSnapshots:
    """Fetches ``GET /api/v3/depth`` for books that are out of sync, one request per symbol.

    A failed request is retried with backoff; requests share the venue's REST rate limit.
    """

    def __init__(
        self,
        rest_url: str,
        venue_symbols: Mapping[str, str],
        deliver: Callable[[DepthUpdate], None],
        limiter: RestLimiter,
        limit: int = 1000,
    ) -> None:
        self._rest_url = rest_url.rstrip("/")
        self._venue_symbols = dict(venue_symbols)
        self._deliver = deliver
        self._limiter = limiter
        self._limit = limit
        self._pending: dict[str, asyncio.Task[None]] = {}
        self._session: aiohttp.ClientSession | None = None
        self._closed = False
        self.fetched = 0
        self.failures = 0

    def request(self, symbol: str) -> None:
        """Fetch a snapshot of ``symbol`` unless one is already on its way."""
        if self._closed or symbol in self._pending or symbol not in self._venue_symbols:
            return
        self._pending[symbol] = asyncio.get_running_loop().create_task(self._fetch(symbol))

    def request_all(self) -> None:
        for symbol in self._venue_symbols:
            self.request(symbol)

    async def _fetch(self, symbol: str) -> None:
        backoff = Backoff(base_s=0.5, cap_s=10.0)
        url = f"{self._rest_url}/api/v3/depth"
        params = {"symbol": self._venue_symbols[symbol], "limit": str(self._limit)}
        try:
            while True:
                await self._limiter.acquire()
                try:
                    snapshot = await self._get(url, params, symbol)
                except (TimeoutError, aiohttp.ClientError, OSError, FeedError) as exc:
                    self.failures += 1
                    logger.bind(venue=VENUE, symbol=symbol).warning(
                        f"binance depth snapshot for {symbol} failed: {exc}"
                    )
                    await asyncio.sleep(backoff.next_delay())
                    continue
                self.fetched += 1
                self._deliver(snapshot)
                return
        finally:
            self._pending.pop(symbol, None)

    async def _get(self, url: str, params: dict[str, str], symbol: str) -> DepthUpdate:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        async with self._session.get(url, params=params) as response:
            body = await response.read()
            if response.status != 200:
                raise FeedError(f"HTTP {response.status}: {body[:200]!r}")
            return parse_depth_snapshot(body, symbol, time.time_ns())

    async def close(self) -> None:
        """Cancel the requests in flight, wait until they have ended, close the session.

        Idempotent; a ``request`` after it is ignored (no task outlives the close)."""
        self._closed = True
        tasks = list(self._pending.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None


def open_feed(request: FeedRequest) -> VenueFeed:
    """One combined-stream connection for every stream, and the depth snapshots its L2 books
    need after every (re)connect and every sequence gap."""
    streams = stream_names(
        [(s.instrument.venue_symbol, s.depth, s.trades) for s in request.streams]
    )
    depth = {s.instrument.symbol: s.instrument.venue_symbol for s in request.streams if s.depth}
    snapshots = None
    if depth:
        limiter = RestLimiter(request.rest_requests_per_s, burst=max(1, len(depth)))
        snapshots = DepthSnapshots(request.rest_url, depth, request.on_snapshot, limiter)
    feed = WebsocketFeed(
        request.venue,
        combined_stream_url(request.ws_url, streams),
        request.on_frame,
        stale_after_s=request.stale_after_s,
        on_connected=_request_all(snapshots),
    )
    return VenueFeed(feed, snapshots)


def _request_all(snapshots: DepthSnapshots | None) -> Callable[[], Awaitable[None]] | None:
    if snapshots is None:
        return None

    async def request() -> None:
        # After a (re)connect every L2 book needs a fresh snapshot to line the diffs up with.
        snapshots.request_all()

    return request
