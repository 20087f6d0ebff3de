"""The cluster kill switch: how soon every engine has halted after ``arbfleet halt`` writes it.

Usage: ``python -m bench.consul [--quick]``. Needs the local stack's Consul (started if it is
not running, and stopped again afterwards only then). Three engines (two with ``--quick``) run
on the exchange simulator with Consul on, each watching the same kill switch key (a prefix of
this run's own); the switch is engaged and released ten times (three with ``--quick``).

Figures: ``consul.kill_switch_s``, the worst time over all halts from the KV write returning to
the last engine's kill switch engaged (sampled every millisecond; the budget is 1 s);
``consul.kill_switch_p50_s``, the median.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import statistics
import sys
import time

import aiohttp

from bench.results import load_average, write_results
from runtime.config import load_config
from runtime.core.logging import configure
from runtime.devstack import stack
from runtime.devstack.demo import demo_config
from runtime.devstack.simulator import ExchangeSimulator, SimulatorConfig
from runtime.engine.engine import Engine
from runtime.node import Node
from runtime.platform.consul import ConsulApi

SAMPLE_S = 0.001


async def start_engines(
    sim: ExchangeSimulator, address: str, key: str, count: int
) -> list[tuple[Engine, asyncio.Event, asyncio.Task[None]]]:
    engines = []
    for _ in range(count):
        base = demo_config(sim).model_dump()
        base["consul"] = {
            "enabled": True,
            "address": address,
            "service": f"arbfleet-bench-{key.split('/')[1]}",
            "kill_switch_key": key,
            "lock": False,
        }
        node = Node(load_config(env={}, overrides=base))
        stop = asyncio.Event()
        task = asyncio.create_task(node.run(stop))
        await node.ready.wait()
        engines.append((node.engine, stop, task))
    return engines


async def until_all(engines: list[Engine], engaged: bool) -> float:
    """Monotonic time at which the last engine's kill switch reached ``engaged``."""
    # Sampling is the measurement: the kill switch has no event to await, by design.
    while any(engine.kill_switch.engaged != engaged for engine in engines):  # noqa: ASYNC110
        await asyncio.sleep(SAMPLE_S)
    return time.monotonic()


async def measure(address: str, count: int, rounds: int) -> dict[str, float]:
    key = f"arbfleet-bench/{secrets.token_hex(4)}/kill-switch"
    sim = ExchangeSimulator(SimulatorConfig(tick_interval_ms=20))
    await sim.start()
    running = await start_engines(sim, address, key, count)
    engines = [engine for engine, _, _ in running]
    delays = []
    try:
        async with aiohttp.ClientSession() as http:
            api = ConsulApi(address, http)
            await until_all(engines, False)
            for _ in range(rounds):
                await asyncio.sleep(0.3)
                value = json.dumps({"reason": "bench", "who": "bench", "when": "now"})
                await api.put_kv(key, value)
                written = time.monotonic()
                delays.append(await until_all(engines, True) - written)
                await api.delete_kv(key)
                await until_all(engines, False)
    finally:
        for _, stop, task in running:
            stop.set()
            await task
        await sim.stop()
    print(f"kill switch to {count} engines: worst {max(delays):.3f} s over {rounds} halts")
    return {
        "consul.kill_switch_s": max(delays),
        "consul.kill_switch_p50_s": statistics.median(delays),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.consul", description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    configure("WARNING", stream=sys.stderr)
    endpoints = stack.endpoints()
    started = not stack.http_ok(f"{endpoints.consul}/v1/status/leader")
    if started:
        endpoints = stack.up(say=lambda _msg: None)
    try:
        load = load_average()
        figures = asyncio.run(
            measure(endpoints.consul, 2 if args.quick else 3, 3 if args.quick else 10)
        )
        print(f"load average {load:.1f} -> {load_average():.1f}")
    finally:
        if started:
            stack.down(say=lambda _msg: None)
    write_results(figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
