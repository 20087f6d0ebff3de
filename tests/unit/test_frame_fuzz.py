"""Hostile frames through the engine's own frame handler, for every venue and frame kind.

Frames are built as documents (ordered key/value pairs, so a key can repeat, be escaped or go
missing, and values can be of the wrong type, overflow, hold NUL bytes or nest), then encoded
and possibly truncated: the kinds of damage byte-level mutation never produces. Each example
plays a few of them, next to good frames, into a real engine (default strategies, paper fills
with no latency, so an order a frame causes is sent before the handler returns) and checks after
every frame:

- the handler never raises;
- no top of book is crossed and no live L2 book is;
- a frame the parser refuses is counted under exactly one reason, leaves every top as it was and
  causes no order; a frame it accepts is counted under at most one reason (the book may still
  find it out of order);
- the reason names the damage where the damage decides it: a truncated frame is ``malformed``,
  an otherwise whole frame repeating a key is ``duplicate_key``, a number beyond a float's range
  is ``non_finite``.

Whether a frame was accepted is asked of a second parser of the same class (parsers keep no
state between frames), so the engine is observed only through what it exposes.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any, Final

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from runtime.config import load_config
from runtime.core.events import DepthUpdate
from runtime.core.frames import DropCounter, DropReason
from runtime.engine.engine import Engine
from runtime.engine.plugins import discover
from runtime.venues.registry import build_parser
from tests.unit.market_kit import binance_ticker as binance_ticker_frame
from tests.unit.market_kit import upbit_book

_REGISTRY = discover()
_CONFIG = load_config(env={}, overrides={"paper": {"latency_ms": 0.0, "latency_jitter_ms": 0.0}})
_OVERFLOWS: Final = (b"1e309", b"-1e309")
_AFTER_PARSE: Final = {DropReason.OUT_OF_ORDER, DropReason.BUFFER_OVERFLOW}
_MIDS: Final = {
    "BTCUSDT": 60_000.0,
    "ETHUSDT": 3_000.0,
    "ETHBTC": 0.05,
    "KRW-BTC": 60_000.0 * 1_400,
    "KRW-USDT": 1_400.0,
}
_BINANCE_SYMBOLS: Final = ("BTCUSDT", "ETHUSDT", "ETHBTC")
_UPBIT_CODES: Final = ("KRW-BTC", "KRW-USDT")


class Token(bytes):
    """JSON text used verbatim, for what a JSON encoder would never write (1e309, escapes)."""


@dataclass
class Obj:
    """A JSON object as written: pairs in order, repeats allowed; keys in ``escaped`` are
    written with \\u escapes."""

    pairs: list[tuple[str, Any]]
    escaped: set[str] = field(default_factory=set)


def encode(value: Any) -> bytes:
    if isinstance(value, Token):
        return bytes(value)
    if isinstance(value, Obj):
        members = [_key(k, k in value.escaped) + b":" + encode(v) for k, v in value.pairs]
        return b"{" + b",".join(members) + b"}"
    if isinstance(value, list):
        return b"[" + b",".join(encode(v) for v in value) + b"]"
    return msgspec.json.encode(value)


def _key(key: str, escaped: bool) -> bytes:
    if not escaped:
        return msgspec.json.encode(key)
    return b'"' + "".join(f"\\u{ord(c):04x}" for c in key).encode() + b'"'


@dataclass
class Frame:
    venue: str
    raw: bytes
    defects: set[str]


# --- the documented shapes, with ids and prices that may be stale, future, crossed or zero ----

_ids = st.one_of(
    st.integers(1_000, 1_100),  # around the books' current ids: in order, stale or repeated
    st.just(2**62),  # far in the future: valid, and every genuine id after it looks stale
    st.just(2**63 - 1),
)


@st.composite
def _top(draw: st.DrawFn, mid: float) -> tuple[float, float]:
    """Bid and ask around ``mid``: usually a normal spread, sometimes crossed or zero."""
    bid = mid * (1 + draw(st.integers(-80, 80)) / 10_000)
    shape = draw(st.sampled_from(["normal"] * 12 + ["crossed", "zero", "locked"]))
    if shape == "crossed":
        return bid, bid * 0.999
    if shape == "zero":
        return 0.0, bid
    return bid, bid if shape == "locked" else bid * 1.0002


def _decimal(value: float) -> str:
    return f"{value:.8f}"


_sizes = st.sampled_from([0.5, 1.0, 3.0, 0.5, 1.0, 0.0])  # a zero size now and then


@st.composite
def binance_ticker(draw: st.DrawFn) -> tuple[str, Obj]:
    symbol = draw(st.sampled_from(_BINANCE_SYMBOLS))
    bid, ask = draw(_top(_MIDS[symbol]))
    pairs = [
        ("u", draw(_ids)),
        ("s", symbol),
        ("b", _decimal(bid)),
        ("B", _decimal(draw(_sizes))),
        ("a", _decimal(ask)),
        ("A", _decimal(draw(_sizes))),
    ]
    return f"{symbol.lower()}@bookTicker", Obj(pairs)


@st.composite
def binance_depth(draw: st.DrawFn) -> tuple[str, Obj]:
    mid = _MIDS["BTCUSDT"]
    first = draw(_ids)

    def levels(sign: int) -> list[list[str]]:
        offsets = draw(st.lists(st.integers(1, 60), max_size=4))
        return [[_decimal(mid + sign * 0.5 * o), _decimal(draw(_sizes))] for o in offsets]

    pairs = [
        ("e", "depthUpdate"),
        ("E", draw(_ids)),
        ("s", "BTCUSDT"),
        ("U", first),
        ("u", first + draw(st.integers(-1, 3))),
        ("b", levels(-1)),
        ("a", levels(1)),
    ]
    return "btcusdt@depth@100ms", Obj(pairs)


@st.composite
def binance_trade(draw: st.DrawFn) -> tuple[str, Obj]:
    symbol = draw(st.sampled_from(_BINANCE_SYMBOLS))
    price, _ = draw(_top(_MIDS[symbol]))
    pairs = [
        ("e", "trade"),
        ("E", draw(_ids)),
        ("s", symbol),
        ("t", draw(_ids)),
        ("p", _decimal(price)),
        ("q", _decimal(draw(_sizes))),
        ("T", draw(_ids)),
        ("m", draw(st.booleans())),
        ("M", True),
    ]
    return f"{symbol.lower()}@trade", Obj(pairs)


@st.composite
def upbit_orderbook(draw: st.DrawFn) -> Obj:
    code = draw(st.sampled_from(_UPBIT_CODES))
    units = []
    for _ in range(draw(st.sampled_from([1, 1, 2, 3, 0]))):
        bid, ask = draw(_top(_MIDS[code]))
        units.append(
            Obj(
                [
                    ("ask_price", ask),
                    ("bid_price", bid),
                    ("ask_size", draw(_sizes)),
                    ("bid_size", draw(_sizes)),
                ]
            )
        )
    return Obj(
        [
            ("type", "orderbook"),
            ("code", code),
            ("timestamp", draw(_ids)),
            ("total_ask_size", 1.0),
            ("total_bid_size", 1.0),
            ("orderbook_units", units),
            ("stream_type", "REALTIME"),
            ("level", 0),
        ]
    )


@st.composite
def upbit_trade(draw: st.DrawFn) -> Obj:
    code = draw(st.sampled_from(_UPBIT_CODES))
    price, _ = draw(_top(_MIDS[code]))
    return Obj(
        [
            ("type", "trade"),
            ("code", code),
            ("timestamp", draw(_ids)),
            ("trade_date", "2024-10-31"),
            ("trade_time", "01:07:42"),
            ("trade_timestamp", draw(_ids)),
            ("trade_price", price),
            ("trade_volume", draw(_sizes)),
            ("ask_bid", draw(st.sampled_from(["ASK", "BID"]))),
            ("prev_closing_price", price),
            ("change", "FALL"),
            ("change_price", 1.0),
            ("sequential_id", draw(_ids)),
            ("best_ask_price", price),
            ("best_ask_size", 1.0),
            ("best_bid_price", price),
            ("best_bid_size", 1.0),
            ("stream_type", "REALTIME"),
        ]
    )


@st.composite
def binance_document(draw: st.DrawFn) -> Obj:
    stream, data = draw(st.one_of(binance_ticker(), binance_depth(), binance_trade()))
    if draw(st.booleans()):  # what the engine subscribes to: a combined stream
        return Obj([("stream", stream), ("data", data)])
    return data


# --- damage ----------------------------------------------------------------------------------

_HOSTILE_NUMBERS: Final = [
    *(Token(t) for t in _OVERFLOWS),
    Token(b'"1e309"'),
    Token(b'"nan"'),
    Token(b'"inf"'),
    Token(b'"-inf"'),
    Token(b"9223372036854775808"),
    Token(b"-1"),
    Token(b"0"),
    Token(b'"0"'),
    Token(b"1e-400"),
]
_HOSTILE_SYMBOLS: Final = [
    "BTC\x00USDT",
    "BTCUSDT\n",
    Token(b'"\\u0042TCUSDT"'),  # the same as "BTCUSDT", escaped
    Token(b'"KRW-\\u0042TC"'),
    "btcusdt",
    "",
    "DOGEUSDT",
]
_SWAPS: Final = [True, None, [], Obj([]), 12, "x", 1.5, [1, 2], Obj([("v", 1)])]


def _objects(obj: Obj) -> list[Obj]:
    """``obj`` and every object nested in it."""
    found = [obj]
    for _, value in obj.pairs:
        if isinstance(value, Obj):
            found += _objects(value)
        elif isinstance(value, list):
            for item in value:
                if isinstance(item, Obj):
                    found += _objects(item)
    return found


def _values(obj: Obj) -> list[Any]:
    """Every value in ``obj`` and the objects and lists nested in it."""
    found: list[Any] = []
    for _, value in obj.pairs:
        stack = [value]
        while stack:
            item = stack.pop()
            found.append(item)
            if isinstance(item, list):
                stack += item
            elif isinstance(item, Obj):
                stack += [v for _, v in item.pairs]
    return found


def defects(document: Obj) -> set[str]:
    """What is wrong with ``document`` that decides the drop reason: a repeated key in any
    object, a number that overflows a float."""
    found = set()
    if any(len({k for k, _ in o.pairs}) < len(o.pairs) for o in _objects(document)):
        found.add("repeat")
    if any(isinstance(v, Token) and bytes(v) in _OVERFLOWS for v in _values(document)):
        found.add("overflow")
    return found


@st.composite
def damage(draw: st.DrawFn, document: Obj) -> None:
    """Break ``document`` in place, zero to three times."""
    for _ in range(draw(st.integers(0, 3))):
        target = draw(st.sampled_from(_objects(document)))
        if not target.pairs:
            continue
        index = draw(st.integers(0, len(target.pairs) - 1))
        key, value = target.pairs[index]
        how = draw(
            st.sampled_from(["repeat", "escape", "drop", "swap", "number", "symbol", "nest"])
        )
        if how == "repeat":
            # Copies: the pools are shared between examples and later damage edits in place.
            other = copy.deepcopy(draw(st.sampled_from([value, *_SWAPS, *_HOSTILE_SYMBOLS])))
            target.pairs.insert(draw(st.integers(0, len(target.pairs))), (key, other))
        elif how == "escape":
            target.escaped.add(key)
        elif how == "drop":
            del target.pairs[index]
        elif how == "nest":
            target.pairs[index] = (key, draw(st.sampled_from([Obj([("v", value)]), [value]])))
        else:
            pool = {"swap": _SWAPS, "number": _HOSTILE_NUMBERS, "symbol": _HOSTILE_SYMBOLS}[how]
            target.pairs[index] = (key, copy.deepcopy(draw(st.sampled_from(pool))))


@st.composite
def frames(draw: st.DrawFn) -> Frame:
    venue = draw(st.sampled_from(["binance", "upbit"]))
    if venue == "binance":
        document = draw(binance_document())
    else:
        document = draw(st.one_of(upbit_orderbook(), upbit_trade()))
    draw(damage(document))
    found = defects(document)
    raw = encode(document)
    if draw(st.integers(0, 9)) == 0:
        raw = raw[: draw(st.integers(0, len(raw) - 1))]
        found.add("truncate")
    return Frame(venue, raw, found)


# --- the engine and the invariants ----------------------------------------------------------


def engine() -> Engine:
    """The default strategies on both venues, every top at its mid with id 999 (so that a frame
    moving a price by tens of bps is an opportunity), Binance BTC/USDT's L2 book in sync at 1000.
    """
    built = Engine(_CONFIG, _REGISTRY)
    for symbol in _BINANCE_SYMBOLS:
        built.frame_handler("binance")(binance_ticker_bytes(symbol, _MIDS[symbol], 999), 1)
    for code in _UPBIT_CODES:
        built.frame_handler("upbit")(upbit_book(code, _MIDS[code], _MIDS[code] * 1.0002, 999), 1)
    mid = _MIDS["BTCUSDT"]
    bids = tuple((mid - 0.5 * i, 1.0) for i in range(1, 61))
    asks = tuple((mid + 0.5 * i, 1.0) for i in range(1, 61))
    built.on_event(DepthUpdate("binance", "BTC/USDT", 1_000, 1_000, bids, asks, True, 0, 1))
    assert sum(d.total for d in built.drops.values()) == 0
    return built


def binance_ticker_bytes(symbol: str, bid: float, update_id: int) -> bytes:
    return binance_ticker_frame(bid, bid * 1.0002, update_id, symbol)


def orders(engine: Engine) -> int:
    return sum(stats.orders for stats in engine.stats.by_strategy.values())


def tops(engine: Engine) -> dict[str, dict[str, Any]]:
    return {venue: dict(by_symbol) for venue, by_symbol in engine.books.tops.items()}


def assert_uncrossed(engine: Engine) -> None:
    for by_symbol in engine.books.tops.values():
        for top in by_symbol.values():
            assert 0 < top.bid <= top.ask < math.inf, top
    for book in engine.books.l2.values():
        if book.live:
            assert book.best_bid < book.best_ask, (book.venue, book.symbol)


def expected_reasons(frame: Frame) -> set[DropReason] | None:
    """The reasons the damage alone allows, whatever else was done to the frame: decoding
    stops at the first of truncation and overflow it meets, before keys are compared."""
    stops = {
        DropReason.MALFORMED: "truncate" in frame.defects,
        DropReason.NON_FINITE: "overflow" in frame.defects,
    }
    if any(stops.values()):
        return {reason for reason, found in stops.items() if found}
    if "repeat" in frame.defects:
        return {DropReason.DUPLICATE_KEY}
    return None


def play(engine: Engine, frame: Frame) -> None:
    """One frame through the engine's handler, checking every invariant of the module."""
    subscriptions = list(engine.subscriptions[frame.venue].values())
    shadow = build_parser(frame.venue, subscriptions, DropCounter(frame.venue))
    drops = engine.drops[frame.venue]
    before_drops, before_orders, before_tops = dict(drops.counts), orders(engine), tops(engine)
    before_frames = engine.stats.frame_count()

    engine.frame_handler(frame.venue)(frame.raw, 1)

    event = shadow.parse(frame.raw, 1)
    new = {r: n - before_drops.get(r, 0) for r, n in drops.counts.items()}
    counted = {r: n for r, n in new.items() if n}
    assert engine.stats.frame_count() == before_frames + 1
    assert_uncrossed(engine)
    if event is None:
        assert counted == dict(shadow.drops.counts) and sum(counted.values()) == 1, counted
        assert orders(engine) == before_orders, "an order from a frame that failed validation"
        assert tops(engine) == before_tops, "a refused frame changed a top"
        expected = expected_reasons(frame)
        if expected is not None:
            assert set(counted) <= expected, (frame.defects, counted)
    else:
        assert sum(counted.values()) <= 1 and set(counted) <= _AFTER_PARSE, counted
        if frame.defects & {"repeat", "truncate", "overflow"}:
            raise AssertionError(f"accepted a frame with {frame.defects}: {frame.raw!r}")


def _good_frames() -> st.SearchStrategy[Frame]:
    """Undamaged frames, so that damaged ones meet books with tops and strategies with orders."""
    binance = binance_document().map(lambda d: Frame("binance", encode(d), set()))
    upbit = st.one_of(upbit_orderbook(), upbit_trade()).map(
        lambda d: Frame("upbit", encode(d), set())
    )
    return binance | upbit


@given(st.lists(_good_frames() | frames(), min_size=1, max_size=8))
def test_hostile_frames_never_raise_cross_a_book_or_cause_an_order(played: list[Frame]) -> None:
    built = engine()
    for frame in played:
        play(built, frame)


@given(binance_ticker(), st.sampled_from(["raw", "combined"]))
def test_a_top_survives_a_frame_that_repeats_a_key(ticker: tuple[str, Obj], wrapping: str) -> None:
    """Issue #13's frame: a repeated "s" must not move another symbol's top."""
    stream, data = ticker
    built = engine()
    good = Obj(
        [("u", 1_000), ("s", "ETHUSDT"), ("b", "3000"), ("B", "1"), ("a", "3001"), ("A", "1")]
    )
    play(built, Frame("binance", encode(good), set()))
    data.pairs.insert(2, ("s", "ETHUSDT"))
    document = Obj([("stream", stream), ("data", data)]) if wrapping == "combined" else data
    play(built, Frame("binance", encode(document), defects(document)))
    top = built.books.top("binance", "ETH/USDT")
    assert top is not None and (top.bid, top.ask, top.seq) == (3000.0, 3001.0, 1_000)
