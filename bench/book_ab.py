"""This checkout's order books against another checkout's, on the same depth events, one process.

Usage: ``python -m bench.book_ab OTHER_CHECKOUT [--quick]`` (``OTHER_CHECKOUT``: a directory
holding ``runtime/trading/book.py``, e.g. ``git archive <rev> runtime | tar -x -C /tmp/base``). The
depth frames of ``bench.pipeline`` are parsed once; then ``Books.on_depth`` of each checkout
applies them to a book synced from the same snapshot, passes alternating, best pass of each.
Both must end with the same book (levels, best prices, gaps, published top), or it fails.
Prints the rates and their ratio; writes nothing to ``results.json``.
"""

from __future__ import annotations

import argparse
import gc
import time
from pathlib import Path
from types import ModuleType
from typing import Any

from bench.parser_ab import load
from bench.pipeline import MID, depth_frames
from bench.results import load_average
from runtime.core.events import DepthUpdate
from runtime.trading import book as this_book
from runtime.venues.binance.feed import BinanceParser


def run(module: ModuleType, snapshot: DepthUpdate, events: list[Any]) -> tuple[float, object]:
    books = module.Books()
    books.on_depth(snapshot)
    on_depth = books.on_depth
    gc.collect()
    started = time.process_time()
    for event in events:
        on_depth(event)
    elapsed = time.process_time() - started
    book = books.book("binance", "BTC/USDT")
    state = (
        book.gaps,
        book.best_bid,
        book.best_ask,
        sorted(book.bids.items()),
        sorted(book.asks.items()),
        book.last_seq,
        books.top("binance", "BTC/USDT"),
    )
    return len(events) / elapsed, state


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("other", type=Path)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    other = load(args.other / "runtime/trading/book.py", "other_book")
    count, repeats = (50_000, 3) if args.quick else (150_000, 5)
    binance = BinanceParser({"BTCUSDT": "BTC/USDT"})
    events = [binance.parse(raw, 1) for raw in depth_frames(count)]
    bids = tuple((MID - 0.01 * i, 1.0) for i in range(1, 61))
    asks = tuple((MID + 0.01 * i, 1.0) for i in range(1, 61))
    snapshot = DepthUpdate("binance", "BTC/USDT", 1_000, 1_000, bids, asks, True, 0, 1)
    print(f"load average {load_average():.2f} at start")
    rates_other, rates_this = [], []
    for _ in range(repeats):
        rate_other, state_other = run(other, snapshot, events)
        rate_this, state_this = run(this_book, snapshot, events)
        assert state_other == state_this, "the two books differ"
        rates_other.append(rate_other)
        rates_this.append(rate_this)
    best_other, best_this = max(rates_other), max(rates_this)
    print(f"load average {load_average():.2f} at end; {count:,} depth events")
    print(
        f"Books.on_depth: other {best_other:,.0f}/s, this {best_this:,.0f}/s, "
        f"this/other {best_this / best_other:.2f}"
    )


if __name__ == "__main__":
    main()
