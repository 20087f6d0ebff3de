"""Outages: PostgreSQL and Redis stopped for 30 s while the engine works, then started again.

Each test runs a server of its own (``runtime.devstack.scratch``) so it can stop it without
disturbing anyone else on the shared stack. The outage length is part of the scenario, not an
assertion: nothing here checks how fast anything happened.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from runtime.config import load_config
from runtime.devstack.demo import demo_config
from runtime.devstack.scratch import ScratchPostgres, ScratchRedis
from runtime.devstack.simulator import ExchangeSimulator, MarketParams, SimulatorConfig
from runtime.node import Node
from runtime.persistence.admin import run_migrations
from runtime.persistence.settings import PostgresConfig
from runtime.persistence.snapshots import SnapshotStore
from runtime.persistence.writer import BatchWriter
from tests.integration.polling import until
from tests.integration.test_writer import tick

pytest_plugins = ["tests.integration.persistence_fixtures"]

OUTAGE_S = 30.0


@pytest.mark.timeout(240)
async def test_postgres_down_30_s_under_steady_load_every_row_arrives_exactly_once(
    scratch_postgres: ScratchPostgres, tmp_path: Path
) -> None:
    await run_migrations(scratch_postgres.dsn, PostgresConfig())
    writer = BatchWriter(
        scratch_postgres.dsn,
        tmp_path / "spill",
        batch_rows=200,
        flush_interval_s=0.05,
        memory_rows=2_000,
        connect_timeout_s=1.0,
    )
    await writer.start()
    produced = 0
    stop = asyncio.Event()

    async def steady_load() -> None:  # 1,000 rows/s, whatever the database does
        nonlocal produced
        while not stop.is_set():
            for _ in range(50):
                writer.put("ticks", tick(produced))
                produced += 1
            await asyncio.sleep(0.05)

    load = asyncio.create_task(steady_load())
    await until(lambda: writer.stats.rows["ticks"] >= 1_000, 60, "rows written before the outage")
    await asyncio.to_thread(scratch_postgres.stop)
    await asyncio.sleep(OUTAGE_S)  # the scenario's length, not a wait for something to happen
    during = (writer.available, writer.memory_rows, writer.spill.bytes)
    await asyncio.to_thread(scratch_postgres.start)
    # The load goes on while the writer reconnects and replays the spill behind new rows.
    await until(lambda: writer.available and writer.spill.empty, 120, "the spill replayed")
    stop.set()
    await load
    assert await writer.drain(120.0)
    await writer.close()
    assert during[0] is False
    assert during[1] <= 2_000 + 200 and during[2] > 0  # memory stayed bounded: the rest spilled
    conn = await asyncpg.connect(scratch_postgres.dsn)
    try:
        seqs = [r["seq"] for r in await conn.fetch("SELECT seq FROM ticks ORDER BY seq")]
    finally:
        await conn.close()
    assert seqs == list(range(produced))  # each once (the key), none missing
    assert writer.stats.rows["ticks"] == produced
    assert writer.spill.empty and list((tmp_path / "spill").glob("spill-*.log")) == []


@pytest.fixture
async def simulator() -> AsyncIterator[ExchangeSimulator]:
    sim = ExchangeSimulator(
        SimulatorConfig(tick_interval_ms=10, market=MarketParams(dislocations_per_s=5.0))
    )
    await sim.start()
    yield sim
    await sim.stop()


def fills(node: Node) -> int:
    return sum(stats.fills for stats in node.engine.stats.by_strategy.values())


@pytest.mark.timeout(240)
async def test_redis_down_30_s_the_engine_trades_on_and_snapshots_resume(
    scratch_redis: ScratchRedis, simulator: ExchangeSimulator
) -> None:
    overrides: dict[str, Any] = demo_config(simulator).model_dump()
    overrides["redis"] = {"url": scratch_redis.url, "snapshot_interval_s": 0.5,
                          "deployment": "outage"}  # fmt: skip
    node = Node(load_config(env={}, overrides=overrides))
    store = node.persistence.snapshots
    assert isinstance(store, SnapshotStore)
    stop = asyncio.Event()
    running = asyncio.create_task(node.run(stop))
    await node.ready.wait()
    await until(lambda: store.saves >= 2, 30, "snapshots before the outage")
    await asyncio.to_thread(scratch_redis.stop)
    await until(lambda: not store.available, 30, "the engine to notice redis is gone")
    health = node.health()
    assert health["can_trade"] is True
    assert any(r.startswith("redis unreachable") for r in health["degraded"])
    fills_before = fills(node)
    await asyncio.sleep(OUTAGE_S)
    assert fills(node) > fills_before  # it kept trading
    saves_before = store.saves
    await asyncio.to_thread(scratch_redis.start)
    await until(lambda: store.saves > saves_before, 30, "snapshots to resume")
    assert node.health()["degraded"] == []
    stop.set()
    await running
    restored = await SnapshotStore(scratch_redis.url, "dev", "outage").load(
        safe.name for safe in node.engine.strategies
    )
    assert restored.problems == []
    for safe in node.engine.strategies:
        snapshot = restored.snapshots[safe.name]
        account = node.engine.portfolio.account(safe.name)
        assert {(v, a): x for v, a, x in snapshot.balances or []} == account
        assert snapshot.fills == node.engine.portfolio.fills.get(safe.name, 0)
