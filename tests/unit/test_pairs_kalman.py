"""Pairs trading: the Kalman hedge ratio converges, and spread shocks open and close positions."""

from __future__ import annotations

import math
import random

import pytest

from runtime.core.errors import ConfigError
from runtime.core.orders import Fill, OrderIntent
from strategies.pairs_kalman import KalmanHedge
from tests.unit.market_kit import Rig, top

CONFIG = """
venue = "binance"
symbol_y = "ETH/USDT"
symbol_x = "BTC/USDT"
delta = 1e-9
observation_var = 1e-6
entry_z = 2.0
exit_z = 1.0
warmup_samples = 300
sample_interval_ms = 100
notional = 1000.0
"""
BALANCES = {"binance": {"USDT": 100_000.0, "ETH": 10.0, "BTC": 1.0}}
BETA, ALPHA = 0.8, -0.75


def cointegrated(n: int, seed: int = 7) -> list[tuple[float, float]]:
    """(log x, log y) with log y = BETA * log x + ALPHA + a small mean-reverting spread."""
    rng = random.Random(seed)
    log_x = math.log(60_000.0)
    spread = 0.0
    series = []
    for _ in range(n):
        log_x += rng.gauss(0.0, 0.001)
        spread = 0.9 * spread + rng.gauss(0.0, 0.0005)
        series.append((log_x, BETA * log_x + ALPHA + spread))
    return series


def test_kalman_hedge_converges_to_the_true_ratio() -> None:
    hedge = KalmanHedge(delta=1e-9, observation_var=1e-6)
    series = cointegrated(3_000)
    x0, y0 = series[0]
    for log_x, log_y in series:
        hedge.update(log_x - x0, log_y - y0)
    assert hedge.beta == pytest.approx(BETA, abs=0.05)
    assert hedge.updates == 3_000


def test_kalman_variance_stays_positive() -> None:
    hedge = KalmanHedge(delta=1e-4, observation_var=1e-6)
    for log_x, log_y in cointegrated(500, seed=3):
        _, variance = hedge.update(log_x, log_y)
        assert variance > 0
    assert hedge.p00 > 0 and hedge.p11 > 0


def feed_series(
    r: Rig, series: list[tuple[float, float]], start_ms: int
) -> list[list[OrderIntent]]:
    actions = []
    for step, (log_x, log_y) in enumerate(series):
        ts = start_ms + step * 100
        x, y = math.exp(log_x), math.exp(log_y)
        r.books.on_ticker(top("binance", "BTC/USDT", x * 0.9999, x * 1.0001, seq=ts, ts_ms=ts))
        intents = r.feed(top("binance", "ETH/USDT", y * 0.9999, y * 1.0001, seq=ts, ts_ms=ts))
        if intents:
            actions.append(intents)
    return actions


def fill_all(r: Rig, intents: list[OrderIntent], price: float = 1.0) -> None:
    for intent in intents:
        fill = Fill(
            intent.strategy,
            intent.client_order_id,
            intent.venue,
            intent.symbol,
            intent.side,
            intent.quantity,
            price,
            0.0,
            "USDT",
            0,
        )
        r.strategy.on_fill(fill)


def test_spread_shock_opens_a_hedged_short_and_reversion_closes_it() -> None:
    r = Rig("pairs_kalman", CONFIG, BALANCES)
    calm = cointegrated(300)
    assert feed_series(r, calm, 0) == []  # warm-up: no trading
    log_x, log_y = calm[-1]
    shocked = [(log_x, log_y + 0.01)]  # y jumps 1 %, far beyond the spread's noise
    [opened] = feed_series(r, shocked, 30_000)
    y_leg, x_leg = opened
    assert (y_leg.symbol, y_leg.side) == ("ETH/USDT", "sell")
    assert (x_leg.symbol, x_leg.side) == ("BTC/USDT", "buy")
    beta = r.strategy.filter.beta
    x_price = math.exp(log_x)
    assert x_leg.quantity * x_price == pytest.approx(beta * 1000.0, rel=1e-3)
    assert len(r.opportunities) == 1
    fill_all(r, opened)
    closes = feed_series(r, [(log_x, log_y)] * 3, 30_100)
    assert closes, "spread reverted but the position was not closed"
    close = closes[0]
    assert {(i.symbol, i.side, i.quantity) for i in close} == {
        ("ETH/USDT", "buy", y_leg.quantity),
        ("BTC/USDT", "sell", x_leg.quantity),
    }
    assert r.strategy.position == 0


def test_samples_are_rate_limited_by_time_not_messages() -> None:
    r = Rig("pairs_kalman", CONFIG, BALANCES)
    r.books.on_ticker(top("binance", "BTC/USDT", 59_999, 60_001, ts_ms=0))
    for ms in range(0, 1_000, 10):  # 100 updates within one second
        r.feed(top("binance", "ETH/USDT", 2_999, 3_001, seq=ms + 1, ts_ms=ms))
    assert r.strategy.filter.updates == 10


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("exit_z = 2.5", r"exit_z \(2.5\) must be below entry_z \(2\)"),
        ('symbol_x = "BTC/KRW"', "must share a quote"),
        ("delta = 1.5", "delta: Input should be less than 1"),
    ],
)
def test_invalid_config_errors_name_the_field(override: str, message: str) -> None:
    key = override.split(" = ")[0]
    lines = [line for line in CONFIG.splitlines() if not line.startswith(key + " ")]
    with pytest.raises(ConfigError, match=message):
        Rig("pairs_kalman", "\n".join([*lines, override]), BALANCES)
