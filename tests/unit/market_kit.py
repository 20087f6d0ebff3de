"""Small builders shared by strategy tests: tops, and strategies made from raw TOML text."""

from __future__ import annotations

import tomllib
from typing import Any

import msgspec

from runtime.core.events import BookTicker
from runtime.core.orders import Opportunity
from runtime.engine.plugins import build_strategy, discover
from runtime.sdk import Strategy, StrategyContext
from runtime.trading.book import Books
from runtime.trading.portfolio import Portfolio

_REGISTRY = discover()


def top(
    venue: str,
    symbol: str,
    bid: float,
    ask: float,
    size: float = 1.0,
    *,
    seq: int = 1,
    ts_ms: int = 0,
) -> BookTicker:
    return BookTicker(venue, symbol, bid, size, ask, size, seq, ts_ms, ts_ms * 1_000_000)


class Rig:
    """A strategy built from TOML text over real books and a real portfolio."""

    def __init__(self, plugin: str, toml_text: str, balances: dict[str, dict[str, float]]) -> None:
        self.books = Books()
        self.portfolio = Portfolio(balances)
        self.opportunities: list[Opportunity] = []
        context = StrategyContext(
            "test",
            self.books,
            self.portfolio.view("test"),
            session="s",
            clock_ns=lambda: 0,
            on_opportunity=self.opportunities.append,
        )
        raw: dict[str, Any] = tomllib.loads(toml_text)
        self.strategy: Strategy[Any] = build_strategy(_REGISTRY.get(plugin), raw, context)

    def feed(self, ticker: BookTicker) -> list[Any] | None:
        self.books.on_ticker(ticker)
        return self.strategy.on_book(ticker)


def binance_ticker(bid: float, ask: float, update_id: int, symbol: str = "BTCUSDT") -> bytes:
    return msgspec.json.encode(
        {
            "u": update_id,
            "s": symbol,
            "b": f"{bid:.8f}",
            "B": "1.00000000",
            "a": f"{ask:.8f}",
            "A": "1.00000000",
        }
    )


def upbit_book(code: str, bid: float, ask: float, ts: int, size: float = 1.0) -> bytes:
    unit = {"ask_price": ask, "bid_price": bid, "ask_size": size, "bid_size": size}
    return msgspec.json.encode(
        {
            "type": "orderbook",
            "code": code,
            "timestamp": ts,
            "orderbook_units": [unit],
            "stream_type": "REALTIME",
        }
    )
