"""What trading and the venues' REST clients agree on: key pairs, a client's answers, its protocol.

The live executor (``runtime.trading``) talks to any venue through ``VenueClient``; the venue
packages (``runtime.venues.<name>``) implement it. Neither imports the other: whoever builds the
executor hands it the clients.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Protocol

import aiohttp

from runtime.core.events import Side
from runtime.core.orders import OrderIntent, OrderStatus

UNKNOWN_OUTCOME = (aiohttp.ClientError, asyncio.TimeoutError, OSError)
"""Failures after which a request's outcome is unknown: the venue may or may not have acted."""


@dataclass(frozen=True)
class Credentials:
    """An API key pair; ``repr`` never shows the secret."""

    api_key: str
    secret: str

    def __repr__(self) -> str:
        return f"Credentials(api_key={self.api_key[:4]}…, secret=***)"

    def credentials(self) -> Credentials:
        """A fixed key pair is its own key source."""
        return self


class KeySource(Protocol):
    """Where a REST client gets the key pair for each request: fixed ``Credentials``, or
    ``runtime.platform.vault.VenueKeys``, which follows the KV version in use."""

    def credentials(self) -> Credentials: ...


@dataclass(frozen=True)
class VenueOrder:
    """What a venue says happened to an order."""

    status: OrderStatus
    filled: float
    average_price: float
    fee: float
    venue_order_id: str


@dataclass(frozen=True)
class ListedOrder:
    """An order of the account as the venue lists it: enough to ask about it like an intent."""

    client_order_id: str
    symbol: str
    """Normalized, ``BASE/QUOTE``."""
    side: Side
    quantity: float
    limit_price: float | None
    created_ns: int
    """When the venue took it (its clock)."""


class VenueClient(Protocol):
    """One venue's REST API for orders: place immediate-or-cancel, find by client order id,
    list the account's orders of a symbol."""

    venue: str

    async def place(self, intent: OrderIntent, price: float) -> VenueOrder: ...

    async def find(self, client_order_id: str) -> VenueOrder | None: ...

    async def orders_since(self, symbol: str, since_ns: int) -> list[ListedOrder]:
        """Every order of ``symbol`` the venue took at or after ``since_ns``, oldest first."""
        ...

    async def warm_up(self) -> None: ...

    async def close(self) -> None: ...
