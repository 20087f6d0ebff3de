"""Engine configuration: defaults -> TOML file -> ``ARBFLEET_*`` environment -> secrets provider.

Each layer overrides the one before: tables merge key by key, lists (``strategies``) are replaced
whole. Environment variables name a path with double underscores::

    ARBFLEET_MODE=live
    ARBFLEET_RISK__MAX_DAILY_LOSS=500
    ARBFLEET_VENUES__BINANCE__WS_URL=ws://127.0.0.1:9000
    ARBFLEET_STRATEGIES__0__CONFIG__MIN_SPREAD_BPS=40

Only variables whose first segment is a config field count, so ``ARBFLEET_CACHE`` (the toolchain's)
is not mistaken for one. API keys come last, from a secrets provider: the environment
(``ARBFLEET_SECRET_BINANCE_API_KEY`` / ``..._API_SECRET``) or a directory of key files
(``<dir>/binance/api_key``), which is what a Nomad template rendering Vault secrets writes.
Every secret is registered with the log scrubber as soon as it is read.

Everything is validated at start, strategy configs included, and every problem is reported at
once as ``field.path: message``.
"""

from __future__ import annotations

import copy
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, Literal, Protocol

import pydantic
from pydantic import NonNegativeInt, PositiveFloat, PositiveInt, SecretStr

from runtime.core.errors import ConfigError, PluginError
from runtime.core.logging import register_secret
from runtime.engine.plugins import PluginRegistry, config_errors, format_validation_errors
from runtime.persistence.settings import JournalConfig, PostgresConfig, RedisConfig, ShutdownConfig
from runtime.trading.execution.paper import PaperConfig
from runtime.trading.risk import RiskLimits
from runtime.venues.registry import VenueName, registry

ENV_PREFIX: Final = "ARBFLEET_"
SECRET_ENV_PREFIX: Final = "ARBFLEET_SECRET_"  # noqa: S105 - a name prefix, not a secret
_STRATEGY_ID = r"^[a-z0-9][a-z0-9_-]{0,15}$"


class _Frozen(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")


class VenueConfig(_Frozen):
    """Where a venue's websocket and REST API are, and the account's keys."""

    ws_url: str
    rest_url: str
    stale_after_s: PositiveFloat = 5.0
    """A venue silent for this long is stale: no trading on it until data flows again."""
    rest_requests_per_s: PositiveFloat = 10.0
    api_key: SecretStr | None = None
    api_secret: SecretStr | None = None


class StrategyEntry(_Frozen):
    """One strategy instance: which plugin, its instance id and its config table."""

    plugin: str
    id: str = pydantic.Field(pattern=_STRATEGY_ID)
    config: dict[str, Any] = pydantic.Field(default_factory=dict)


class HealthConfig(_Frozen):
    host: str = "127.0.0.1"
    port: int = pydantic.Field(default=8080, ge=0, le=65_535)


class IsolationConfig(_Frozen):
    """When a failing plugin is quarantined, and when a blocked loop is reported."""

    max_failures: PositiveInt = 5
    window_s: PositiveFloat = 60.0
    loop_lag_threshold_ms: PositiveFloat = 100.0


class VaultConfig(_Frozen):
    """Exchange keys from Vault KV v2 (``<kv_mount>/<venue>/<account>``) instead of the
    environment, swapped without a restart (runtime/platform/vault.py). Off while ``address``
    is unset."""

    address: str | None = None
    token_file: Path | None = None
    """The token, re-read when Vault denies it (Nomad writes and renews ``secrets/vault_token``)."""
    kv_mount: str = "exchanges"
    accounts: dict[str, str] = pydantic.Field(default_factory=dict)
    """venue -> exchange account whose keys the engine uses in live mode."""
    poll_interval_s: PositiveFloat = 0.5
    database_mount: str | None = None
    """Database secrets engine whose dynamic users the writer logs in as
    (runtime/platform/dbcreds.py); ``postgres.dsn`` then gives host, port and database only.
    None: the DSN as configured."""
    database_role: str = "arbfleet-engine"

    @pydantic.model_validator(mode="after")
    def _complete(self) -> VaultConfig:
        if self.address is not None and self.token_file is None:
            raise ValueError("vault.token_file is required with vault.address")
        if self.database_mount is not None and self.address is None:
            raise ValueError("vault.database_mount needs vault.address")
        return self


class ConsulConfig(_Frozen):
    """The "can trade" TTL check, account locks and kill switch in Consul
    (runtime/platform/consul.py). Off unless ``enabled``: the demo and embedded defaults run
    without Consul."""

    enabled: bool = False
    address: str = "http://127.0.0.1:8500"
    token_file: Path | None = None
    """A Consul ACL token (with ACLs on): service, session and key write on the engine's keys."""
    service: str = "arbfleet-engine-ttl"
    """Service the engine registers itself as (not Nomad's ``arbfleet-engine``: see consul.py)."""
    service_id: str | None = None
    """None: ``<service>-<Nomad allocation id>``, else host, pid and a random suffix."""
    check_ttl_s: PositiveFloat = 10.0
    refresh_fraction: float = pydantic.Field(default=1 / 3, gt=0.0, lt=1.0)
    """The TTL is refreshed every ``check_ttl_s * refresh_fraction`` (and on every change)."""
    deregister_critical_after_s: float = pydantic.Field(default=60.0, ge=60.0)
    """Consul removes an instance whose check stays critical this long (a killed engine's)."""
    max_spill_bytes: PositiveInt = 1 << 30
    """The writer's spill past this is critical: buffering beyond its bound."""
    lock: bool = True
    """Hold a lock per exchange account while trading (single writer)."""
    accounts: dict[str, str] = pydantic.Field(default_factory=dict)
    """venue -> account to lock; empty: ``vault.accounts``; both empty: nothing to lock."""
    lock_prefix: str = "arbfleet/locks/accounts"
    session_ttl_s: float = pydantic.Field(default=15.0, ge=10.0, le=86_400.0)
    lock_delay_s: float = pydantic.Field(default=15.0, ge=0.0, le=60.0)
    """After a holder's session is invalidated, nobody may take its locks for this long."""
    retry_s: PositiveFloat = 1.0
    kill_switch_key: str = "arbfleet/kill-switch"


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


class EngineConfig(_Frozen):
    """Everything the engine needs; every field has a default that runs without services."""

    mode: Literal["paper", "live"] = "paper"
    venues: dict[VenueName, VenueConfig] = pydantic.Field(default_factory=_default_venues)
    strategies: list[StrategyEntry] = pydantic.Field(default_factory=_default_strategies)
    risk: RiskLimits = pydantic.Field(default_factory=RiskLimits)
    paper: PaperConfig = pydantic.Field(default_factory=PaperConfig)
    health: HealthConfig = pydantic.Field(default_factory=HealthConfig)
    isolation: IsolationConfig = pydantic.Field(default_factory=IsolationConfig)
    postgres: PostgresConfig = pydantic.Field(default_factory=PostgresConfig)
    redis: RedisConfig = pydantic.Field(default_factory=RedisConfig)
    journal: JournalConfig = pydantic.Field(default_factory=JournalConfig)
    shutdown: ShutdownConfig = pydantic.Field(default_factory=ShutdownConfig)
    vault: VaultConfig = pydantic.Field(default_factory=VaultConfig)
    consul: ConsulConfig = pydantic.Field(default_factory=ConsulConfig)
    blocked_plugins: list[str] = pydantic.Field(default_factory=list)
    timer_tick_ms: NonNegativeInt = 100
    log_level: str = "INFO"

    @pydantic.model_validator(mode="after")
    def _consistent(self) -> EngineConfig:
        ids = [entry.id for entry in self.strategies]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"strategies: ids must be unique, repeated: {', '.join(duplicates)}")
        if self.mode == "live":
            from_vault = set(self.vault.accounts) if self.vault.address else set()
            for name, venue in self.venues.items():
                if name in from_vault:
                    continue
                if venue.api_key is None or venue.api_secret is None:
                    raise ValueError(
                        f"venues.{name}: live mode needs api_key and api_secret "
                        f"(from {SECRET_ENV_PREFIX}{name.upper()}_API_KEY or a secrets directory)"
                    )
        return self


class SecretsProvider(Protocol):
    """Where API keys come from: (api key, api secret) of a venue, or None."""

    def venue_credentials(self, venue: str) -> tuple[str, str] | None: ...


class EnvironmentSecrets:
    """Keys from ``ARBFLEET_SECRET_<VENUE>_API_KEY`` and ``..._API_SECRET``."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        self._env = env if env is not None else os.environ

    def venue_credentials(self, venue: str) -> tuple[str, str] | None:
        prefix = f"{SECRET_ENV_PREFIX}{venue.upper()}_"
        key = self._env.get(prefix + "API_KEY")
        secret = self._env.get(prefix + "API_SECRET")
        return (key, secret) if key and secret else None


class DirectorySecrets:
    """Keys from ``<root>/<venue>/api_key`` and ``api_secret`` files, e.g. rendered by Nomad."""

    def __init__(self, root: Path) -> None:
        self._root = root

    def venue_credentials(self, venue: str) -> tuple[str, str] | None:
        key_file = self._root / venue / "api_key"
        secret_file = self._root / venue / "api_secret"
        if not (key_file.is_file() and secret_file.is_file()):
            return None
        return key_file.read_text().strip(), secret_file.read_text().strip()


def load_config(
    path: Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    secrets: SecretsProvider | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> EngineConfig:
    """Build the config from every layer; ConfigError listing every invalid field."""
    environment = env if env is not None else os.environ
    layers: dict[str, Any] = EngineConfig().model_dump()
    if path is not None:
        deep_merge(layers, read_toml(path))
    if overrides:
        deep_merge(layers, copy.deepcopy(dict(overrides)))
    deep_merge(layers, env_overrides(environment))
    provider = secrets if secrets is not None else EnvironmentSecrets(environment)
    for venue, settings in layers.get("venues", {}).items():
        credentials = provider.venue_credentials(venue)
        if credentials is not None and isinstance(settings, dict):
            settings["api_key"], settings["api_secret"] = credentials
    try:
        config = EngineConfig.model_validate(layers)
    except pydantic.ValidationError as exc:
        raise ConfigError(
            "invalid configuration:\n  " + "\n  ".join(format_validation_errors(exc))
        ) from exc
    _register_secrets(config)
    return config


def read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc


def env_overrides(env: Mapping[str, str]) -> dict[str, Any]:
    """The nested table the ``ARBFLEET_*`` variables describe (secrets and unknown names aside)."""
    fields = set(EngineConfig.model_fields)
    tree: dict[str, Any] = {}
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX) or name.startswith(SECRET_ENV_PREFIX):
            continue
        path = [part.lower() for part in name[len(ENV_PREFIX) :].split("__")]
        if path[0] not in fields or not all(path):
            continue
        node = tree
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    return tree


def deep_merge(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """Merge ``update`` into ``base``: tables key by key; numeric keys index into lists."""
    for key, value in update.items():
        current = base.get(key)
        if (
            isinstance(current, list)
            and isinstance(value, dict)
            and all(k.isdigit() for k in value)
        ):
            for index, item in value.items():
                position = int(index)
                if position >= len(current):
                    raise ConfigError(f"{key}.{index}: there are only {len(current)} entries")
                if isinstance(current[position], dict) and isinstance(item, dict):
                    deep_merge(current[position], item)
                else:
                    current[position] = item
        elif isinstance(current, dict) and isinstance(value, Mapping):
            deep_merge(current, value)
        else:
            base[key] = value
    return base


def _register_secrets(config: EngineConfig) -> None:
    for venue in config.venues.values():
        for secret in (venue.api_key, venue.api_secret):
            if secret is not None:
                register_secret(secret.get_secret_value())


def strategy_errors(config: EngineConfig, registry: PluginRegistry) -> list[str]:
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
