"""The whole local fleet under Nomad (runtime/devstack/fleet.py): every job of the local
environment submitted to the local stack in a namespace of its own, the paper engine trading
against the exchange simulator (in this process) and writing to the fleet's own PostgreSQL (the
timescaledb job) as a user Vault made for it, its state snapshots in the fleet's Redis.

Then, on that fleet: the engine's task killed with SIGKILL (Nomad restarts it, it restores from
its journal), and a broken version of the engine deployed (the canary never gets healthy, the
deployment reverts, the running engine never stops).

The time from the first submission to all healthy and the first rows written is printed here;
``python -m bench.fleet`` measures it for bench/results.json.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import asyncpg
import nomad
import pytest
import redis

from runtime.core.errors import StackError
from runtime.devstack import fleet, stack
from runtime.devstack.simulator import ExchangeSimulator
from runtime.devstack.simulator.background import SimulatorThread
from runtime.ops import deploy
from tests.infra.conftest import ENGINE_DEPLOYMENT
from tests.stack_plugin import wait_for

pytestmark = pytest.mark.stack

# What runs in the local environment: Grafana has count 0 there (no Debian package), backup and
# key rotation are periodic.
RUNNING_JOBS = {"timescaledb", "redis", "prometheus", "alertmanager", ENGINE_DEPLOYMENT}


@dataclass(frozen=True)
class RunningFleet:
    fleet: fleet.Fleet
    api: nomad.Nomad
    simulator: ExchangeSimulator
    units: list[deploy.Unit]
    healthy_s: float
    """From the first submission to every allocation running, every check passing."""


@pytest.fixture(scope="module")
def running(
    local_stack: stack.Endpoints, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningFleet]:
    namespace = f"arbfleet-test-{uuid.uuid4().hex[:8]}"
    data_dir = stack.state_dir() / "volumes" / f"test-{uuid.uuid4().hex[:8]}"
    tmp = tmp_path_factory.mktemp("fleet")
    try:
        with SimulatorThread() as simulator:
            units = fleet.local_units(tmp, data_dir, simulator.port)
            started = time.monotonic()
            up = fleet.up(namespace, units)
            fleet.wait_healthy(namespace, timeout_s=120)
            healthy_s = time.monotonic() - started
            print(f"fleet: submit to healthy in {healthy_s:.1f} s (up {up.elapsed_s:.1f} s)")
            yield RunningFleet(up, fleet.api_for(namespace), simulator, units, healthy_s)
    finally:
        if namespace in {n["Name"] for n in fleet.api_for(namespace).namespaces.get_namespaces()}:
            fleet.down(namespace)
        shutil.rmtree(data_dir, ignore_errors=True)


def query(running: RunningFleet, sql: str, *args: Any) -> list[asyncpg.Record]:
    async def fetch() -> list[asyncpg.Record]:
        connection = await asyncpg.connect(running.fleet.postgres_admin_dsn)
        try:
            return list(await connection.fetch(sql, *args))
        finally:
            await connection.close()

    return asyncio.run(fetch())


def count(running: RunningFleet, table: str) -> int:
    if not query(running, "SELECT 1 FROM pg_tables WHERE tablename = $1", table):
        return 0
    return int(query(running, f"SELECT count(*) FROM {table}")[0][0])


def engine_allocation(running: RunningFleet) -> dict[str, Any]:
    (alloc,) = [
        a
        for a in running.api.job.get_allocations(ENGINE_DEPLOYMENT)
        if a["ClientStatus"] == "running" and a["DesiredStatus"] == "run"
    ]
    return dict(alloc)


def lock_session(running: RunningFleet) -> str | None:
    """The Consul session holding the engine's lock on the simulator's binance account."""
    key = f"{stack.endpoints().consul}/v1/kv/arbfleet/locks/accounts/binance/paper"
    try:
        entries = stack.http_json(key)
    except StackError:  # 404: no such key
        return None
    return entries[0].get("Session") if entries else None


def engine_restarts(running: RunningFleet, alloc_id: str) -> int:
    task = running.api.allocation.get_allocation(alloc_id)["TaskStates"]["engine"]
    return int(task["Restarts"])


def engine_pid(alloc_id: str) -> int:
    """The engine process of the allocation (raw_exec: a process of this machine)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        # The venv's Python runs the console script (.../bin/arbfleet run --config <allocation
        # dir>/engine/local/arbfleet.toml) or, with the job's source_dir (locally: this checkout),
        # the module (python -m runtime.cli.main run --config ...).
        script = any(arg.endswith(b"/bin/arbfleet") for arg in cmdline) or (
            b"runtime.cli.main" in cmdline and b"-m" in cmdline
        )
        if script and b"run" in cmdline and alloc_id.encode() in b" ".join(cmdline):
            return int(entry.name)
    raise AssertionError(f"no engine process for allocation {alloc_id}")


def test_every_allocation_runs_and_every_check_passes(running: RunningFleet) -> None:
    assert fleet.problems(running.fleet.namespace) == []
    jobs = {o.job_id: o.status for o in running.fleet.outcomes}
    assert jobs == {
        "timescaledb": "successful",
        "redis": "successful",
        "prometheus": "successful",
        "alertmanager": "successful",
        "grafana": "unchanged",
        "backup": "registered",
        "key-rotation": "registered",
        ENGINE_DEPLOYMENT: "successful",
    }
    running_jobs = {
        a["JobID"]
        for a in running.api.allocations.get_allocations()
        if a["ClientStatus"] == "running"
    }
    assert running_jobs == RUNNING_JOBS


def test_the_engine_writes_to_the_fleets_postgres_as_a_user_of_its_own(
    running: RunningFleet,
) -> None:
    for table in ("ticks", "opportunities"):
        wait_for(lambda t=table: count(running, t) > 0, 60, f"rows in {table}")  # type: ignore[misc]
    # The writer's connections belong to a user Vault's database engine created for this
    # engine (v-<auth>-<role>-<random>-<time>), a member of the arbfleet_writer group that owns
    # the tables; nothing else but Vault's own user and the superuser (this test) is connected.
    users = {
        r["usename"]: r["writer"]
        for r in query(
            running,
            "SELECT usename, pg_has_role(usename, 'arbfleet_writer', 'MEMBER') AS writer"
            " FROM pg_stat_activity WHERE usename IS NOT NULL",
        )
    }
    engine_users = set(users) - {"postgres", "arbfleet_vault"}
    # The auth method the engine's token came from: JWT (workload identity) or Nomad's token.
    auth = "jwt" if stack.vault_identity() == "workload_identity" else "token"
    assert engine_users and all(u.startswith(f"v-{auth}-") and users[u] for u in engine_users), (
        users
    )
    (owner,) = query(running, "SELECT tableowner FROM pg_tables WHERE tablename = 'orders'")
    assert owner[0] == "arbfleet_writer"
    started = query(
        running, "SELECT source, detail FROM system_events WHERE kind = 'engine_started'"
    )
    assert {r["source"] for r in started} == {ENGINE_DEPLOYMENT}


def test_the_engine_snapshots_its_state_to_the_fleets_redis(running: RunningFleet) -> None:
    address = fleet.passing_instance("redis", running.fleet.namespace)
    assert address is not None
    client = redis.Redis.from_url(f"redis://{address}/0")
    prefix = f"arbfleet:{running.fleet.namespace}:{ENGINE_DEPLOYMENT}:"
    keys = wait_for(lambda: client.keys(prefix + "*"), 30, f"snapshots under {prefix}")
    assert all(k.decode().endswith(":snapshot") for k in keys), keys


def test_a_killed_engine_is_restarted_in_place_takes_its_lock_again_and_restores_its_journal(
    running: RunningFleet,
) -> None:
    alloc = engine_allocation(running)
    holder = lock_session(running)
    assert holder is not None
    os.kill(engine_pid(alloc["ID"]), signal.SIGKILL)

    def restarted() -> bool:
        task = running.api.allocation.get_allocation(alloc["ID"])["TaskStates"]["engine"]
        return bool(task["State"] == "running" and task["Restarts"] >= 1)

    wait_for(restarted, 60, "Nomad to restart the engine task in its allocation")
    # The killed process's Consul session outlives it by its TTL, and its lock stays blocked for
    # the lock delay after that: the new process waits, then takes the lock with its own session.
    fleet.wait_healthy(running.fleet.namespace, timeout_s=90)
    assert engine_allocation(running)["ID"] == alloc["ID"]
    assert lock_session(running) not in (None, holder)
    # The second start found the first session's journal in the allocation's data directory.
    started = wait_for(
        lambda: (
            rows
            if len(
                rows := query(
                    running,
                    "SELECT detail FROM system_events WHERE kind = 'engine_started' ORDER BY ts",
                )
            )
            >= 2
            else None
        ),
        30,
        "the second engine_started event",
    )
    assert "state from journal" in started[-1]["detail"], started[-1]["detail"]
    assert not query(running, "SELECT detail FROM system_events WHERE kind = 'state_damaged'")


def test_a_broken_version_is_reverted_and_the_running_engine_never_stops(
    running: RunningFleet, tmp_path: Path
) -> None:
    before = engine_allocation(running)
    restarts = engine_restarts(running, before["ID"])
    base = next(u for u in running.units if u.name == ENGINE_DEPLOYMENT)
    text = str(base.values["engine_config"])
    assert 'plugin = "cross_exchange"' in text
    # A plugin that does not exist: the engine exits at start, its config rejected.
    broken = text.replace('plugin = "cross_exchange"', 'plugin = "no_such_plugin"')
    ticks_before = count(running, "ticks")

    outcome = deploy.deploy(
        running.api, replace(base, values={**base.values, "engine_config": broken})
    )

    assert outcome.status == "reverted", outcome
    # The engine that ran before is the one running now, never restarted meanwhile, and it
    # went on writing.
    assert engine_allocation(running)["ID"] == before["ID"]
    assert engine_restarts(running, before["ID"]) == restarts
    assert count(running, "ticks") > ticks_before
    wait_for(lambda: not fleet.problems(running.fleet.namespace), 60, "the fleet healthy again")
