"""What every venue's REST client shares: one session, the rate limit, errors mapped to ours."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import aiohttp
import msgspec

from runtime.core.errors import (
    AuthenticationError,
    ExchangeError,
    OrderRejectedError,
    RateLimitedError,
)
from runtime.core.logging import logger
from runtime.core.venue import UNKNOWN_OUTCOME, KeySource
from runtime.venues.base import RestLimiter
from runtime.venues.contract import Venue


def raise_for(venue: str, status: int, body: Any, headers: Mapping[str, str]) -> None:
    """Map a venue's error answer to our error classes."""
    if status < 400:
        return
    detail = (
        body.get("msg") or body.get("error", {}).get("message") if isinstance(body, dict) else body
    )
    code = body.get("code") or body.get("error", {}).get("name") if isinstance(body, dict) else None
    message = f"{venue} answered {status}: {detail}"
    if status in (418, 429):
        raise RateLimitedError(
            message, status=status, retry_after_s=float(headers.get("Retry-After", "1"))
        )
    if status in (401, 403) or code in (-2014, -2015, -1022):
        raise AuthenticationError(message, status=status, code=code)
    if status >= 500:
        raise ExchangeError(message, status=status, code=code)
    raise OrderRejectedError(message, status=status, code=code)


class RestClient:
    """The base of a venue's ``VenueClient``: subclasses add ``place`` and ``find``."""

    _ping_path = "/"
    """An unauthenticated path to warm the connection up with."""

    def __init__(self, venue: Venue, rest_url: str, keys: KeySource, limiter: RestLimiter) -> None:
        self.venue = venue.name
        self._instrument = venue.instrument
        self._rest_url = rest_url.rstrip("/")
        self._keys = keys
        self._limiter = limiter
        self._session: aiohttp.ClientSession | None = None

    def _venue_symbol(self, symbol: str) -> str:
        return self._instrument(symbol).venue_symbol

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
        return self._session

    async def _request(
        self, method: str, build: Callable[[], tuple[str, dict[str, Any]]]
    ) -> tuple[int, Any]:
        """Send the request ``build`` makes (path, aiohttp arguments) once the limiter allows.

        ``build`` runs after the wait, so timestamps, nonces and signatures are fresh.
        """
        await self._limiter.acquire()
        path, kwargs = build()
        async with self._http().request(method, self._rest_url + path, **kwargs) as response:
            raw = await response.read()
            try:
                body = msgspec.json.decode(raw) if raw else None
            except msgspec.DecodeError:
                body = raw[:200].decode("utf-8", "replace")
            raise_for(self.venue, response.status, body, response.headers)
            return response.status, body

    async def warm_up(self) -> None:
        """Open the connection with an unauthenticated request, so the first order does not
        pay for TCP (and, at a real venue, TLS) setup."""
        try:
            await self._request("GET", lambda: (self._ping_path, {}))
        except (ExchangeError, *UNKNOWN_OUTCOME) as exc:
            logger.bind(venue=self.venue).warning(f"{self.venue} REST warm-up failed: {exc}")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
