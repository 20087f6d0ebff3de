"""The engine's own settings: mode, venues, strategies, risk, paper fills, plugin isolation.

The node's config file (runtime/config.py) extends this with the sections of the parts around
the engine; the engine is handed only this."""

from __future__ import annotations

from typing import Any, Literal

import pydantic
from pydantic import NonNegativeInt, PositiveFloat, PositiveInt, SecretStr

from runtime.core.errors import PluginError
from runtime.core.settings import Frozen
from runtime.engine.plugins import PluginRegistry, config_errors
from runtime.trading.execution.paper import PaperConfig
from runtime.trading.risk import RiskLimits
from runtime.venues.registry import VenueName, registry

_STRATEGY_ID = r"^[a-z0-9][a-z0-9_-]{0,15}$"


class VenueConfig(Frozen):
    """Where a venue's websocket and REST API are, and the account's keys."""

    ws_url: str
    rest_url: str
    stale_after_s: PositiveFloat = 5.0
    """A venue silent for this long is stale: no trading on it until data flows again."""
    rest_requests_per_s: PositiveFloat = 10.0
    api_key: SecretStr | None = None
    api_secret: SecretStr | None = None


class StrategyEntry(Frozen):
    """One strategy instance: which plugin, its instance id and its config table."""

    plugin: str
    id: str = pydantic.Field(pattern=_STRATEGY_ID)
    config: dict[str, Any] = pydantic.Field(default_factory=dict)


class IsolationConfig(Frozen):
    """When a failing plugin is quarantined, and when a blocked loop is reported."""

    max_failures: PositiveInt = 5
    window_s: PositiveFloat = 60.0
    loop_lag_threshold_ms: PositiveFloat = 100.0


def _default_venues() -> dict[str, VenueConfig]:
    """Every installed venue at its public URLs (``runtime.venues.registry``)."""
    return {
        name: VenueConfig(ws_url=venue.ws_url, rest_url=venue.rest_url)
        for name, venue in registry().venues.items()
    }


def _default_strategies() -> list[StrategyEntry]:
    return [
        StrategyEntry(plugin="cross_exchange", id="xex-btc"),
        StrategyEntry(plugin="triangular", id="tri-usdt"),
        StrategyEntry(plugin="pairs_kalman", id="pairs-eth-btc"),
    ]


class EngineSettings(Frozen):
    """What the engine itself needs; every field has a default that runs without services."""

    mode: Literal["paper", "live"] = "paper"
    venues: dict[VenueName, VenueConfig] = pydantic.Field(default_factory=_default_venues)
    strategies: list[StrategyEntry] = pydantic.Field(default_factory=_default_strategies)
    risk: RiskLimits = pydantic.Field(default_factory=RiskLimits)
    paper: PaperConfig = pydantic.Field(default_factory=PaperConfig)
    isolation: IsolationConfig = pydantic.Field(default_factory=IsolationConfig)
    blocked_plugins: list[str] = pydantic.Field(default_factory=list)
    timer_tick_ms: NonNegativeInt = 100

    @pydantic.model_validator(mode="after")
    def _unique_ids(self) -> EngineSettings:
        ids = [entry.id for entry in self.strategies]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"strategies: ids must be unique, repeated: {', '.join(duplicates)}")
        return self


def strategy_errors(config: EngineSettings, registry: PluginRegistry) -> list[str]:
    """Every problem with the configured strategies: unknown plugins and invalid fields."""
    problems: list[str] = []
    for index, entry in enumerate(config.strategies):
        where = f"strategies.{index}"
        try:
            info = registry.get(entry.plugin)
        except PluginError as exc:
            problems.append(f"{where}.plugin: {exc}")
            continue
        problems += [
            f"{where}.config.{line}"
            for line in config_errors(info.strategy_class.config_class, entry.config)
        ]
    return problems
