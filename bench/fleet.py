"""The whole local fleet under Nomad: from the first submission to healthy and writing.

Usage: ``python -m bench.fleet [--quick]``. Needs the local stack (started if it is not running,
and stopped again afterwards only then) and a warm toolchain. The exchange simulator runs in
this process; ``runtime.devstack.fleet.up`` deploys every job of the local environment into a
namespace and host volume directory of this run's own, and ``down`` removes them again. One run
(``--quick`` changes nothing: a run is the unit).

Figures: ``stack.deploy_to_healthy_s``, from the first submission to every allocation running,
every Consul check of the namespace passing (the engine's own "can trade" check included) and
the engine's first ticks in the fleet's PostgreSQL (the budget is 90 s);
``stack.platform_deploy_s``, the platform jobs' part of it (submitted together);
``stack.engine_deploy_s``, the engine's (Vault layout and database engine included).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg

from bench.results import load_average, write_results
from runtime.core.errors import DeployError
from runtime.devstack import fleet, stack
from runtime.devstack.simulator.background import SimulatorThread

BUDGET_S = 90.0


def first_ticks(admin_dsn: str) -> bool:
    async def probe() -> bool:
        connection = await asyncpg.connect(admin_dsn)
        try:
            if not await connection.fetchval("SELECT to_regclass('ticks') IS NOT NULL"):
                return False
            return bool(await connection.fetchval("SELECT EXISTS (SELECT FROM ticks)"))
        finally:
            await connection.close()

    return asyncio.run(probe())


def measure(workdir: Path) -> dict[str, float]:
    namespace = f"bench-{uuid.uuid4().hex[:8]}"
    data_dir = stack.state_dir() / "volumes" / namespace
    timings: dict[str, float] = {}
    started = time.monotonic()

    def say(message: str) -> None:
        elapsed = time.monotonic() - started
        if message.startswith("vault: layout applied"):  # the platform jobs are all healthy
            timings["stack.platform_deploy_s"] = elapsed
        print(f"  {elapsed:6.1f} s  {message}", flush=True)

    try:
        with SimulatorThread() as simulator:
            units = fleet.local_units(workdir, data_dir, simulator.port)
            started = time.monotonic()
            up = fleet.up(namespace, units, say=say)
            fleet.wait_healthy(namespace, timeout_s=300, say=say)
            assert up.postgres_admin_dsn is not None
            fleet.wait(lambda: first_ticks(up.postgres_admin_dsn), 120, "the first ticks")
            total = time.monotonic() - started
    finally:
        if namespace in {n["Name"] for n in fleet.api_for(namespace).namespaces.get_namespaces()}:
            fleet.down(namespace, say=lambda _msg: None)
        shutil.rmtree(data_dir, ignore_errors=True)
    timings["stack.deploy_to_healthy_s"] = total
    timings["stack.engine_deploy_s"] = total - timings["stack.platform_deploy_s"]
    return timings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fleet", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="accepted; a run is the unit")
    parser.parse_args(argv)
    started_stack = not stack.http_ok(f"{stack.endpoints().nomad}/v1/status/leader")
    if started_stack:
        stack.up(say=lambda _msg: None)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-fleet-") as workdir:
            figures = measure(Path(workdir))
    except DeployError as exc:
        print(f"bench.fleet: {exc}", file=sys.stderr)
        return 1
    finally:
        if started_stack:
            stack.down(say=lambda _msg: None)
    write_results(figures)
    total = figures["stack.deploy_to_healthy_s"]
    verdict = "within" if total <= BUDGET_S else "OVER"
    print(
        f"fleet: submit to healthy and writing {total:.1f} s ({verdict} the {BUDGET_S:.0f} s "
        f"budget): platform jobs {figures['stack.platform_deploy_s']:.1f} s, engine "
        f"{figures['stack.engine_deploy_s']:.1f} s; load average {load_average():.1f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
