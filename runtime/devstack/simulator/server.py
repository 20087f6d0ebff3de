"""The exchange simulator: an aiohttp server speaking Binance's and Upbit's shapes on loopback.

This is the one stand-in for real exchanges, used by the tests, the demo and the benchmarks.

Websockets: ``/stream?streams=...`` and ``/ws/<stream>`` as Binance (bookTicker, depth diffs with
update ids, trades; text frames), ``/upbit/websocket/v1`` as Upbit (send a subscription, receive
orderbook snapshots and trades as binary frames). REST: ``GET /api/v3/depth``, and signed order
endpoints — ``POST``/``GET /api/v3/order`` and ``GET /api/v3/allOrders`` checked like Binance
(``X-MBX-APIKEY``, HMAC-SHA256 ``signature``, ``timestamp`` within ``recvWindow``) and
``POST /upbit/v1/orders``, ``GET /upbit/v1/order`` and ``GET /upbit/v1/orders/closed`` checked
like Upbit (a JWT whose ``query_hash`` covers the parameters). The lists leave out what the
venues' lists leave out (Binance's ``fills``, Upbit's ``trades``).
Orders are immediate-or-cancel and settle against the simulator's current book at once.
API keys can be created, listed and revoked (``/admin/keys``, runtime/devstack/simulator/keys.py); a
revoked or unknown key is refused with 401.

Faults, all off by default: disconnect every websocket every ``disconnect_every_s``, replace a
share of frames with truncated JSON, skip update ids in depth diffs (a gap the client must
resync), answer a share of REST calls with 429 and ``Retry-After``, delay every frame and reply.

Deliberately stricter than the venues in one way: a client order id is unique for the session,
not only among open orders, so a client that retries without checking creates no second order.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import parse_qsl

import msgspec
import pydantic
from aiohttp import WSMsgType, web
from loguru import logger
from pydantic import NonNegativeFloat, PositiveFloat

from runtime.devstack.simulator.keys import KeyRegistry
from runtime.devstack.simulator.market import MARKETS, Ladder, MarketModel, MarketParams
from runtime.venues.binance.signing import binance_signature
from runtime.venues.registry import instrument
from runtime.venues.upbit.signing import read_upbit_token, verify_upbit_token

_QUEUE_LIMIT: Final = 10_000
_HANG_UP: Final = b""
"""Queued to wake a connection's sender when the connection is over."""
_MAX_CATCH_UP_TICKS: Final = 50
_FEE: Final = {"binance": 0.001, "upbit": 0.0005}


class FaultParams(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")

    disconnect_every_s: PositiveFloat | None = None
    malformed_ratio: float = pydantic.Field(default=0.0, ge=0.0, le=1.0)
    gap_ratio: float = pydantic.Field(default=0.0, ge=0.0, le=1.0)
    rate_limit_ratio: float = pydantic.Field(default=0.0, ge=0.0, le=1.0)
    latency_ms: NonNegativeFloat = 0.0


class SimulatorConfig(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")

    host: str = "127.0.0.1"
    port: int = pydantic.Field(default=0, ge=0, le=65_535)
    tick_interval_ms: PositiveFloat = 20.0
    market: MarketParams = pydantic.Field(default_factory=MarketParams)
    faults: FaultParams = pydantic.Field(default_factory=FaultParams)
    credentials: dict[str, str] = pydantic.Field(default_factory=lambda: {"sim-key": "sim-secret"})
    """API key (Binance) or access key (Upbit) -> secret: the keys that exist from the start."""
    recv_window_ms: int = 5_000
    admin_token: str | None = None
    """Bearer token of the key management API (devstack/simulator/keys.py); None: API off."""
    max_keys_per_label: int = pydantic.Field(default=30, ge=1)


@dataclass
class SimulatorStats:
    ticks: int = 0
    frames_sent: int = 0
    connections: int = 0
    forced_disconnects: int = 0
    slow_consumers: int = 0
    malformed_sent: int = 0
    gaps_made: int = 0
    orders: int = 0
    duplicate_orders: int = 0
    auth_failures: int = 0
    rate_limited: int = 0


@dataclass
class _Subscriber:
    ws: web.WebSocketResponse
    binary: bool
    streams: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    """(venue, symbol) -> kinds: ``bookTicker``, ``depth``, ``trade`` / ``orderbook``."""
    combined: dict[tuple[str, str, str], str] = field(default_factory=dict)
    """(venue, symbol, kind) -> stream name to wrap frames in, for Binance combined streams."""
    queue: asyncio.Queue[bytes | str] = field(default_factory=lambda: asyncio.Queue(_QUEUE_LIMIT))


@dataclass(frozen=True)
class Execution:
    """What the venue executed of one order, both venues' answers in one shape."""

    client_order_id: str
    venue: str
    symbol: str
    side: str
    """``buy`` or ``sell``."""
    quantity: float
    quote: float
    """The quote asset paid or received, before the fee."""
    fee: float
    """In the quote asset."""


class ExchangeSimulator:
    """Serve the simulated venues; ``await start()``, read the URLs, ``await stop()``."""

    def __init__(self, config: SimulatorConfig | None = None) -> None:
        self.config = config if config is not None else SimulatorConfig()
        self.model = MarketModel(self.config.market)
        self.stats = SimulatorStats()
        self.orders: dict[str, dict[str, Any]] = {}
        self.order_peers: dict[str, tuple[str, int]] = {}
        """Client order id -> (the sender's address, receive time in ns): which engine sent
        what, when several engines on several hosts trade one account in turn."""
        self.keys = KeyRegistry(
            self.config.credentials, self.config.admin_token, self.config.max_keys_per_label
        )
        self.on_order: Callable[[str, dict[str, Any], int], None] | None = None
        """Called with (venue, order response, receive time in ns) for every accepted order."""
        self.on_dislocation: Callable[[str, int], None] | None = None
        self.stalled: set[str] = set()
        """Venues whose feeds send nothing (connections stay open): a stalled feed, to test
        staleness. Add or remove a venue at any time."""
        """Called with (kind, time in ns) once a dislocation's first frames are queued."""
        self._rng = self.model.rng
        self._subscribers: list[_Subscriber] = []
        self._update_ids = {market: 1_000 for market in MARKETS}
        self._depth_ids = {market: 1_000 for market in MARKETS}
        self._sent_ladders: dict[tuple[str, str], Ladder] = {}
        self._trade_ids = 0
        self._order_ids = 0
        self._runner: web.AppRunner | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.port = 0
        by_venue_symbol = {instrument(v, s).venue_symbol: (v, s) for v, s in MARKETS}
        self._markets_by_venue_symbol = by_venue_symbol
        self._venue_symbols = {market: name for name, market in by_venue_symbol.items()}
        self.app = self._make_app()

    def executions(self) -> list[Execution]:
        """Every order that executed something: the ground truth of the accounts (call in the
        simulator's loop, which writes ``orders``)."""
        out = []
        for client_id, order in self.orders.items():
            if "orderId" in order:  # Binance's answer
                venue, symbol = self._markets_by_venue_symbol[order["symbol"]]
                buy, executed = order["side"] == "BUY", float(order["executedQty"])
                quote = float(order["cummulativeQuoteQty"])
                fee = sum(float(f["commission"]) for f in order["fills"])
            else:  # Upbit's
                venue, symbol = self._markets_by_venue_symbol[order["market"]]
                buy, executed = order["side"] == "bid", float(order["executed_volume"])
                quote = sum(float(t["funds"]) for t in order["trades"])
                fee = float(order["paid_fee"])
            if executed > 0:
                side = "buy" if buy else "sell"
                out.append(Execution(client_id, venue, symbol, side, executed, quote, fee))
        return out

    # --- lifecycle ---------------------------------------------------------------------------

    def _make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/stream", self._binance_combined)
        app.router.add_get("/ws/{stream}", self._binance_raw)
        app.router.add_get("/upbit/websocket/v1", self._upbit_ws)
        app.router.add_get("/api/v3/depth", self._binance_depth)
        app.router.add_post("/api/v3/order", self._binance_new_order)
        app.router.add_get("/api/v3/order", self._binance_query_order)
        app.router.add_get("/api/v3/allOrders", self._binance_all_orders)
        app.router.add_post("/upbit/v1/orders", self._upbit_new_order)
        app.router.add_get("/upbit/v1/order", self._upbit_query_order)
        app.router.add_get("/upbit/v1/orders/closed", self._upbit_closed_orders)
        app.router.add_get("/health", self._health)
        app.router.add_get("/api/v3/ping", self._ping)
        app.router.add_get("/upbit/v1/market/all", self._upbit_markets)
        self.keys.add_routes(app)
        return app

    async def start(self) -> None:
        # A short shutdown: the connections of a peer that vanished (its node killed, its link
        # cut) never close, and aiohttp would wait 60 s for their handlers.
        self._runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=CLOSE_TIMEOUT_S)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.host, self.config.port)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        self._tasks.append(asyncio.create_task(self._tick_forever(), name="sim-ticks"))
        if self.config.faults.disconnect_every_s is not None:
            self._tasks.append(asyncio.create_task(self._disconnect_forever(), name="sim-cuts"))
        logger.info(f"exchange simulator listening on {self.http_url}")

    @property
    def open_connections(self) -> int:
        """HTTP connections (REST and websocket) held now. A connection counts until the
        requests it carried have been answered, so 0 after a client died means that everything
        it sent before dying has arrived."""
        server = self._runner.server if self._runner is not None else None
        return len(server.connections) if server is not None else 0

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for subscriber in list(self._subscribers):
            _hang_up(subscriber)
        # Concurrently and bounded: a peer that vanished (its host killed, its link cut) never
        # answers the close handshake, and aiohttp would wait 10 s for each one in turn.
        await asyncio.gather(*(_close(s.ws) for s in list(self._subscribers)))
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def http_url(self) -> str:
        return f"http://{self.config.host}:{self.port}"

    @property
    def binance_ws_url(self) -> str:
        return f"ws://{self.config.host}:{self.port}"

    @property
    def upbit_ws_url(self) -> str:
        return f"ws://{self.config.host}:{self.port}/upbit/websocket/v1"

    @property
    def upbit_rest_url(self) -> str:
        return f"{self.http_url}/upbit"

    # --- the market clock --------------------------------------------------------------------

    async def _tick_forever(self) -> None:
        interval = self.config.tick_interval_ms / 1000.0
        start = time.monotonic()
        done = 0
        while True:
            await asyncio.sleep(interval)
            due = int((time.monotonic() - start) / interval)
            if due - done > _MAX_CATCH_UP_TICKS:
                done = due - _MAX_CATCH_UP_TICKS  # fell far behind: skip rather than burst
            while done < due:
                done += 1
                self.tick(interval)
                if done < due:
                    # Let this tick's frames go out and waiting orders be answered first: a
                    # burst of catch-up ticks would otherwise hold both for its whole length.
                    await asyncio.sleep(0)

    def tick(self, dt_s: float) -> None:
        """Advance the market one tick and queue the frames every subscriber asked for."""
        dislocations = self.model.dislocations
        self.model.step(dt_s)
        self.stats.ticks += 1
        now_ms = int(time.time() * 1000)
        wanted: dict[tuple[str, str], set[str]] = {}
        for subscriber in self._subscribers:
            for market, kinds in subscriber.streams.items():
                wanted.setdefault(market, set()).update(kinds)
        for market in MARKETS:
            if market[0] in self.stalled:
                continue
            frames = self._frames(market, now_ms, wanted.get(market, set()))
            if frames:
                self._publish(market, frames)
        if self.on_dislocation is not None and self.model.dislocations != dislocations:
            self.on_dislocation(self.model.last_dislocation, time.time_ns())

    def _frames(
        self, market: tuple[str, str], now_ms: int, wanted: set[str]
    ) -> dict[str, dict[str, Any]]:
        """This tick's frames of ``market``, of the kinds in ``wanted`` only: building a frame
        nobody subscribed to cost the tick more than the market itself (ids, trades and random
        draws advance all the same, so one seed still repeats a session)."""
        venue = market[0]
        ladder = self.model.ladders[market]
        venue_symbol = self._venue_symbols[market]
        trade = self.model.trade(market)
        if trade is not None:
            self._trade_ids += 1
        frames: dict[str, dict[str, Any]] = {}
        if venue == "binance":
            self._update_ids[market] += self._rng.randint(1, 3)
            if "bookTicker" in wanted:
                update_id = self._update_ids[market]
                frames["bookTicker"] = _binance_ticker(venue_symbol, ladder, update_id)
            depth = self._binance_diff(market, venue_symbol, ladder, now_ms, "depth" in wanted)
            if depth is not None:
                frames["depth"] = depth
            if trade is not None and "trade" in wanted:
                frames["trade"] = _binance_trade(venue_symbol, trade, self._trade_ids, now_ms)
        else:
            if "orderbook" in wanted:
                frames["orderbook"] = _upbit_orderbook(venue_symbol, ladder, now_ms)
            if trade is not None and "trade" in wanted:
                frames["trade"] = _upbit_trade(venue_symbol, trade, self._trade_ids, now_ms)
        return frames

    def _binance_diff(
        self, market: tuple[str, str], venue_symbol: str, ladder: Ladder, now_ms: int, build: bool
    ) -> dict[str, Any] | None:
        """The depth diff from the last sent ladder to ``ladder`` (None unless ``build``); the
        update ids advance either way."""
        first = self._depth_ids[market] + 1
        gap = (
            bool(self.config.faults.gap_ratio) and self._rng.random() < self.config.faults.gap_ratio
        )
        if gap:
            first += 1  # an update id the client never sees
        last = max(self._update_ids[market], first)
        self._depth_ids[market] = self._update_ids[market] = last
        if not build:
            return None
        self.stats.gaps_made += gap
        previous = self._sent_ladders.get(market)
        self._sent_ladders[market] = ladder
        return {
            "e": "depthUpdate",
            "E": now_ms,
            "s": venue_symbol,
            "U": first,
            "u": last,
            "b": _level_diff(previous.bids if previous else [], ladder.bids),
            "a": _level_diff(previous.asks if previous else [], ladder.asks),
        }

    def _publish(self, market: tuple[str, str], frames: dict[str, dict[str, Any]]) -> None:
        encoded: dict[str, bytes] = {}
        for subscriber in list(self._subscribers):
            for kind in subscriber.streams.get(market, ()):
                payload = frames.get(kind)
                if payload is None:
                    continue
                stream = subscriber.combined.get((*market, kind))
                key = stream or kind
                data = encoded.get(key)
                if data is None:
                    body = {"stream": stream, "data": payload} if stream else payload
                    data = encoded[key] = msgspec.json.encode(body)
                self._enqueue(subscriber, data)

    def _enqueue(self, subscriber: _Subscriber, data: bytes) -> None:
        faults = self.config.faults
        if faults.malformed_ratio and self._rng.random() < faults.malformed_ratio:
            data = data[: max(1, len(data) // 2)]
            self.stats.malformed_sent += 1
        frame: bytes | str = data if subscriber.binary else data.decode()
        try:
            subscriber.queue.put_nowait(frame)
        except asyncio.QueueFull:
            # A client that cannot keep up is cut off, as the venues do.
            self.stats.slow_consumers += 1
            self._subscribers.remove(subscriber)
            subscriber.queue = asyncio.Queue(1)
            _hang_up(subscriber)

    async def _disconnect_forever(self) -> None:
        every = self.config.faults.disconnect_every_s
        assert every is not None
        while True:
            await asyncio.sleep(every)
            for subscriber in list(self._subscribers):
                self.stats.forced_disconnects += 1
                _hang_up(subscriber)
                await subscriber.ws.close(code=1001, message=b"simulated disconnect")

    # --- websockets --------------------------------------------------------------------------

    async def _binance_combined(self, request: web.Request) -> web.WebSocketResponse:
        names = [n for n in request.query.get("streams", "").split("/") if n]
        return await self._serve(request, names, combined=True)

    async def _binance_raw(self, request: web.Request) -> web.WebSocketResponse:
        return await self._serve(request, [request.match_info["stream"]], combined=False)

    async def _serve(
        self, request: web.Request, names: list[str], *, combined: bool
    ) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        subscriber = _Subscriber(ws, binary=False)
        for name in names:
            venue_symbol, _, kind = name.partition("@")
            market = self._markets_by_venue_symbol.get(venue_symbol.upper())
            kind = kind.split("@")[0]
            if (
                market is None
                or market[0] != "binance"
                or kind not in ("bookTicker", "depth", "trade")
            ):
                continue
            subscriber.streams.setdefault(market, set()).add(kind)
            if combined:
                subscriber.combined[(*market, kind)] = name
        return await self._pump(subscriber)

    async def _upbit_ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        subscriber = _Subscriber(ws, binary=True)
        message = await ws.receive()
        try:
            request_items = (
                msgspec.json.decode(message.data)
                if message.type in (WSMsgType.TEXT, WSMsgType.BINARY)
                else None
            )
        except msgspec.DecodeError:
            request_items = None
        if not isinstance(request_items, list):
            await ws.send_bytes(b'{"error":{"name":"WRONG_FORMAT","message":"bad request"}}')
            await ws.close()
            return ws
        for item in request_items:
            if isinstance(item, dict) and item.get("type") in ("orderbook", "trade"):
                for code in item.get("codes", []):
                    market = self._markets_by_venue_symbol.get(str(code).split(".")[0])
                    if market is not None and market[0] == "upbit":
                        subscriber.streams.setdefault(market, set()).add(item["type"])
        return await self._pump(subscriber)

    async def _pump(self, subscriber: _Subscriber) -> web.WebSocketResponse:
        self.stats.connections += 1
        self._subscribers.append(subscriber)
        ws = subscriber.ws
        reader = asyncio.create_task(self._drain_incoming(subscriber))
        latency_s = self.config.faults.latency_ms / 1000.0
        try:
            while not ws.closed:
                frame = await subscriber.queue.get()
                if frame is _HANG_UP:
                    break
                if latency_s:
                    await asyncio.sleep(latency_s)
                if isinstance(frame, bytes):
                    await ws.send_bytes(frame)
                else:
                    await ws.send_str(frame)
                self.stats.frames_sent += 1
        except (ConnectionResetError, RuntimeError):
            pass  # the client went away mid-send
        finally:
            reader.cancel()
            if subscriber in self._subscribers:
                self._subscribers.remove(subscriber)
            await ws.close()
        return ws

    @staticmethod
    async def _drain_incoming(subscriber: _Subscriber) -> None:
        # Reading is what answers pings and notices the client closing.
        async for _message in subscriber.ws:
            pass
        _hang_up(subscriber)

    # --- REST --------------------------------------------------------------------------------

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "ticks": self.stats.ticks})

    async def _ping(self, request: web.Request) -> web.Response:
        return web.json_response({})

    async def _upbit_markets(self, request: web.Request) -> web.Response:
        markets = [v for v, (venue, _) in self._markets_by_venue_symbol.items() if venue == "upbit"]
        return web.json_response([{"market": market} for market in markets])

    async def _delay_or_refuse(self) -> web.Response | None:
        faults = self.config.faults
        if faults.latency_ms:
            await asyncio.sleep(faults.latency_ms / 1000.0)
        if faults.rate_limit_ratio and self._rng.random() < faults.rate_limit_ratio:
            self.stats.rate_limited += 1
            return web.json_response(
                {"code": -1003, "msg": "Too many requests."},
                status=429,
                headers={"Retry-After": "1"},
            )
        return None

    async def _binance_depth(self, request: web.Request) -> web.Response:
        refused = await self._delay_or_refuse()
        if refused is not None:
            return refused
        market = self._markets_by_venue_symbol.get(request.query.get("symbol", ""))
        if market is None or market[0] != "binance":
            return web.json_response({"code": -1121, "msg": "Invalid symbol."}, status=400)
        limit = int(request.query.get("limit", "100"))
        ladder = self._sent_ladders.get(market, self.model.ladders[market])
        return web.json_response(
            {
                "lastUpdateId": self._depth_ids[market],
                "bids": [[_fmt(p), _fmt(q)] for p, q in ladder.bids[:limit]],
                "asks": [[_fmt(p), _fmt(q)] for p, q in ladder.asks[:limit]],
            }
        )

    async def _binance_params(self, request: web.Request) -> dict[str, str] | web.Response:
        """The signed parameters of a Binance request, or the error response to send."""
        body = await request.text()
        total = request.query_string + (
            ("&" if request.query_string else "") + body if body else ""
        )
        params = dict(parse_qsl(total, keep_blank_values=True))
        secret = self.keys.secret_of(request.headers.get("X-MBX-APIKEY", ""))
        if secret is None:
            self.stats.auth_failures += 1
            return web.json_response({"code": -2015, "msg": "Invalid API-key."}, status=401)
        signature = params.pop("signature", "")
        unsigned = total.replace(f"&signature={signature}", "").replace(
            f"signature={signature}", ""
        )
        if signature != binance_signature(secret, unsigned):
            self.stats.auth_failures += 1
            return web.json_response(
                {"code": -1022, "msg": "Signature for this request is not valid."}, status=400
            )
        try:
            timestamp = int(params.get("timestamp", "0"))
            window = int(params.get("recvWindow", str(self.config.recv_window_ms)))
        except ValueError:
            return web.json_response({"code": -1100, "msg": "Illegal characters."}, status=400)
        if abs(time.time() * 1000 - timestamp) > window:
            return web.json_response(
                {"code": -1021, "msg": "Timestamp for this request is outside of the recvWindow."},
                status=400,
            )
        return params

    async def _binance_new_order(self, request: web.Request) -> web.Response:
        received_ns = time.time_ns()
        refused = await self._delay_or_refuse()
        if refused is not None:
            return refused
        params = await self._binance_params(request)
        if isinstance(params, web.Response):
            return params
        market = self._markets_by_venue_symbol.get(params.get("symbol", ""))
        client_id = params.get("newClientOrderId", "")
        if market is None or market[0] != "binance":
            return web.json_response({"code": -1121, "msg": "Invalid symbol."}, status=400)
        if client_id in self.orders:
            self.stats.duplicate_orders += 1
            return web.json_response({"code": -2010, "msg": "Duplicate order sent."}, status=400)
        try:
            quantity = float(params["quantity"])
            price = float(params["price"]) if "price" in params else None
            side = params["side"]
        except (KeyError, ValueError):
            return web.json_response(
                {"code": -1102, "msg": "Mandatory parameter missing or malformed."}, status=400
            )
        order = self._settle("binance", market, side == "BUY", quantity, price)
        self._order_ids += 1
        status = "FILLED" if order["executed"] >= quantity * (1 - 1e-9) else "EXPIRED"
        response = {
            "symbol": params["symbol"],
            "orderId": self._order_ids,
            "orderListId": -1,
            "clientOrderId": client_id,
            "transactTime": int(time.time() * 1000),
            "price": _fmt(price or 0.0),
            "origQty": _fmt(quantity),
            "executedQty": _fmt(order["executed"]),
            "cummulativeQuoteQty": _fmt(order["quote"]),
            "status": status,
            "timeInForce": "IOC",
            "type": params.get("type", "LIMIT"),
            "side": side,
            "fills": order["fills"],
        }
        self._record(client_id, "binance", response, received_ns, request.remote)
        return web.json_response(response)

    async def _binance_query_order(self, request: web.Request) -> web.Response:
        params = await self._binance_params(request)
        if isinstance(params, web.Response):
            return params
        order = self.orders.get(params.get("origClientOrderId", ""))
        if order is None:
            return web.json_response({"code": -2013, "msg": "Order does not exist."}, status=400)
        return web.json_response(order)

    async def _binance_all_orders(self, request: web.Request) -> web.Response:
        """The account's orders of one symbol, as ``GET /api/v3/allOrders`` lists them: from
        ``orderId`` if given, else from ``startTime``, oldest first, at most ``limit``."""
        params = await self._binance_params(request)
        if isinstance(params, web.Response):
            return params
        try:
            symbol = params["symbol"]
            from_id = int(params.get("orderId", "0"))
            start_ms = int(params.get("startTime", "0")) if not from_id else 0
            limit = min(int(params.get("limit", "500")), 1000)
        except (KeyError, ValueError):
            return web.json_response(
                {"code": -1102, "msg": "Mandatory parameter missing or malformed."}, status=400
            )
        listed = sorted(
            (
                order
                for order in self.orders.values()
                if order.get("symbol") == symbol
                and order["orderId"] >= from_id
                and order["transactTime"] >= start_ms
            ),
            key=lambda order: order["orderId"],
        )[:limit]
        return web.json_response([_binance_listed(order) for order in listed])

    async def _upbit_closed_orders(self, request: web.Request) -> web.Response:
        """``GET /v1/orders/closed``: the account's done and cancelled orders of a market
        created at or after ``start_time`` (ms; times have whole seconds, as Upbit's do)."""
        params = dict(request.query)
        refused_auth = self._upbit_auth(request, params)
        if refused_auth is not None:
            return refused_auth
        try:
            start_s = int(params.get("start_time", "0")) / 1000
            limit = min(int(params.get("limit", "100")), 1000)
        except ValueError:
            return web.json_response(
                {"error": {"name": "validation_error", "message": "start_time/limit"}}, status=400
            )
        listed = [
            {key: value for key, value in order.items() if key != "trades"}
            for order in self.orders.values()
            if order.get("market") == params.get("market")
            and "uuid" in order
            and _upbit_created_s(order) >= start_s
        ]
        listed.sort(key=_upbit_created_s, reverse=params.get("order_by") != "asc")
        return web.json_response(listed[:limit])

    def _upbit_auth(self, request: web.Request, params: dict[str, Any]) -> web.Response | None:
        header = request.headers.get("Authorization", "")
        token = header.removeprefix("Bearer ")
        try:
            access_key = str(read_upbit_token(token)[1].get("access_key", ""))
            secret = self.keys.secret_of(access_key)
            if secret is None:
                raise ValueError("unknown access key")
            verify_upbit_token(token, secret, params)
        except ValueError as exc:
            self.stats.auth_failures += 1
            return web.json_response(
                {"error": {"name": "invalid_query_payload", "message": str(exc)}}, status=401
            )
        return None

    async def _upbit_new_order(self, request: web.Request) -> web.Response:
        received_ns = time.time_ns()
        refused = await self._delay_or_refuse()
        if refused is not None:
            return refused
        try:
            params = msgspec.json.decode(await request.read())
            if not isinstance(params, dict):
                raise ValueError("body is not an object")
        except (msgspec.DecodeError, ValueError):
            return web.json_response(
                {"error": {"name": "bad_request", "message": "invalid body"}}, status=400
            )
        refused_auth = self._upbit_auth(request, params)
        if refused_auth is not None:
            return refused_auth
        market = self._markets_by_venue_symbol.get(str(params.get("market", "")))
        identifier = str(params.get("identifier", ""))
        if market is None or market[0] != "upbit":
            return web.json_response(
                {"error": {"name": "invalid_market", "message": "unknown market"}}, status=400
            )
        if identifier in self.orders:
            self.stats.duplicate_orders += 1
            return web.json_response(
                {"error": {"name": "duplicate_identifier", "message": "identifier already used"}},
                status=400,
            )
        try:
            volume = float(params["volume"])
            price = float(params["price"]) if params.get("price") is not None else None
        except (KeyError, ValueError, TypeError):
            return web.json_response(
                {"error": {"name": "validation_error", "message": "volume/price"}}, status=400
            )
        buying = params.get("side") == "bid"
        order = self._settle("upbit", market, buying, volume, price)
        self._order_ids += 1
        response = {
            "uuid": f"sim-{self._order_ids}",
            "side": params.get("side"),
            "ord_type": params.get("ord_type", "limit"),
            "price": str(price or 0.0),
            "state": "done" if order["executed"] >= volume * (1 - 1e-9) else "cancel",
            "market": params.get("market"),
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()),
            "volume": str(volume),
            "remaining_volume": str(max(volume - order["executed"], 0.0)),
            "executed_volume": str(order["executed"]),
            "paid_fee": str(order["fee"]),
            "trades_count": len(order["fills"]),
            "identifier": identifier,
            "trades": [
                {
                    "market": params.get("market"),
                    "price": f["price"],
                    "volume": f["qty"],
                    "funds": str(float(f["price"]) * float(f["qty"])),
                    "side": params.get("side"),
                }
                for f in order["fills"]
            ],
        }
        self._record(identifier, "upbit", response, received_ns, request.remote)
        return web.json_response(response, status=201)

    async def _upbit_query_order(self, request: web.Request) -> web.Response:
        params = dict(request.query)
        refused_auth = self._upbit_auth(request, params)
        if refused_auth is not None:
            return refused_auth
        order = self.orders.get(params.get("identifier", ""))
        if order is None:
            return web.json_response(
                {"error": {"name": "order_not_found", "message": "no such order"}}, status=404
            )
        return web.json_response(order)

    def _settle(
        self,
        venue: str,
        market: tuple[str, str],
        buying: bool,
        quantity: float,
        limit: float | None,
    ) -> dict[str, Any]:
        """Take liquidity from the current ladder, immediate-or-cancel."""
        ladder = self.model.ladders[market]
        levels = ladder.asks if buying else ladder.bids
        remaining = quantity
        quote = 0.0
        fills = []
        for price, size in levels:
            if limit is not None and (price > limit if buying else price < limit):
                break
            take = min(size, remaining)
            quote += take * price
            remaining -= take
            fills.append(
                {
                    "price": _fmt(price),
                    "qty": _fmt(take),
                    "commission": _fmt(take * price * _FEE[venue]),
                    "commissionAsset": market[1].split("/")[1],
                }
            )
            if remaining <= 1e-12:
                break
        self.stats.orders += 1
        return {
            "executed": quantity - max(remaining, 0.0),
            "quote": quote,
            "fills": fills,
            "fee": quote * _FEE[venue],
        }

    def _record(
        self,
        client_id: str,
        venue: str,
        response: dict[str, Any],
        received_ns: int,
        peer: str | None = None,
    ) -> None:
        self.orders[client_id] = response
        self.order_peers[client_id] = (peer or "", received_ns)
        if self.on_order is not None:
            self.on_order(venue, response, received_ns)


CLOSE_TIMEOUT_S: Final = 2.0


async def _close(ws: web.WebSocketResponse) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(ws.close(), CLOSE_TIMEOUT_S)


def _fmt(value: float) -> str:
    return f"{value:.8f}"


def _binance_listed(order: dict[str, Any]) -> dict[str, Any]:
    """An order as allOrders lists it: no fills, its times named as there."""
    listed = {key: value for key, value in order.items() if key not in ("fills", "transactTime")}
    listed |= {"time": order["transactTime"], "updateTime": order["transactTime"]}
    return listed


def _upbit_created_s(order: dict[str, Any]) -> float:
    return datetime.datetime.fromisoformat(order["created_at"]).timestamp()


def _binance_ticker(venue_symbol: str, ladder: Ladder, update_id: int) -> dict[str, Any]:
    (bid, bid_size), (ask, ask_size) = ladder.bids[0], ladder.asks[0]
    return {
        "u": update_id,
        "s": venue_symbol,
        "b": _fmt(bid),
        "B": _fmt(bid_size),
        "a": _fmt(ask),
        "A": _fmt(ask_size),
    }


def _level_diff(
    before: list[tuple[float, float]], after: list[tuple[float, float]]
) -> list[list[str]]:
    now = dict(after)
    then = dict(before)
    changed = [[_fmt(p), _fmt(q)] for p, q in after if then.get(p) != q]
    removed = [[_fmt(p), _fmt(0.0)] for p, _ in before if p not in now]
    return changed + removed


def _binance_trade(
    venue_symbol: str, trade: tuple[float, float, bool], trade_id: int, now_ms: int
) -> dict[str, Any]:
    price, size, buyer_maker = trade
    return {
        "e": "trade",
        "E": now_ms,
        "s": venue_symbol,
        "t": trade_id,
        "p": _fmt(price),
        "q": _fmt(size),
        "T": now_ms,
        "m": buyer_maker,
        "M": True,
    }


def _upbit_orderbook(code: str, ladder: Ladder, now_ms: int) -> dict[str, Any]:
    units = [
        {"ask_price": ask, "bid_price": bid, "ask_size": ask_size, "bid_size": bid_size}
        for (bid, bid_size), (ask, ask_size) in zip(ladder.bids, ladder.asks, strict=True)
    ]
    return {
        "type": "orderbook",
        "code": code,
        "timestamp": now_ms,
        "total_ask_size": sum(size for _, size in ladder.asks),
        "total_bid_size": sum(size for _, size in ladder.bids),
        "orderbook_units": units,
        "stream_type": "REALTIME",
        "level": 0,
    }


def _upbit_trade(
    code: str, trade: tuple[float, float, bool], trade_id: int, now_ms: int
) -> dict[str, Any]:
    price, size, buyer_maker = trade
    day = time.strftime("%Y-%m-%d", time.gmtime(now_ms / 1000))
    clock = time.strftime("%H:%M:%S", time.gmtime(now_ms / 1000))
    return {
        "type": "trade",
        "code": code,
        "timestamp": now_ms,
        "trade_date": day,
        "trade_time": clock,
        "trade_timestamp": now_ms,
        "trade_price": price,
        "trade_volume": size,
        "ask_bid": "ASK" if buyer_maker else "BID",
        "prev_closing_price": price,
        "change": "EVEN",
        "change_price": 0.0,
        "sequential_id": trade_id,
        "stream_type": "REALTIME",
    }


def _hang_up(subscriber: _Subscriber) -> None:
    with contextlib.suppress(asyncio.QueueFull):
        subscriber.queue.put_nowait(_HANG_UP)
