"""What strategies ask for and what executors report: intents, fills, opportunities, order ids.

Client order ids are deterministic: ``<strategy>-<session>-<sequence>``. A retried intent keeps its
id, so a venue that already has the order refuses the duplicate instead of trading twice. The
session (base-36 start time of the engine, unless restored from a journal) keeps a restarted
engine from reusing the ids of its previous run, whose sequence also started at 1.
"""

from __future__ import annotations

import enum
import re
import string
import time
from typing import Final

import msgspec

from runtime.core.events import Side

MAX_CLIENT_ORDER_ID_LEN: Final = 36  # Binance's limit; Upbit's ``identifier`` allows more
_STRATEGY_PART_LEN: Final = 16
_UNSAFE = re.compile(r"[^a-z0-9_]")
_OUR_ID = re.compile(r"([a-z0-9_]{1,16})-([0-9a-z]+)-([0-9a-z]+)")
_BASE36: Final = string.digits + string.ascii_lowercase


class OrderIntent(msgspec.Struct, frozen=True):
    """One order a strategy wants: market if ``limit_price`` is None, else immediate-or-cancel."""

    strategy: str
    client_order_id: str
    venue: str
    symbol: str
    side: Side
    quantity: float
    limit_price: float | None = None
    tag: str = ""
    created_ns: int = 0


class Fill(msgspec.Struct, frozen=True):
    """An execution of (part of) an order; ``fee`` is in ``fee_asset``."""

    strategy: str
    client_order_id: str
    venue: str
    symbol: str
    side: Side
    quantity: float
    price: float
    fee: float
    fee_asset: str
    ts_ns: int


class OrderStatus(enum.StrEnum):
    NEW = "new"
    FILLED = "filled"
    PARTIALLY_FILLED = "partially_filled"
    CANCELED = "canceled"
    """Immediate-or-cancel remainder, or a market order the book could not fill."""
    REJECTED = "rejected"


class OrderResult(msgspec.Struct, frozen=True):
    """Where an order ended up after the executor handled it."""

    intent: OrderIntent
    status: OrderStatus
    filled_quantity: float
    average_price: float
    reason: str = ""
    venue_order_id: str = ""
    code: str = ""
    """A short class of ``reason`` for metrics: ``insufficient_balance``, ``auth``, ..."""


class Opportunity(msgspec.Struct, frozen=True):
    """A price dislocation a strategy saw and judged worth acting on."""

    strategy: str
    kind: str
    edge_bps: float
    expected_profit: float
    """In the strategy's reporting currency, after fees."""
    ts_ns: int
    detail: str = ""


def _base36(number: int) -> str:
    digits = []
    while True:
        number, remainder = divmod(number, 36)
        digits.append(_BASE36[remainder])
        if number == 0:
            return "".join(reversed(digits))


def new_session(now_s: float | None = None) -> str:
    """A session tag for this engine run: the start time in base 36 (about 6 characters)."""
    return _base36(int(time.time() if now_s is None else now_s))


def strategy_part(strategy_id: str) -> str:
    """The part of a client order id that names the strategy."""
    return _UNSAFE.sub("_", strategy_id.lower())[:_STRATEGY_PART_LEN]


def client_order_id(strategy_id: str, session: str, sequence: int) -> str:
    """The id of intent ``sequence`` of ``strategy_id`` in ``session``; same input, same id."""
    order_id = f"{strategy_part(strategy_id)}-{session}-{_base36(sequence)}"
    if len(order_id) > MAX_CLIENT_ORDER_ID_LEN:
        raise ValueError(f"client order id {order_id!r} is longer than {MAX_CLIENT_ORDER_ID_LEN}")
    return order_id


def order_position(order_id: str) -> tuple[str, int, int] | None:
    """(strategy part, session, sequence) of an id ``client_order_id`` made, the session as a
    number: ids of one strategy compare in the order they were made. None for any other id."""
    match = _OUR_ID.fullmatch(order_id)
    if match is None:
        return None
    strategy, session, sequence = match.groups()
    return strategy, int(session, 36), int(sequence, 36)
