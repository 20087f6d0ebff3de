"""The engine in a process of its own, for tests that kill it: ``python -m
tests.integration.engine_child CONFIG``.

It runs what ``arbfleet run --config CONFIG`` runs (same config loading, logging, signal
handling), with one more strategy in the registry: ``burst``, which sends a steady stream of
small immediate-or-cancel orders, buying and selling in turn at a price through the top of
book, so nearly every order fills and the account stays close to flat. ``active = false`` (as
``ARBFLEET_STRATEGIES__0__CONFIG__ACTIVE=false``) makes a restarted engine send nothing new.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import PositiveFloat, PositiveInt

from runtime.config import load_config
from runtime.core.events import Side
from runtime.core.logging import configure
from runtime.core.orders import OrderIntent
from runtime.engine.plugins import PluginInfo, discover
from runtime.node import Node, serve
from runtime.sdk import Strategy, StrategyConfig, Subscription


class BurstConfig(StrategyConfig):
    venue: str = "binance"
    symbol: str = "BTC/USDT"
    quantity: PositiveFloat = 0.001
    orders_per_tick: PositiveInt = 2
    through_bps: PositiveFloat = 20.0
    active: bool = True


class Burst(Strategy[BurstConfig]):
    """Orders on every timer tick; see the module docstring."""

    config_class = BurstConfig
    timer_interval_s = 0.05

    def subscriptions(self) -> Sequence[Subscription]:
        return [Subscription(self.config.venue, self.config.symbol)]

    def on_timer(self, now_ns: int, **kwargs: Any) -> list[OrderIntent] | None:
        config = self.config
        top = self.market.top(config.venue, config.symbol)
        if not config.active or top is None:
            return None
        through = config.through_bps * 1e-4
        intents = []
        for _ in range(config.orders_per_tick):
            side: Side = "buy" if self.fleet_sequence % 2 == 0 else "sell"
            price = top.ask * (1 + through) if side == "buy" else top.bid * (1 - through)
            intents.append(
                self.fleet_order(config.venue, config.symbol, side, config.quantity, price)
            )
        return intents


def main(argv: list[str]) -> int:
    config = load_config(Path(argv[0]))
    configure(config.log_level, stream=sys.stderr)
    registry = discover()
    registry.plugins["burst"] = PluginInfo("burst", Burst, "tests.integration.engine_child")
    node = Node(config, registry)
    asyncio.run(serve(node, None, None))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
