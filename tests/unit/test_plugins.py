"""Plugin API: discovery through entry points, contract checks, and isolation of failures."""

from __future__ import annotations

from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
from pydantic import ConfigDict

from runtime.core.errors import ConfigError, PluginError
from runtime.core.events import BookTicker
from runtime.core.orders import OrderIntent
from runtime.engine.plugins import (
    HookTracker,
    PluginInfo,
    SafeStrategy,
    build_strategy,
    check_strategy_class,
    config_errors,
    discover,
)
from runtime.sdk import ENTRY_POINT_GROUP, Strategy, StrategyConfig, StrategyContext, Subscription
from runtime.trading.book import Books

TOP = BookTicker("binance", "BTC/USDT", 100.0, 1.0, 101.0, 1.0, 1, 0, 0)

PLUGIN_MODULE = """
from typing import Any
from runtime.sdk import Strategy, StrategyConfig, Subscription

class EchoConfig(StrategyConfig):
    symbol: str = "BTC/USDT"

class Echo(Strategy[EchoConfig]):
    config_class = EchoConfig
    version = "2.1.0"

    def subscriptions(self) -> list[Subscription]:
        return [Subscription("binance", self.config.symbol)]

class NoKwargs(Echo):
    def on_book(self, top):
        return None

class NotAStrategy:
    pass
"""


class NoBalances:
    def balance(self, venue: str, asset: str) -> float:
        return 0.0


def context(instance_id: str = "s1") -> StrategyContext:
    return StrategyContext(instance_id, Books(), NoBalances(), session="t")


def fake_distribution(
    tmp_path: Path, name: str, entry_points: dict[str, str]
) -> list[metadata.EntryPoint]:
    """A distribution on disk, as pip would leave it, declaring ``entry_points``."""
    dist_info = tmp_path / f"{name}-1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    lines = [f"[{ENTRY_POINT_GROUP}]"] + [f"{k} = {v}" for k, v in entry_points.items()]
    (dist_info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    return [
        ep
        for dist in metadata.distributions(path=[str(tmp_path)])
        for ep in dist.entry_points
        if ep.group == ENTRY_POINT_GROUP
    ]


@pytest.fixture
def plugin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    module = tmp_path / "fake_arbfleet_plugins.py"
    module.write_text(PLUGIN_MODULE)
    (tmp_path / "broken_arbfleet_plugin.py").write_text("raise RuntimeError('import-time boom')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_discovery_loads_good_plugins_and_records_each_broken_one(plugin_dir: Path) -> None:
    entry_points = fake_distribution(
        plugin_dir,
        "fake_plugins",
        {
            "echo": "fake_arbfleet_plugins:Echo",
            "broken": "broken_arbfleet_plugin:Anything",
            "missing": "fake_arbfleet_plugins:DoesNotExist",
            "not_strategy": "fake_arbfleet_plugins:NotAStrategy",
            "no_kwargs": "fake_arbfleet_plugins:NoKwargs",
        },
    )
    registry = discover(entry_points=entry_points)
    assert list(registry.plugins) == ["echo"]
    assert registry.plugins["echo"].version == "2.1.0"
    assert "fake_plugins 1.0" in registry.plugins["echo"].source
    reasons = {f.name: f.reason for f in registry.failures}
    assert "import-time boom" in reasons["broken"]
    assert "DoesNotExist" in reasons["missing"]
    assert "not a subclass" in reasons["not_strategy"]
    assert "**kwargs" in reasons["no_kwargs"]
    with pytest.raises(PluginError, match="import-time boom"):
        registry.get("broken")
    with pytest.raises(PluginError, match="installed: echo"):
        registry.get("nope")


def test_discovery_skips_blocked_and_duplicate_names(plugin_dir: Path) -> None:
    (plugin_dir / "a").mkdir()
    (plugin_dir / "b").mkdir()
    echo = "fake_arbfleet_plugins:Echo"
    first = fake_distribution(plugin_dir / "a", "first", {"echo": echo})
    second = fake_distribution(plugin_dir / "b", "second", {"echo": echo, "other": echo})
    registry = discover(entry_points=first + second, blocked=["other"])
    assert "first 1.0" in registry.plugins["echo"].source
    reasons = {(f.name, f.source.split()[0]): f.reason for f in registry.failures}
    assert "already taken" in reasons[("echo", "second")]
    assert reasons[("other", "second")] == "blocked by configuration"


def test_installed_distribution_declares_the_shipped_strategies() -> None:
    registry = discover()
    assert {"cross_exchange", "triangular", "pairs_kalman"} <= set(registry.plugins)
    assert registry.failures == []


class TinyConfig(StrategyConfig):
    size: float = 1.0


class Tiny(Strategy[TinyConfig]):
    config_class = TinyConfig

    def subscriptions(self) -> Sequence[Subscription]:
        return [Subscription("binance", "BTC/USDT")]

    def on_book(self, top: BookTicker, **kwargs: Any) -> list[OrderIntent] | None:
        return [self.fleet_order(top.venue, top.symbol, "buy", self.config.size)]


def test_engine_owned_names_cannot_be_defined_by_a_plugin() -> None:
    with pytest.raises(PluginError, match="fleet_order"):

        class Sneaky(Tiny):
            def fleet_order(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
                return None


def test_abstract_hook_must_be_implemented() -> None:
    class Lazy(Strategy[TinyConfig]):
        config_class = TinyConfig

    with pytest.raises(PluginError, match="subscriptions"):
        check_strategy_class(Lazy)


def test_config_class_must_be_frozen() -> None:
    class Loose(StrategyConfig):
        model_config = ConfigDict(frozen=False)

    class UsesLoose(Tiny):
        config_class = Loose

    with pytest.raises(PluginError, match="frozen"):
        check_strategy_class(UsesLoose)


def test_interface_version_mismatch_is_refused() -> None:
    class Future(Tiny):
        interface_version = 99

    with pytest.raises(PluginError, match="interface 99"):
        check_strategy_class(Future)


def test_build_strategy_validates_config_and_names_the_field() -> None:
    info = PluginInfo("tiny", Tiny, "test")
    with pytest.raises(ConfigError, match=r"strategies\.0\.config\.size"):
        build_strategy(info, {"size": "lots"}, context(), prefix="strategies.0.config")
    with pytest.raises(ConfigError, match="bogus: Extra inputs are not permitted"):
        build_strategy(info, {"bogus": 1}, context(), prefix="")
    assert config_errors(TinyConfig, {"size": 2}) == []


def test_intents_get_deterministic_ids_per_strategy_and_sequence() -> None:
    strategy = build_strategy(PluginInfo("tiny", Tiny, "test"), {}, context("alpha"))
    first = strategy.on_book(TOP)
    second = strategy.on_book(TOP)
    assert first is not None and second is not None
    assert [first[0].client_order_id, second[0].client_order_id] == ["alpha-t-1", "alpha-t-2"]
    again = build_strategy(PluginInfo("tiny", Tiny, "test"), {}, context("alpha")).on_book(TOP)
    assert again is not None and again[0].client_order_id == "alpha-t-1"


class Flaky(Tiny):
    def on_book(self, top: BookTicker, **kwargs: Any) -> list[OrderIntent] | None:
        raise ZeroDivisionError("plugin bug")


def test_safe_wrapper_counts_errors_and_quarantines_after_n_in_window() -> None:
    now = [0.0]
    quarantined: list[str] = []
    safe = SafeStrategy(
        build_strategy(PluginInfo("flaky", Flaky, "t"), {}, context("flaky")),
        max_failures=3,
        window_s=10.0,
        clock=lambda: now[0],
        on_quarantine=lambda s: quarantined.append(s.name),
    )
    assert safe.on_book(TOP) is None
    now[0] = 20.0  # the first failure leaves the window
    assert safe.on_book(TOP) is None
    assert safe.on_book(TOP) is None
    assert not safe.quarantined
    safe.on_book(TOP)
    assert safe.quarantined
    assert quarantined == ["flaky"]
    assert safe.errors["on_book"] == 4
    assert safe.last_error is not None
    assert "ZeroDivisionError: plugin bug" in str(safe.last_error)
    assert isinstance(safe.last_error.__cause__, ZeroDivisionError)


class Garbage(Tiny):
    def on_book(self, top: BookTicker, **kwargs: Any) -> Any:
        return "buy everything"


class Forger(Tiny):
    def on_book(self, top: BookTicker, **kwargs: Any) -> list[OrderIntent] | None:
        return [OrderIntent("someone-else", "x", "binance", "BTC/USDT", "buy", 1.0)]


@pytest.mark.parametrize(("cls", "message"), [(Garbage, "not a list"), (Forger, "someone-else")])
def test_safe_wrapper_refuses_results_that_are_not_own_intents(
    cls: type[Tiny], message: str
) -> None:
    safe = SafeStrategy(build_strategy(PluginInfo("x", cls, "t"), {}, context("me")))
    assert safe.on_book(TOP) is None
    assert safe.errors["on_book"] == 1
    assert message in str(safe.last_error)


def test_safe_wrapper_passes_good_intents_and_marks_the_running_hook() -> None:
    tracker = HookTracker()
    seen: list[str | None] = []

    class Watching(Tiny):
        def on_book(self, top: BookTicker, **kwargs: Any) -> list[OrderIntent] | None:
            seen.append(tracker.running)
            return super().on_book(top)

    safe = SafeStrategy(
        build_strategy(PluginInfo("w", Watching, "t"), {}, context("w")), tracker=tracker
    )
    intents = safe.on_book(TOP)
    assert intents is not None and intents[0].quantity == 1.0
    assert seen == ["w"]
    assert tracker.running is None
    assert safe.wants["on_book"] and not safe.wants["on_trade"]
