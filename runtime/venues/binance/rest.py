"""Binance spot orders: ``POST /api/v3/order`` with an HMAC-SHA256 ``signature`` over the query.

The intent's client order id travels as ``newClientOrderId``; ``find`` asks for it by
``origClientOrderId`` (see ``runtime.trading.execution.live`` for why). Tested against the
exchange simulator only.
"""

from __future__ import annotations

import time
from typing import Any, Final

from runtime.core.errors import OrderRejectedError
from runtime.core.orders import OrderIntent, OrderStatus
from runtime.core.venue import ListedOrder, VenueOrder
from runtime.venues.binance.signing import binance_signed_query
from runtime.venues.rest import RestClient

RECV_WINDOW_MS: Final = 5_000
PAGE: Final = 1_000  # allOrders' largest ``limit``


class BinanceClient(RestClient):
    """Binance spot orders, HMAC-signed."""

    _ping_path = "/api/v3/ping"

    def _signed(self, path: str, params: dict[str, str]) -> tuple[str, dict[str, Any]]:
        """The signed URL path and the key header, from one snapshot of the key pair: a key
        swapped meanwhile changes the next request, never half of this one."""
        keys = self._keys.credentials()
        params["recvWindow"] = str(RECV_WINDOW_MS)
        params["timestamp"] = str(int(time.time() * 1000))
        signed = f"{path}?{binance_signed_query(params, keys.secret)}"
        return signed, {"headers": {"X-MBX-APIKEY": keys.api_key}}

    async def place(self, intent: OrderIntent, price: float) -> VenueOrder:
        params = {
            "symbol": self._venue_symbol(intent.symbol),
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

    async def orders_since(self, symbol: str, since_ns: int) -> list[ListedOrder]:
        """``GET /api/v3/allOrders`` from ``startTime``, then page on by ``orderId``."""
        params = {
            "symbol": self._venue_symbol(symbol),
            "startTime": str(since_ns // 1_000_000),
            "limit": str(PAGE),
        }
        listed: list[ListedOrder] = []
        while True:
            _, page = await self._request("GET", lambda: self._signed("/api/v3/allOrders", params))
            listed += [_listed(symbol, order) for order in page]
            if len(page) < PAGE:
                return listed
            params.pop("startTime", None)
            params["orderId"] = str(int(page[-1]["orderId"]) + 1)


def _listed(symbol: str, order: dict[str, Any]) -> ListedOrder:
    price = float(order.get("price", 0.0))
    return ListedOrder(
        str(order["clientOrderId"]),
        symbol,
        "buy" if order["side"] == "BUY" else "sell",
        float(order["origQty"]),
        price or None,
        int(order["time"]) * 1_000_000,
    )


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
