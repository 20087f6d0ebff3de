"""Paper trading: orders fill against the engine's own books, with fees, slippage and latency.

An order waits out a simulated latency (``latency_ms`` plus up to ``latency_jitter_ms``, from a
seeded generator so runs repeat), then takes liquidity from the book as it is *then*: from the
L2 ladder when the venue sends depth, else from the top of book. A limit price makes it
immediate-or-cancel: levels beyond the limit are not taken and the remainder is cancelled.
Slippage moves the average price against the order by ``slippage_bps`` (never past a limit),
standing in for the queue ahead of us that the book does not show. The taker fee is charged in
the quote currency. An order the strategy's balances cannot pay for is rejected.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Final

import msgspec
import pydantic
from pydantic import NonNegativeFloat

from runtime.core.events import Level
from runtime.core.instruments import split_symbol
from runtime.core.orders import Fill, OrderIntent, OrderResult, OrderStatus
from runtime.core.venue import ListedOrder
from runtime.trading.book import Books
from runtime.trading.execution import FillHandler, ResultHandler
from runtime.trading.portfolio import Portfolio

BPS: Final = 1e-4
DEPTH_LEVELS: Final = 50
_DUST: Final = 1e-12

Scheduler = Callable[[float, Callable[[], None]], object]


class PaperConfig(pydantic.BaseModel):
    """How paper fills are simulated, and what each strategy starts with."""

    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")

    taker_fee_bps: Mapping[str, NonNegativeFloat] = pydantic.Field(
        default_factory=lambda: {"binance": 10.0, "upbit": 5.0}
    )
    slippage_bps: NonNegativeFloat = 1.0
    latency_ms: NonNegativeFloat = 5.0
    latency_jitter_ms: NonNegativeFloat = 2.0
    seed: int = 7
    initial_balances: Mapping[str, Mapping[str, NonNegativeFloat]] = pydantic.Field(
        default_factory=lambda: {
            "binance": {"USDT": 100_000.0, "BTC": 2.0, "ETH": 30.0},
            "upbit": {"KRW": 150_000_000.0, "BTC": 2.0, "USDT": 10_000.0},
        }
    )


def _call_later(delay_s: float, callback: Callable[[], None]) -> object:
    return asyncio.get_running_loop().call_later(delay_s, callback)


class PaperExecutor:
    """Fills intents against ``books`` into ``portfolio``; see the module docstring."""

    def __init__(
        self,
        books: Books,
        portfolio: Portfolio,
        config: PaperConfig,
        on_fill: FillHandler,
        on_result: ResultHandler,
        *,
        schedule: Scheduler = _call_later,
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self._books = books
        self._portfolio = portfolio
        self._config = config
        self._on_fill = on_fill
        self._on_result = on_result
        self._schedule = schedule
        self._random = random.Random(config.seed)
        self._clock_ns = clock_ns
        self._pending = 0

    @property
    def pending(self) -> int:
        return self._pending

    def submit(self, intent: OrderIntent) -> None:
        delay_ms = self._config.latency_ms + self._config.latency_jitter_ms * self._random.random()
        if delay_ms <= 0.0:
            self._report(self.execute(intent))
            return
        self._pending += 1
        self._schedule(delay_ms / 1000.0, lambda: self._after_latency(intent))

    def _after_latency(self, intent: OrderIntent) -> None:
        self._pending -= 1
        self._report(self.execute(intent))

    def _report(self, outcome: tuple[OrderResult, Fill | None]) -> None:
        result, fill = outcome
        if fill is not None:
            self._portfolio.apply_fill(fill)
            self._on_fill(fill)
        self._on_result(result)

    def execute(self, intent: OrderIntent) -> tuple[OrderResult, Fill | None]:
        """Fill ``intent`` against the books now; the result and the fill, if any."""
        levels = self._levels(intent)
        if not levels:
            rejected = _result(intent, OrderStatus.REJECTED, reason="no book for the symbol")
            return msgspec.structs.replace(rejected, code="no_book"), None
        filled, average = _take(levels, intent)
        if filled <= _DUST:
            return _result(
                intent, OrderStatus.CANCELED, reason="no liquidity within the limit"
            ), None
        price = self._slipped(average, intent)
        base, quote = split_symbol(intent.symbol)
        fee = filled * price * self._config.taker_fee_bps.get(intent.venue, 0.0) * BPS
        shortfall = self._shortfall(intent, base, quote, filled, price, fee)
        if shortfall:
            rejected = _result(intent, OrderStatus.REJECTED, reason=shortfall)
            return msgspec.structs.replace(rejected, code="insufficient_balance"), None
        fill = Fill(
            intent.strategy,
            intent.client_order_id,
            intent.venue,
            intent.symbol,
            intent.side,
            filled,
            price,
            fee,
            quote,
            self._clock_ns(),
        )
        complete = intent.quantity - filled <= _DUST
        status = OrderStatus.FILLED if complete else OrderStatus.PARTIALLY_FILLED
        return _result(intent, status, filled, price), fill

    def _levels(self, intent: OrderIntent) -> list[Level]:
        book = self._books.book(intent.venue, intent.symbol)
        buying = intent.side == "buy"
        if book is not None and book.live:
            return book.ask_levels(DEPTH_LEVELS) if buying else book.bid_levels(DEPTH_LEVELS)
        top = self._books.top(intent.venue, intent.symbol)
        if top is None:
            return []
        return [(top.ask, top.ask_size)] if buying else [(top.bid, top.bid_size)]

    def _slipped(self, average: float, intent: OrderIntent) -> float:
        slip = self._config.slippage_bps * BPS
        if intent.side == "buy":
            price = average * (1.0 + slip)
            return min(price, intent.limit_price) if intent.limit_price is not None else price
        price = average * (1.0 - slip)
        return max(price, intent.limit_price) if intent.limit_price is not None else price

    def _shortfall(
        self, intent: OrderIntent, base: str, quote: str, filled: float, price: float, fee: float
    ) -> str:
        if intent.side == "buy":
            needed, asset = filled * price + fee, quote
        else:
            needed, asset = filled, base
        available = self._portfolio.balance(intent.strategy, intent.venue, asset)
        if available + _DUST < needed:
            return f"insufficient {asset} on {intent.venue}: need {needed:g}, have {available:g}"
        return ""

    async def start(self) -> None:
        """Nothing to prepare: paper orders live in memory."""

    async def recover(self, intent: OrderIntent, settle_s: float) -> bool:
        result, _ = await self.outcome(intent, settle_s)
        self._on_result(result)
        return True

    async def outcome(self, intent: OrderIntent, settle_s: float) -> tuple[OrderResult, None]:
        """A paper order lived in the memory of the process that stopped: it never filled."""
        reason = "paper order lost with the engine that held it"
        return OrderResult(intent, OrderStatus.CANCELED, 0.0, 0.0, reason, code="not_sent"), None

    async def orders_since(
        self, symbols: Mapping[str, Iterable[str]], since_ns: int
    ) -> list[tuple[str, ListedOrder]]:
        """No venue has ever seen a paper order."""
        return []

    async def close(self) -> None:
        """Nothing to release: paper orders live in memory."""


def _take(levels: list[Level], intent: OrderIntent) -> tuple[float, float]:
    """(quantity filled, average price) taking ``levels`` best first within the limit."""
    limit = intent.limit_price
    buying = intent.side == "buy"
    remaining = intent.quantity
    notional = 0.0
    for price, size in levels:
        if limit is not None and (price > limit if buying else price < limit):
            break
        take = min(size, remaining)
        notional += take * price
        remaining -= take
        if remaining <= _DUST:
            break
    filled = intent.quantity - max(remaining, 0.0)
    return filled, (notional / filled if filled > _DUST else 0.0)


def _result(
    intent: OrderIntent,
    status: OrderStatus,
    filled: float = 0.0,
    price: float = 0.0,
    reason: str = "",
) -> OrderResult:
    return OrderResult(intent, status, filled, price, reason)
