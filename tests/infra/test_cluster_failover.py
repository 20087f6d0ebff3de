"""A PostgreSQL standby that takes over, on the multi-node cluster (issue #17, item 5).

One cluster, Patroni members on both clients (infra/nomad/ha/postgres-ha.nomad.hcl, leader key in
the cluster's Consul with the ACL of patroni-acl.json, synchronous replication), and the engine's
batched writer (runtime/persistence/writer.py) in this process writing order rows with unique
client order ids through the DSN Consul's catalog gives (every member,
``target_session_attrs=read-write``). The primary's node is killed like a lost host (link down,
every process in it SIGKILLed) while the writer writes:

- Consul's catalog names a new primary, a member whose Patroni check passes for the primary
  role, within ``db.failover_s`` (measured, recorded);
- the writer, never told anything, writes again to the new primary (``db.writer_resume_s``);
- every row put is there exactly once (the orders table's key: a batch retried after its commit
  was acknowledged by no one is written through ``ON CONFLICT DO NOTHING``).

``ARBFLEET_CLUSTER_RESULTS=1`` merges the figures into bench/results.json.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import pytest

from runtime.core.errors import StackError
from runtime.devstack import cluster, netns
from runtime.devstack import cluster_engines as ce
from runtime.devstack import cluster_postgres as cp
from runtime.devstack.simulator.background import SimulatorThread
from runtime.devstack.simulator.market import MarketParams
from runtime.devstack.simulator.server import ExchangeSimulator, SimulatorConfig
from runtime.persistence.migrate import migrate
from runtime.persistence.tables import ORDERS, Row
from runtime.persistence.writer import BatchWriter, connect_any, init_connection
from runtime.platform.vault import Layout
from tests.integration.polling import until

DEPLOYMENT = "pgha"
JOB = ce.job_id(DEPLOYMENT)
ACCOUNTS = {"binance": "paper", "upbit": "paper"}
LOAD = MarketParams(dislocations_per_s=4.0)  # as test_cluster_failures: a few orders a second
FAILOVER_BOUND_S = 60.0  # what the test allows; the figure measured is recorded
ROWS_PER_S = 100.0
MEMORY_ROWS = 200


@dataclass
class Ha:
    passwords: dict[str, str] = field(repr=False)  # never in a test report
    sim: ExchangeSimulator
    thread: SimulatorThread
    figures: dict[str, float] = field(default_factory=dict)
    killed_ns: int = 0
    killed: str = ""

    def dsn(self) -> str:
        return cp.dsn("postgres", self.passwords["superuser_password"])


def _streaming(dsn: str) -> bool:
    """A primary and a synchronous standby streaming from it."""
    if cp.primary() is None:
        return False

    async def sync_standbys() -> int:
        conn = await asyncpg.connect(dsn, timeout=5)
        try:
            return int(
                await conn.fetchval(
                    "SELECT count(*) FROM pg_stat_replication "
                    "WHERE state = 'streaming' AND sync_state = 'sync'"
                )
            )
        finally:
            await conn.close()

    return asyncio.run(sync_standbys()) == 1


@pytest.fixture(scope="module")
def ha() -> Iterator[Ha]:
    bridge = str(next(cluster.SUBNET.hosts()))
    try:
        cluster.up(say=print)
        passwords = cp.provision()
        started = time.monotonic()
        cp.submit()
        cluster.wait_for(
            "a Patroni primary and a synchronous standby",
            lambda: _streaming(cp.dsn("postgres", passwords["superuser_password"])),
        )
        admin = cp.dsn("postgres", passwords["superuser_password"])
        print(f"postgres-ha: submit to primary + sync standby {time.monotonic() - started:.1f} s")
        # The engines' users from OpenBao, the tables owned by their group (as in production).
        cp.configure_database(Layout(deployments={JOB: ACCOUNTS}), admin)
        asyncio.run(_migrate(admin))
        thread = SimulatorThread(SimulatorConfig(host=bridge, market=LOAD))
        with thread as sim:
            ce.provision_consul_token(JOB, ce.apply_engine_acl(JOB, ACCOUNTS))
            ce.provision_exchange_keys(JOB, ACCOUNTS)
            ce.submit_engine(
                DEPLOYMENT, f"{bridge}:{sim.port}", live=ACCOUNTS,
                postgres_service=cp.SCOPE, postgres_ha="true",
            )  # fmt: skip
            state = Ha(passwords, sim, thread)
            cluster.wait_for("the engine's orders in PostgreSQL", lambda: engine_orders(state), 240)
            yield state
        print(f"figures: {state.figures}")
        if os.environ.get("ARBFLEET_CLUSTER_RESULTS") and state.figures:
            from bench.results import write_results

            write_results(state.figures, stamp=False)
    finally:
        cluster.down(say=print)
        cp.remove_data()


async def _migrate(dsn: str) -> None:
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        await migrate(conn, timescaledb="off", owner_role="arbfleet_writer")
    finally:
        await conn.close()


def engine_orders(ha: Ha, after_ns: int = 0) -> dict[str, int]:
    """The engine's order rows: client order id -> created (ns)."""

    async def fetch() -> dict[str, int]:
        conn = await connect_any(ha.dsn(), timeout=10)  # a dead member may be listed first
        await init_connection(conn)
        try:
            rows = await conn.fetch(
                "SELECT client_order_id, created FROM orders WHERE strategy <> 'failover'"
            )
            return {r[0]: r[1] for r in rows if r[1] > after_ns}
        finally:
            await conn.close()

    return asyncio.run(fetch())


def test_the_job_validates_with_the_production_variables(ha: Ha) -> None:
    # The cluster's Nomad validates production's docker variant (on 1.6.1 with the legacy
    # secrets-store token, as tests/infra/test_nomad_jobs.py does for the other jobs).
    legacy = json.loads((Path(__file__).parent / "fixtures/legacy-nomad.vars.json").read_text())
    production = json.loads((cp.JOB_FILE.parent / "vars/production.json").read_text())
    job = cp.parse(json.dumps({**production, **legacy}))
    answer = ce.nomad("/v1/validate/job", "POST", {"Job": job})
    assert not answer.get("ValidationErrors"), answer
    (group,) = job["TaskGroups"]
    assert group["Count"] == 2
    assert [t["Driver"] for t in group["Tasks"]] == ["docker"]


def order(coid: str, now_ns: int) -> Row:
    values = {
        "client_order_id": coid, "created": now_ns, "strategy": "failover", "venue": "binance",
        "symbol": "BTCUSDT", "side": "buy", "quantity": 0.001, "limit_price": 50_000.0,
        "tag": "test", "opportunity_ts": None, "status": "filled", "filled_quantity": 0.001,
        "average_price": 50_000.0, "reason": "", "code": "", "venue_order_id": coid,
        "finished": now_ns,
    }  # fmt: skip
    return tuple(values[c] for c in ORDERS.columns)


def kill_node(node: cluster.Node) -> None:
    """A lost host: its link down, then every process in its namespace SIGKILLed."""
    ns = netns.namespace(node.name)
    netns.ip("-n", ns, "link", "set", "eth0", "down")
    for pid in netns.pids(ns):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


async def stored_ids(dsn: str) -> list[str]:
    conn = await connect_any(dsn, timeout=10)  # the dead member may be listed first
    try:
        rows = await conn.fetch("SELECT client_order_id FROM orders WHERE strategy = 'failover'")
        return [r[0] for r in rows]
    finally:
        await conn.close()


async def _write_through_failover(ha: Ha, spill: Path) -> tuple[list[str], BatchWriter]:
    # A small memory bound: rows put during the outage go to the spill file and come back from it.
    writer = BatchWriter(
        ha.dsn(), spill, batch_rows=100, flush_interval_s=0.05, memory_rows=MEMORY_ROWS,
        connect_timeout_s=10.0,
    )  # fmt: skip
    await writer.start()
    put: list[str] = []
    stop = asyncio.Event()

    async def produce() -> None:
        while not stop.is_set():
            coid = f"fo-{len(put):06d}"
            writer.put("orders", order(coid, time.time_ns()))
            put.append(coid)
            await asyncio.sleep(1 / ROWS_PER_S)

    producer = asyncio.create_task(produce())
    try:
        await until(lambda: writer.stats.rows["orders"] >= 200, 60, "rows before the kill")
        old = cp.primary()
        assert old is not None
        node = next(n for n in cluster.nodes() if n.name == old["node"])
        ha.killed = node.name
        killed, ha.killed_ns = time.monotonic(), time.time_ns()
        kill_node(node)
        put_at_kill = len(put)

        def new_primary() -> bool:
            found = cp.primary()
            return found is not None and found["node"] != node.name

        await until(lambda: _quietly(new_primary), FAILOVER_BOUND_S, "a new primary")
        ha.figures["db.failover_s"] = time.monotonic() - killed
        # The writer reconnects by itself: rows put after the kill reach the new primary.
        await until(
            lambda: writer.available and writer.stats.rows["orders"] > put_at_kill,
            FAILOVER_BOUND_S,
            "the writer writing again",
        )
        ha.figures["db.writer_resume_s"] = time.monotonic() - killed
        await asyncio.sleep(1.0)  # more rows after the resume, written as usual
    finally:
        stop.set()
        await producer
        assert await writer.drain(60), f"rows left: {writer.queue_depth()}"
        await writer.close()
    return put, writer


def _quietly(fact: object) -> bool:
    try:
        return bool(fact())  # type: ignore[operator]
    except (OSError, StackError):
        return False


def test_killing_the_primarys_node_loses_no_row_and_writes_none_twice(
    ha: Ha, tmp_path: Path
) -> None:
    """Two writers through the failover: the engine (Nomad, on the client that survives: the
    primary is moved off its node first) and the writer in this process."""
    (alloc,) = ce.running_allocations(JOB)
    survivor = alloc["NodeName"]
    cp.switchover(
        next(n.name for n in cluster.nodes() if n.role == "client" and n.name != survivor)
    )
    # Patroni promotes only its synchronous standby (it has every acknowledged commit).
    cluster.wait_for(
        "the engine's node the synchronous standby", lambda: cp.sync_standby() == survivor
    )
    put, writer = asyncio.run(_write_through_failover(ha, tmp_path / "spill"))
    print(
        f"failover: new primary {ha.figures['db.failover_s']:.1f} s after the kill, writer"
        f" writing again {ha.figures['db.writer_resume_s']:.1f} s after; {len(put)} rows put,"
        f" {writer.stats.spilled_rows} spilled, {writer.stats.retries} batches retried"
    )
    stored = asyncio.run(stored_ids(ha.dsn()))
    assert len(stored) == len(set(stored)), "a row written twice"
    missing = sorted(set(put) - set(stored))
    assert not missing, f"{len(missing)} rows lost: {missing[:5]}"
    assert set(stored) == set(put)
    assert writer.stats.spilled_rows > 0, "the outage was too short to spill anything"

    # The engine reconnected by itself: the same allocation, never restarted, writes orders
    # it made after the kill to the new primary.
    cluster.wait_for(
        "the engine's orders after the kill", lambda: engine_orders(ha, ha.killed_ns), 120
    )
    (after,) = ce.running_allocations(JOB)
    assert after["ID"] == alloc["ID"]
    assert after["TaskStates"]["engine"]["Restarts"] == 0
    # Stopped (its writer drains within the shutdown deadline): every order the venue took from
    # it has its row in the new primary, once (the orders table's key).
    stop_engine()
    taken = set(simulator_orders(ha))
    rows = engine_orders(ha)
    assert taken and taken <= set(rows), sorted(taken - set(rows))[:5]
    print(f"engine: {len(taken)} orders at the venue, {len(rows)} order rows, none missing")


def stop_engine() -> None:
    """Stop the engine's job and wait until no allocation of it runs. Nomad 1.6.1 can leave an
    allocation running past its job's deletion when the kill races a restart (the stores
    template re-rendered as the dead node's member came back: "failed to kill task"); that one
    is stopped by id."""
    ce.nomad(f"/v1/job/{JOB}", "DELETE")
    try:
        cluster.wait_for("the engine stopped", lambda: not ce.running_allocations(JOB), 60)
    except StackError:
        for alloc in ce.running_allocations(JOB):
            ce.nomad(f"/v1/allocation/{alloc['ID']}/stop", "POST")
        cluster.wait_for("the engine stopped", lambda: not ce.running_allocations(JOB), 120)


def test_the_killed_node_comes_back_as_the_synchronous_standby(ha: Ha) -> None:
    """The dead primary's host back (link up, its Consul and Nomad agents started as at boot):
    Nomad runs its member again, Patroni rewinds the old primary's data to the new timeline and
    makes it the synchronous standby, with every row the new primary has."""
    node = next(n for n in cluster.nodes() if n.name == ha.killed)
    netns.ip("-n", netns.namespace(node.name), "link", "set", "eth0", "up")
    back = time.monotonic()
    for agent in ("consul", "nomad"):
        cluster.start_agent(node, agent)
    cluster.wait_for(f"{node.name} the synchronous standby", lambda: cp.sync_standby() == node.name)
    ha.figures["db.rejoin_s"] = time.monotonic() - back
    print(f"{node.name} back: the synchronous standby {ha.figures['db.rejoin_s']:.1f} s later")
    (member,) = [m for m in cp.members() if m["node"] == node.name]
    dsn = ha.dsn().split("@")[0] + f"@{member['address']}:{member['port']}/postgres"

    async def counts() -> tuple[int, int]:
        standby, primary = await asyncpg.connect(dsn), await connect_any(ha.dsn())
        try:
            query = "SELECT count(*) FROM orders"
            return await standby.fetchval(query), await primary.fetchval(query)
        finally:
            await standby.close()
            await primary.close()

    # Nothing writes any more: the standby replays up to the primary's last row.
    cluster.wait_for(
        "the standby with every row", lambda: (c := asyncio.run(counts()))[0] == c[1] > 0, 60
    )


def simulator_orders(ha: Ha) -> list[str]:
    """Client order ids the simulator took, copied in its own loop (it writes them there)."""

    async def copy() -> list[str]:
        return list(ha.sim.order_peers)

    return asyncio.run_coroutine_threadsafe(copy(), ha.thread.loop).result(10)


def test_down_leaves_nothing(ha: Ha) -> None:
    cluster.down(say=print)
    assert cluster.leftovers() == {"namespaces": [], "links": [], "processes": []}
