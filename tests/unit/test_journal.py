"""The order journal on its own: what replay rebuilds from segments, sessions, torn tails."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.core.orders import Fill, OrderIntent, OrderResult, OrderStatus
from runtime.persistence.journal import (
    AccountState,
    Checkpoint,
    OrderDone,
    OrderJournal,
    OrderSent,
    later_session,
)

START = AccountState([("binance", "USDT", 1_000.0), ("binance", "BTC", 1.0)], {}, 0)


def intent(number: int) -> OrderIntent:
    return OrderIntent("s1", f"s1-abc-{number}", "binance", "BTC/USDT", "buy", 0.1, None, "", 5)


def done(number: int, filled: bool = True) -> OrderDone:
    order = intent(number)
    fills = [Fill("s1", order.client_order_id, "binance", "BTC/USDT", "buy", 0.1, 100.0, 0.01,
                  "USDT", 10 + number)] if filled else []  # fmt: skip
    status = OrderStatus.FILLED if filled else OrderStatus.CANCELED
    result = OrderResult(order, status, 0.1 if filled else 0.0, 100.0 if filled else 0.0)
    return OrderDone(result, fills, 20 + number, opportunity_ns=3)


def started(directory: Path, session: str = "abc") -> OrderJournal:
    journal = OrderJournal(directory, fsync=False)
    journal.rotate(Checkpoint(1, {"s1": START}, [], session))
    return journal


def test_an_empty_journal_has_nothing_to_restore(tmp_path: Path) -> None:
    replay = OrderJournal(tmp_path).replay()
    assert (replay.checkpoint, replay.open_orders, replay.done, replay.last_session) == (
        None,
        {},
        [],
        None,
    )


def test_replay_rebuilds_accounts_open_orders_and_outcomes(tmp_path: Path) -> None:
    journal = started(tmp_path)
    journal.start_session("abd", 2)
    journal.sent([OrderSent(intent(1), 3), OrderSent(intent(2))])
    journal.done(done(1))
    journal.sent([OrderSent(intent(3))])
    journal.close()
    replay = OrderJournal(tmp_path).replay()
    assert replay.checkpoint is not None and replay.checkpoint.accounts == {"s1": START}
    assert [fill.client_order_id for fill in replay.fills] == ["s1-abc-1"]
    assert list(replay.open_orders) == ["s1-abc-2", "s1-abc-3"]
    assert replay.done == [done(1)]
    assert replay.last_session == "abd"
    assert replay.damage == []


def test_a_new_segment_starts_from_its_checkpoint_and_old_ones_can_go(tmp_path: Path) -> None:
    journal = started(tmp_path)
    journal.sent([OrderSent(intent(1)), OrderSent(intent(2))])
    journal.done(done(1))
    after = AccountState([("binance", "USDT", 990.0), ("binance", "BTC", 1.1)], {"USDT": 0.01}, 1)
    older = journal.rotate(Checkpoint(30, {"s1": after}, [OrderSent(intent(2))], "abc"))
    assert [path.name for path in older] == ["journal-000000000001.log"]
    journal.done(done(2, filled=False))
    replay = OrderJournal(tmp_path).replay()
    assert replay.checkpoint is not None and replay.checkpoint.accounts == {"s1": after}
    assert replay.fills == []  # the fill of order 1 is in the checkpoint's account already
    assert replay.open_orders == {}
    assert [d.result.intent.client_order_id for d in replay.done] == ["s1-abc-1", "s1-abc-2"]
    journal.remove(older)
    assert [d.result.intent.client_order_id for d in journal.replay().done] == ["s1-abc-2"]


def test_a_record_torn_by_kill_9_is_reported_and_everything_before_it_kept(
    tmp_path: Path,
) -> None:
    journal = started(tmp_path)
    journal.sent([OrderSent(intent(1))])
    journal.sent([OrderSent(intent(2))])
    journal.close()
    segment = next(tmp_path.glob("journal-*.log"))
    segment.write_bytes(segment.read_bytes()[:-5])
    replay = OrderJournal(tmp_path).replay()
    assert list(replay.open_orders) == ["s1-abc-1"]
    assert len(replay.damage) == 1 and "truncated" in replay.damage[0].reason
    assert str(segment) in str(replay.damage[0])


def test_writing_before_a_checkpoint_is_refused(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="rotate"):
        OrderJournal(tmp_path).sent([OrderSent(intent(1))])


def test_a_session_always_moves_past_the_last_one_seen() -> None:
    assert later_session("abd", "abc") == "abd"
    assert later_session("abc", "abc") == "abd"
    assert later_session("abb", "abz") == "ac0"
    assert later_session("zz", None) == "zz"
