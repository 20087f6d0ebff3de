"""Feed N generated frames to a parser or frame handler, for counting instructions under valgrind.

Usage: ``python -m bench.feed_frames {this,OTHER_CHECKOUT} {combined,raw,depth,upbit}
{none,parser,handler} N``. ``none`` builds the frames and loops over them without parsing, so
``(Ir(N2) - Ir(N1)) / (N2 - N1)`` of a ``parser`` run minus that of a ``none`` run is what one
frame costs, start-up and generation cancelled out::

    valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        python -m bench.feed_frames /tmp/base combined parser 2000

Instruction counts do not move with the machine's load, which on two shared cores moves timings
by more than a small change costs (docs/benchmarks.md, issue #13).
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Callable
from pathlib import Path

from bench.parser_ab import load
from bench.pipeline import depth_engine, depth_frames, engine_for, ticker_frames, upbit_frames
from runtime.core.logging import configure
from runtime.venues.binance import feed as binance
from runtime.venues.upbit import feed as upbit

FRAMES: dict[str, Callable[[int], list[bytes]]] = {
    "combined": ticker_frames,
    "raw": lambda n: ticker_frames(n, raw=True),
    "depth": depth_frames,
    "upbit": upbit_frames,
}


def consumer(checkout: str, kind: str, mode: str) -> Callable[[bytes], object]:
    venue = "upbit" if kind == "upbit" else "binance"
    if checkout == "this":
        parser_class: type = upbit.UpbitParser if venue == "upbit" else binance.BinanceParser
    else:
        module = load(Path(checkout) / f"runtime/venues/{venue}/feed.py", f"other_{venue}")
        parser_class = module.UpbitParser if venue == "upbit" else module.BinanceParser
    if mode == "none":
        return lambda raw: None
    if mode == "parser":
        parser = parser_class({"BTCUSDT": "BTC/USDT", "KRW-BTC": "BTC/KRW"})
        return lambda raw: parser.parse(raw, 1)
    engine = depth_engine() if kind == "depth" else engine_for({"cooldown_ms": 0})
    symbols = dict(engine.parsers[venue]._symbols)  # type: ignore[attr-defined]
    engine.parsers[venue] = parser_class(symbols, engine.drops[venue])
    handler = engine.frame_handler(venue)
    return lambda raw: handler(raw, 1)


def main(argv: list[str]) -> None:
    checkout, kind, mode, count = argv[0], argv[1], argv[2], int(argv[3])
    configure("ERROR")
    feed = consumer(checkout, kind, mode)
    frames = FRAMES[kind](count)
    gc.collect()
    for raw in frames:
        feed(raw)


if __name__ == "__main__":
    main(sys.argv[1:])
