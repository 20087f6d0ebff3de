"""``arbfleet demo``: the simulator and the engine with the three shipped strategies, in paper mode.

Everything runs in this process on loopback with embedded defaults: no PostgreSQL, Redis, Consul
or Vault. The summary is redrawn every second and printed once more at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from pathlib import Path
from typing import Any, TextIO

from runtime.config import EngineConfig, load_config
from runtime.devstack.simulator import ExchangeSimulator, SimulatorConfig
from runtime.engine.engine import Summary
from runtime.engine.report import render
from runtime.node import Node
from runtime.venues.replay import FrameRecorder

DEMO_TICK_MS = 10.0


def demo_config(simulator: ExchangeSimulator, health_port: int = 0) -> EngineConfig:
    """Embedded defaults with the venues pointed at the simulator."""
    overrides: dict[str, Any] = {
        "venues": {
            "binance": {"ws_url": simulator.binance_ws_url, "rest_url": simulator.http_url},
            "upbit": {"ws_url": simulator.upbit_ws_url, "rest_url": simulator.upbit_rest_url},
        },
        "health": {"port": health_port},
    }
    # env={}: the demo shows the defaults, whatever ARBFLEET_* the shell happens to export.
    return load_config(env={}, overrides=overrides)


async def run_demo(
    duration_s: float | None,
    out: TextIO = sys.stdout,
    refresh_s: float = 1.0,
    simulator_config: SimulatorConfig | None = None,
    record: Path | None = None,
) -> Summary:
    """Run until ``duration_s`` passes or Ctrl-C; return the final summary."""
    simulator = ExchangeSimulator(
        simulator_config or SimulatorConfig(tick_interval_ms=DEMO_TICK_MS)
    )
    await simulator.start()
    node = Node(demo_config(simulator))
    engine = node.engine
    if record is not None:
        engine.recorder = FrameRecorder(record)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError):
        loop.add_signal_handler(signal.SIGINT, stop.set)
        loop.add_signal_handler(signal.SIGTERM, stop.set)
    runner = asyncio.create_task(node.run(stop))
    try:
        await _report_until(stop, node, simulator, out, duration_s, refresh_s)
    finally:
        stop.set()
        await runner
        await simulator.stop()
        if engine.recorder is not None:
            engine.recorder.close()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.remove_signal_handler(sig)
    summary = engine.summary()
    print("\nfinal summary\n" + render(summary, engine), file=out, flush=True)
    return summary


async def _report_until(
    stop: asyncio.Event,
    node: Node,
    simulator: ExchangeSimulator,
    out: TextIO,
    duration_s: float | None,
    refresh_s: float,
) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + duration_s if duration_s is not None else None
    engine = node.engine
    await node.ready.wait()
    print(
        f"arbfleet demo: paper trading against the exchange simulator at {simulator.http_url}\n"
        f"health {node.health_url}/health, metrics {node.health_url}/metrics; Ctrl-C stops",
        file=out,
        flush=True,
    )
    while not stop.is_set():
        timeout = (
            refresh_s if deadline is None else max(0.0, min(refresh_s, deadline - loop.time()))
        )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout)
        if deadline is not None and loop.time() >= deadline:
            return
        if not stop.is_set():
            print(render(engine.summary(), engine), file=out, flush=True)
