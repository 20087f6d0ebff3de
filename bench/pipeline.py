"""Hot-path throughput on the frames the engine receives, against a bare parse of the same bytes.

Usage: ``python -m bench.pipeline [--quick]``. Every figure comes from one run on one machine:

- ``pipeline.parse_floor.msgs_per_s``: msgspec decoding Binance combined-stream bookTicker frames
  (``{"stream":"btcusdt@bookTicker","data":{...}}``, what ``runtime/venues/binance/feed.py``
  subscribes to) into the typed envelope the parser uses, and nothing else: the floor any parser
  of these bytes stands on. ``pipeline.parse_floor_orjson.msgs_per_s``: ``orjson.loads`` of the
  same bytes.
- ``pipeline.parser.msgs_per_s``: ``BinanceParser.parse`` alone on the same bytes: decode,
  the duplicate-key count, symbol map, validation, the event.
- ``pipeline.book_ticker.msgs_per_s`` and ``.p99_us``: the same bytes through the engine's frame
  handler: parse, update the book, call the cross-exchange strategy (its other leg, Upbit
  BTC/KRW with USDT/KRW, is in the book) and, for a frame that crosses Upbit (one in a thousand
  by construction), the intents, risk guards and a paper fill while the balances last.
  ``.crossing_to_intents``: the share of crossing frames that went on to intents in the
  latency pass (the rest found the simulated balances dry).
- ``pipeline.book_ticker_raw.msgs_per_s``: the handler on the same quotes as raw frames
  (``{"u":...}``), which Binance sends on single-stream connections: for comparison only.
- ``pipeline.depth.msgs_per_s`` and ``.parse_floor.msgs_per_s``: Binance combined depth diffs of
  20 levels (10 bids, 10 asks, half of them removals) through the handler into an L2 book
  (strategy subscribed with ``use_depth``), and their bare typed decode.
- ``peer.nautilus.quotes_per_s`` and ``pipeline.vs_nautilus``: NautilusTrader's BacktestEngine
  fed the same quotes as pre-built ``QuoteTick`` objects, a spread check on two instruments
  (``bench/peer.py``), in passes alternating with our frame handler on the same frames; the
  ratio is our best pass over the peer's best pass. Skipped if NautilusTrader is not installed
  (``pip install -e .[bench]``; ``nox -s bench`` installs it).
- ``pipeline.upbit_orderbook.msgs_per_s`` and ``.parse_floor.msgs_per_s``: Upbit orderbook frames
  in the DEFAULT format the engine subscribes to (15 units, numbers as JSON numbers) through
  the Upbit handler, and their bare typed decode.

Throughput is frames per second of CPU time of this process (``time.process_time``), best of
several passes: one core's worth, and the figure other load on the machine distorts least.
Latency is wall-clock per frame (``perf_counter_ns`` around each call), so preemption shows in
its tail. The load average is printed: other work on two cores still skews every figure.
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

from bench import peer
from bench.results import load_average, write_results
from runtime.config import load_config
from runtime.core.events import BookTicker, DepthUpdate
from runtime.core.logging import configure
from runtime.engine.engine import Engine
from runtime.venues.binance.feed import BinanceParser, _BookTickerWire, _Combined, _DepthWire
from runtime.venues.upbit.feed import _OrderbookWire

RATE = 1_380.0
MID = 60_000.0
UPBIT_UNITS = 15


def engine_for(strategy_config: dict[str, Any]) -> Engine:
    return engine_with([{"plugin": "cross_exchange", "id": "bench", "config": strategy_config}])


def engine_with(strategies: list[dict[str, Any]], bases: tuple[str, ...] = ("BTC",)) -> Engine:
    """A paper engine running ``strategies``, Upbit's USDT/KRW and ``<base>/KRW`` in the book."""
    overrides = {
        "strategies": strategies,
        "paper": {"latency_ms": 0.0, "latency_jitter_ms": 0.0},
        "risk": {"max_orders_per_second": 1e6, "order_burst": 1_000_000, "max_open_orders": 1_000},
    }
    engine = Engine(load_config(env={}, overrides=overrides))
    now = time.time_ns()
    engine.on_event(BookTicker("upbit", "USDT/KRW", RATE - 0.5, 1e6, RATE + 0.5, 1e6, 1, 0, now))
    krw_bid = MID * RATE * 1.0001
    for base in bases:
        top = BookTicker("upbit", f"{base}/KRW", krw_bid, 5.0, krw_bid * 1.0002, 5.0, 1, 0, now)
        engine.on_event(top)
    return engine


def combined(stream: str, data: bytes) -> bytes:
    """``data`` as a frame of a combined-stream connection (Binance's ``/stream?streams=``)."""
    return b'{"stream":"%s","data":%s}' % (stream.encode(), data)


def ticker_frames(count: int, seed: int = 1, *, raw: bool = False) -> list[bytes]:
    """Binance bookTicker frames around MID; one in a thousand crosses Upbit by ~50 bps."""
    rng = random.Random(seed)
    frames = []
    for index in range(count):
        bid = MID + rng.randint(-50, 50) * 0.01
        if index % 1000 == 999:
            bid = MID * 0.995  # Upbit's bid is now ~50 bps over Binance's ask
        ask = bid + 0.01
        data = b'{"u":%d,"s":"BTCUSDT","b":"%.8f","B":"%.8f","a":"%.8f","A":"%.8f"}' % (
            1_000 + index,
            bid,
            rng.uniform(0.1, 3),
            ask,
            rng.uniform(0.1, 3),
        )
        frames.append(data if raw else combined("btcusdt@bookTicker", data))
    return frames


def depth_frames(count: int, levels: int = 10, seed: int = 2) -> list[bytes]:
    """Combined Binance depth diffs with ``levels`` bids and asks each, contiguous update ids."""
    rng = random.Random(seed)
    frames = []
    update_id = 1_000

    def side(sign: int) -> list[list[str]]:
        return [
            [
                f"{MID + sign * 0.01 * rng.randint(1, 60):.8f}",
                f"{rng.choice((0.0, rng.uniform(0.01, 2))):.8f}",
            ]
            for _ in range(levels)
        ]

    for _ in range(count):
        bids, asks = side(-1), side(1)
        first, update_id = update_id + 1, update_id + rng.randint(1, 5)
        data = {"e": "depthUpdate", "E": 1, "s": "BTCUSDT", "U": first, "u": update_id}
        frames.append(combined("btcusdt@depth@100ms", orjson.dumps(data | {"b": bids, "a": asks})))
    return frames


def upbit_frames(count: int, seed: int = 3) -> list[bytes]:
    """Upbit orderbook frames (DEFAULT format, as subscribed) around MID at RATE."""
    rng = random.Random(seed)
    frames = []
    mid = MID * RATE
    for index in range(count):
        units = [
            {
                "ask_price": round(mid + 1_000 * (level + 1)),
                "bid_price": round(mid - 1_000 * (level + 1)),
                "ask_size": round(rng.uniform(0.001, 2), 8),
                "bid_size": round(rng.uniform(0.001, 2), 8),
            }
            for level in range(UPBIT_UNITS)
        ]
        frame = {
            "type": "orderbook",
            "code": "KRW-BTC",
            "timestamp": 1_746_601_573_804 + index,
            "total_ask_size": 4.79158413,
            "total_bid_size": 2.65609625,
            "orderbook_units": units,
            "stream_type": "REALTIME",
            "level": 0,
        }
        frames.append(orjson.dumps(frame))
    return frames


def cpu_rate(run: Callable[[], None], count: int) -> float:
    gc.collect()
    started = time.process_time()
    run()
    return count / (time.process_time() - started)


def best_of(repeats: int, run: Callable[[], None], count: int) -> float:
    return max(cpu_rate(run, count) for _ in range(repeats))


def decode_rate(decoder: Callable[[bytes], object], frames: list[bytes], repeats: int) -> float:
    def run() -> None:
        for raw in frames:
            decoder(raw)

    return best_of(repeats, run, len(frames))


def measure_floor(frames: list[bytes], repeats: int) -> tuple[float, float]:
    typed = msgspec.json.Decoder(_Combined[_BookTickerWire], strict=False).decode
    return decode_rate(typed, frames, repeats), decode_rate(orjson.loads, frames, repeats)


def measure_parser(frames: list[bytes], repeats: int) -> float:
    parser = BinanceParser({"BTCUSDT": "BTC/USDT"})
    rate = decode_rate(lambda raw: parser.parse(raw, 1), frames, repeats)
    assert parser.drops.total == 0, parser.drops.counts
    return rate


def handler_rate(engine: Engine, venue: str, frames: list[bytes]) -> float:
    """Frames per CPU second through ``engine``'s frame handler, stamped as a feed does."""
    handler = engine.frame_handler(venue)
    time_ns = time.time_ns

    def run() -> None:
        for raw in frames:
            handler(raw, time_ns())

    rate = cpu_rate(run, len(frames))
    assert engine.drops[venue].frames_dropped == 0, engine.drops[venue].counts
    return rate


def measure_ticker(frames: list[bytes], repeats: int) -> tuple[float, float, Engine]:
    rate = max(
        handler_rate(engine_for({"cooldown_ms": 0}), "binance", frames) for _ in range(repeats)
    )
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


def measure_depth(frames: list[bytes], repeats: int) -> tuple[float, float]:
    rates = []
    for _ in range(repeats):
        engine = depth_engine()
        rates.append(handler_rate(engine, "binance", frames))
        book = engine.books.book("binance", "BTC/USDT")
        assert book is not None and book.gaps == 0, "depth frames must apply without gaps"
    floor = msgspec.json.Decoder(_Combined[_DepthWire], strict=False).decode
    return max(rates), decode_rate(floor, frames, repeats)


def measure_upbit(frames: list[bytes], repeats: int) -> tuple[float, float]:
    rate = max(handler_rate(engine_for({}), "upbit", frames) for _ in range(repeats))
    return rate, decode_rate(msgspec.json.Decoder(_OrderbookWire).decode, frames, repeats)


def measure_vs_peer(frames: list[bytes], repeats: int) -> dict[str, float]:
    """Our frame handler and the peer's BacktestEngine on the same quotes, passes alternating."""
    if not peer.available():
        print("NautilusTrader is not installed (pip install -e .[bench]): no peer figures")
        return {}
    ours = 0.0
    figures: dict[str, float] = {}
    for _ in range(repeats):
        ours = max(ours, handler_rate(engine_for({"cooldown_ms": 0}), "binance", frames))
        run = peer.quote_rate(frames, MID * 1.0001, 1)
        if run["peer.nautilus.quotes_per_s"] > figures.get("peer.nautilus.quotes_per_s", 0.0):
            figures = run
    figures["pipeline.vs_nautilus"] = ours / figures["peer.nautilus.quotes_per_s"]
    figures["pipeline.vs_nautilus.ours_msgs_per_s"] = ours
    return figures


def intents(engine: Engine, count: int) -> dict[str, float]:
    """What the frames of the latency pass went on to do, as counts and the share of frames."""
    stats = engine.stats.by_strategy["bench"]
    return {
        "pipeline.book_ticker.crossing_frames": count // 1000,
        "pipeline.book_ticker.intent_batches": stats.tick_to_intent_count,
        # Share of the crossing frames that went on to intents: the rest found balances dry.
        "pipeline.book_ticker.crossing_to_intents": stats.tick_to_intent_count / (count // 1000),
        "pipeline.book_ticker.orders": stats.orders,
        "pipeline.book_ticker.fills": stats.fills,
    }


def report(figures: dict[str, float], counts: tuple[int, int, int], load: float) -> None:
    print(f"load average {load:.2f} at start, {load_average():.2f} at end; frames: {counts}")

    def line(label: str, name: str, floor_name: str | None = None) -> None:
        value = figures[name]
        ratio = f", {figures[floor_name] / value:.2f}x its floor" if floor_name else ""
        print(f"  {label:<38}{value:>12,.0f} msgs/s{ratio}")

    line("parse floor, combined (msgspec typed)", "pipeline.parse_floor.msgs_per_s")
    line("parse floor, combined (orjson)", "pipeline.parse_floor_orjson.msgs_per_s")
    line(
        "BinanceParser.parse, combined",
        "pipeline.parser.msgs_per_s",
        "pipeline.parse_floor.msgs_per_s",
    )
    line("book-ticker pipeline, combined", "pipeline.book_ticker.msgs_per_s",
         "pipeline.parse_floor.msgs_per_s")  # fmt: skip
    print(f"    p99 {figures['pipeline.book_ticker.p99_us']:.1f} µs per frame")
    print(
        f"    {figures['pipeline.book_ticker.crossing_frames']:.0f} crossing frames, "
        f"{figures['pipeline.book_ticker.intent_batches']:.0f} went on to intents "
        f"({figures['pipeline.book_ticker.crossing_to_intents']:.1%} of the crossing ones), "
        f"{figures['pipeline.book_ticker.orders']:.0f} orders, "
        f"{figures['pipeline.book_ticker.fills']:.0f} fills"
    )
    line("book-ticker pipeline, raw frames", "pipeline.book_ticker_raw.msgs_per_s")
    line("depth, combined, 10+10 levels", "pipeline.depth.msgs_per_s",
         "pipeline.depth.parse_floor.msgs_per_s")  # fmt: skip
    line("Upbit orderbook, 15 units", "pipeline.upbit_orderbook.msgs_per_s",
         "pipeline.upbit_orderbook.parse_floor.msgs_per_s")  # fmt: skip
    if "peer.nautilus.quotes_per_s" in figures:
        print(
            f"  {'NautilusTrader ' + peer.version() + ' BacktestEngine':<38}"
            f"{figures['peer.nautilus.quotes_per_s']:>12,.0f} quotes/s; ours "
            f"{figures['pipeline.vs_nautilus.ours_msgs_per_s']:,.0f} msgs/s on the same quotes, "
            f"{figures['pipeline.vs_nautilus']:.2f}x it"
        )


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="fewer frames and repeats")
    args = parser.parse_args(argv)
    configure("ERROR")
    load = load_average()
    count, depth_count, repeats = (200_000, 30_000, 3) if args.quick else (1_000_000, 150_000, 5)
    frames = ticker_frames(count)
    floor, orjson_floor = measure_floor(frames, repeats)
    parse = measure_parser(frames, repeats)
    ticker, p99_us, engine = measure_ticker(frames, repeats)
    raw = max(
        handler_rate(engine_for({"cooldown_ms": 0}), "binance", ticker_frames(count, raw=True))
        for _ in range(repeats)
    )
    depth, depth_floor = measure_depth(depth_frames(depth_count), repeats)
    upbit, upbit_floor = measure_upbit(upbit_frames(depth_count), repeats)
    versus = measure_vs_peer(frames[: count // 4], repeats)
    figures = {
        "pipeline.parse_floor.msgs_per_s": floor,
        "pipeline.parse_floor_orjson.msgs_per_s": orjson_floor,
        "pipeline.parser.msgs_per_s": parse,
        "pipeline.book_ticker.msgs_per_s": ticker,
        "pipeline.book_ticker.p99_us": p99_us,
        "pipeline.book_ticker.floor_ratio": floor / ticker,
        "pipeline.book_ticker_raw.msgs_per_s": raw,
        "pipeline.depth.msgs_per_s": depth,
        "pipeline.depth.parse_floor.msgs_per_s": depth_floor,
        "pipeline.upbit_orderbook.msgs_per_s": upbit,
        "pipeline.upbit_orderbook.parse_floor.msgs_per_s": upbit_floor,
        "pipeline.load_average": load,
        **intents(engine, count),
        **versus,
    }
    write_results(figures, replace_prefix="pipeline.")
    report(figures, (count, depth_count, depth_count), load)
    return figures


if __name__ == "__main__":
    main()
