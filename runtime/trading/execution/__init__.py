"""Executors: where intents that passed the risk guards become orders (paper or live)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Protocol

from runtime.core.orders import Fill, OrderIntent, OrderResult
from runtime.core.venue import ListedOrder

FillHandler = Callable[[Fill], None]
ResultHandler = Callable[[OrderResult], None]


class Executor(Protocol):
    """Takes intents and reports fills and final results through the handlers it was given."""

    def submit(self, intent: OrderIntent) -> None: ...

    async def start(self) -> None:
        """Get ready before the first intent (open connections); called once by the engine."""
        ...

    @property
    def pending(self) -> int:
        """Orders submitted whose result has not been reported yet."""
        ...

    async def recover(self, intent: OrderIntent, settle_s: float) -> bool:
        """Report, through the handlers, what became of ``intent``: sent by an earlier run of
        the engine that stopped before hearing back. Never sends it. False if that cannot be
        known yet (the venue could not be asked)."""
        ...

    async def outcome(
        self, intent: OrderIntent, settle_s: float
    ) -> tuple[OrderResult, Fill | None] | None:
        """What ``recover`` would report, reported to no one; None if it cannot be known yet."""
        ...

    async def orders_since(
        self, symbols: Mapping[str, Iterable[str]], since_ns: int
    ) -> list[tuple[str, ListedOrder]] | None:
        """(venue, order) for every order the venues list for ``symbols`` (venue -> symbols)
        taken at or after ``since_ns``; None if a venue could not be asked."""
        ...

    async def close(self) -> None: ...
