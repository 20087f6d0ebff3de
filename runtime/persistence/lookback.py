"""Orders a lost engine sent after its last snapshot, found where they still are: at the venues.

The journal lives on its node (``runtime.persistence.journal``, "Its limit"): an engine started
on another node restores its accounts from the previous engine's Redis snapshot, and the orders
sent after that snapshot are known only to the venues. Each snapshot therefore carries a mark
per strategy, the client order id of the last order sent by then; ids of one strategy compare in
the order they were made (``runtime.core.orders.order_position``).

Once the new engine holds the account locks (the previous one can send nothing more) and the
settle time has passed (a request still on its way would be refused by then), it lists each
venue's orders from ``journal.look_back_s`` before the snapshot and sorts them against the mark:

- **after the mark**: not in the restored accounts. In doubt, reconciled as a journal's orders
  are: asked about, reported (fills to the accounts, rows to the database), never sent again;
- **at or before the mark**, not open at the snapshot: in the accounts already. Only their rows
  are written again: the lost node's writer may not have written them (the tables' keys make a
  second write harmless).

Ids this code did not make, of strategies this engine does not run, or of this engine's own
session are left alone. Until the look-back is done the engine sends no order: its accounts are
not whole.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from runtime.core.orders import OrderIntent, order_position, strategy_part
from runtime.core.venue import ListedOrder


def later_id(first: str, second: str) -> str:
    """The later of two client order ids of one strategy ("" is before every id)."""
    a, b = order_position(first), order_position(second)
    if a is None:
        return second
    if b is None:
        return first
    return first if a[1:] >= b[1:] else second


@dataclass
class Found:
    """The listed orders that concern this engine, sorted as the module docstring says."""

    in_doubt: list[OrderIntent] = field(default_factory=list)
    accounted: list[OrderIntent] = field(default_factory=list)


def sort_listed(
    listed: Iterable[tuple[str, ListedOrder]],
    marks: Mapping[str, str],
    session: str,
    known: Iterable[str],
) -> Found:
    """Sort (venue, order) pairs against ``marks`` (strategy -> last id sent before the
    snapshot); ``known``: ids already in doubt (the snapshot's open orders)."""
    strategies = {strategy_part(name): name for name in marks}
    ours, skip = int(session, 36), set(known)
    found = Found()
    for venue, order in listed:
        position = order_position(order.client_order_id)
        if position is None or order.client_order_id in skip:
            continue
        strategy = strategies.get(position[0])
        if strategy is None or position[1] >= ours:
            continue
        intent = OrderIntent(
            strategy,
            order.client_order_id,
            venue,
            order.symbol,
            order.side,
            order.quantity,
            order.limit_price,
            "",
            order.created_ns,
        )
        mark = order_position(marks[strategy])
        after = mark is None or position[1:] > mark[1:]
        (found.in_doubt if after else found.accounted).append(intent)
    return found
