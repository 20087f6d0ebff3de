"""Live trading: intents become signed REST orders, immediate-or-cancel.

Binance orders are ``POST /api/v3/order`` with an HMAC-SHA256 ``signature`` over the query;
Upbit orders are ``POST /v1/orders`` with a JWT whose ``query_hash`` covers the body. Both carry
the intent's deterministic client order id (``newClientOrderId`` / ``identifier``), which makes
retries safe: when a request's outcome is unknown (timeout, dropped connection, 5xx) the executor
first asks the venue for the order by that id and only resends if the venue has never seen it; a
"duplicate order" answer is resolved the same way. A 429 waits out ``Retry-After``. Every request
goes through the venue's REST rate limiter.

An intent without a limit price is sent as a limit order ``market_guard_bps`` through the current
top of book, so a market order can never sweep an empty book. This module has only ever been
tested against the exchange simulator.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol
from urllib.parse import urlencode

import aiohttp
import msgspec

from runtime.core.errors import (
    AuthenticationError,
    ExchangeError,
    OrderRejectedError,
    RateLimitedError,
)
from runtime.core.instruments import instrument, split_symbol
from runtime.core.logging import BoundedLog, logger
from runtime.core.orders import Fill, OrderIntent, OrderResult, OrderStatus
from runtime.trading.book import Books
from runtime.trading.execution import FillHandler, ResultHandler
from runtime.trading.portfolio import Portfolio
from runtime.venues.base import RestLimiter
from runtime.venues.signing import binance_signature, upbit_token

BPS: Final = 1e-4
RECV_WINDOW_MS: Final = 5_000
_UNKNOWN_OUTCOME = (aiohttp.ClientError, asyncio.TimeoutError, OSError)


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


class VenueClient(Protocol):
    venue: str

    async def place(self, intent: OrderIntent, price: float) -> VenueOrder: ...

    async def find(self, client_order_id: str) -> VenueOrder | None: ...

    async def warm_up(self) -> None: ...

    async def close(self) -> None: ...


def _raise_for(venue: str, status: int, body: Any, headers: Mapping[str, str]) -> None:
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


class _RestClient:
    def __init__(self, venue: str, rest_url: str, keys: KeySource, limiter: RestLimiter) -> None:
        self.venue = venue
        self._rest_url = rest_url.rstrip("/")
        self._keys = keys
        self._limiter = limiter
        self._session: aiohttp.ClientSession | None = None

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
            _raise_for(self.venue, response.status, body, response.headers)
            return response.status, body

    async def warm_up(self) -> None:
        """Open the connection with an unauthenticated request, so the first order does not
        pay for TCP (and, at a real venue, TLS) setup."""
        try:
            await self._request("GET", lambda: (self._ping_path, {}))
        except (ExchangeError, *_UNKNOWN_OUTCOME) as exc:
            logger.bind(venue=self.venue).warning(f"{self.venue} REST warm-up failed: {exc}")

    _ping_path = "/"

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


class BinanceClient(_RestClient):
    """Binance spot orders, HMAC-signed."""

    _ping_path = "/api/v3/ping"

    def _signed(self, path: str, params: dict[str, str]) -> tuple[str, dict[str, Any]]:
        """The signed URL path and the key header, from one snapshot of the key pair: a key
        swapped meanwhile changes the next request, never half of this one."""
        keys = self._keys.credentials()
        params["recvWindow"] = str(RECV_WINDOW_MS)
        params["timestamp"] = str(int(time.time() * 1000))
        query = urlencode(list(params.items()))
        signed = f"{path}?{query}&signature={binance_signature(keys.secret, query)}"
        return signed, {"headers": {"X-MBX-APIKEY": keys.api_key}}

    async def place(self, intent: OrderIntent, price: float) -> VenueOrder:
        params = {
            "symbol": instrument(self.venue, intent.symbol).venue_symbol,
            "side": intent.side.upper(),
            "type": "LIMIT",
            "timeInForce": "IOC",
            "quantity": f"{intent.quantity:.8f}",
            "price": f"{price:.8f}",
            "newClientOrderId": intent.client_order_id,
            "newOrderRespType": "FULL",
        }
        _, body = await self._request("POST", lambda: self._signed("/api/v3/order", params))
        return _binance_order(body)

    async def find(self, client_order_id: str) -> VenueOrder | None:
        params = {"origClientOrderId": client_order_id}
        try:
            _, body = await self._request("GET", lambda: self._signed("/api/v3/order", params))
        except OrderRejectedError as exc:
            if exc.code == -2013:  # "Order does not exist."
                return None
            raise
        return _binance_order(body)


def _binance_order(body: dict[str, Any]) -> VenueOrder:
    filled = float(body.get("executedQty", 0.0))
    quote = float(body.get("cummulativeQuoteQty", 0.0))
    fee = sum(float(f.get("commission", 0.0)) for f in body.get("fills", []))
    status = {"FILLED": OrderStatus.FILLED, "NEW": OrderStatus.NEW}.get(
        str(body.get("status")), OrderStatus.CANCELED
    )
    if status is OrderStatus.CANCELED and filled > 0:
        status = OrderStatus.PARTIALLY_FILLED
    return VenueOrder(
        status, filled, quote / filled if filled else 0.0, fee, str(body.get("orderId", ""))
    )


class UpbitClient(_RestClient):
    """Upbit orders, authenticated with a JWT per request."""

    _ping_path = "/v1/market/all"

    def _auth(self, params: Mapping[str, str] | None) -> dict[str, str]:
        keys = self._keys.credentials()
        token = upbit_token(keys.api_key, keys.secret, params)
        return {"Authorization": f"Bearer {token}"}

    async def place(self, intent: OrderIntent, price: float) -> VenueOrder:
        body = {
            "market": instrument(self.venue, intent.symbol).venue_symbol,
            "side": "bid" if intent.side == "buy" else "ask",
            "volume": f"{intent.quantity:.8f}",
            "price": f"{price:.8f}",
            "ord_type": "limit",
            "time_in_force": "ioc",
            "identifier": intent.client_order_id,
        }
        _, answer = await self._request(
            "POST", lambda: ("/v1/orders", {"json": body, "headers": self._auth(body)})
        )
        return _upbit_order(answer)

    async def find(self, client_order_id: str) -> VenueOrder | None:
        params = {"identifier": client_order_id}
        try:
            _, answer = await self._request(
                "GET", lambda: ("/v1/order", {"params": params, "headers": self._auth(params)})
            )
        except OrderRejectedError as exc:
            if exc.status == 404:
                return None
            raise
        return _upbit_order(answer)


def _upbit_order(body: dict[str, Any]) -> VenueOrder:
    filled = float(body.get("executed_volume", 0.0))
    funds = sum(float(t.get("funds", 0.0)) for t in body.get("trades", []))
    if body.get("state") == "done":
        status = OrderStatus.FILLED
    else:
        status = OrderStatus.PARTIALLY_FILLED if filled > 0 else OrderStatus.CANCELED
    return VenueOrder(
        status,
        filled,
        funds / filled if filled else 0.0,
        float(body.get("paid_fee", 0.0)),
        str(body.get("uuid", "")),
    )


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


CLIENTS: Final[dict[str, Callable[[str, str, KeySource, RestLimiter], VenueClient]]] = {
    "binance": BinanceClient,
    "upbit": UpbitClient,
}


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
            except (ExchangeError, *_UNKNOWN_OUTCOME) as exc:
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
        """Ask the venue what became of ``intent`` (sent by an earlier run), never resend it.

        An order the venue does not know is reported cancelled (code ``not_sent``) once it is
        ``settle_s`` old: a request still on its way would be refused by then (``recvWindow``).
        False if the venue cannot be asked now; the order stays in doubt.
        """
        client = self._clients.get(intent.venue)
        if client is None:
            return False
        try:
            order = await client.find(intent.client_order_id)
            wait_s = settle_s - (self._clock_ns() - intent.created_ns) / 1e9
            if order is None and wait_s > 0:
                await asyncio.sleep(wait_s)
                order = await client.find(intent.client_order_id)
        except (ExchangeError, *_UNKNOWN_OUTCOME) as exc:
            logger.bind(venue=intent.venue, client_order_id=intent.client_order_id).warning(
                f"order {intent.client_order_id} still in doubt: {exc}"
            )
            return False
        if order is None:
            reason = "never reached the venue: the engine stopped before sending it"
            self._on_result(
                OrderResult(intent, OrderStatus.CANCELED, 0.0, 0.0, reason, code="not_sent")
            )
        else:
            self._report(intent, order)
        return True

    async def _find_quietly(self, client: VenueClient, client_order_id: str) -> VenueOrder | None:
        try:
            return await client.find(client_order_id)
        except (ExchangeError, *_UNKNOWN_OUTCOME):
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
            self._portfolio.apply_fill(fill)
            self._on_fill(fill)
        self._on_result(
            OrderResult(
                intent, order.status, order.filled, order.average_price, "", order.venue_order_id
            )
        )

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for client in self._clients.values():
            await client.close()


def venue_clients(
    venues: Mapping[str, tuple[str, KeySource, float]],
) -> dict[str, VenueClient]:
    """A REST client per venue from (REST URL, key source, requests per second)."""
    return {
        venue: CLIENTS[venue](venue, rest_url, keys, RestLimiter(rate, burst=5))
        for venue, (rest_url, keys, rate) in venues.items()
    }
