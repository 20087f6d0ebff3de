"""The tables the writer fills, their columns in COPY order, and the rows the engine makes.

Rows are plain tuples in column order: that is what asyncpg's binary COPY takes, and what the
spill file stores. Timestamps are integers, nanoseconds since the epoch, as everywhere in the
engine; the writer's connections encode them as ``timestamptz`` (microsecond precision).

Every table has a key that makes writing a row twice harmless (the writer falls back to
``INSERT ... ON CONFLICT DO NOTHING`` when a batch meets rows already there):

- orders: the client order id; fills: (client order id, fill number). A restarted engine that
  reconciles an order from its journal writes the same keys again, not new rows.
- time series: the time column first (cheap to index: it only grows), then what tells two
  events of the same instant apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from runtime.core.events import BookTicker
from runtime.core.logging import redact
from runtime.core.orders import Fill, Opportunity, OrderResult

Row = tuple[Any, ...]
_MS: Final = 1_000_000


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[str, ...]
    time_column: str | None = None
    """Set for time-series tables: partitioned (or a hypertable) on it, expired by age."""


TICKS: Final = Table(
    "ticks",
    ("ts", "venue", "symbol", "bid", "bid_size", "ask", "ask_size", "seq", "venue_ts"),
    time_column="ts",
)
OPPORTUNITIES: Final = Table(
    "opportunities",
    ("ts", "strategy", "kind", "edge_bps", "expected_profit", "detail"),
    time_column="ts",
)
POSITION_SNAPSHOTS: Final = Table(
    "position_snapshots",
    ("ts", "strategy", "venue", "asset", "balance", "position"),
    time_column="ts",
)
PNL_SNAPSHOTS: Final = Table("pnl_snapshots", ("ts", "strategy", "pnl"), time_column="ts")
SYSTEM_EVENTS: Final = Table("system_events", ("ts", "source", "kind", "detail"), time_column="ts")
ORDERS: Final = Table(
    "orders",
    (
        "client_order_id", "created", "strategy", "venue", "symbol", "side", "quantity",
        "limit_price", "tag", "opportunity_ts", "status", "filled_quantity", "average_price",
        "reason", "code", "venue_order_id", "finished",
    ),
)  # fmt: skip
FILLS: Final = Table(
    "fills",
    (
        "client_order_id", "fill_no", "ts", "strategy", "venue", "symbol", "side", "quantity",
        "price", "fee", "fee_asset",
    ),
)  # fmt: skip

TABLES: Final = {
    table.name: table
    for table in (
        TICKS,
        OPPORTUNITIES,
        POSITION_SNAPSHOTS,
        PNL_SNAPSHOTS,
        SYSTEM_EVENTS,
        ORDERS,
        FILLS,
    )
}
TIMESERIES: Final = tuple(table for table in TABLES.values() if table.time_column is not None)


def tick_row(top: BookTicker) -> Row:
    venue_ts = top.venue_ts_ms * _MS if top.venue_ts_ms else None
    return (
        top.local_ts_ns,
        top.venue,
        top.symbol,
        top.bid,
        top.bid_size,
        top.ask,
        top.ask_size,
        top.seq,
        venue_ts,
    )


def opportunity_row(opportunity: Opportunity) -> Row:
    return (
        opportunity.ts_ns,
        opportunity.strategy,
        opportunity.kind,
        opportunity.edge_bps,
        opportunity.expected_profit,
        opportunity.detail,
    )


def order_row(result: OrderResult, opportunity_ns: int | None, finished_ns: int) -> Row:
    """An order once its outcome is known; ``reason`` texts come from venues, so they are
    scrubbed of secrets like log lines are."""
    intent = result.intent
    return (
        intent.client_order_id,
        intent.created_ns,
        intent.strategy,
        intent.venue,
        intent.symbol,
        intent.side,
        intent.quantity,
        intent.limit_price,
        intent.tag,
        opportunity_ns,
        str(result.status),
        result.filled_quantity,
        result.average_price,
        redact(result.reason),
        result.code,
        result.venue_order_id,
        finished_ns,
    )


def fill_row(fill: Fill, fill_no: int) -> Row:
    return (
        fill.client_order_id,
        fill_no,
        fill.ts_ns,
        fill.strategy,
        fill.venue,
        fill.symbol,
        fill.side,
        fill.quantity,
        fill.price,
        fill.fee,
        fill.fee_asset,
    )


def event_row(ts_ns: int, source: str, kind: str, detail: str) -> Row:
    return (ts_ns, source, kind, redact(detail))
