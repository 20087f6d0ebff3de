"""This checkout's parsers against another checkout's, on the same frames, in one process.

Usage: ``python -m bench.parser_ab OTHER_CHECKOUT [--quick]`` (``OTHER_CHECKOUT``: a directory
holding ``runtime/venues/{binance,upbit}/feed.py``, e.g. ``git archive <rev> runtime | tar -x
-C /tmp/base``). Measures each parser alone and inside this checkout's engine (the other
parser swapped into the frame handler), passes of the two alternating so that load drifting over
the run hits both alike; best pass of each. Prints the figures and their ratio; writes nothing
to ``results.json``: it measures a change, not the engine.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

from bench.pipeline import (
    cpu_rate,
    depth_engine,
    depth_frames,
    engine_for,
    ticker_frames,
    upbit_frames,
)
from bench.results import load_average
from runtime.core.logging import configure
from runtime.engine.engine import Engine
from runtime.venues.binance import feed as binance
from runtime.venues.upbit import feed as upbit

Run = Callable[[], None]


def load(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # msgspec resolves the structs' annotations through it
    spec.loader.exec_module(module)
    return module


def parse_pass(parser_class: type, symbols: dict[str, str], frames: list[bytes]) -> Run:
    parser = parser_class(symbols)

    def run() -> None:
        parse = parser.parse
        for raw in frames:
            parse(raw, 1)

    return run


def handler_pass(
    make: Callable[[], Engine], venue: str, parser_class: type | None
) -> Callable[[list[bytes]], Run]:
    def bind(frames: list[bytes]) -> Run:
        def run() -> None:
            engine = make()
            if parser_class is not None:
                symbols = dict(engine.parsers[venue]._symbols)  # type: ignore[attr-defined]
                engine.parsers[venue] = parser_class(symbols, engine.drops[venue])
            handler = engine.frame_handler(venue)
            for raw in frames:
                handler(raw, 1)

        return run

    return bind


def alternate(a: Run, b: Run, count: int, repeats: int) -> tuple[float, float]:
    rates_a, rates_b = [], []
    for _ in range(repeats):
        rates_a.append(cpu_rate(a, count))
        rates_b.append(cpu_rate(b, count))
    return max(rates_a), max(rates_b)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("other", type=Path, help="the other checkout's root")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    configure("ERROR")
    other_binance = load(args.other / "runtime/venues/binance/feed.py", "other_binance")
    other_upbit = load(args.other / "runtime/venues/upbit/feed.py", "other_upbit")
    count, repeats = (100_000, 5) if args.quick else (400_000, 7)
    binance_symbols = {"BTCUSDT": "BTC/USDT"}
    cases = [
        ("combined bookTicker", ticker_frames(count), binance_symbols, "ticker"),
        ("raw bookTicker", ticker_frames(count, raw=True), binance_symbols, "ticker"),
        ("combined depth 10+10", depth_frames(count // 5), binance_symbols, "depth"),
        ("Upbit orderbook 15", upbit_frames(count // 5), {"KRW-BTC": "BTC/KRW"}, "upbit"),
    ]
    engines: dict[str, tuple[Callable[[], Engine], str]] = {
        "ticker": (lambda: engine_for({"cooldown_ms": 0}), "binance"),
        "depth": (depth_engine, "binance"),
        "upbit": (lambda: engine_for({}), "upbit"),
    }
    print(f"load average {load_average():.2f}; this checkout vs {args.other}, msgs/s of CPU")
    for label, frames, symbols, kind in cases:
        this_class, other_class = (
            (upbit.UpbitParser, other_upbit.UpbitParser)
            if kind == "upbit"
            else (binance.BinanceParser, other_binance.BinanceParser)
        )
        this, other = alternate(
            parse_pass(this_class, symbols, frames),
            parse_pass(other_class, symbols, frames),
            len(frames),
            repeats,
        )
        make, venue = engines[kind]
        this_h, other_h = alternate(
            handler_pass(make, venue, None)(frames),
            handler_pass(make, venue, other_class)(frames),
            len(frames),
            repeats,
        )
        print(
            f"  {label:<22} parser {this:>10,.0f} vs {other:>10,.0f} ({this / other:.2f}x)   "
            f"handler {this_h:>10,.0f} vs {other_h:>10,.0f} ({this_h / other_h:.2f}x)"
        )
    print(f"load average {load_average():.2f} at the end")


if __name__ == "__main__":
    main()
