"""Live trading: intents become REST orders, immediate-or-cancel, through injected venue clients.

The executor knows no venue: whoever builds it hands it a ``VenueClient`` per venue (from
``runtime.venues``). Every order carries the intent's deterministic client order id, which makes
retries safe: when a request's outcome is unknown (timeout, dropped connection, 5xx) the executor
first asks the venue for the order by that id and only resends if the venue has never seen it; a
"duplicate order" answer is resolved the same way. A 429 waits out ``Retry-After``. The clients
sign each request and send it through the venue's REST rate limiter.

An intent without a limit price is sent as a limit order ``market_guard_bps`` through the current
top of book, so a market order can never sweep an empty book. This module has only ever been
tested against the exchange simulator.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Final

from runtime.core.errors import (
    AuthenticationError,
    ExchangeError,
    OrderRejectedError,
    RateLimitedError,
)
from runtime.core.instruments import split_symbol
from runtime.core.logging import BoundedLog, logger
from runtime.core.orders import Fill, OrderIntent, OrderResult, OrderStatus
from runtime.core.venue import UNKNOWN_OUTCOME, ListedOrder, VenueClient, VenueOrder
from runtime.trading.book import Books
from runtime.trading.execution import FillHandler, ResultHandler
from runtime.trading.portfolio import Portfolio

BPS: Final = 1e-4


def _error_class(exc: ExchangeError) -> str:
    """A short, bounded label for an order failure (metrics must not get one per message)."""
    if isinstance(exc, AuthenticationError):
        return "auth"
    if isinstance(exc, RateLimitedError):
        return "rate_limited"
    if exc.code == "stale":
        return "stale_intent"
    if isinstance(exc, OrderRejectedError):
        return "rejected"
    return "error"


class LiveExecutor:
    """Sends intents to venues; see the module docstring."""

    def __init__(
        self,
        clients: Mapping[str, VenueClient],
        books: Books,
        portfolio: Portfolio,
        on_fill: FillHandler,
        on_result: ResultHandler,
        *,
        max_attempts: int = 4,
        max_rate_limit_waits: int = 10,
        max_intent_age_ms: float = 1_000.0,
        market_guard_bps: float = 50.0,
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self._clients = dict(clients)
        self._books = books
        self._portfolio = portfolio
        self._on_fill = on_fill
        self._on_result = on_result
        self._max_attempts = max_attempts
        self._max_rate_limit_waits = max_rate_limit_waits
        self._max_intent_age_ns = int(max_intent_age_ms * 1e6)
        self._failures = BoundedLog()
        self._guard = market_guard_bps * BPS
        self._clock_ns = clock_ns
        self._tasks: set[asyncio.Task[None]] = set()
        self.retries = 0

    @property
    def pending(self) -> int:
        return len(self._tasks)

    async def start(self) -> None:
        await asyncio.gather(*(client.warm_up() for client in self._clients.values()))

    def submit(self, intent: OrderIntent) -> None:
        task = asyncio.get_running_loop().create_task(self._execute(intent))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _execute(self, intent: OrderIntent) -> None:
        price = self._price(intent)
        client = self._clients.get(intent.venue)
        if price is None or client is None:
            reason = "no price to bound the order" if client else f"no client for {intent.venue}"
            self._on_result(
                OrderResult(intent, OrderStatus.REJECTED, 0.0, 0.0, reason, code="no_price")
            )
            return
        try:
            order = await self._place(client, intent, price)
        except ExchangeError as exc:
            self._failures.warning(
                f"{intent.venue}:{exc.code}",
                f"order {intent.client_order_id} failed: {exc}",
                venue=intent.venue,
                client_order_id=intent.client_order_id,
            )
            result = OrderResult(
                intent, OrderStatus.REJECTED, 0.0, 0.0, str(exc), code=_error_class(exc)
            )
            self._on_result(result)
            return
        except Exception as exc:
            # Outcome unknown (the venue may have the order): report it so the risk guard and
            # the journal move on; reconciliation asks the venue by client order id on restart.
            logger.opt(exception=exc).error(
                "order {} ended in an unexpected error", intent.client_order_id
            )
            self._on_result(
                OrderResult(intent, OrderStatus.REJECTED, 0.0, 0.0, repr(exc), code="error")
            )
            return
        self._report(intent, order)

    async def _place(self, client: VenueClient, intent: OrderIntent, price: float) -> VenueOrder:
        """Send the order until the venue has it; the same client order id every time."""
        failures = waits = 0
        while True:
            age_ns = self._clock_ns() - intent.created_ns
            if intent.created_ns and age_ns > self._max_intent_age_ns:
                # The prices it was decided on are long gone; sending it now is a gamble.
                raise OrderRejectedError(
                    f"intent is {age_ns / 1e6:.0f} ms old, not sent", code="stale"
                )
            try:
                return await client.place(intent, price)
            except RateLimitedError as exc:
                # Refused before it was looked at: waiting is safe, and does not count as a failure.
                waits += 1
                if waits > self._max_rate_limit_waits:
                    raise
                await asyncio.sleep(exc.retry_after_s)
                continue
            except OrderRejectedError as exc:
                if exc.code not in (-2010, "duplicate_identifier"):
                    raise
                found = await client.find(intent.client_order_id)  # we sent it before: use that
                if found is None:
                    raise
                return found
            except AuthenticationError:
                raise
            except (ExchangeError, *UNKNOWN_OUTCOME) as exc:
                # The venue may or may not have the order: ask before sending it again.
                found = await self._find_quietly(client, intent.client_order_id)
                if found is not None:
                    return found
                failures += 1
                if failures >= self._max_attempts:
                    raise (
                        exc if isinstance(exc, ExchangeError) else ExchangeError(str(exc))
                    ) from exc
            self.retries += 1

    async def recover(self, intent: OrderIntent, settle_s: float) -> bool:
        """Ask the venue what became of ``intent`` (sent by an earlier run), never resend it,
        and report it. False if the venue cannot be asked now; the order stays in doubt."""
        outcome = await self.outcome(intent, settle_s)
        if outcome is None:
            return False
        self._report_outcome(*outcome)
        return True

    async def outcome(
        self, intent: OrderIntent, settle_s: float
    ) -> tuple[OrderResult, Fill | None] | None:
        """What the venue says became of ``intent``, reported to no one; None if it cannot be
        asked now.

        An order the venue does not know is cancelled (code ``not_sent``) once it is
        ``settle_s`` old: a request still on its way would be refused by then (``recvWindow``).
        """
        client = self._clients.get(intent.venue)
        if client is None:
            return None
        try:
            order = await client.find(intent.client_order_id)
            wait_s = settle_s - (self._clock_ns() - intent.created_ns) / 1e9
            if order is None and wait_s > 0:
                await asyncio.sleep(wait_s)
                order = await client.find(intent.client_order_id)
        except (ExchangeError, *UNKNOWN_OUTCOME) as exc:
            logger.bind(venue=intent.venue, client_order_id=intent.client_order_id).warning(
                f"order {intent.client_order_id} still in doubt: {exc}"
            )
            return None
        if order is None:
            reason = "never reached the venue: the engine stopped before sending it"
            return OrderResult(
                intent, OrderStatus.CANCELED, 0.0, 0.0, reason, code="not_sent"
            ), None
        return self._outcome_of(intent, order)

    async def orders_since(
        self, symbols: Mapping[str, Iterable[str]], since_ns: int
    ) -> list[tuple[str, ListedOrder]] | None:
        """(venue, order) for every order the venues list for ``symbols`` (venue -> symbols)
        taken at or after ``since_ns``; None if a venue could not be asked."""
        listed: list[tuple[str, ListedOrder]] = []
        for venue, venue_symbols in symbols.items():
            client = self._clients.get(venue)
            if client is None:
                continue
            for symbol in venue_symbols:
                try:
                    orders = await client.orders_since(symbol, since_ns)
                except (ExchangeError, *UNKNOWN_OUTCOME) as exc:
                    logger.bind(venue=venue).warning(f"{venue} {symbol} orders not listed: {exc}")
                    return None
                listed += [(venue, order) for order in orders]
        return listed

    async def _find_quietly(self, client: VenueClient, client_order_id: str) -> VenueOrder | None:
        try:
            return await client.find(client_order_id)
        except (ExchangeError, *UNKNOWN_OUTCOME):
            return None

    def _price(self, intent: OrderIntent) -> float | None:
        if intent.limit_price is not None:
            return intent.limit_price
        top = self._books.top(intent.venue, intent.symbol)
        if top is None:
            return None
        return (
            top.ask * (1.0 + self._guard) if intent.side == "buy" else top.bid * (1.0 - self._guard)
        )

    def _report(self, intent: OrderIntent, order: VenueOrder) -> None:
        self._report_outcome(*self._outcome_of(intent, order))

    def _outcome_of(
        self, intent: OrderIntent, order: VenueOrder
    ) -> tuple[OrderResult, Fill | None]:
        fill = None
        if order.filled > 0:
            _, quote = split_symbol(intent.symbol)
            fill = Fill(
                intent.strategy,
                intent.client_order_id,
                intent.venue,
                intent.symbol,
                intent.side,
                order.filled,
                order.average_price,
                order.fee,
                quote,
                self._clock_ns(),
            )
        result = OrderResult(
            intent, order.status, order.filled, order.average_price, "", order.venue_order_id
        )
        return result, fill

    def _report_outcome(self, result: OrderResult, fill: Fill | None) -> None:
        if fill is not None:
            self._portfolio.apply_fill(fill)
            self._on_fill(fill)
        self._on_result(result)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for client in self._clients.values():
            await client.close()
