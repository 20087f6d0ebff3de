"""Cross-exchange arbitrage: rate conversion, threshold over fees, sizes limited by books."""

from __future__ import annotations

import pytest

from runtime.core.errors import ConfigError
from runtime.core.events import DepthUpdate
from tests.unit.market_kit import Rig, top

CONFIG = """
venue_a = "binance"
symbol_a = "BTC/USDT"
venue_b = "upbit"
symbol_b = "BTC/KRW"
rate_venue = "upbit"
rate_symbol = "USDT/KRW"
taker_fee_bps_a = 10.0
taker_fee_bps_b = 5.0
min_spread_bps = 30.0
max_quantity = 0.5
cooldown_ms = 100
"""
BALANCES = {"binance": {"USDT": 1_000_000.0, "BTC": 10.0}, "upbit": {"KRW": 2e9, "BTC": 10.0}}
RATE = 1_400.0


def rig(config: str = CONFIG, balances: dict[str, dict[str, float]] = BALANCES) -> Rig:
    test_rig = Rig("cross_exchange", config, balances)
    test_rig.feed(top("upbit", "USDT/KRW", RATE - 1, RATE + 1, 1e6, ts_ms=1))
    return test_rig


def krw(usdt: float) -> float:
    return usdt * RATE


def test_upbit_rich_by_more_than_threshold_buys_binance_and_sells_upbit() -> None:
    r = rig()
    r.feed(top("binance", "BTC/USDT", 59_990.0, 60_000.0, 0.2, ts_ms=2))
    # Upbit bid at 60_240 USDT equivalent: 40 bps over Binance's ask.
    intents = r.feed(top("upbit", "BTC/KRW", krw(60_240.0), krw(60_260.0), 0.3, ts_ms=3))
    assert intents is not None
    buy, sell = intents
    assert (buy.venue, buy.symbol, buy.side) == ("binance", "BTC/USDT", "buy")
    assert (sell.venue, sell.symbol, sell.side) == ("upbit", "BTC/KRW", "sell")
    assert buy.quantity == sell.quantity == 0.2  # Binance's ask size is the smaller book
    assert buy.limit_price == 60_000.0
    assert sell.limit_price == pytest.approx(krw(60_240.0))
    [opportunity] = r.opportunities
    assert opportunity.edge_bps == pytest.approx(40.0, abs=0.01)
    expected = 0.2 * (60_240.0 * (1 - 5e-4) - 60_000.0 * (1 + 1e-3))
    assert opportunity.expected_profit == pytest.approx(expected)
    assert opportunity.expected_profit > 0


def test_binance_rich_buys_upbit_and_sells_binance() -> None:
    r = rig()
    r.feed(top("upbit", "BTC/KRW", krw(59_700.0), krw(59_800.0), 1.0, ts_ms=2))
    intents = r.feed(top("binance", "BTC/USDT", 60_100.0, 60_110.0, 1.0, ts_ms=3))
    assert intents is not None
    assert [(i.venue, i.side) for i in intents] == [("upbit", "buy"), ("binance", "sell")]
    assert intents[0].quantity == 0.5  # max_quantity


def test_spread_below_threshold_does_nothing() -> None:
    r = rig()
    r.feed(top("binance", "BTC/USDT", 59_990.0, 60_000.0, ts_ms=2))
    assert r.feed(top("upbit", "BTC/KRW", krw(60_170.0), krw(60_200.0), ts_ms=3)) is None
    assert r.opportunities == []


def test_size_is_limited_by_balances_on_both_venues() -> None:
    r = rig(balances={"binance": {"USDT": 600.0}, "upbit": {"BTC": 1.0}})
    r.feed(top("binance", "BTC/USDT", 59_990.0, 60_000.0, 5.0, ts_ms=2))
    intents = r.feed(top("upbit", "BTC/KRW", krw(60_300.0), krw(60_400.0), 5.0, ts_ms=3))
    assert intents is not None and intents[0].quantity == pytest.approx(0.01)


def test_stale_leg_and_cooldown_prevent_action() -> None:
    r = rig()
    r.feed(top("binance", "BTC/USDT", 59_990.0, 60_000.0, ts_ms=2))
    # Upbit quote arrives 5 s after Binance's: Binance's top may be long gone.
    assert r.feed(top("upbit", "BTC/KRW", krw(60_300.0), krw(60_400.0), ts_ms=5_002)) is None
    assert r.feed(top("binance", "BTC/USDT", 59_990.0, 60_000.0, seq=2, ts_ms=5_003)) is not None
    again = top("binance", "BTC/USDT", 59_990.0, 60_000.0, seq=3, ts_ms=5_050)
    assert r.feed(again) is None  # cooldown: the fills of the first action are not in yet
    later = top("binance", "BTC/USDT", 59_990.0, 60_000.0, seq=4, ts_ms=5_104)
    assert r.feed(later) is not None


def test_fixed_rate_replaces_missing_rate_book() -> None:
    config = CONFIG.replace(
        'rate_symbol = "USDT/KRW"', 'rate_symbol = "USDT/KRW"\nfixed_rate = 1300.0'
    )
    r = Rig("cross_exchange", config, BALANCES)  # no USDT/KRW top fed
    r.feed(top("binance", "BTC/USDT", 59_990.0, 60_000.0, ts_ms=2))
    intents = r.feed(top("upbit", "BTC/KRW", 60_300.0 * 1300, 60_400.0 * 1300, ts_ms=3))
    assert intents is not None


def test_depth_ladders_size_the_trade_while_the_spread_holds() -> None:
    config = CONFIG.replace("max_quantity = 0.5", "max_quantity = 10.0") + "use_depth = true\n"
    r = rig(config)
    asks = ((60_000.0, 0.1), (60_050.0, 0.2), (60_400.0, 5.0))
    bids = ((krw(60_300.0), 0.25), (krw(60_280.0), 1.0))
    r.books.on_depth(
        DepthUpdate("binance", "BTC/USDT", 1, 1, ((59_990.0, 1.0),), asks, True, 0, 2_000_000)
    )
    r.books.on_depth(
        DepthUpdate("upbit", "BTC/KRW", 1, 1, bids, ((krw(60_500.0), 1.0),), True, 0, 3_000_000)
    )
    intents = r.strategy.on_book(r.books.top("upbit", "BTC/KRW"))  # type: ignore[arg-type]
    assert intents is not None
    # 0.1 @ 60_000 and 0.2 @ 60_050 clear 30 bps against bids at 60_300 / 60_280; 60_400 does not.
    assert intents[0].quantity == pytest.approx(0.3)
    assert intents[0].limit_price == 60_050.0
    assert intents[1].limit_price == pytest.approx(krw(60_280.0))


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("min_spread_bps = 12.0", r"min_spread_bps \(12\) must exceed the sum of taker fees"),
        ('symbol_b = "ETH/KRW"', "must trade the same asset"),
        ('rate_symbol = "BTC/KRW"', "rate_symbol must quote USDT against KRW"),
        ('venue_b = "kraken"', r"venue_b: Value error|venue_b: 'kraken' is not one of"),
        ("max_quantity = -1", "max_quantity: Input should be greater than 0"),
        ("surprise = 1", "surprise: Extra inputs are not permitted"),
    ],
)
def test_invalid_config_errors_name_the_field(override: str, message: str) -> None:
    key = override.split(" = ")[0]
    lines = [line for line in CONFIG.splitlines() if not line.startswith(key + " ")]
    with pytest.raises(ConfigError, match=message):
        Rig("cross_exchange", "\n".join([*lines, override]), BALANCES)
