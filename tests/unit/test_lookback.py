"""Sorting a venue's order list against a snapshot's marks (runtime/persistence/lookback.py)."""

from __future__ import annotations

from runtime.core.orders import client_order_id, order_position
from runtime.core.venue import ListedOrder
from runtime.persistence.lookback import later_id, sort_listed

OLD, DEAD, OURS = "t0ld00", "t0ld01", "t0ld02"  # sessions: before, of the lost engine, this one


def listed(order_id: str) -> tuple[str, ListedOrder]:
    return "binance", ListedOrder(order_id, "BTC/USDT", "buy", 0.01, 60_000.0, 1)


def test_ids_compare_by_session_then_sequence_not_as_text() -> None:
    assert order_position(client_order_id("Cross Ex", DEAD, 36)) == ("cross_ex", int(DEAD, 36), 36)
    assert order_position("manual-order") is None
    assert order_position("x-UPPER-1") is None
    a9, a10 = client_order_id("xex", DEAD, 9), client_order_id("xex", DEAD, 10)
    assert later_id(a9, a10) == a10 == later_id(a10, a9)  # "a" > "9" as text, 10 > 9 here
    assert later_id(client_order_id("xex", OLD, 99), a9) == a9
    assert later_id("", a9) == a9 == later_id(a9, "")


def test_orders_after_the_mark_are_in_doubt_those_before_only_need_their_rows() -> None:
    mark = client_order_id("xex", DEAD, 5)
    ids = {
        "before": client_order_id("xex", DEAD, 4),
        "the mark": mark,
        "older session": client_order_id("xex", OLD, 40),
        "after": client_order_id("xex", DEAD, 6),
        "far after": client_order_id("xex", DEAD, 36 * 36),
        "open at the snapshot": client_order_id("xex", DEAD, 3),
        "ours": client_order_id("xex", OURS, 1),
        "another strategy": client_order_id("pairs", DEAD, 9),
        "not ours": "web-order-17",
    }
    found = sort_listed(
        [listed(i) for i in ids.values()],
        {"xex": mark},
        OURS,
        known=[ids["open at the snapshot"]],
    )
    assert [i.client_order_id for i in found.in_doubt] == [ids["after"], ids["far after"]]
    assert [i.client_order_id for i in found.accounted] == [
        ids["before"], ids["the mark"], ids["older session"],
    ]  # fmt: skip
    intent = found.in_doubt[0]
    assert (intent.strategy, intent.venue, intent.symbol, intent.side) == (
        "xex", "binance", "BTC/USDT", "buy",
    )  # fmt: skip


def test_a_strategy_that_had_sent_nothing_has_every_listed_order_after_its_mark() -> None:
    order_id = client_order_id("xex", DEAD, 1)
    found = sort_listed([listed(order_id)], {"xex": ""}, OURS, known=[])
    assert [i.client_order_id for i in found.in_doubt] == [order_id]
