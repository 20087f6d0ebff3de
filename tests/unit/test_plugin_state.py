"""Plugin state across restarts: ``on_save_state`` / ``on_restore_state`` through the wrapper."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from runtime.core.errors import PluginError
from runtime.engine.plugins import PluginInfo, SafeStrategy, build_strategy, check_strategy_class
from runtime.sdk import Strategy, StrategyConfig, StrategyContext, Subscription
from runtime.trading.book import Books
from runtime.trading.portfolio import Portfolio


class CounterConfig(StrategyConfig):
    pass


class Counter(Strategy[CounterConfig]):
    """Counts something and wants to keep counting after a restart."""

    config_class = CounterConfig

    def __init__(self, config: CounterConfig, context: StrategyContext) -> None:
        super().__init__(config, context)
        self.count = 0

    def subscriptions(self) -> Sequence[Subscription]:
        return [Subscription("binance", "BTC/USDT")]

    def on_save_state(self, **kwargs: Any) -> dict[str, Any] | None:
        return {"count": self.count}

    def on_restore_state(self, state: dict[str, Any], **kwargs: Any) -> None:
        self.count = int(state["count"])


class Unencodable(Counter):
    def on_save_state(self, **kwargs: Any) -> dict[str, Any] | None:
        return {"when": object()}


class Broken(Counter):
    def on_restore_state(self, state: dict[str, Any], **kwargs: Any) -> None:
        raise KeyError("schema changed")


def wrapped(cls: type[Counter]) -> SafeStrategy:
    context = StrategyContext("c1", Books(), Portfolio().view("c1"))
    return SafeStrategy(build_strategy(PluginInfo("counter", cls, "test"), {}, context))


def test_state_goes_out_and_comes_back() -> None:
    saved = wrapped(Counter)
    saved.strategy.count = 41  # type: ignore[attr-defined]
    state = saved.save_state()
    assert state == {"count": 41}
    restored = wrapped(Counter)
    restored.restore_state(state)
    assert restored.strategy.count == 41  # type: ignore[attr-defined]


def test_a_strategy_without_state_saves_none() -> None:
    class Plain(Strategy[CounterConfig]):
        config_class = CounterConfig

        def subscriptions(self) -> Sequence[Subscription]:
            return []

    context = StrategyContext("p1", Books(), Portfolio().view("p1"))
    safe = SafeStrategy(build_strategy(PluginInfo("plain", Plain, "test"), {}, context))
    assert safe.save_state() is None
    safe.restore_state({"ignored": True})
    assert safe.error_count == 0


def test_state_that_is_not_json_is_an_error_of_the_plugin_not_of_the_engine() -> None:
    safe = wrapped(Unencodable)
    assert safe.save_state() is None
    assert safe.errors["on_save_state"] == 1


def test_a_failing_restore_is_counted_and_the_strategy_starts_fresh() -> None:
    safe = wrapped(Broken)
    safe.restore_state({"count": 3})
    assert safe.errors["on_restore_state"] == 1
    assert safe.strategy.count == 0  # type: ignore[attr-defined]


def test_state_hooks_must_take_kwargs() -> None:
    class Strict(Counter):
        def on_save_state(self) -> dict[str, Any] | None:  # type: ignore[override]
            return None

    with pytest.raises(PluginError, match="on_save_state must accept"):
        check_strategy_class(Strict)
