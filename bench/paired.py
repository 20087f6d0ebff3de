"""Paired runs: this checkout's engine against another checkout's, each over its own floor.

Usage: ``python -m bench.paired OTHER_CHECKOUT [--rounds N] [--quick]`` (``OTHER_CHECKOUT``: a
directory holding ``runtime/`` and ``strategies/``, e.g. ``git archive <rev> runtime strategies
| tar -x -C /tmp/base``). ``bench.parser_ab`` swaps parsers inside one engine; a change to the
book or the engine needs the whole checkout, so this runs one process per checkout, alternating
``other, this, other, this, ...``. Each process measures, with this checkout's bench code, the
typed decode of the frames (the floor), the book-ticker frame handler and the depth frame
handler, so each figure comes with a floor taken in the same process: the multiple of the floor
is what compares across processes on a loaded machine. Writes nothing to ``results.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
FIGURES = ("ticker", "ticker_floor", "depth", "depth_floor")


def child(count: int, depth_count: int, repeats: int) -> dict[str, float]:
    import msgspec

    from bench.pipeline import (
        decode_rate,
        depth_engine,
        depth_frames,
        engine_for,
        handler_rate,
        ticker_frames,
    )
    from runtime.core.logging import configure
    from runtime.venues.binance.feed import _BookTickerWire, _Combined, _DepthWire

    configure("ERROR")
    frames = ticker_frames(count)
    depth = depth_frames(depth_count)
    ticker_decode = msgspec.json.Decoder(_Combined[_BookTickerWire], strict=False).decode
    depth_decode = msgspec.json.Decoder(_Combined[_DepthWire], strict=False).decode
    return {
        "ticker_floor": decode_rate(ticker_decode, frames, repeats),
        "ticker": max(
            handler_rate(engine_for({"cooldown_ms": 0}), "binance", frames) for _ in range(repeats)
        ),
        "depth_floor": decode_rate(depth_decode, depth, repeats),
        "depth": max(handler_rate(depth_engine(), "binance", depth) for _ in range(repeats)),
    }


def run_side(checkout: Path, args: list[str]) -> dict[str, float]:
    """One child process importing ``runtime`` and ``strategies`` from ``checkout``."""
    with tempfile.TemporaryDirectory(prefix="arbfleet-paired-") as tmp:
        root = Path(tmp)
        (root / "bench").symlink_to(HERE / "bench")
        for package in ("runtime", "strategies"):
            (root / package).symlink_to(checkout.resolve() / package)
        out = subprocess.run(
            [sys.executable, "-m", "bench.paired", "--child", *args],
            cwd=root,
            env={**os.environ, "PYTHONPATH": str(root)},
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    figures: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("other", nargs="?", type=Path)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    sizes = (200_000, 30_000, 3) if args.quick else (500_000, 100_000, 3)
    if args.child:
        print(json.dumps(child(*sizes)))
        return 0
    if args.other is None:
        parser.error("OTHER_CHECKOUT is required")
    from bench.results import load_average

    flags = ["--quick"] if args.quick else []
    sides: dict[str, list[dict[str, float]]] = {"other": [], "this": []}
    print(f"load average {load_average():.2f} at start")
    for _ in range(args.rounds):
        sides["other"].append(run_side(args.other, flags))
        sides["this"].append(run_side(HERE, flags))
    print(f"load average {load_average():.2f} at end")
    for name, runs in sides.items():
        for run in runs:
            ticker, depth = run["ticker"], run["depth"]
            print(
                f"  {name:<6} ticker {ticker:>10,.0f}/s ({run['ticker_floor'] / ticker:.2f}x"
                f" floor)  depth {depth:>9,.0f}/s ({run['depth_floor'] / depth:.2f}x floor)"
            )
    for kind in ("ticker", "depth"):
        multiples = {
            name: min(run[f"{kind}_floor"] / run[kind] for run in runs)
            for name, runs in sides.items()
        }
        best = {name: max(run[kind] for run in runs) for name, runs in sides.items()}
        before, after = multiples["other"], multiples["this"]
        print(
            f"{kind}: best multiple of the floor {before:.2f}x -> {after:.2f}x"
            f" ({before / after:.2f}x as fast); best rate "
            f"{best['other']:,.0f} -> {best['this']:,.0f}/s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
