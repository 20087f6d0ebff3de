"""Key rotation: how soon every engine uses a new key version, and whether any request fails.

Usage: ``python -m bench.rotation [--quick]``. Needs the local stack's Vault (started if it is
not running, and stopped again afterwards only then). Three engines in live mode (two with
``--quick``) run on the exchange simulator with their keys from Vault; orders flow at 50/s
through the first engine's key provider while ``Rotation`` (the code behind ``arbfleet secrets
rotate``) rotates the account ten times (three with ``--quick``).

Figures: ``rotation.propagation_s``, the worst time over all rotations from the KV write
returning to the last engine swapping to that version (sampled every 5 ms);
``rotation.propagation_p50_s``, the median; ``rotation.failed_requests``, orders the venue
refused or that failed, plus requests the simulator refused as unauthorised, over the whole run.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import hvac

from bench.results import load_average, write_results
from runtime.config import load_config
from runtime.core.logging import configure
from runtime.core.orders import OrderIntent, OrderResult, OrderStatus
from runtime.devstack import stack
from runtime.devstack.demo import demo_config
from runtime.devstack.simulator import ExchangeSimulator, SimulatorConfig
from runtime.node import Node
from runtime.ops.platform.cli import apply_layout
from runtime.ops.rotation import KeyManagementApi, Rotation, RotationSettings, StaticEngines
from runtime.platform.vault import ExchangeKeys, Layout, VaultSession
from runtime.trading.book import Books
from runtime.trading.execution.live import LiveExecutor
from runtime.trading.portfolio import Portfolio
from runtime.venues.registry import venue_clients

ADMIN = secrets.token_urlsafe(16)
ORDERS_PER_S = 50.0
SAMPLE_S = 0.005


class TimedKeys(ExchangeKeys):
    """KV access that notes when the last write returned."""

    written_at = 0.0

    def write(self, *args: Any, **kwargs: Any) -> int:
        version = super().write(*args, **kwargs)
        self.written_at = time.monotonic()
        return version


async def start_engines(
    sim: ExchangeSimulator, vault: hvac.Client, layout: Layout, count: int, workdir: Path
) -> list[tuple[Node, asyncio.Event, asyncio.Task[None]]]:
    token = vault.auth.token.create(policies=[layout.deployment_policy_name("bench")], ttl="1h")[
        "auth"
    ]["client_token"]
    token_file = workdir / "engine.token"
    token_file.touch(mode=0o600)
    token_file.write_text(token)
    engines = []
    for _ in range(count):
        base = demo_config(sim).model_dump()
        base["mode"] = "live"
        base["vault"] = {
            "address": vault.url,
            "token_file": str(token_file),
            "kv_mount": layout.kv_mount,
            "accounts": {"binance": "main", "upbit": "main"},
        }
        engine = Node(load_config(env={}, overrides=base))
        stop = asyncio.Event()
        task = asyncio.create_task(engine.run(stop))
        await engine.ready.wait()
        engines.append((engine, stop, task))
    return engines


async def order_flow(
    sim: ExchangeSimulator, engine: Node, stop: asyncio.Event, results: list[OrderResult]
) -> int:
    """Binance orders at a steady rate through ``engine``'s key provider; how many were sent."""
    assert engine.keys is not None
    executor = LiveExecutor(
        venue_clients({"binance": (sim.http_url, engine.keys.source("binance"), 500.0)}),
        Books(), Portfolio(), lambda fill: None, results.append,
    )  # fmt: skip
    ladder = sim.model.ladders[("binance", "BTC/USDT")]
    sent = 0
    while not stop.is_set():
        sent += 1
        price = ladder.ask * 1.02
        executor.submit(
            OrderIntent("bench", f"bench-{sent}", "binance", "BTC/USDT", "buy", 0.001, price)
        )
        await asyncio.sleep(1 / ORDERS_PER_S)
    deadline = time.monotonic() + 15
    while len(results) < sent and time.monotonic() < deadline:  # noqa: ASYNC110 - at the end
        await asyncio.sleep(0.05)
    await executor.close()
    return sent


async def propagation(engines: list[Node], version: int, written_at: float) -> float:
    """Seconds from the write to the moment the last engine used ``version``."""
    pending = set(range(len(engines)))
    last = written_at
    while pending:
        for index in list(pending):
            keys = engines[index].keys
            assert keys is not None
            if keys.current["binance"].version >= version:
                pending.discard(index)
                last = time.monotonic()
        await asyncio.sleep(SAMPLE_S)
    return last - written_at


async def measure(vault: hvac.Client, engines_count: int, rotations: int) -> dict[str, float]:
    tag = secrets.token_hex(4)
    layout = Layout.load(
        kv_mount=f"exchanges-bench-{tag}", prefix=f"bench{tag}",
        deployments={"bench": {"binance": "main", "upbit": "main"}},
    )  # fmt: skip
    apply_layout(vault, layout)
    sim = ExchangeSimulator(
        SimulatorConfig(tick_interval_ms=100, admin_token=ADMIN, credentials={})
    )
    await sim.start()
    keys = TimedKeys(VaultSession(vault.url, token=vault.token), layout.kv_mount)
    api = KeyManagementApi(sim.http_url, ADMIN)
    try:
        for venue in ("binance", "upbit"):
            await Rotation(keys, api, StaticEngines(()), venue, "main").provision()
        with tempfile.TemporaryDirectory() as workdir:
            running = await start_engines(sim, vault, layout, engines_count, Path(workdir))
            engines = [engine for engine, _, _ in running]
            urls = tuple(f"{engine.health_url}/health" for engine in engines)
            results: list[OrderResult] = []
            stop_flow = asyncio.Event()
            flow = asyncio.create_task(order_flow(sim, engines[0], stop_flow, results))
            delays = []
            for _ in range(rotations):
                rotation = Rotation(
                    keys, api, StaticEngines(urls), "binance", "main",
                    RotationSettings(confirm_poll_s=0.05),
                )  # fmt: skip
                watch = asyncio.create_task(_watch(engines, keys))
                report = await rotation.rotate()
                delays.append(await watch)
                assert report.new_version == keys.metadata("binance", "main").current_version
            stop_flow.set()
            sent = await flow
            for _, stop, task in running:
                stop.set()
                await task
    finally:
        await sim.stop()
        vault.sys.disable_secrets_engine(layout.kv_mount)
        for name in (layout.rotation_policy_name, layout.deployment_policy_name("bench")):
            vault.sys.delete_policy(name)
    failed = sum(r.status is OrderStatus.REJECTED for r in results) + (sent - len(results))
    print(f"{rotations} rotations, {engines_count} engines, {sent} orders: propagation "
          f"max {max(delays):.3f} s, median {statistics.median(delays):.3f} s; "
          f"{failed} failed, {sim.stats.auth_failures} unauthorised")  # fmt: skip
    return {
        "rotation.propagation_s": max(delays),
        "rotation.propagation_p50_s": statistics.median(delays),
        "rotation.failed_requests": float(failed + sim.stats.auth_failures),
        "rotation.engines": float(engines_count),
    }


async def _watch(engines: list[Node], keys: TimedKeys) -> float:
    """Wait for the rotation's write, then time how long until every engine uses it."""
    before = keys.written_at
    while keys.written_at == before:  # noqa: ASYNC110 - sampling is what is measured
        await asyncio.sleep(SAMPLE_S)
    version = keys.metadata("binance", "main").current_version
    return await propagation(engines, version, keys.written_at)


def vault_client() -> tuple[hvac.Client, bool]:
    """The local stack's Vault (all this needs of it), and whether this had to start the stack."""
    endpoints = stack.endpoints()
    started = not stack.http_ok(f"{endpoints.vault}/v1/sys/health")
    if started:
        endpoints = stack.up(say=lambda _msg: None)
    return hvac.Client(url=endpoints.vault, token=endpoints.vault_token()), started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.rotation", description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    configure("WARNING", stream=sys.stderr)
    vault, started = vault_client()
    try:
        load = load_average()
        figures = asyncio.run(measure(vault, 2 if args.quick else 3, 3 if args.quick else 10))
        print(f"load average {load:.1f} -> {load_average():.1f}")
    finally:
        if started:
            stack.down(say=lambda _msg: None)
    write_results(figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
