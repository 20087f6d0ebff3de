"""Triangular arbitrage: cycle discovery, net-of-fee returns, and leg sizes carried through."""

from __future__ import annotations

import pytest

from runtime.core.errors import ConfigError
from strategies.triangular import Leg, find_cycles
from tests.unit.market_kit import Rig, top

CONFIG = """
venue = "binance"
symbols = ["BTC/USDT", "ETH/BTC", "ETH/USDT"]
start_asset = "USDT"
taker_fee_bps = 10.0
min_profit_bps = 5.0
max_notional = 1000.0
min_notional = 10.0
"""
BALANCES = {"binance": {"USDT": 50_000.0, "BTC": 1.0, "ETH": 10.0}}
KEEP = 1 - 10e-4


def rig(config: str = CONFIG) -> Rig:
    r = Rig("triangular", config, BALANCES)
    r.feed(top("binance", "BTC/USDT", 60_000.0, 60_001.0, 10.0, ts_ms=1))
    r.feed(top("binance", "ETH/USDT", 3_000.0, 3_000.3, 100.0, ts_ms=1))
    return r


def test_find_cycles_yields_both_directions_from_the_start_asset() -> None:
    cycles = find_cycles(["BTC/USDT", "ETH/BTC", "ETH/USDT"], "USDT")
    assert (
        Leg("BTC/USDT", "buy", "USDT", "BTC"),
        Leg("ETH/BTC", "buy", "BTC", "ETH"),
        Leg("ETH/USDT", "sell", "ETH", "USDT"),
    ) in cycles
    assert (
        Leg("ETH/USDT", "buy", "USDT", "ETH"),
        Leg("ETH/BTC", "sell", "ETH", "BTC"),
        Leg("BTC/USDT", "sell", "BTC", "USDT"),
    ) in cycles
    assert len(cycles) == 2


def test_cheap_cross_rate_sends_three_chained_legs() -> None:
    r = rig()
    intents = r.feed(top("binance", "ETH/BTC", 0.0497, 0.0498, 100.0, ts_ms=2))
    assert intents is not None
    assert [(i.symbol, i.side) for i in intents] == [
        ("BTC/USDT", "buy"),
        ("ETH/BTC", "buy"),
        ("ETH/USDT", "sell"),
    ]
    btc = 1000.0 / 60_001.0
    eth = btc * KEEP / 0.0498
    assert intents[0].quantity == pytest.approx(btc, rel=1e-7)
    assert intents[1].quantity == pytest.approx(eth, rel=1e-7)
    assert intents[2].quantity == pytest.approx(eth * KEEP, rel=1e-7)
    [opportunity] = r.opportunities
    gross = 3_000.0 / (60_001.0 * 0.0498)
    assert opportunity.edge_bps == pytest.approx((gross * KEEP**3 - 1) * 1e4)
    assert opportunity.expected_profit == pytest.approx(1000.0 * (gross * KEEP**3 - 1), rel=1e-6)


def test_rich_cross_rate_runs_the_reverse_cycle() -> None:
    intents = rig().feed(top("binance", "ETH/BTC", 0.0503, 0.0504, 100.0, ts_ms=2))
    assert intents is not None
    assert [(i.symbol, i.side) for i in intents] == [
        ("ETH/USDT", "buy"),
        ("ETH/BTC", "sell"),
        ("BTC/USDT", "sell"),
    ]


def test_consistent_prices_leave_nothing_after_fees() -> None:
    r = rig()
    assert r.feed(top("binance", "ETH/BTC", 0.04999, 0.05001, 100.0, ts_ms=2)) is None
    assert r.opportunities == []


def test_a_thin_leg_limits_the_start_amount() -> None:
    r = rig()
    intents = r.feed(top("binance", "ETH/BTC", 0.0497, 0.0498, 0.05, ts_ms=2))
    assert intents is not None
    assert intents[1].quantity == pytest.approx(0.05, rel=1e-6)


def test_start_amount_below_minimum_is_skipped() -> None:
    r = rig()
    assert r.feed(top("binance", "ETH/BTC", 0.0497, 0.0498, 0.0001, ts_ms=2)) is None


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ('symbols = ["BTC/USDT", "ETH/USDT", "SOL/USDT"]', "do not form a round trip from USDT"),
        ('symbols = ["BTC/USDT", "BTC/USDT", "ETH/USDT"]', "three different pairs"),
        ('start_asset = "KRW"', "do not form a round trip from KRW"),
        ("min_profit_bps = 0", "min_profit_bps: Input should be greater than 0"),
    ],
)
def test_invalid_config_errors_name_the_problem(override: str, message: str) -> None:
    key = override.split(" = ")[0]
    lines = [line for line in CONFIG.splitlines() if not line.startswith(key + " ")]
    with pytest.raises(ConfigError, match=message):
        Rig("triangular", "\n".join([*lines, override]), BALANCES)
