"""Loopback end to end: simulator websocket -> engine -> signed REST order -> simulator.

Usage: ``python -m bench.e2e [--quick]``. The simulator runs in a child process (as an exchange
would, on its own CPU time) and sends 5,000 frames/s: five markets ticking every millisecond.
The engine runs here in live mode with the three shipped strategies, signing real orders.
The simulator notes when it queued the frames of each dislocation and when each order arrived;
an order from the cross-exchange or triangular strategy is matched to the latest dislocation
before it (pairs trading samples every 100 ms by design, so it is left out).

Figures: ``e2e.loopback.p99_ms`` (dislocation queued -> order received, both on the simulator's
clock), ``e2e.loopback.frames_per_s`` (what the engine actually received), and
``engine.rss_mb``: resident memory of this process, which holds the engine and nothing else
of note, after the run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.results import load_average, write_results
from runtime.config import load_config
from runtime.core.logging import configure
from runtime.engine.engine import Engine
from runtime.node import Node

MATCH_WINDOW_NS = 1_000_000_000
# Client order ids start with the strategy id ("-" becomes "_"). Each fast strategy reacts to
# one kind of dislocation; pairs trading samples every 100 ms by design and is left out.
STRATEGY_OF_KIND = {"premium": "xex_btc-", "cross": "tri_usdt-"}


async def serve_simulator(record: Path) -> None:
    """The child: run the simulator until SIGTERM, then write what it saw to ``record``."""
    from runtime.devstack.simulator import ExchangeSimulator, MarketParams, SimulatorConfig

    sim = ExchangeSimulator(
        SimulatorConfig(tick_interval_ms=1.0, market=MarketParams(dislocations_per_s=3.0))
    )
    dislocations: list[tuple[str, int]] = []
    orders: list[tuple[str, int]] = []
    sim.on_dislocation = lambda kind, at_ns: dislocations.append((kind, at_ns))
    sim.on_order = lambda venue, order, received_ns: orders.append(
        (str(order.get("clientOrderId") or order.get("identifier")), received_ns)
    )
    await sim.start()
    print(sim.port, flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await sim.stop()
    record.write_text(  # noqa: ASYNC240 - once, after the loop's work is done
        json.dumps(
            {"dislocations": dislocations, "orders": orders, "frames": sim.stats.frames_sent}
        )
    )


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def latencies_ms(dislocations: list[tuple[str, int]], orders: list[tuple[str, int]]) -> list[float]:
    """For each dislocation, the first order it caused: same kind, within the window."""
    matched: dict[int, float] = {}
    for client_id, received_ns in orders:
        kinds = [k for k, prefix in STRATEGY_OF_KIND.items() if client_id.startswith(prefix)]
        if not kinds:
            continue
        before = [at for kind, at in dislocations if kind == kinds[0] and at <= received_ns]
        if before and received_ns - before[-1] <= MATCH_WINDOW_NS and before[-1] not in matched:
            matched[before[-1]] = (received_ns - before[-1]) / 1e6
    return sorted(matched.values())


async def run_engine(port: int, duration_s: float) -> tuple[Engine, float]:
    host = f"127.0.0.1:{port}"
    overrides: dict[str, Any] = {
        "mode": "live",
        "venues": {
            "binance": {
                "ws_url": f"ws://{host}",
                "rest_url": f"http://{host}",
                "rest_requests_per_s": 100.0,
            },
            "upbit": {
                "ws_url": f"ws://{host}/upbit/websocket/v1",
                "rest_url": f"http://{host}/upbit",
                "rest_requests_per_s": 100.0,
            },
        },
        "health": {"port": 0},
        # A short cooldown and generous limits: the first order after a dislocation must be its
        # reaction, not whatever a cooldown or a rate limit let through later.
        "strategies": [
            {"plugin": "cross_exchange", "id": "xex-btc", "config": {"cooldown_ms": 20}},
            {"plugin": "triangular", "id": "tri-usdt", "config": {"cooldown_ms": 20}},
            {"plugin": "pairs_kalman", "id": "pairs-eth-btc"},
        ],
        "risk": {
            "max_daily_loss": 1e9,
            "max_orders_per_second": 1e4,
            "order_burst": 10_000,
            "max_open_orders": 10_000,
        },
        "paper": {
            "initial_balances": {
                "binance": {"USDT": 1e9, "BTC": 1e4, "ETH": 1e5},
                "upbit": {"KRW": 1e13, "BTC": 1e4, "USDT": 1e9},
            }
        },
    }
    env = {
        f"ARBFLEET_SECRET_{venue}_{part}": value
        for venue in ("BINANCE", "UPBIT")
        for part, value in (("API_KEY", "sim-key"), ("API_SECRET", "sim-secret"))
    }
    node = Node(load_config(env=env, overrides=overrides))
    engine = node.engine
    stop = asyncio.Event()
    runner = asyncio.create_task(node.run(stop))
    await node.ready.wait()
    started = time.monotonic()
    await asyncio.sleep(duration_s)
    frames_per_s = engine.stats.frame_count() / (time.monotonic() - started)
    stop.set()
    await runner
    return engine, frames_per_s


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="20 s instead of 60 s")
    parser.add_argument(
        "--uvloop",
        action="store_true",
        help="run the engine's side on uvloop (pip install uvloop), to compare event loops",
    )
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)  # the child's role
    args = parser.parse_args(argv)
    configure("ERROR", stream=sys.stderr)
    if args.serve is not None:
        asyncio.run(serve_simulator(args.serve))
        return {}
    duration_s = 20.0 if args.quick else 60.0
    with tempfile.TemporaryDirectory() as scratch:
        record = Path(scratch) / "simulator.json"
        child = subprocess.Popen(
            [sys.executable, "-m", "bench.e2e", "--serve", str(record)],
            stdout=subprocess.PIPE,
            text=True,
            env=os.environ | {"PYTHONPATH": str(Path(__file__).resolve().parents[1])},
        )
        try:
            assert child.stdout is not None
            port = int(child.stdout.readline())
            loop_factory = None
            if args.uvloop:
                import uvloop

                loop_factory = uvloop.new_event_loop
            with asyncio.Runner(loop_factory=loop_factory) as runner:
                engine, frames_per_s = runner.run(run_engine(port, duration_s))
        finally:
            child.send_signal(signal.SIGTERM)
            child.wait(timeout=30)
        seen = json.loads(record.read_text())
    samples = latencies_ms(
        [(kind, at) for kind, at in seen["dislocations"]],
        [(client_id, at) for client_id, at in seen["orders"]],
    )
    if not samples:
        raise SystemExit("no orders matched a dislocation: nothing to measure")
    if os.environ.get("BENCH_VERBOSE"):
        print("latencies (ms):", [round(x, 2) for x in samples])
    p50 = samples[len(samples) // 2]
    p99 = samples[min(len(samples) - 1, int(0.99 * len(samples)))]
    figures = {
        "e2e.loopback.p99_ms": p99,
        "e2e.loopback.p50_ms": p50,
        "e2e.loopback.frames_per_s": frames_per_s,
        "engine.rss_mb": rss_mb(),
    }
    write_results(figures)
    fills = sum(stats.fills for stats in engine.stats.by_strategy.values())
    frame_p99 = engine.summary().p99_us or 0.0
    print(f"load average {load_average():.2f}; {duration_s:.0f} s, {frames_per_s:,.0f} frames/s")
    print(f"  dislocation -> order at the venue: p50 {p50:.2f} ms, p99 {p99:.2f} ms")
    print(f"    over {len(samples)} orders; {len(seen['orders'])} orders in all, {fills} fills")
    print(f"  engine: p99 frame latency {frame_p99:.0f} µs, RSS {figures['engine.rss_mb']:.1f} MB")
    return figures


if __name__ == "__main__":
    main()
