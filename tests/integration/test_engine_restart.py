"""The engine as its own process, trading live against the exchange simulator, with PostgreSQL,
Redis and the order journal: killed with SIGKILL in the middle of a burst of orders and started
again, or stopped with SIGTERM while orders are in flight.

The simulator runs in the test process, so it outlives the engine and is the ground truth: what
the venue executed is what the account holds. It answers orders 20 ms late, so several are in
flight at any moment, and the kill is sent from inside its order handler: the order that handler
is answering is certainly in flight when the engine dies.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import asyncpg
import pytest
import redis.asyncio as aioredis

from runtime.core.instruments import split_symbol
from runtime.devstack.scratch import free_port
from runtime.devstack.simulator import ExchangeSimulator, FaultParams, SimulatorConfig
from runtime.devstack.simulator.server import Execution
from runtime.persistence.journal import OrderJournal
from runtime.persistence.snapshots import SnapshotStore
from runtime.trading.execution.paper import PaperConfig
from tests.integration.polling import until

pytest_plugins = ["tests.integration.persistence_fixtures"]

REPO = Path(__file__).parents[2]
API_KEY, API_SECRET = "canary-key-5d1c", "canary-venue-secret-9f3e"
KEYS = {
    f"ARBFLEET_SECRET_{venue}_{part}": value
    for venue in ("BINANCE", "UPBIT")
    for part, value in (("API_KEY", API_KEY), ("API_SECRET", API_SECRET))
}
INITIAL = PaperConfig().initial_balances


@pytest.fixture
async def simulator() -> AsyncIterator[ExchangeSimulator]:
    sim = ExchangeSimulator(
        SimulatorConfig(
            tick_interval_ms=50,
            faults=FaultParams(latency_ms=20),
            credentials={API_KEY: API_SECRET},
        )
    )
    await sim.start()
    yield sim
    await sim.stop()


def write_config(
    directory: Path,
    sim: ExchangeSimulator,
    dsn: str,
    redis_url: str,
    names: tuple[str, str],
    health_port: int = 0,
) -> Path:
    """Live mode against ``sim``; every store configured; ``names``: (strategy, deployment)."""
    dsn_file = directory / "postgres.dsn"
    dsn_file.write_text(dsn)
    dsn_file.chmod(0o600)
    strategy, deployment = names
    path = directory / "engine.toml"
    path.write_text(f"""
mode = "live"
log_level = "INFO"
[venues.binance]
ws_url = "{sim.binance_ws_url}"
rest_url = "{sim.http_url}"
rest_requests_per_s = 500
[venues.upbit]
ws_url = "{sim.upbit_ws_url}"
rest_url = "{sim.upbit_rest_url}"
[[strategies]]
plugin = "burst"
id = "{strategy}"
[risk]
max_orders_per_second = 500
order_burst = 100
max_open_orders = 100
max_daily_loss = 1000000
[health]
port = {health_port}
[postgres]
dsn_file = "{dsn_file}"
flush_interval_ms = 50
tick_sample_ms = 200
position_snapshot_interval_s = 1
[redis]
url = "{redis_url}"
environment = "test"
deployment = "{deployment}"
snapshot_interval_s = 0.5
[journal]
dir = "{directory / "journal"}"
checkpoint_interval_s = 1.0
settle_s = 2.0
[shutdown]
deadline_s = 20
""")
    return path


class EngineProcess:
    """``python -m tests.integration.engine_child CONFIG``, logging to a file."""

    def __init__(self, config: Path, log: Path, **env: str) -> None:
        self.config = config
        self.log = log
        self.env = {**os.environ, **KEYS, "PYTHONPATH": str(REPO), **env}
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "tests.integration.engine_child", str(self.config),
                env=self.env, cwd=REPO, stdout=log, stderr=log,
            )  # fmt: skip

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    async def running(self) -> None:
        """Until the engine says it runs: state restored and orders reconciled by then."""
        await until(lambda: "engine running" in self.log.read_text(), 60, "the engine to start")

    async def exit_code(self, timeout_s: float = 60.0) -> int:
        assert self.process is not None
        async with asyncio.timeout(timeout_s):
            return await self.process.wait()


def venue_balances(executions: list[Execution]) -> dict[tuple[str, str], float]:
    """The account after what the venue executed, applied as the engine applies fills."""
    balances = {(v, a): float(x) for v, assets in INITIAL.items() for a, x in assets.items()}
    for e in executions:
        base, quote = split_symbol(e.symbol)
        sign = 1.0 if e.side == "buy" else -1.0
        balances[(e.venue, base)] += sign * e.quantity
        balances[(e.venue, quote)] -= sign * e.quote + e.fee
    return balances


async def database_view(dsn: str, strategy: str) -> dict[str, Any]:
    conn = await asyncpg.connect(dsn)
    try:
        fills = await conn.fetch(
            "SELECT client_order_id, fill_no, quantity FROM fills WHERE strategy = $1", strategy
        )
        orders = await conn.fetch(
            "SELECT client_order_id, filled_quantity, code FROM orders WHERE strategy = $1",
            strategy,
        )
        reconciled = await conn.fetch(
            "SELECT detail FROM system_events WHERE kind = 'order_reconciled' AND detail LIKE $1",
            strategy.replace("-", "_") + "-%",
        )
    finally:
        await conn.close()
    return {
        "fills": [tuple(r) for r in fills],
        "orders": {r["client_order_id"]: (r["filled_quantity"], r["code"]) for r in orders},
        "reconciled": {r["detail"] for r in reconciled},
    }


def assert_records_match_the_venue(view: dict[str, Any], venue: dict[str, dict[str, Any]]) -> None:
    executed = {cid: float(o["executedQty"]) for cid, o in venue.items()}
    filled = {cid: qty for cid, qty in executed.items() if qty > 0}
    by_order: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for cid, number, quantity in view["fills"]:
        by_order[cid].append((number, quantity))
    assert dict(by_order) == {cid: [(1, pytest.approx(qty))] for cid, qty in filled.items()}
    for cid, qty in executed.items():
        assert view["orders"][cid][0] == pytest.approx(qty), cid
    never_sent = {cid for cid, (_, code) in view["orders"].items() if code == "not_sent"}
    assert never_sent.isdisjoint(venue)
    assert set(view["orders"]) == set(venue) | never_sent


async def restored_balances(
    redis_url: str, deployment: str, strategy: str
) -> dict[tuple[str, str], float]:
    store = SnapshotStore(redis_url, "test", deployment)
    try:
        restored = await store.load([strategy])
    finally:
        await store.close()
    assert restored.problems == []
    balances = restored.snapshots[strategy].balances
    assert balances is not None
    return {(venue, asset): amount for venue, asset, amount in balances}


@pytest.mark.timeout(240)
@pytest.mark.parametrize("node", ["same node", "new node"])
async def test_kill_9_during_a_burst_then_restart_loses_and_duplicates_nothing(
    simulator: ExchangeSimulator,
    migrated: str,
    redis_url: str,
    redis_prefix: tuple[str, str],
    tmp_path: Path,
    node: str,
) -> None:
    """Restarted on the same node, the engine has its journal; on a new node (the journal lost
    with the old one) it has the Redis snapshot, and what the venue lists after it
    (runtime/persistence/lookback.py). Either way: the database and the accounts match the venue."""
    strategy = "burst-kill" if node == "same node" else "burst-lost"
    deployment = redis_prefix[1]
    config = write_config(tmp_path, simulator, migrated, redis_url, (strategy, deployment))
    first = EngineProcess(config, tmp_path / "first.log")
    in_flight: list[str] = []

    def kill_mid_burst(venue: str, order: dict[str, Any], received_ns: int) -> None:
        if len(simulator.orders) == 120 and not in_flight:  # a few journal checkpoints in
            in_flight.append(order["clientOrderId"])  # answered only after the engine is dead
            os.kill(first.pid, signal.SIGKILL)

    simulator.on_order = kill_mid_burst
    await first.start()
    assert await first.exit_code() == -signal.SIGKILL
    # Requests already on their way reach the venue: once the simulator holds no connection
    # of the dead engine, every request sent before the kill has arrived and been answered.
    await until(lambda: simulator.open_connections == 0, 30, "the dead engine's connections")
    venue = dict(simulator.orders)

    if node == "new node":  # the same deployment's config, a journal directory of its own
        (tmp_path / "new-node").mkdir()
        config = write_config(
            tmp_path / "new-node", simulator, migrated, redis_url, (strategy, deployment)
        )
    quiet = {"ARBFLEET_STRATEGIES__0__CONFIG__ACTIVE": "false"}  # it sends nothing new
    log = config.parent / "second.log"
    second = EngineProcess(config, log, **quiet)
    await second.start()
    await second.running()
    if node == "new node":
        await until(lambda: "look-back:" in log.read_text(), 60, "the look-back")
    second_process = second.process
    assert second_process is not None
    second_process.send_signal(signal.SIGTERM)
    assert await second.exit_code() == 0

    assert simulator.stats.duplicate_orders == 0  # nothing was ever sent twice
    assert simulator.orders.keys() == venue.keys()  # and the restarted engine sent nothing
    view = await database_view(migrated, strategy)
    assert_records_match_the_venue(view, venue)
    assert in_flight[0] in view["reconciled"]  # asked the venue about it, did not resend it
    assert await restored_balances(redis_url, deployment, strategy) == {
        key: pytest.approx(amount, rel=1e-12, abs=1e-9)
        for key, amount in venue_balances(simulator.executions()).items()
    }
    assert OrderJournal(config.parent / "journal").replay().open_orders == {}


async def secrets_in_stores(dsn: str, redis_url: str, deployment: str, secrets: list[str]) -> str:
    """Where any of ``secrets`` was found in the database or in Redis; "" if nowhere."""
    conn = await asyncpg.connect(dsn)
    try:
        text = await conn.fetchval(
            "SELECT string_agg(row_to_json(t)::text, ' ') FROM ("
            " SELECT reason AS text FROM orders UNION ALL SELECT detail FROM system_events"
            " UNION ALL SELECT detail FROM opportunities) t"
        )
    finally:
        await conn.close()
    client = aioredis.Redis.from_url(redis_url)
    try:
        keys = [key async for key in client.scan_iter(f"arbfleet:test:{deployment}:*")]
        values = [await client.hgetall(key) for key in keys]
    finally:
        await client.aclose()
    stored = {"database": text or "", "redis": repr(values)}
    return ", ".join(
        place for place, content in stored.items() if any(s in content for s in secrets)
    )


@pytest.mark.timeout(240)
async def test_sigterm_under_load_stops_cleanly_with_every_order_recorded(
    simulator: ExchangeSimulator,
    migrated: str,
    redis_url: str,
    redis_prefix: tuple[str, str],
    tmp_path: Path,
) -> None:
    strategy, deployment = "burst-term", redis_prefix[1]
    port = free_port()
    config = write_config(tmp_path, simulator, migrated, redis_url, (strategy, deployment), port)
    engine = EngineProcess(config, tmp_path / "engine.log")
    await engine.start()
    await until(lambda: len(simulator.orders) >= 60, 60, "a burst of orders")
    url = f"http://127.0.0.1:{port}/metrics"
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        metrics = await response.text()
    process = engine.process
    assert process is not None
    process.send_signal(signal.SIGTERM)
    assert await engine.exit_code() == 0
    venue = dict(simulator.orders)
    assert simulator.stats.duplicate_orders == 0
    assert_records_match_the_venue(await database_view(migrated, strategy), venue)
    assert await restored_balances(redis_url, deployment, strategy) == {
        key: pytest.approx(amount, rel=1e-12, abs=1e-9)
        for key, amount in venue_balances(simulator.executions()).items()
    }
    assert OrderJournal(tmp_path / "journal").replay().open_orders == {}
    written = [
        line for line in metrics.splitlines() if line.startswith("arbfleet_writer_rows_total")
    ]
    assert any('table="orders"' in line for line in written), metrics
    log = (tmp_path / "engine.log").read_text()
    assert "engine stopped" in log
    canaries = [API_SECRET, urlsplit(migrated).password or "no password?"]
    assert not [c for c in canaries if c in log or c in metrics]
    assert await secrets_in_stores(migrated, redis_url, deployment, canaries) == ""
