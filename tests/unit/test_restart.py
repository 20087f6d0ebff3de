"""An engine with an order journal (no database, no Redis) killed and started again in-process.

"Killed" means dropped without ``stop``: nothing is flushed or checkpointed, exactly what the
journal has on disk is what the next engine finds, as after kill -9.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from runtime.config import load_config
from runtime.core.orders import OrderStatus
from runtime.node import Node
from runtime.persistence.journal import OrderJournal
from tests.unit.test_engine import feed_dislocation

NO_LATENCY = {"latency_ms": 0.0, "latency_jitter_ms": 0.0}


def node(journal: Path, **paper: Any) -> Node:
    overrides = {"journal": {"dir": journal, "fsync": False}, "paper": paper or NO_LATENCY}
    return Node(load_config(env={}, overrides=overrides))


async def test_a_killed_engine_comes_back_with_the_same_accounts(tmp_path: Path) -> None:
    first = node(tmp_path)
    await first.restore()
    feed_dislocation(first.engine, premium=0.006)
    assert first.engine.stats.by_strategy["xex-btc"].fills == 2
    before = dict(first.engine.portfolio.account("xex-btc"))
    second = node(tmp_path)
    await second.restore()
    assert second.engine.portfolio.account("xex-btc") == before
    assert second.engine.portfolio.fills["xex-btc"] == 2
    assert second.persistence.restored_from == "journal"
    assert int(second.engine.session, 36) > int(first.engine.session, 36)


async def test_orders_in_flight_at_the_kill_are_reconciled_never_resent(tmp_path: Path) -> None:
    first = node(tmp_path, latency_ms=60_000.0, latency_jitter_ms=0.0)  # never in this test
    await first.restore()
    feed_dislocation(first.engine, premium=0.006)
    assert first.engine.executor.pending == 2  # sent, not yet filled: the kill comes now
    before = dict(first.engine.portfolio.account("xex-btc"))
    second = node(tmp_path)
    await second.restore()
    in_doubt = sorted(second.persistence.in_doubt)
    assert len(in_doubt) == 2 and all(cid.startswith("xex_btc-") for cid in in_doubt)
    assert second.engine.risk.open_orders("xex-btc") == 2
    await second.persistence.reconcile(second.engine.executor.recover)
    assert second.persistence.in_doubt == {}
    assert second.engine.risk.open_orders("xex-btc") == 0
    assert second.engine.portfolio.account("xex-btc") == before  # a paper order never filled
    assert second.engine.stats.by_strategy["xex-btc"].orders == 0  # nothing was sent again
    third = node(tmp_path)
    await third.restore()
    assert third.persistence.in_doubt == {}  # the outcome is in the journal now


async def test_an_order_the_journal_cannot_take_is_not_sent(tmp_path: Path) -> None:
    running = node(tmp_path)
    await running.restore()
    journal = running.persistence.journal
    assert isinstance(journal, OrderJournal) and journal._appender is not None
    os.close(journal._appender._fd)  # the journal's file is gone from under it (EBADF)
    feed_dislocation(running.engine, premium=0.006)
    stats = running.engine.stats.by_strategy["xex-btc"]
    assert (stats.orders, stats.fills, stats.blocked) == (0, 0, 2)
    assert stats.last_blocked.startswith("order journal unavailable")
    journal._appender._fd = -1


async def test_a_stopping_engine_takes_no_new_intents(tmp_path: Path) -> None:
    running = node(tmp_path)
    running.engine.accepting = False
    feed_dislocation(running.engine, premium=0.006)
    stats = running.engine.stats.by_strategy["xex-btc"]
    assert (stats.orders, stats.blocked, stats.last_blocked) == (0, 2, "engine stopping")


async def test_outcomes_are_journaled_with_their_opportunity(tmp_path: Path) -> None:
    running = node(tmp_path)
    await running.restore()
    feed_dislocation(running.engine, premium=0.006)
    replay = OrderJournal(tmp_path).replay()
    assert [d.result.status for d in replay.done] == [OrderStatus.FILLED, OrderStatus.FILLED]
    assert all(d.opportunity_ns is not None for d in replay.done)
    assert replay.open_orders == {}


def test_with_embedded_defaults_nothing_is_kept() -> None:
    running = Node(load_config(env={}, overrides={"paper": NO_LATENCY}))
    assert not running.persistence.active
    feed_dislocation(running.engine, premium=0.006)
    assert running.engine.stats.by_strategy["xex-btc"].fills == 2
    assert running.persistence.degraded() == []
