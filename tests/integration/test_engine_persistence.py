"""The engine's persistence wiring, in-process, on real PostgreSQL: what a trade leaves in the
database, migrations on start, and an engine whose database is away."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from runtime.config import load_config
from runtime.node import Node
from tests.integration.databases import create_database, drop_database
from tests.integration.polling import until
from tests.integration.test_writer import unreachable
from tests.unit.test_engine import feed_dislocation

pytest_plugins = ["tests.integration.persistence_fixtures"]

NO_LATENCY = {"latency_ms": 0.0, "latency_jitter_ms": 0.0}


@pytest.fixture
def empty_database(postgres_dsn: str) -> Iterator[str]:
    dsn = create_database(postgres_dsn, "engine")
    yield dsn
    drop_database(postgres_dsn, dsn)


def node_on(dsn: str, directory: Path, **postgres: Any) -> Node:
    dsn_file = directory / "postgres.dsn"
    dsn_file.write_text(dsn)
    settings = {"dsn_file": dsn_file, "flush_interval_ms": 20, **postgres}
    overrides = {"paper": NO_LATENCY, "postgres": settings, "journal": {"dir": directory / "j"}}
    return Node(load_config(env={}, overrides=overrides))


async def fetch(dsn: str, query: str) -> list[tuple[Any, ...]]:
    conn = await asyncpg.connect(dsn)
    try:
        return [tuple(row) for row in await conn.fetch(query)]
    finally:
        await conn.close()


async def test_a_trade_leaves_its_tick_opportunity_orders_fills_and_positions(
    empty_database: str, tmp_path: Path
) -> None:
    node = node_on(empty_database, tmp_path, migrate_on_start=True)
    await node.restore()
    feed_dislocation(node.engine, premium=0.006)
    await node.persistence.stop(time.monotonic() + 30)
    orders = await fetch(
        empty_database,
        "SELECT o.venue, o.status, o.opportunity_ts = p.ts FROM orders o "
        "JOIN opportunities p ON p.strategy = o.strategy ORDER BY o.venue",
    )
    assert orders == [("binance", "filled", True), ("upbit", "filled", True)]
    fills = await fetch(empty_database, "SELECT venue, fill_no FROM fills ORDER BY venue")
    assert fills == [("binance", 1), ("upbit", 1)]
    ticks = await fetch(empty_database, "SELECT DISTINCT venue, symbol FROM ticks ORDER BY 1, 2")
    assert ticks == [("binance", "BTC/USDT"), ("upbit", "BTC/KRW")]  # what the orders acted on
    capture = await fetch(
        empty_database, "SELECT captured, capture_rate FROM opportunity_capture_hourly"
    )
    assert capture == [(1, 1.0)]
    positions = await fetch(
        empty_database,
        "SELECT venue, position FROM position_snapshots "
        "WHERE strategy = 'xex-btc' AND asset = 'BTC' ORDER BY venue",
    )
    btc = {venue: position for venue, position in positions}
    assert btc["binance"] == pytest.approx(-btc["upbit"]) and btc["binance"] > 0
    events = await fetch(empty_database, "SELECT kind FROM system_events ORDER BY ts")
    assert [kind for (kind,) in events] == ["engine_started", "engine_stopped"]


async def test_with_the_database_away_the_engine_trades_and_its_rows_wait_on_disk(
    empty_database: str, tmp_path: Path
) -> None:
    away = node_on(unreachable(empty_database), tmp_path, connect_timeout_s=0.5)
    await away.restore()
    feed_dislocation(away.engine, premium=0.006)
    assert away.engine.stats.by_strategy["xex-btc"].fills == 2  # trading did not wait
    writer = away.persistence.writer
    assert writer is not None
    await until(lambda: not writer.available, 30, "the first write to find the database away")
    health = away.health()
    assert health["can_trade"] is True
    assert [r for r in health["degraded"] if r.startswith("postgres unreachable")]
    await away.persistence.stop(time.monotonic() + 2)
    back = node_on(empty_database, tmp_path, migrate_on_start=True)
    await back.restore()
    assert back.engine.portfolio.account("xex-btc") == away.engine.portfolio.account("xex-btc")
    await back.persistence.stop(time.monotonic() + 30)
    fills = await fetch(empty_database, "SELECT count(*) FROM fills")
    assert fills == [(2,)]  # spilled by the first node, written by the second, once
    events = await fetch(empty_database, "SELECT kind FROM system_events ORDER BY ts")
    assert [kind for (kind,) in events].count("engine_started") == 2
