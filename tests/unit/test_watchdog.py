"""The loop watchdog names the plugin that blocks the event loop."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from runtime.core.events import BookTicker
from runtime.core.orders import OrderIntent
from runtime.engine.plugins import HookTracker, SafeStrategy, deliver_book
from runtime.engine.watchdog import LoopWatchdog
from runtime.sdk import Strategy, StrategyConfig, StrategyContext, Subscription
from runtime.trading.book import Books
from runtime.trading.portfolio import Portfolio
from tests.integration.polling import until

TOP = BookTicker("binance", "BTC/USDT", 1.0, 1.0, 2.0, 1.0, 1, 0, 0)


class SleepyConfig(StrategyConfig):
    pass


class Sleepy(Strategy[SleepyConfig]):
    config_class = SleepyConfig

    def subscriptions(self) -> Sequence[Subscription]:
        return [Subscription("binance", "BTC/USDT")]

    def on_book(self, top: BookTicker, **kwargs: Any) -> list[OrderIntent] | None:
        time.sleep(0.4)  # a plugin doing blocking I/O on the loop
        return None


async def test_a_blocking_plugin_is_detected_and_named() -> None:
    tracker = HookTracker()
    context = StrategyContext("sleepy", Books(), Portfolio().view("sleepy"))
    safe = SafeStrategy(Sleepy(SleepyConfig(), context), tracker=tracker)
    watchdog = LoopWatchdog(tracker, threshold_s=0.05, interval_s=0.01)
    watchdog.start()
    heartbeat = asyncio.create_task(watchdog.heartbeat())
    try:
        await asyncio.sleep(0)  # a yield, not a wait: the heartbeat runs to its first sleep
        deliver_book([safe], TOP, lambda _safe, _intents, _at: None)
        # The thread names the plugin during the block; the heartbeat measures the lag once it
        # wakes after it. Both are facts to wait for, not moments to guess.
        await until(lambda: watchdog.max_lag_s >= 0.3, 5, "the heartbeat to measure the lag")
    finally:
        heartbeat.cancel()
        watchdog.stop()
    assert watchdog.blocked_by["sleepy"] == 1
