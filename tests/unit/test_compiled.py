"""The compiled steps of the market-data path against the Python they stand in for.

``runtime/venues/binance/_wire.c`` recognizes frames in Binance's own layout and must make, of
any bytes, the event the Python parser makes, or hand the frame to it (which decides, and counts
any drop); ``runtime/trading/_sides.c`` is ``book.PythonSide`` compiled. Both are
optional at install time (no C compiler: the Python runs alone), so the first test makes sure
they were built here: everything else in the suite then runs through them.
"""

from __future__ import annotations

import math
from typing import Final

from hypothesis import given
from hypothesis import strategies as st

from runtime.core.events import BookTicker, DepthUpdate
from runtime.trading import book
from runtime.venues.binance import feed
from runtime.venues.binance.feed import BinanceParser
from tests.unit.test_frame_fuzz import Obj, Token, binance_depth, binance_document, damage, encode

SYMBOLS: Final = {"BTCUSDT": "BTC/USDT", "ETHUSDT": "ETH/USDT", "ETHBTC": "ETH/BTC"}


def test_the_compiled_steps_were_built() -> None:
    assert feed.COMPILED, "runtime/venues/binance/_wire.c was not built (pip install -e .)"
    assert book.COMPILED, "runtime/trading/_sides.c was not built (pip install -e .)"


def parsed_both_ways(raw: bytes) -> object:
    """What the parser makes of ``raw`` with the scanner and without: the same, drops too."""
    compiled = BinanceParser(SYMBOLS)
    python = BinanceParser(SYMBOLS, compiled=False)
    event = compiled.parse(raw, 7)
    assert event == python.parse(raw, 7), raw
    assert compiled.drops.counts == python.drops.counts, raw
    return event


# Numbers as a venue might spell them inside the quotes: Binance's plain decimals, and every
# other spelling the scanner must leave to the Python path.
_digits = st.text("0123456789", min_size=1, max_size=24)
_spelled = st.one_of(
    st.builds(lambda i, f: f"{i}.{f}", _digits, _digits),
    _digits,
    st.builds(lambda i, f: f"{int(i)}.{f}", _digits, _digits),
    st.sampled_from(["0", "0.0", "-1.5", "1e5", "1E-3", ".5", "5.", "+1", " 1", "1 ", "nan"]),
    st.sampled_from(["inf", "0x10", "1_000", "١٢", "00", "0.00000000", "1" * 400, "9" * 45]),
    st.floats(min_value=0.0, allow_nan=False).map(repr),
)


@st.composite
def respelled(draw: st.DrawFn) -> bytes:
    """A combined ticker or depth frame with some of its prices and sizes spelled anew."""
    stream, data = draw(st.one_of(binance_document_combined(), binance_depth()))
    for index, (key, value) in enumerate(data.pairs):
        if key in "bBaA" and isinstance(value, str) and draw(st.booleans()):
            data.pairs[index] = (key, Token(f'"{draw(_spelled)}"'.encode()))
        elif key in ("b", "a") and isinstance(value, list):
            for level in value:
                level[draw(st.integers(0, 1))] = Token(f'"{draw(_spelled)}"'.encode())
    return encode(Obj([("stream", stream), ("data", data)]))


@st.composite
def binance_document_combined(draw: st.DrawFn) -> tuple[str, Obj]:
    document = draw(binance_document())
    if document.pairs[0][0] == "stream":
        stream, data = document.pairs[0][1], document.pairs[1][1]
        return str(stream), data
    return "btcusdt@bookTicker", document


@given(respelled())
def test_numbers_spelled_any_way_parse_as_the_python_parser_parses_them(raw: bytes) -> None:
    parsed_both_ways(raw)


@st.composite
def damaged(draw: st.DrawFn) -> bytes:
    document = draw(binance_document())
    draw(damage(document))
    raw = encode(document)
    if draw(st.integers(0, 4)) == 0:
        raw = raw[: draw(st.integers(0, len(raw)))]
    elif draw(st.integers(0, 4)) == 0:
        at = draw(st.integers(0, len(raw)))
        raw = raw[:at] + draw(st.sampled_from([b" ", b"\\", b'"', b",", b"}", b"\n"])) + raw[at:]
    return raw


@given(damaged())
def test_damaged_frames_parse_and_drop_as_the_python_parser_does(raw: bytes) -> None:
    parsed_both_ways(raw)


@given(binance_document_combined())
def test_the_scanner_takes_every_good_combined_frame_in_binances_layout(
    document: tuple[str, Obj],
) -> None:
    """The fast path is taken, not merely harmless: a good frame's event comes from the scanner."""
    stream, data = document
    raw = encode(Obj([("stream", stream), ("data", data)]))
    expected = parsed_both_ways(raw)
    handed_over = []
    scanner = feed.Scanner(
        SYMBOLS, feed.VENUE, BookTicker, DepthUpdate, lambda *frame: handed_over.append(frame)
    )
    scanned = scanner.scan(raw, 7)
    if "trade" in stream or expected is None:
        assert handed_over == [(raw, 7)] and scanned is None
    else:
        assert handed_over == [] and scanned == expected


_prices = st.sampled_from([100.0 + i * 0.5 for i in range(40)])
_sizes = st.sampled_from([0.0, 0.0, 0.25, 1.0, 3.5])
_levels = st.lists(st.tuples(_prices, _sizes), max_size=30)


@given(st.lists(st.tuples(st.sampled_from(["apply", "replace", "clear"]), _levels), max_size=12))
def test_a_compiled_side_holds_what_a_python_side_holds(steps: list[tuple[str, list]]) -> None:
    """Snapshots, diffs and clears in any order (removals of absent prices, of the best, a side
    emptied and filled again, enough levels to grow the table): the same levels, the same best."""
    for bids in (True, False):
        compiled, python = book.Side(bids), book.PythonSide(bids)
        for step, levels in steps:
            for side in (compiled, python):
                getattr(side, step)(*([tuple(levels)] if step != "clear" else []))
            assert sorted(compiled.items()) == sorted(python.items())
            assert compiled.best == python.best
            assert len(compiled) == len(python)
            assert compiled.best_levels(5) == python.best_levels(5)
            for price, _ in levels:
                assert (price in compiled) == (price in python)
                assert compiled.get(price) == python.get(price)


def test_a_side_refuses_a_price_that_is_not_positive_and_keeps_what_came_before() -> None:
    for side in (book.Side(True), book.PythonSide(True)):
        side.apply(((100.0, 1.0), (101.0, 2.0)))
        for price in (0.0, -1.0, math.nan):
            try:
                side.apply(((102.0, 1.0), (101.0, 0.0), (price, 1.0)))
            except ValueError as exc:
                assert "positive" in str(exc)
            else:
                raise AssertionError(f"{type(side).__name__} took price {price}")
            assert sorted(side.items()) == [(100.0, 1.0), (102.0, 1.0)] and side.best == 102.0
            side.apply(((101.0, 2.0), (102.0, 0.0)))
