"""Risk guards: every intent passes them before it reaches an executor.

Checks, in order: the kill switch, the venue's feed being fresh, the strategy's daily loss, its
order rate, its open orders, the order's notional and the position it would leave. A breach
blocks the order, counts the reason and logs it (at a bounded rate). The engine submits a
strategy's intents as one batch and blocks the whole batch if any leg is blocked: half an
arbitrage is a directional bet nobody asked for.

Positions count open orders as if they filled, so a burst of orders cannot step past a limit
before the first fill comes back.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable, Mapping
from typing import Final

import pydantic
from pydantic import NonNegativeFloat, PositiveFloat, PositiveInt

from runtime.core.instruments import split_symbol
from runtime.core.logging import BoundedLog
from runtime.core.orders import OrderIntent
from runtime.trading.portfolio import MidPrices, Portfolio

DAY_S: Final = 86_400


class RiskLimits(pydantic.BaseModel):
    """Limits per strategy; notional and loss in the reporting currency (USDT)."""

    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")

    max_position: Mapping[str, PositiveFloat] = pydantic.Field(default_factory=dict)
    """Symbol -> most base asset a strategy may hold long or short beyond its start balance."""
    default_max_position: PositiveFloat | None = None
    """For symbols not in ``max_position``; None: no limit."""
    max_order_notional: PositiveFloat = 50_000.0
    max_open_orders: PositiveInt = 20
    max_daily_loss: PositiveFloat = 1_000.0
    max_orders_per_second: PositiveFloat = 20.0
    order_burst: PositiveInt = 10
    """Orders a strategy may send at once before the per-second rate applies."""
    min_order_notional: NonNegativeFloat = 0.0


class KillSwitch:
    """Blocks every order while engaged. Thread-safe: the Consul watcher may flip it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reason: str | None = None

    @property
    def engaged(self) -> bool:
        return self.reason is not None

    def engage(self, reason: str) -> None:
        with self._lock:
            self.reason = reason

    def release(self) -> None:
        with self._lock:
            self.reason = None


class TokenBucket:
    """``rate`` tokens per second, holding at most ``burst``."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float]) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._tokens = float(burst)
        self._clock = clock
        self._updated = clock()

    def take(self) -> bool:
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._updated) * self._rate)
        self._updated = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


class RiskGuard:
    """Checks intents against ``RiskLimits``; see the module docstring."""

    def __init__(
        self,
        limits: RiskLimits,
        portfolio: Portfolio,
        prices: MidPrices,
        kill_switch: KillSwitch | None = None,
        clock: Callable[[], float] = time.time,
        stale_venue: Callable[[str], bool] = lambda _venue: False,
    ) -> None:
        self.limits = limits
        self._stale_venue = stale_venue
        self.kill_switch = kill_switch if kill_switch is not None else KillSwitch()
        self.blocked: collections.Counter[str] = collections.Counter()
        self._portfolio = portfolio
        self._prices = prices
        self._clock = clock
        self._buckets: dict[str, TokenBucket] = {}
        self._open: dict[str, dict[str, OrderIntent]] = collections.defaultdict(dict)
        self._day_start_pnl: dict[str, tuple[int, float]] = {}
        self._log = BoundedLog()

    def check_batch(self, intents: list[OrderIntent]) -> str | None:
        """None if every intent may go; else why not (and none of them may)."""
        for leg, intent in enumerate(intents):
            reason = self.check(intent)
            if reason is not None:
                return reason if len(intents) == 1 else f"leg {leg + 1}: {reason}"
        return None

    def check(self, intent: OrderIntent) -> str | None:
        reason = self._breach(intent)
        if reason is not None:
            key = reason.split(":", 1)[0]
            self.blocked[key] += 1
            self._log.warning(
                f"risk:{intent.strategy}:{key}",
                f"order blocked: {reason}",
                strategy=intent.strategy,
                client_order_id=intent.client_order_id,
            )
        return reason

    def _breach(self, intent: OrderIntent) -> str | None:
        if self.kill_switch.reason is not None:
            return f"kill_switch: {self.kill_switch.reason}"
        if self._stale_venue(intent.venue):
            return f"stale_feed: no market data from {intent.venue} recently"
        loss = self.daily_loss(intent.strategy)
        if loss is not None and loss >= self.limits.max_daily_loss:
            return f"max_daily_loss: lost {loss:.2f} today, limit {self.limits.max_daily_loss:g}"
        if not self._bucket(intent.strategy).take():
            return f"order_rate: over {self.limits.max_orders_per_second:g} orders/s"
        if len(self._open[intent.strategy]) >= self.limits.max_open_orders:
            return f"max_open_orders: {self.limits.max_open_orders} already open"
        return self._size_breach(intent)

    def _size_breach(self, intent: OrderIntent) -> str | None:
        base, _ = split_symbol(intent.symbol)
        value = self._prices.value(base)
        if value is None:
            return f"no_price: cannot value {base} to check notional"
        notional = intent.quantity * value
        if notional > self.limits.max_order_notional:
            return f"max_order_notional: {notional:.2f} over {self.limits.max_order_notional:g}"
        if notional < self.limits.min_order_notional:
            return f"min_order_notional: {notional:.2f} under {self.limits.min_order_notional:g}"
        limit = self.limits.max_position.get(intent.symbol, self.limits.default_max_position)
        if limit is not None:
            projected = self._projected_position(intent, base)
            if abs(projected) > limit * (1.0 + 1e-9):  # 0.1 + 0.1 + 0.05 > 0.25 in floats
                return f"max_position: {intent.symbol} would reach {projected:g}, limit {limit:g}"
        return None

    def _projected_position(self, intent: OrderIntent, base: str) -> float:
        position = self._portfolio.position(intent.strategy, intent.venue, base)
        for order in self._open[intent.strategy].values():
            if order.venue == intent.venue and split_symbol(order.symbol)[0] == base:
                position += order.quantity if order.side == "buy" else -order.quantity
        return position + (intent.quantity if intent.side == "buy" else -intent.quantity)

    def _bucket(self, strategy: str) -> TokenBucket:
        bucket = self._buckets.get(strategy)
        if bucket is None:
            limits = self.limits
            bucket = TokenBucket(limits.max_orders_per_second, limits.order_burst, self._clock)
            self._buckets[strategy] = bucket
        return bucket

    def daily_loss(self, strategy: str) -> float | None:
        """How much the strategy lost since the start of the UTC day (negative: gained)."""
        pnl = self._portfolio.pnl(strategy, self._prices)
        if pnl is None:
            return None
        day = int(self._clock() // DAY_S)
        start = self._day_start_pnl.get(strategy)
        if start is None or start[0] != day:
            start = self._day_start_pnl[strategy] = (day, pnl)
        return start[1] - pnl

    def order_opened(self, intent: OrderIntent) -> None:
        self._open[intent.strategy][intent.client_order_id] = intent

    def order_closed(self, intent: OrderIntent) -> None:
        self._open[intent.strategy].pop(intent.client_order_id, None)

    def open_orders(self, strategy: str) -> int:
        return len(self._open[strategy])
