"""How time series are stored: TimescaleDB when the extension can be used, native partitions else.

``choose_storage`` decides once, when the first migration runs, and the choice is recorded with
every applied step: it never changes under existing data. TimescaleDB is used only if the
extension is installed in the database or can be created there (``CREATE EXTENSION`` fails
without ``shared_preload_libraries``); nothing pretends it exists.

Native storage is declarative range partitioning on the time column, one partition per interval
(``arbfleet_timeseries.partition_interval``: an hour for ticks, a day for the rest), aligned on
the epoch in UTC and named ``<table>_p<YYYYMMDD>_<HHMM>``. ``maintain`` creates partitions up to
``ahead`` into the future and drops every partition whose upper bound is older than the table's
retention, so a row lives at least its retention and at most one interval longer. The writer calls
``ensure_partitions`` when a batch meets a time no partition covers (a clock jump, maintenance
not run, rows replayed after a long outage). With TimescaleDB, chunks are created by the
extension and ``maintain`` sets retention policies (and drops expired chunks at once).

Creating and dropping partitions takes an advisory lock, so engines and ``arbfleet db maintain``
running at the same time do not trip over each other.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import asyncpg
from loguru import logger

from runtime.core.errors import MigrationError

Storage = Literal["native", "timescaledb"]
EXTENSION: Final = "timescaledb"
_LOCK_KEY: Final = 0x41524246_5041  # "ARBFPA": partition maintenance
_NS: Final = 1_000_000_000
_BOUNDS = re.compile(r"FOR VALUES FROM \('([^']+)'\) TO \('([^']+)'\)")

Connection = Any
"""An ``asyncpg.Connection`` (asyncpg ships no type information)."""


async def choose_storage(
    conn: Connection, mode: Literal["auto", "require", "off"], recorded: str | None
) -> Storage:
    """The storage of this database: ``recorded`` by an earlier migration, else what ``mode``
    and the server allow. MigrationError when they cannot agree."""
    if recorded is not None:
        return _keep_recorded(recorded, mode)
    if mode == "off":
        return "native"
    if await conn.fetchval("SELECT 1 FROM pg_extension WHERE extname = $1", EXTENSION):
        return "timescaledb"
    available = await conn.fetchval(
        "SELECT 1 FROM pg_available_extensions WHERE name = $1", EXTENSION
    )
    if available and await _create_extension(conn):
        return "timescaledb"
    if mode == "require":
        raise MigrationError(
            "postgres.timescaledb = 'require' but the timescaledb extension "
            + ("cannot be created here" if available else "is not available on this server"),
            step="storage",
        )
    logger.info("timescaledb is not available: time series use native range partitioning")
    return "native"


def _keep_recorded(recorded: str, mode: str) -> Storage:
    if recorded == "timescaledb" and mode == "off":
        raise MigrationError(
            "the schema was created on TimescaleDB; postgres.timescaledb = 'off' cannot change "
            "that under existing data",
            step="storage",
        )
    if recorded == "native" and mode == "require":
        raise MigrationError(
            "the schema was created with native partitioning; postgres.timescaledb = 'require' "
            "cannot change that under existing data",
            step="storage",
        )
    return "timescaledb" if recorded == "timescaledb" else "native"


async def _create_extension(conn: Connection) -> bool:
    try:
        async with conn.transaction():
            await conn.execute(f"CREATE EXTENSION IF NOT EXISTS {EXTENSION}")
    except asyncpg.PostgresError as exc:
        logger.warning(f"timescaledb is available but cannot be created ({exc}): native storage")
        return False
    return True


# --- native partitions ---------------------------------------------------------------------


@dataclass(frozen=True)
class TimeseriesTable:
    name: str
    interval_s: int
    storage: Storage


@dataclass(frozen=True)
class Partition:
    name: str
    start_ns: int
    end_ns: int


@dataclass
class MaintenanceReport:
    created: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    policies: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        parts = [
            f"{len(self.created)} partitions created",
            f"{len(self.dropped)} partitions dropped",
        ]
        if self.policies:
            parts.append(f"retention policies set on {', '.join(self.policies)}")
        return ", ".join(parts)


async def timeseries_tables(conn: Connection) -> list[TimeseriesTable]:
    rows = await conn.fetch(
        "SELECT table_name, extract(epoch FROM partition_interval)::bigint AS interval_s, "
        "storage FROM arbfleet_timeseries ORDER BY table_name"
    )
    return [TimeseriesTable(r["table_name"], int(r["interval_s"]), r["storage"]) for r in rows]


def _parse_bound(text: str) -> int:
    moment = datetime.datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return int(moment.timestamp()) * _NS


async def partitions(conn: Connection, table: str) -> list[Partition]:
    """The partitions of ``table``, oldest first (bounds as the server prints them, in UTC)."""
    rows = await conn.fetch(
        "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) AS bound "
        "FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = $1::regclass",
        table,
    )
    found = []
    for row in rows:
        match = _BOUNDS.search(row["bound"] or "")
        if match is not None:  # a DEFAULT partition has no bounds; we never create one
            start, end = (_parse_bound(text) for text in match.groups())
            found.append(Partition(row["relname"], start, end))
    return sorted(found, key=lambda p: p.start_ns)


def _literal(ns: int) -> str:
    moment = datetime.datetime.fromtimestamp(ns // _NS, datetime.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S+00")


def partition_name(table: str, start_ns: int) -> str:
    moment = datetime.datetime.fromtimestamp(start_ns // _NS, datetime.UTC)
    return f"{table}_p{moment:%Y%m%d_%H%M}"


def _aligned_start(interval_s: int, ns: int) -> int:
    return ns - ns % (interval_s * _NS)


async def ensure_partitions(
    conn: Connection, table: TimeseriesTable, times: Iterable[int]
) -> list[str]:
    """Create the missing partitions of ``table`` that ``times`` fall into."""
    created: list[str] = []
    if table.storage != "native":
        return created
    wanted = sorted({_aligned_start(table.interval_s, ns) for ns in times})
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_KEY)
        existing = {p.start_ns for p in await partitions(conn, table.name)}
        step = table.interval_s * _NS
        for start in (start for start in wanted if start not in existing):
            name = partition_name(table.name, start)
            await conn.execute(
                f'CREATE TABLE "{name}" PARTITION OF "{table.name}" '
                f"FOR VALUES FROM ('{_literal(start)}') TO ('{_literal(start + step)}')"
            )
            created.append(name)
    return created


async def drop_expired(conn: Connection, table: TimeseriesTable, before_ns: int) -> list[str]:
    """Drop every partition of ``table`` whose rows are all older than ``before_ns``."""
    dropped: list[str] = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_KEY)
        for partition in await partitions(conn, table.name):
            if partition.end_ns <= before_ns:
                await conn.execute(f'DROP TABLE "{partition.name}"')
                dropped.append(partition.name)
    return dropped


async def _timescale_retention(conn: Connection, table: str, retention_s: float) -> None:
    """Replace the table's retention policy and drop what is already past it."""
    keep = datetime.timedelta(seconds=retention_s)
    async with conn.transaction():
        await conn.execute("SELECT remove_retention_policy($1, if_exists => true)", table)
        await conn.execute("SELECT add_retention_policy($1, $2::interval)", table, keep)
        await conn.execute("SELECT drop_chunks($1, older_than => $2::interval)", table, keep)


async def maintain(
    conn: Connection,
    retention_hours: Mapping[str, float],
    ahead_hours: float,
    now_ns: int,
) -> MaintenanceReport:
    """Partitions ahead of ``now_ns`` created, expired ones dropped (or policies set)."""
    report = MaintenanceReport()
    ahead_ns = int(ahead_hours * 3600 * _NS)
    for table in await timeseries_tables(conn):
        retention_s = retention_hours[table.name] * 3600
        if table.storage == "timescaledb":
            await _timescale_retention(conn, table.name, retention_s)
            report.policies.append(table.name)
            continue
        step = table.interval_s * _NS
        ahead = range(_aligned_start(table.interval_s, now_ns), now_ns + ahead_ns + 1, step)
        report.created += await ensure_partitions(conn, table, ahead)
        report.dropped += await drop_expired(conn, table, now_ns - int(retention_s * _NS))
    return report
