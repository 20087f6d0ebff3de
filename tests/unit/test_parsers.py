"""Binance and Upbit parsers: documented shapes parse exactly, and no input makes them raise."""

from __future__ import annotations

import math

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime.core.errors import FeedError
from runtime.core.events import BookTicker, DepthUpdate, Trade
from runtime.core.frames import DropReason
from runtime.venues.binance.feed import BinanceParser, parse_depth_snapshot, stream_names
from runtime.venues.upbit.feed import UpbitParser, subscription_message
from tests.fixtures import ws_message

BINANCE_SYMBOLS = {"BNBUSDT": "BNB/USDT", "BNBBTC": "BNB/BTC"}
UPBIT_SYMBOLS = {"KRW-BTC": "BTC/KRW"}
TS = 1_700_000_000_000_000_000


@pytest.fixture
def binance() -> BinanceParser:
    return BinanceParser(BINANCE_SYMBOLS)


@pytest.fixture
def upbit() -> UpbitParser:
    return UpbitParser(UPBIT_SYMBOLS)


@pytest.mark.parametrize("name", ["binance_book_ticker", "binance_book_ticker_combined"])
def test_binance_book_ticker_parses_to_normalized_top(binance: BinanceParser, name: str) -> None:
    event = binance.parse(ws_message(name), TS)
    assert event == BookTicker(
        "binance", "BNB/USDT", 25.3519, 31.21, 25.3652, 40.66, 400900217, 0, TS
    )


@pytest.mark.parametrize("name", ["binance_depth_update", "binance_depth_update_combined"])
def test_binance_depth_update_parses_levels_and_update_ids(
    binance: BinanceParser, name: str
) -> None:
    event = binance.parse(ws_message(name), TS)
    assert event == DepthUpdate(
        "binance",
        "BNB/BTC",
        157,
        160,
        ((0.0024, 10.0),),
        ((0.0026, 100.0),),
        False,
        1672515782136,
        TS,
    )


@pytest.mark.parametrize("name", ["binance_trade", "binance_trade_combined"])
def test_binance_trade_maker_buyer_means_seller_aggressor(
    binance: BinanceParser, name: str
) -> None:
    event = binance.parse(ws_message(name), TS)
    assert event == Trade("binance", "BNB/BTC", 0.001, 100.0, "sell", 12345, 1672515782136, TS)


def test_binance_keys_in_another_order_take_the_slow_path_to_the_same_event(
    binance: BinanceParser,
) -> None:
    reordered = b'{"s":"BNBUSDT","A":"40.66","a":"25.3652","B":"31.21","b":"25.3519","u":400900217}'
    event = binance.parse(reordered, TS)
    assert event == binance.parse(ws_message("binance_book_ticker"), TS)
    assert binance.drops.total == 0


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b'{"u":400900217,"s":"BNBUSDT","b":"25.35', DropReason.MALFORMED),
        (b"not json at all", DropReason.MALFORMED),
        (b"[1,2,3]", DropReason.SCHEMA),
        (b'{"u":1,"s":"BNBUSDT","b":"abc","B":"1","a":"2","A":"1"}', DropReason.SCHEMA),
        (b'{"u":1,"s":"BNBUSDT","b":"1"}', DropReason.SCHEMA),
        (b'{"u":1,"s":"DOGEUSDT","b":"1","B":"1","a":"2","A":"1"}', DropReason.UNKNOWN_SYMBOL),
        (b'{"u":1,"s":"BNBUSDT","b":"nan","B":"1","a":"2","A":"1"}', DropReason.NON_FINITE),
        (b'{"u":1,"s":"BNBUSDT","b":"1e309","B":"1","a":"2","A":"1"}', DropReason.NON_FINITE),
        (b'{"u":1,"s":"BNBUSDT","b":1e309,"B":"1","a":"2","A":"1"}', DropReason.NON_FINITE),
        (b'{"u":-1,"s":"BNBUSDT","b":"1","B":"1","a":"2","A":"1"}', DropReason.OUT_OF_RANGE),
        (
            b'{"u":9223372036854775808,"s":"BNBUSDT","b":"1","B":"1","a":"2","A":"1"}',
            DropReason.OUT_OF_RANGE,
        ),
        (b"[" * 5000 + b"]" * 5000, DropReason.MALFORMED),
        (b'{"u":1,"s":"BNBUSDT","b":"-1","B":"1","a":"2","A":"1"}', DropReason.BAD_VALUE),
        (b'{"u":1,"s":"BNBUSDT","b":"3","B":"1","a":"2","A":"1"}', DropReason.BAD_VALUE),
        (b'{"u":1,"s":"BNBUSDT","b":"1","B":"inf","a":"2","A":"1"}', DropReason.NON_FINITE),
        (b'{"u":1,"s":"BNBUSDT","b":"0","B":"1","a":"2","A":"1"}', DropReason.BAD_VALUE),
        (
            b'{"e":"depthUpdate","E":1,"s":"BNBBTC","U":9,"u":5,"b":[],"a":[]}',
            DropReason.BAD_VALUE,
        ),
        (
            b'{"e":"depthUpdate","E":1,"s":"BNBBTC","U":1,"u":2,"b":[["0","1"]],"a":[]}',
            DropReason.BAD_VALUE,
        ),
        # Combined depth diffs take the fast path, whose decoder checks the levels; a frame it
        # refuses is dropped by the slow path with the reason the raw frame gets above.
        (
            b'{"stream":"bnbbtc@depth@100ms","data":{"e":"depthUpdate","E":1,"s":"BNBBTC",'
            b'"U":1,"u":2,"b":[["0","1"]],"a":[]}}',
            DropReason.BAD_VALUE,
        ),
        (
            b'{"stream":"bnbbtc@depth@100ms","data":{"e":"depthUpdate","E":1,"s":"BNBBTC",'
            b'"U":1,"u":2,"b":[["1","-1"]],"a":[]}}',
            DropReason.BAD_VALUE,
        ),
        (
            b'{"stream":"bnbbtc@depth@100ms","data":{"e":"depthUpdate","E":1,"s":"BNBBTC",'
            b'"U":1,"u":2,"b":[],"a":[["nan","1"]]}}',
            DropReason.NON_FINITE,
        ),
        (
            b'{"stream":"bnbbtc@depth@100ms","data":{"e":"depthUpdate","E":1,"s":"BNBBTC",'
            b'"U":1,"u":2,"b":[],"a":[["1","inf"]]}}',
            DropReason.NON_FINITE,
        ),
        (
            b'{"stream":"bnbbtc@depth@100ms","data":{"e":"depthUpdate","E":1,"s":"BNBBTC",'
            b'"U":9,"u":5,"b":[],"a":[]}}',
            DropReason.BAD_VALUE,
        ),
        (
            b'{"stream":"xrpbtc@depth@100ms","data":{"e":"depthUpdate","E":1,"s":"XRPBTC",'
            b'"U":1,"u":2,"b":[],"a":[]}}',
            DropReason.UNKNOWN_SYMBOL,
        ),
        (b'{"e":"kline","E":1,"s":"BNBBTC"}', DropReason.UNKNOWN_TYPE),
        (b'{"stream":"bnbbtc@kline_1m","data":{"e":"kline"}}', DropReason.UNKNOWN_TYPE),
        (b'{"stream":"bnbusdt@bookTicker","data":{"u":1}}', DropReason.SCHEMA),
        (b'{"stream":"bnbbtc@trade","data":{"e":"trade"}}', DropReason.SCHEMA),
        (b'{"u":1}', DropReason.SCHEMA),
        (ws_message("binance_subscribe_response"), DropReason.CONTROL),
        (ws_message("binance_error"), DropReason.VENUE_ERROR),
    ],
)
def test_binance_bad_frames_are_dropped_and_counted_by_reason(
    binance: BinanceParser, raw: bytes, reason: DropReason
) -> None:
    assert binance.parse(raw, TS) is None
    assert binance.drops.counts == {reason: 1}


# The frame of issue #13 and its cousins: msgspec keeps a repeated key's last value.
_DUPLICATES = [
    b'{"u":400900227,"s":"BNBUSDT","s":"BNBBTC","b":"1","B":"1","a":"2","A":"1"}',
    b'{"u":400900227,"\\u0073":"BNBUSDT","s":"BNBBTC","b":"1","B":"1","a":"2","A":"1"}',
    b'{"u":400900227, "s" :"BNBUSDT","s":"BNBBTC","b":"1","B":"1","a":"2","A":"1"}',
    b'{"u":1,"u":400900227,"s":"BNBUSDT","b":"1","B":"1","a":"2","A":"1"}',
    b'{"stream":"bnbusdt@bookTicker","data":'
    b'{"u":400900227,"s":"BNBUSDT","s":"BNBBTC","b":"1","B":"1","a":"2","A":"1"}}',
    b'{"stream":"bnbusdt@bookTicker","stream":"bnbbtc@bookTicker","data":'
    b'{"u":400900227,"s":"BNBUSDT","b":"1","B":"1","a":"2","A":"1"}}',
    b'{"stream":"bnbusdt@bookTicker","data":{"u":1,"s":"BNBUSDT","b":"1","B":"1","a":"2","A":"1"},'
    b'"data":{"u":400900227,"s":"BNBUSDT","b":"1","B":"1","a":"2","A":"1"}}',
    b'{"e":"depthUpdate","E":1,"s":"BNBBTC","U":157,"u":160,"b":[],"a":[],"a":[["1","1"]]}',
    b'{"e":"trade","E":1,"s":"BNBBTC","t":1,"p":"1","q":"1","T":1,"m":true,"m":false}',
    b'{"e":"trade","E":1,"s":"BNBBTC","t":1,"p":"1","q":"1","T":1,"m":true,"M":true,"M":true}',
    b'{"stream":"bnbbtc@trade","data":'
    b'{"e":"trade","E":1,"s":"BNBBTC","t":1,"p":"1","p":"9","q":"1","T":1,"m":true,"M":true}}',
    b'{"u":1,"s":"BNBUSDT","b":"1","B":"1","a":"2","A":"1","x":{"y":1,"y":2}}',
]


@pytest.mark.parametrize("raw", _DUPLICATES)
def test_binance_frame_repeating_a_key_is_dropped_as_duplicate(
    binance: BinanceParser, raw: bytes
) -> None:
    assert binance.parse(raw, TS) is None
    assert binance.drops.counts == {DropReason.DUPLICATE_KEY: 1}


@pytest.mark.parametrize(
    "raw",
    [
        b'{"u":1,"s":"BNBUSDT","b":"1","B":"1","a":"2","A":"1","x":"a:b"}',  # colon in a string
        b'{"u":1,"\\u0073":"BNBUSDT","b":"1","B":"1","a":"2","A":"1"}',  # escaped, not repeated
        b'{"e":"trade","E":1,"s":"BNBBTC","t":1,"p":"1","q":"1","T":1,"m":true}',  # no "M"
    ],
)
def test_binance_frames_that_only_look_like_repeats_are_accepted(
    binance: BinanceParser, raw: bytes
) -> None:
    assert binance.parse(raw, TS) is not None
    assert binance.drops.total == 0


def test_binance_depth_snapshot_body_becomes_snapshot_event() -> None:
    snapshot = parse_depth_snapshot(ws_message("binance_depth_snapshot"), "BNB/BTC", TS)
    assert snapshot.is_snapshot
    assert (snapshot.first_seq, snapshot.last_seq) == (1027024, 1027024)
    assert snapshot.bids == ((4.0, 431.0),)
    assert snapshot.asks == ((4.000002, 12.0),)


def test_binance_depth_snapshot_garbage_raises_feed_error() -> None:
    with pytest.raises(FeedError, match="BNB/BTC"):
        parse_depth_snapshot(b'{"lastUpdateId":"x"}', "BNB/BTC", TS)


def test_binance_stream_names_follow_binance_naming() -> None:
    assert stream_names([("BTCUSDT", True, True), ("ETHUSDT", False, False)]) == [
        "btcusdt@bookTicker",
        "btcusdt@depth@100ms",
        "btcusdt@trade",
        "ethusdt@bookTicker",
    ]


def test_upbit_orderbook_becomes_snapshot_with_timestamp_as_sequence(upbit: UpbitParser) -> None:
    event = upbit.parse(ws_message("upbit_orderbook"), TS)
    assert isinstance(event, DepthUpdate)
    assert event.is_snapshot
    assert event.symbol == "BTC/KRW"
    assert event.last_seq == event.venue_ts_ms == 1746601573804
    assert event.bids[0] == (137001000.0, 0.03656812)
    assert event.asks[0] == (137002000.0, 0.10623869)
    assert len(event.bids) == len(event.asks) == 3


def test_upbit_trade_bid_means_buyer_aggressor(upbit: UpbitParser) -> None:
    event = upbit.parse(ws_message("upbit_trade"), TS)
    assert event == Trade(
        "upbit",
        "BTC/KRW",
        100473000.0,
        0.00016208,
        "buy",
        17303368620470000,
        1730336862047,
        TS,
    )


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (ws_message("upbit_status"), DropReason.CONTROL),
        (ws_message("upbit_error"), DropReason.VENUE_ERROR),
        (b'{"type":"orderbook","code":"KRW-BTC"', DropReason.MALFORMED),
        (b'{"type":"ticker","code":"KRW-BTC"}', DropReason.UNKNOWN_TYPE),
        (b'{"ty":"orderbook","cd":"KRW-BTC"}', DropReason.UNKNOWN_TYPE),
        (
            b'{"type":"orderbook","code":"KRW-ETH","timestamp":1,"orderbook_units":'
            b'[{"ask_price":2,"bid_price":1,"ask_size":1,"bid_size":1}]}',
            DropReason.UNKNOWN_SYMBOL,
        ),
        (
            b'{"type":"orderbook","code":"KRW-BTC","timestamp":1,"orderbook_units":[]}',
            DropReason.BAD_VALUE,
        ),
        (
            b'{"type":"trade","code":"KRW-BTC","timestamp":1,"trade_price":1,'
            b'"trade_volume":1,"ask_bid":"MAYBE","sequential_id":1,"trade_timestamp":1}',
            DropReason.SCHEMA,
        ),
        (
            b'{"type":"trade","code":"KRW-BTC","timestamp":1,"trade_price":1e999,'
            b'"trade_volume":1,"ask_bid":"BID","sequential_id":1,"trade_timestamp":1}',
            DropReason.NON_FINITE,
        ),
        (
            b'{"type":"orderbook","code":"KRW-BTC","code":"KRW-ETH","timestamp":1,'
            b'"orderbook_units":[{"ask_price":2,"bid_price":1,"ask_size":1,"bid_size":1}]}',
            DropReason.DUPLICATE_KEY,
        ),
        (
            b'{"type":"orderbook","code":"KRW-BTC","timestamp":1,"orderbook_units":'
            b'[{"ask_price":2,"bid_price":1,"bid_price":9,"ask_size":1,"bid_size":1}]}',
            DropReason.DUPLICATE_KEY,
        ),
        (
            ws_message("upbit_trade").replace(
                b'"ask_bid":"BID"', b'"ask_bid":"ASK","ask_bid":"BID"'
            ),
            DropReason.DUPLICATE_KEY,
        ),
    ],
)
def test_upbit_bad_frames_are_dropped_and_counted_by_reason(
    upbit: UpbitParser, raw: bytes, reason: DropReason
) -> None:
    assert upbit.parse(raw, TS) is None
    assert upbit.drops.counts == {reason: 1}


def test_upbit_subscription_asks_for_default_format_and_both_types() -> None:
    request = msgspec.json.decode(subscription_message(["KRW-BTC"], ["KRW-BTC"], ticket="t"))
    assert request == [
        {"ticket": "t"},
        {"type": "orderbook", "codes": ["KRW-BTC"]},
        {"type": "trade", "codes": ["KRW-BTC"]},
        {"format": "DEFAULT"},
    ]


# --- fuzzing: whatever arrives, a parser returns an event or None and never raises ---------

_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=6)
    ),
    max_leaves=20,
)


def _mutations(documents: list[bytes]) -> st.SearchStrategy[bytes]:
    """Documented messages, truncated or with one byte changed."""

    def mutate(doc: bytes, cut: int, pos: int, byte: int) -> bytes:
        mutated = bytearray(doc[: max(1, cut % (len(doc) + 1))])
        if mutated:
            mutated[pos % len(mutated)] = byte
        return bytes(mutated)

    return st.builds(
        mutate,
        st.sampled_from(documents),
        st.integers(0, 400),
        st.integers(0, 400),
        st.integers(0, 255),
    )


_BINANCE_DOCS = [
    ws_message(n)
    for n in (
        "binance_book_ticker",
        "binance_book_ticker_combined",
        "binance_depth_update",
        "binance_depth_update_combined",
        "binance_trade",
        "binance_trade_combined",
    )
]
_UPBIT_DOCS = [ws_message(n) for n in ("upbit_orderbook", "upbit_trade")]


def _assert_sane(event: object) -> None:
    if isinstance(event, BookTicker):
        assert 0 < event.bid <= event.ask < math.inf
        assert event.bid_size >= 0 and event.ask_size >= 0
    elif isinstance(event, DepthUpdate):
        for price, size in event.bids + event.asks:
            assert 0 < price < math.inf and 0 <= size < math.inf
    elif isinstance(event, Trade):
        assert 0 < event.price < math.inf and 0 < event.size < math.inf
    else:
        assert event is None


@settings(max_examples=300, deadline=None)
@given(
    raw=st.binary(max_size=200) | _mutations(_BINANCE_DOCS) | _json_values.map(msgspec.json.encode)
)
def test_binance_parser_never_raises_and_emits_only_sane_events(raw: bytes) -> None:
    parser = BinanceParser(BINANCE_SYMBOLS)
    event = parser.parse(raw, TS)
    _assert_sane(event)
    assert (event is None) == (parser.drops.total == 1)


@settings(max_examples=300, deadline=None)
@given(
    raw=st.binary(max_size=200) | _mutations(_UPBIT_DOCS) | _json_values.map(msgspec.json.encode)
)
def test_upbit_parser_never_raises_and_emits_only_sane_events(raw: bytes) -> None:
    parser = UpbitParser(UPBIT_SYMBOLS)
    event = parser.parse(raw, TS)
    _assert_sane(event)
    assert (event is None) == (parser.drops.total == 1)


_DEPTH_NUMBERS = ['"1.5"', '"0"', '"-1"', '"nan"', '"inf"', '"1e400"', "2.5", "0", '"x"', "null"]


@settings(max_examples=300, deadline=None)
@given(
    levels=st.lists(
        st.tuples(st.sampled_from(_DEPTH_NUMBERS), st.sampled_from(_DEPTH_NUMBERS)), max_size=6
    ),
    first=st.integers(0, 10),
    span=st.integers(-2, 5),
    symbol=st.sampled_from(["BNBBTC", "XRPBTC"]),
)
def test_binance_combined_depth_fast_path_agrees_with_the_slow_path(
    levels: list[tuple[str, str]], first: int, span: int, symbol: str
) -> None:
    """The fast path of combined depth diffs (levels checked by the decoder) parses and drops
    exactly as the slow path (levels checked in Python) does, reason for reason."""
    half = len(levels) // 2
    sides = [",".join(f"[{p},{s}]" for p, s in part) for part in (levels[:half], levels[half:])]
    raw = (
        f'{{"stream":"{symbol.lower()}@depth@100ms","data":{{"e":"depthUpdate","E":1,'
        f'"s":"{symbol}","U":{first},"u":{first + span},"b":[{sides[0]}],"a":[{sides[1]}]}}}}'
    ).encode()
    fast, slow = BinanceParser({"BNBBTC": "BNB/BTC"}), BinanceParser({"BNBBTC": "BNB/BTC"})
    assert fast.parse(raw, TS) == slow._parse_slow(raw, TS)
    assert fast.drops.counts == slow.drops.counts
