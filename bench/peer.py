"""The peer: NautilusTrader's BacktestEngine fed the same quotes as our pipeline.

``quote_rate(frames, repeats)`` decodes our combined bookTicker frames once (outside the timing)
into NautilusTrader ``QuoteTick`` objects for ``BTCUSDT.BINANCE``, adds one quote for the other
leg (``BTCUSDT.UPBIT``, a copy of the instrument on a second venue, at Upbit's price converted
at the bench's rate) and runs a ``BacktestEngine`` with one strategy subscribed to both: on every
quote it checks the spread against the other leg's last quote, which is what our cross-exchange
strategy does on the hot path (it also converts the rate and, on a crossing, sizes and sends
orders; the peer only counts crossings). Throughput is quotes per CPU second of
``engine.run()``, best of ``repeats``: the peer is handed pre-built objects, we parse JSON.

NautilusTrader (LGPL-3.0) comes with the ``bench`` extra; ``available()`` says whether it is
installed, so ``python -m bench.pipeline`` still runs without it.
"""

from __future__ import annotations

import gc
import importlib.util
import time
from typing import Any

import msgspec

from runtime.venues.binance.feed import _BookTickerWire, _Combined

SPREAD_BPS = 30.0


def available() -> bool:
    return importlib.util.find_spec("nautilus_trader") is not None


def version() -> str:
    from importlib.metadata import version as dist_version

    return dist_version("nautilus_trader")


def _instruments() -> tuple[Any, Any]:
    from nautilus_trader.model.instruments import CurrencyPair
    from nautilus_trader.test_kit.providers import TestInstrumentProvider

    binance = TestInstrumentProvider.btcusdt_binance()
    fields = CurrencyPair.to_dict(binance)
    fields["id"] = "BTCUSDT.UPBIT"
    return binance, CurrencyPair.from_dict(fields)


def _quotes(frames: list[bytes], binance: Any, upbit: Any, upbit_bid: float) -> list[Any]:
    from nautilus_trader.model.data import QuoteTick
    from nautilus_trader.model.objects import Price, Quantity

    decode = msgspec.json.Decoder(_Combined[_BookTickerWire], strict=False).decode
    start = 1_700_000_000_000_000_000
    other = QuoteTick(
        upbit.id,
        Price(upbit_bid, 2),
        Price(upbit_bid * 1.0002, 2),
        Quantity(5.0, 6),
        Quantity(5.0, 6),
        start,
        start,
    )
    ticks = [other]
    for index, raw in enumerate(frames, 1):
        wire = decode(raw).data
        ts = start + index * 1_000
        ticks.append(
            QuoteTick(
                binance.id,
                Price(wire.b, 2),
                Price(wire.a, 2),
                Quantity(round(wire.B, 6), 6),
                Quantity(round(wire.A, 6), 6),
                ts,
                ts,
            )
        )
    return ticks


def _strategy_class() -> Any:
    from nautilus_trader.config import StrategyConfig
    from nautilus_trader.model.data import QuoteTick
    from nautilus_trader.model.identifiers import InstrumentId
    from nautilus_trader.trading.strategy import Strategy

    class SpreadConfig(StrategyConfig, frozen=True):
        leg_a: InstrumentId
        leg_b: InstrumentId
        min_spread_bps: float = SPREAD_BPS

    class SpreadCheck(Strategy):
        """A spread check on two instruments: the peer of our cross-exchange hot path."""

        def __init__(self, config: SpreadConfig) -> None:
            super().__init__(config)
            self.leg_a = config.leg_a
            self.leg_b = config.leg_b
            self.factor = 1.0 + config.min_spread_bps * 1e-4
            self.last: dict[InstrumentId, QuoteTick] = {}
            self.quotes = 0
            self.crossings = 0

        def on_start(self) -> None:
            self.subscribe_quote_ticks(self.leg_a)
            self.subscribe_quote_ticks(self.leg_b)

        def on_quote_tick(self, tick: QuoteTick) -> None:
            self.quotes += 1
            last = self.last
            last[tick.instrument_id] = tick
            a = last.get(self.leg_a)
            b = last.get(self.leg_b)
            if a is None or b is None:
                return
            factor = self.factor
            buy_a = b.bid_price.as_double() > a.ask_price.as_double() * factor
            if buy_a or a.bid_price.as_double() > b.ask_price.as_double() * factor:
                self.crossings += 1

    return SpreadCheck, SpreadConfig


def _run_once(ticks: list[Any], binance: Any, upbit: Any) -> tuple[float, int, int]:
    from nautilus_trader.backtest.engine import BacktestEngine, BacktestEngineConfig
    from nautilus_trader.config import LoggingConfig
    from nautilus_trader.model.currencies import BTC, USDT
    from nautilus_trader.model.enums import AccountType, OmsType
    from nautilus_trader.model.identifiers import Venue
    from nautilus_trader.model.objects import Money

    engine = BacktestEngine(
        BacktestEngineConfig(logging=LoggingConfig(log_level="ERROR", bypass_logging=True))
    )
    for venue in ("BINANCE", "UPBIT"):
        engine.add_venue(
            Venue(venue),
            OmsType.NETTING,
            AccountType.CASH,
            starting_balances=[Money(1_000_000, USDT), Money(10, BTC)],
        )
    engine.add_instrument(binance)
    engine.add_instrument(upbit)
    engine.add_data(ticks)
    strategy_class, config_class = _strategy_class()
    strategy = strategy_class(config_class(leg_a=binance.id, leg_b=upbit.id))
    engine.add_strategy(strategy)
    gc.collect()
    started = time.process_time()
    engine.run()
    elapsed = time.process_time() - started
    quotes, crossings = strategy.quotes, strategy.crossings
    engine.dispose()
    return len(ticks) / elapsed, quotes, crossings


def quote_rate(frames: list[bytes], upbit_bid_usdt: float, repeats: int) -> dict[str, float]:
    """Quotes per CPU second through the peer's BacktestEngine, best of ``repeats``."""
    binance, upbit = _instruments()
    ticks = _quotes(frames, binance, upbit, upbit_bid_usdt)
    best = 0.0
    quotes = crossings = 0
    for _ in range(repeats):
        rate, quotes, crossings = _run_once(ticks, binance, upbit)
        best = max(best, rate)
    assert quotes == len(ticks), (quotes, len(ticks))
    return {
        "peer.nautilus.quotes_per_s": best,
        "peer.nautilus.quotes": float(len(ticks)),
        "peer.nautilus.crossings": float(crossings),
    }
