"""Upbit orders: ``POST /v1/orders`` with a JWT whose ``query_hash`` covers the body.

The intent's client order id travels as ``identifier``; ``find`` asks for it by the same name
(see ``runtime.trading.execution.live`` for why). Tested against the exchange simulator only.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any, Final

from runtime.core.errors import OrderRejectedError
from runtime.core.orders import OrderIntent, OrderStatus
from runtime.core.venue import ListedOrder, VenueOrder
from runtime.venues.rest import RestClient
from runtime.venues.upbit.signing import upbit_token

PAGE: Final = 1_000  # /v1/orders/closed's largest ``limit``


class UpbitClient(RestClient):
    """Upbit orders, authenticated with a JWT per request."""

    _ping_path = "/v1/market/all"

    def _auth(self, params: Mapping[str, str] | None) -> dict[str, str]:
        keys = self._keys.credentials()
        token = upbit_token(keys.api_key, keys.secret, params)
        return {"Authorization": f"Bearer {token}"}

    async def place(self, intent: OrderIntent, price: float) -> VenueOrder:
        body = {
            "market": self._venue_symbol(intent.symbol),
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

    async def orders_since(self, symbol: str, since_ns: int) -> list[ListedOrder]:
        """``GET /v1/orders/closed`` from ``start_time``, oldest first, paged on by the last
        order's time (an immediate-or-cancel order is closed once it has been answered)."""
        market = self._venue_symbol(symbol)
        start_ms = since_ns // 1_000_000
        params = {"market": market, "limit": str(PAGE), "order_by": "asc"}
        listed: dict[str, ListedOrder] = {}
        while True:
            params["start_time"] = str(start_ms)
            _, page = await self._request(
                "GET",
                lambda: ("/v1/orders/closed", {"params": params, "headers": self._auth(params)}),
            )
            for order in page:
                if order.get("identifier"):  # orders placed without one are not ours
                    listed[order["uuid"]] = _listed(symbol, order)
            if len(page) < PAGE:
                return list(listed.values())
            # Times have whole seconds: the last second comes again (its orders are kept once).
            last_ms = _created_ns(page[-1]) // 1_000_000
            start_ms = last_ms if last_ms > start_ms else start_ms + 1_000


def _listed(symbol: str, order: dict[str, Any]) -> ListedOrder:
    price = float(order.get("price") or 0.0)
    return ListedOrder(
        str(order["identifier"]),
        symbol,
        "buy" if order["side"] == "bid" else "sell",
        float(order["volume"]),
        price or None,
        _created_ns(order),
    )


def _created_ns(order: dict[str, Any]) -> int:
    created = datetime.datetime.fromisoformat(str(order["created_at"]))
    return int(created.timestamp()) * 1_000_000_000


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
