"""The ``[postgres]``, ``[redis]``, ``[journal]`` and ``[shutdown]`` config sections.

Every section defaults to "not configured": with none of them set the engine keeps its state in
memory, which is what the demo and most unit tests run on. Connection strings may carry passwords,
so they are ``SecretStr`` and may instead come from a file (``dsn_file`` / ``url_file``): the local
stack writes one, and a Nomad template rendering Vault credentials writes another, so no password
has to sit in a config file. Whatever is read is registered with the log scrubber.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Final, Literal
from urllib.parse import urlsplit

import pydantic
from pydantic import NonNegativeFloat, PositiveFloat, PositiveInt, SecretStr

from runtime.core.errors import ConfigError
from runtime.core.logging import register_secret

_NAME = r"^[a-z0-9][a-z0-9_-]{0,31}$"

DEFAULT_RETENTION_HOURS: Final[Mapping[str, float]] = {
    "ticks": 48.0,  # the seeds keep high-frequency data 24-48 h
    "opportunities": 24.0 * 14,
    "position_snapshots": 24.0 * 30,
    "pnl_snapshots": 24.0 * 90,
    "system_events": 24.0 * 30,
}
"""Time-series tables and how long their rows are kept; orders and fills are kept for good."""


class _Frozen(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")


def _read_secret_file(path: Path, field: str) -> str:
    try:
        value = path.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"{field}: cannot read {path}: {exc.strerror}") from exc
    if not value:
        raise ConfigError(f"{field}: {path} is empty")
    return value


def _one_of(value: SecretStr | None, path: Path | None, field: str) -> str | None:
    """The secret from the config value or from its file, registered with the log scrubber."""
    if value is not None and path is not None:
        raise ConfigError(f"{field} and {field}_file are both set: choose one")
    secret = value.get_secret_value() if value is not None else None
    if path is not None:
        secret = _read_secret_file(path, f"{field}_file")
    if secret is not None:
        register_secret(secret)
        password = urlsplit(secret).password
        if password:
            register_secret(password)
    return secret


def describe_url(url: str) -> str:
    """``host:port/db`` of a connection URL: what may appear in logs (no user, no password).
    Every host of a multi-host URL (``h1:5432,h2:5432``, a primary and its standbys)."""
    parts = urlsplit(url)
    return f"{parts.netloc.rpartition('@')[2]}{parts.path}"


class PostgresConfig(_Frozen):
    """Where the batched writer sends ticks, opportunities, orders and fills, and how."""

    dsn: SecretStr | None = None
    dsn_file: Path | None = None
    """A file holding the DSN (``postgresql://user:password@host:port/db``)."""
    migrate_on_start: bool = False
    """Apply pending migrations when the engine starts (``arbfleet db migrate`` does it too)."""
    owner_role: str | None = pydantic.Field(default=None, pattern=_NAME)
    """Migrations and partition maintenance run as this role (``SET ROLE``), so the tables
    belong to it: with Vault's dynamic users, the group they act as (``arbfleet_writer``)."""
    timescaledb: Literal["auto", "require", "off"] = "auto"
    """``auto``: hypertables when the extension can be used, else native partitioning."""
    retention_hours: dict[str, PositiveFloat] = pydantic.Field(
        default_factory=lambda: dict(DEFAULT_RETENTION_HOURS)
    )
    partitions_ahead_hours: PositiveFloat = 6.0
    """Native partitioning: create partitions this far into the future."""
    maintenance_interval_s: PositiveFloat | None = 600.0
    """How often the engine creates future partitions and drops expired ones; None: never
    (then run ``arbfleet db maintain`` from a periodic job)."""
    batch_rows: PositiveInt = 10_000
    flush_interval_ms: PositiveFloat = 200.0
    memory_rows: PositiveInt = 200_000
    """Rows held in memory while the database is unreachable; beyond this they spill to disk."""
    spill_dir: Path | None = None
    """Where rows spill; None: ``<journal.dir>/spill``."""
    tick_sample_ms: pydantic.NonNegativeInt = 1_000
    """Record each book's top at most this often, besides every tick an order was based on;
    0: record only the ticks orders were based on."""
    position_snapshot_interval_s: PositiveFloat = 10.0
    connect_timeout_s: PositiveFloat = 5.0

    @pydantic.field_validator("retention_hours")
    @classmethod
    def _known_tables(cls, value: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(value) - set(DEFAULT_RETENTION_HOURS))
        if unknown:
            known = ", ".join(DEFAULT_RETENTION_HOURS)
            raise ValueError(f"no time-series table {', '.join(unknown)} (tables: {known})")
        return {**DEFAULT_RETENTION_HOURS, **value}

    @property
    def enabled(self) -> bool:
        return self.dsn is not None or self.dsn_file is not None

    def resolve_dsn(self) -> str:
        """The DSN, read now (a rotated credentials file is picked up); ConfigError if none."""
        dsn = _one_of(self.dsn, self.dsn_file, "postgres.dsn")
        if dsn is None:
            raise ConfigError("postgres.dsn or postgres.dsn_file must be set")
        return dsn


class RedisConfig(_Frozen):
    """Where state snapshots go: ``arbfleet:<environment>:<deployment>:<strategy>:snapshot``."""

    url: SecretStr | None = None
    url_file: Path | None = None
    environment: str = pydantic.Field(default="dev", pattern=_NAME)
    deployment: str = pydantic.Field(default="local", pattern=_NAME)
    snapshot_interval_s: PositiveFloat = 5.0
    timeout_s: PositiveFloat = 1.0

    @property
    def enabled(self) -> bool:
        return self.url is not None or self.url_file is not None

    def resolve_url(self) -> str:
        url = _one_of(self.url, self.url_file, "redis.url")
        if url is None:
            raise ConfigError("redis.url or redis.url_file must be set")
        return url


class JournalConfig(_Frozen):
    """The order journal: a local, fsync'd, append-only file (``runtime.persistence.journal``)."""

    dir: Path | None = None
    """None: no journal (orders in flight are forgotten by a killed engine)."""
    fsync: bool = True
    """fsync every order before it is sent; off only for tests and benchmarks."""
    checkpoint_interval_s: PositiveFloat = 60.0
    settle_s: NonNegativeFloat = 5.0
    """After a restart, an order the venue does not know is declared never sent only once it is
    this old: the venues' ``recvWindow`` (5 s) refuses an order that arrives later than that."""
    look_back_s: PositiveFloat = 60.0
    """Started from a Redis snapshot (the journal lost with its node, or none): the venues'
    orders are listed from this long before the snapshot (runtime.persistence.lookback). It
    bounds the rows a lost writer had not yet written that are written again, and the clock
    difference between engine and venue it tolerates."""


class ShutdownConfig(_Frozen):
    """SIGTERM/SIGINT: what happens to orders in flight, and how long stopping may take."""

    deadline_s: PositiveFloat = 10.0
    open_orders: Literal["keep", "cancel"] = "keep"
    """``keep``: wait (within the deadline) for orders in flight to report, so their fills are
    recorded. ``cancel``: stop waiting; they stay in the journal and are reconciled with the
    venue at the next start. Orders are immediate-or-cancel, so none rests at a venue."""
