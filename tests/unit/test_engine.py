"""The engine without sockets: frames in through the real parsers, paper fills out."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, ClassVar

import msgspec
import pytest

from runtime.config import EngineConfig, load_config
from runtime.core.errors import ConfigError
from runtime.core.events import BookTicker
from runtime.core.orders import OrderIntent
from runtime.engine.engine import Engine
from runtime.engine.plugins import PluginInfo, PluginRegistry, discover
from runtime.sdk import Strategy, StrategyConfig, Subscription
from tests.unit.market_kit import binance_ticker, upbit_book

RATE = 1_400.0
NO_LATENCY = {"paper": {"latency_ms": 0.0, "latency_jitter_ms": 0.0}}


def config(**overrides: Any) -> EngineConfig:
    return load_config(env={}, overrides=NO_LATENCY | overrides)


def feed_dislocation(engine: Engine, premium: float) -> None:
    """Binance BTC at 60,000 and Upbit BTC at ``premium`` over it, converted at RATE."""
    now = time.time_ns()
    upbit = engine.frame_handler("upbit")
    binance = engine.frame_handler("binance")
    upbit(upbit_book("KRW-USDT", RATE - 0.5, RATE + 0.5, 1), now)
    binance(binance_ticker(59_995.0, 60_000.0, 1), now)
    krw = 60_000.0 * (1 + premium) * RATE
    upbit(upbit_book("KRW-BTC", krw, krw * 1.0002, 2, size=0.05), now)


def test_a_dislocation_becomes_two_paper_fills_and_a_profit() -> None:
    engine = Engine(config())
    feed_dislocation(engine, premium=0.006)
    stats = engine.stats.by_strategy["xex-btc"]
    assert (stats.opportunities, stats.orders, stats.fills, stats.blocked) == (1, 2, 2, 0)
    pnl = engine.portfolio.pnl("xex-btc", engine.prices)
    assert pnl is not None and pnl > 0
    assert engine.risk.open_orders("xex-btc") == 0
    assert engine.stats.frame_count() == 3


def test_no_dislocation_no_orders() -> None:
    engine = Engine(config())
    feed_dislocation(engine, premium=0.001)
    assert engine.stats.by_strategy["xex-btc"].orders == 0


def test_kill_switch_blocks_the_batch_and_nothing_fills() -> None:
    engine = Engine(config())
    engine.kill_switch.engage("test")
    feed_dislocation(engine, premium=0.006)
    stats = engine.stats.by_strategy["xex-btc"]
    assert (stats.orders, stats.blocked, stats.fills) == (0, 2, 0)
    assert stats.last_blocked == "leg 1: kill_switch: test"


class BrokenConfig(StrategyConfig):
    pass


class Broken(Strategy[BrokenConfig]):
    config_class = BrokenConfig

    def subscriptions(self) -> Sequence[Subscription]:
        return [Subscription("binance", "BTC/USDT")]

    def on_book(self, top: BookTicker, **kwargs: Any) -> list[OrderIntent] | None:
        raise RuntimeError("bug in plugin")


def test_a_failing_plugin_is_quarantined_while_the_others_trade() -> None:
    registry = discover()
    registry.plugins["broken"] = PluginInfo("broken", Broken, "test")
    strategies = [
        {"plugin": "broken", "id": "broken"},
        {"plugin": "cross_exchange", "id": "xex-btc"},
    ]
    engine = Engine(config(strategies=strategies, isolation={"max_failures": 3}), registry)
    handler = engine.frame_handler("binance")
    for update_id in range(1, 6):
        handler(binance_ticker(59_995.0, 60_000.0, update_id), time.time_ns())
    broken = engine.strategies[0]
    assert broken.quarantined
    assert broken.errors["on_book"] == 3  # no events after quarantine
    feed_dislocation(engine, premium=0.006)
    assert engine.stats.by_strategy["xex-btc"].fills == 2
    assert engine.health()["strategies"] == {"broken": "quarantined", "xex-btc": "active"}


def test_unknown_plugin_and_bad_strategy_config_name_the_field() -> None:
    bad = [
        {"plugin": "nope", "id": "a"},
        {"plugin": "cross_exchange", "id": "b", "config": {"min_spread_bps": 1.0}},
    ]
    with pytest.raises(ConfigError) as excinfo:
        Engine(config(strategies=bad))
    message = str(excinfo.value)
    assert "strategies.0.plugin: no strategy plugin named 'nope'" in message
    assert "strategies.1.config.min_spread_bps (1) must exceed the sum of taker fees" in message


def test_subscription_to_an_unconfigured_venue_is_a_config_error() -> None:
    layered = load_config(env={}, overrides=NO_LATENCY)
    venues = {"binance": layered.venues["binance"]}
    narrowed = layered.model_copy(update={"venues": venues, "strategies": layered.strategies[:1]})
    with pytest.raises(ConfigError, match="venue 'upbit' is not configured"):
        Engine(narrowed)


class Ticking(Broken):
    timer_interval_s = 1.0
    calls: ClassVar[list[int]] = []

    def on_book(self, top: BookTicker, **kwargs: Any) -> list[OrderIntent] | None:
        return None

    def on_timer(self, now_ns: int, **kwargs: Any) -> list[OrderIntent] | None:
        Ticking.calls.append(now_ns)
        return None


def test_timers_fire_at_their_interval() -> None:
    registry = PluginRegistry({"ticking": PluginInfo("ticking", Ticking, "test")})
    engine = Engine(config(strategies=[{"plugin": "ticking", "id": "t"}]), registry)
    for now_s in (0.0, 0.5, 1.0, 1.2, 2.5):
        engine.tick_timers(int(now_s * 1e9))
    assert Ticking.calls == [0, 1_000_000_000, 2_500_000_000]


def test_depth_gap_is_counted_and_the_book_waits_for_a_snapshot() -> None:
    strategies = [{"plugin": "cross_exchange", "id": "x", "config": {"use_depth": True}}]
    engine = Engine(config(strategies=strategies))
    assert engine.subscriptions["binance"]["BTC/USDT"].depth
    handler = engine.frame_handler("binance")
    diff = {
        "e": "depthUpdate",
        "E": 1,
        "s": "BTCUSDT",
        "U": 10,
        "u": 12,
        "b": [["1.0", "1.0"]],
        "a": [["2.0", "1.0"]],
    }
    handler(msgspec.json.encode(diff), time.time_ns())
    assert engine.books.out_of_sync() == [("binance", "BTC/USDT")]


def test_summary_reports_latency_and_per_strategy_rows() -> None:
    engine = Engine(config())
    feed_dislocation(engine, premium=0.006)
    handler = engine.frame_handler("binance")
    for update_id in range(2, 15):  # latency is sampled on one frame in eight
        handler(binance_ticker(59_995.0, 60_000.0, update_id), time.time_ns())
    summary = engine.summary()
    assert summary.frames == 16
    assert summary.p99_us is not None and summary.p99_us >= 0
    assert [row.name for row in summary.strategies] == ["xex-btc", "tri-usdt", "pairs-eth-btc"]
