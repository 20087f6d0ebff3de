"""Hot-path throughput: bare parse floor vs parse -> book -> cross-exchange strategy -> intent.

Usage: ``python -m bench.pipeline [--quick]``. Three measurements on the same machine, in one run:

- ``pipeline.parse_floor.msgs_per_s``: msgspec decoding Binance bookTicker frames into the typed
  struct the parser uses, and nothing else — the floor any parser of these bytes stands on.
- ``pipeline.book_ticker.msgs_per_s`` and ``.p99_us``: the same frames through the engine's frame
  handler for Binance: parse, normalize, validate, update the book, call the cross-exchange
  strategy (whose other leg, Upbit BTC/KRW with USDT/KRW, is in the book), and for one frame in
  a thousand, which crosses the spread, the intents, risk guards and a paper fill.
- ``pipeline.depth.msgs_per_s``: Binance depth diffs of 20 levels (10 bids, 10 asks, half of them
  removals) through the same handler into an L2 book (strategy subscribed with ``use_depth``).

Throughput is frames per second of CPU time of this process (``time.process_time``): one core's
worth, and the figure other load on the machine distorts least. Latency is wall-clock per frame
(``perf_counter_ns`` around each call), so preemption shows in its tail.
"""

from __future__ import annotations

import argparse
import gc
import random
import time
from collections.abc import Callable
from typing import Any

import msgspec
import orjson

from bench.results import load_average, write_results
from runtime.config import load_config
from runtime.engine import Engine
from runtime.events import BookTicker, DepthUpdate
from runtime.feeds.binance import _BookTickerWire
from runtime.logging import configure

RATE = 1_380.0
MID = 60_000.0


def engine_for(strategy_config: dict[str, Any]) -> Engine:
    overrides = {
        "strategies": [{"plugin": "cross_exchange", "id": "bench", "config": strategy_config}],
        "paper": {"latency_ms": 0.0, "latency_jitter_ms": 0.0},
        "risk": {"max_orders_per_second": 1e6, "order_burst": 1_000_000, "max_open_orders": 1_000},
    }
    engine = Engine(load_config(env={}, overrides=overrides))
    now = time.time_ns()
    engine.on_event(BookTicker("upbit", "USDT/KRW", RATE - 0.5, 1e6, RATE + 0.5, 1e6, 1, 0, now))
    krw_bid = MID * RATE * 1.0001
    engine.on_event(BookTicker("upbit", "BTC/KRW", krw_bid, 5.0, krw_bid * 1.0002, 5.0, 1, 0, now))
    return engine


def ticker_frames(count: int, seed: int = 1) -> list[bytes]:
    """Binance bookTicker frames around MID; one in a thousand crosses Upbit by ~50 bps."""
    rng = random.Random(seed)
    frames = []
    for index in range(count):
        bid = MID + rng.randint(-50, 50) * 0.01
        if index % 1000 == 999:
            bid = MID * 0.995  # Upbit's bid is now ~50 bps over Binance's ask
        ask = bid + 0.01
        frames.append(
            b'{"u":%d,"s":"BTCUSDT","b":"%.8f","B":"%.8f","a":"%.8f","A":"%.8f"}'
            % (1_000 + index, bid, rng.uniform(0.1, 3), ask, rng.uniform(0.1, 3))
        )
    return frames


def depth_frames(count: int, levels: int = 10, seed: int = 2) -> list[bytes]:
    """Binance depth diffs with ``levels`` bids and ``levels`` asks, contiguous update ids."""
    rng = random.Random(seed)
    frames = []
    update_id = 1_000
    for _ in range(count):
        bids = [
            [
                f"{MID - 0.01 * rng.randint(1, 60):.8f}",
                f"{rng.choice((0.0, rng.uniform(0.01, 2))):.8f}",
            ]
            for _ in range(levels)
        ]
        asks = [
            [
                f"{MID + 0.01 * rng.randint(1, 60):.8f}",
                f"{rng.choice((0.0, rng.uniform(0.01, 2))):.8f}",
            ]
            for _ in range(levels)
        ]
        first, update_id = update_id + 1, update_id + rng.randint(1, 5)
        frames.append(
            orjson.dumps(
                {
                    "e": "depthUpdate",
                    "E": 1,
                    "s": "BTCUSDT",
                    "U": first,
                    "u": update_id,
                    "b": bids,
                    "a": asks,
                }
            )
        )
    return frames


def cpu_rate(run: Callable[[], None], count: int) -> float:
    gc.collect()
    started = time.process_time()
    run()
    return count / (time.process_time() - started)


def best_of(repeats: int, run: Callable[[], None], count: int) -> float:
    return max(cpu_rate(run, count) for _ in range(repeats))


def measure_floor(frames: list[bytes], repeats: int) -> tuple[float, float]:
    decode = msgspec.json.Decoder(_BookTickerWire, strict=False).decode
    loads = orjson.loads

    def typed() -> None:
        for raw in frames:
            decode(raw)

    def generic() -> None:
        for raw in frames:
            loads(raw)

    return best_of(repeats, typed, len(frames)), best_of(repeats, generic, len(frames))


def handler_rate(engine: Engine, frames: list[bytes]) -> float:
    """Frames per CPU second through ``engine``'s Binance frame handler, stamped as a feed does."""
    handler = engine.frame_handler("binance")
    time_ns = time.time_ns

    def run() -> None:
        for raw in frames:
            handler(raw, time_ns())

    return cpu_rate(run, len(frames))


def measure_ticker(frames: list[bytes], repeats: int) -> tuple[float, float, Engine]:
    rate = max(handler_rate(engine_for({"cooldown_ms": 0}), frames) for _ in range(repeats))
    engine = engine_for({"cooldown_ms": 0})
    handler = engine.frame_handler("binance")
    perf = time.perf_counter_ns
    latencies = []
    gc.collect()
    for raw in frames:
        started = perf()
        handler(raw, time.time_ns())
        latencies.append(perf() - started)
    latencies.sort()
    return rate, latencies[int(0.99 * len(latencies))] / 1000.0, engine


def depth_engine() -> Engine:
    """An engine whose Binance BTC/USDT L2 book is in sync at update id 1000."""
    engine = engine_for({"use_depth": True, "cooldown_ms": 0})
    bids = tuple((MID - 0.01 * i, 1.0) for i in range(1, 61))
    asks = tuple((MID + 0.01 * i, 1.0) for i in range(1, 61))
    snapshot = DepthUpdate("binance", "BTC/USDT", 1_000, 1_000, bids, asks, True, 0, time.time_ns())
    engine.on_event(snapshot)
    return engine


def measure_depth(frames: list[bytes], repeats: int) -> float:
    rates = []
    for _ in range(repeats):
        engine = depth_engine()
        rates.append(handler_rate(engine, frames))
        book = engine.books.book("binance", "BTC/USDT")
        assert book is not None and book.gaps == 0, "depth frames must apply without gaps"
    return max(rates)


def report(figures: dict[str, float], engine: Engine, count: int, depth_count: int) -> None:
    floor = figures["pipeline.parse_floor.msgs_per_s"]
    ticker = figures["pipeline.book_ticker.msgs_per_s"]
    stats = engine.stats.by_strategy["bench"]
    print(f"load average {load_average():.2f}; {count:,} ticker, {depth_count:,} depth frames")
    print(f"  parse floor (msgspec typed)   {floor:>12,.0f} msgs/s")
    orjson_floor = figures["pipeline.parse_floor_orjson.msgs_per_s"]
    print(f"  parse floor (orjson)          {orjson_floor:>12,.0f} msgs/s")
    print(
        f"  book-ticker pipeline          {ticker:>12,.0f} msgs/s, {floor / ticker:.2f}x the floor"
    )
    print(f"    p99 {figures['pipeline.book_ticker.p99_us']:.1f} µs per frame")
    print(f"    {stats.opportunities} opportunities, {stats.orders} orders, {stats.fills} fills")
    depth = figures["pipeline.depth.msgs_per_s"]
    print(f"  depth pipeline (10+10 levels) {depth:>12,.0f} msgs/s")


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="fewer frames and repeats")
    args = parser.parse_args(argv)
    configure("ERROR")
    count, depth_count, repeats = (200_000, 30_000, 3) if args.quick else (1_000_000, 150_000, 5)
    frames = ticker_frames(count)
    floor, orjson_floor = measure_floor(frames, repeats)
    ticker, p99_us, engine = measure_ticker(frames, repeats)
    depth = measure_depth(depth_frames(depth_count), repeats)
    figures = {
        "pipeline.parse_floor.msgs_per_s": floor,
        "pipeline.parse_floor_orjson.msgs_per_s": orjson_floor,
        "pipeline.book_ticker.msgs_per_s": ticker,
        "pipeline.book_ticker.p99_us": p99_us,
        "pipeline.book_ticker.floor_ratio": floor / ticker,
        "pipeline.depth.msgs_per_s": depth,
    }
    write_results(figures)
    report(figures, engine, count, depth_count)
    return figures


if __name__ == "__main__":
    main()
