"""Paper executor: fills against the book with fees, slippage, limits, balances and latency."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from runtime.core.events import BookTicker, DepthUpdate
from runtime.core.orders import Fill, OrderIntent, OrderResult, OrderStatus
from runtime.trading.book import Books
from runtime.trading.execution.paper import PaperConfig, PaperExecutor
from runtime.trading.portfolio import MidPrices, Portfolio

BALANCES = {"binance": {"USDT": 100_000.0, "BTC": 1.0}}


class Harness:
    def __init__(self, **config: object) -> None:
        self.books = Books()
        self.portfolio = Portfolio(BALANCES)
        self.fills: list[Fill] = []
        self.results: list[OrderResult] = []
        self.scheduled: list[tuple[float, Callable[[], None]]] = []
        settings = {
            "latency_ms": 0.0,
            "latency_jitter_ms": 0.0,
            "slippage_bps": 0.0,
            "initial_balances": BALANCES,
        } | config
        self.executor = PaperExecutor(
            self.books,
            self.portfolio,
            PaperConfig(**settings),
            self.fills.append,  # type: ignore[arg-type]
            self.results.append,
            schedule=lambda d, f: self.scheduled.append((d, f)),
            clock_ns=lambda: 42,
        )
        self.books.on_ticker(
            BookTicker("binance", "BTC/USDT", 59_990.0, 0.5, 60_000.0, 0.3, 1, 0, 0)
        )


def order(side: str = "buy", qty: float = 0.1, limit: float | None = None) -> OrderIntent:
    return OrderIntent("s", "s-x-1", "binance", "BTC/USDT", side, qty, limit)  # type: ignore[arg-type]


def test_market_buy_fills_at_the_ask_and_pays_the_taker_fee_in_quote() -> None:
    h = Harness()
    h.executor.submit(order())
    [fill] = h.fills
    assert (fill.quantity, fill.price, fill.fee_asset) == (0.1, 60_000.0, "USDT")
    assert fill.fee == pytest.approx(0.1 * 60_000.0 * 10e-4)
    assert h.results[0].status is OrderStatus.FILLED
    assert h.portfolio.balance("s", "binance", "BTC") == pytest.approx(1.1)
    assert h.portfolio.balance("s", "binance", "USDT") == pytest.approx(100_000 - 6_000 - 6)


def test_order_larger_than_the_top_fills_partially() -> None:
    h = Harness()
    h.executor.submit(order(qty=0.5))
    assert h.fills[0].quantity == 0.3
    assert h.results[0].status is OrderStatus.PARTIALLY_FILLED


def test_l2_ladder_gives_a_volume_weighted_price_and_limits_stop_it() -> None:
    h = Harness()
    asks = ((60_000.0, 0.1), (60_010.0, 0.1), (60_100.0, 1.0))
    h.books.on_depth(DepthUpdate("binance", "BTC/USDT", 5, 5, ((59_990.0, 1.0),), asks, True, 0, 0))
    h.executor.submit(order(qty=0.3, limit=60_050.0))
    [fill] = h.fills
    assert fill.quantity == pytest.approx(0.2)
    assert fill.price == pytest.approx(60_005.0)


def test_slippage_moves_the_price_against_the_order_but_not_past_its_limit() -> None:
    h = Harness(slippage_bps=10.0)
    h.executor.submit(order("sell", 0.1))
    assert h.fills[0].price == pytest.approx(59_990.0 * (1 - 1e-3))
    h.executor.submit(order("buy", 0.1, limit=60_010.0))
    assert h.fills[1].price == 60_010.0


def test_limit_beyond_the_book_cancels_without_a_fill() -> None:
    h = Harness()
    h.executor.submit(order(limit=59_000.0))
    assert h.fills == []
    assert h.results[0].status is OrderStatus.CANCELED


def test_unaffordable_order_is_rejected_and_balances_stay() -> None:
    h = Harness()
    for _ in range(3):
        h.executor.submit(order("sell", 0.4))
    assert [r.status for r in h.results] == [OrderStatus.FILLED] * 2 + [OrderStatus.REJECTED]
    assert "insufficient BTC on binance: need 0.4, have 0.2" in h.results[2].reason
    assert h.portfolio.balance("s", "binance", "BTC") == pytest.approx(0.2)


def test_unknown_symbol_is_rejected() -> None:
    h = Harness()
    h.executor.submit(OrderIntent("s", "s-x-3", "binance", "ETH/USDT", "buy", 1.0))
    assert h.results[0].status is OrderStatus.REJECTED


def test_latency_defers_the_fill_to_the_book_at_that_time() -> None:
    h = Harness(latency_ms=5.0, latency_jitter_ms=2.0)
    h.executor.submit(order())
    assert h.fills == [] and h.executor.pending == 1
    [(delay, run)] = h.scheduled
    assert 0.005 <= delay <= 0.007
    h.books.on_ticker(BookTicker("binance", "BTC/USDT", 60_090.0, 1.0, 60_100.0, 1.0, 2, 0, 0))
    run()
    assert h.fills[0].price == 60_100.0
    assert h.executor.pending == 0


def test_pnl_marks_balances_to_market() -> None:
    h = Harness()
    h.executor.submit(order(qty=0.1))
    h.books.on_ticker(BookTicker("binance", "BTC/USDT", 60_999.0, 1.0, 61_001.0, 1.0, 3, 0, 0))
    pnl = h.portfolio.pnl("s", MidPrices(h.books.tops))
    assert pnl == pytest.approx(0.1 * 61_000.0 - 6_000.0 - 6.0)
