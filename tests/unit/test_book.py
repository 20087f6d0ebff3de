"""L2 books: Binance's snapshot + diff procedure, gaps, crossed books, tops and staleness."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime.core.events import BookTicker, DepthUpdate, Level
from runtime.core.frames import DropCounter, DropReason
from runtime.trading.book import Books, OrderBook, Outcome


def diff(
    first: int, last: int, bids: tuple[Level, ...] = (), asks: tuple[Level, ...] = ()
) -> DepthUpdate:
    return DepthUpdate("binance", "BTC/USDT", first, last, bids, asks, False, 0, 0)


def snapshot(seq: int, bids: tuple[Level, ...], asks: tuple[Level, ...]) -> DepthUpdate:
    return DepthUpdate("binance", "BTC/USDT", seq, seq, bids, asks, True, 0, 0)


BASE = snapshot(100, ((99.0, 1.0), (98.0, 2.0)), ((101.0, 1.0), (102.0, 3.0)))


def live_book() -> OrderBook:
    book = OrderBook("binance", "BTC/USDT")
    assert book.apply(BASE) is Outcome.APPLIED
    return book


def test_snapshot_sets_levels_and_best_prices() -> None:
    book = live_book()
    assert book.live
    assert (book.best_bid, book.best_ask) == (99.0, 101.0)
    assert book.bid_levels(5) == [(99.0, 1.0), (98.0, 2.0)]
    assert book.ask_levels(1) == [(101.0, 1.0)]


def test_contiguous_diffs_update_levels_and_remove_zero_sizes() -> None:
    book = live_book()
    assert book.apply(diff(101, 103, bids=((99.5, 4.0),), asks=((101.0, 0.0),))) is Outcome.APPLIED
    assert (book.best_bid, book.best_ask) == (99.5, 102.0)
    assert book.apply(diff(104, 104, bids=((99.5, 0.0),))) is Outcome.APPLIED
    assert book.best_bid == 99.0
    assert book.last_seq == 104


def test_diff_older_than_book_is_stale_and_changes_nothing() -> None:
    book = live_book()
    assert book.apply(diff(90, 100, bids=((99.0, 50.0),))) is Outcome.STALE
    assert book.bids[99.0] == 1.0


def test_missing_updates_make_a_gap_and_the_book_stops_publishing() -> None:
    book = live_book()
    assert book.apply(diff(105, 106, bids=((99.5, 1.0),))) is Outcome.GAP
    assert not book.live
    assert book.top(0) is None
    assert book.gaps == 1


def test_diffs_before_snapshot_are_buffered_then_replayed_from_the_straddling_one() -> None:
    book = OrderBook("binance", "BTC/USDT")
    assert book.apply(diff(95, 98, bids=((97.0, 9.0),))) is Outcome.BUFFERED  # stale after snapshot
    assert book.apply(diff(99, 102, bids=((99.0, 7.0),))) is Outcome.BUFFERED  # straddles 101
    assert book.apply(diff(103, 103, asks=((100.5, 1.0),))) is Outcome.BUFFERED
    assert book.apply(BASE) is Outcome.APPLIED
    assert book.last_seq == 103
    assert book.bids[99.0] == 7.0
    assert 97.0 not in book.bids
    assert book.best_ask == 100.5


def test_snapshot_older_than_buffered_diffs_leaves_the_book_out_of_sync() -> None:
    book = OrderBook("binance", "BTC/USDT")
    book.apply(diff(150, 160, bids=((99.0, 7.0),)))
    assert book.apply(BASE) is Outcome.GAP
    assert not book.live


def test_resync_after_gap_replays_what_arrived_meanwhile() -> None:
    book = live_book()
    assert book.apply(diff(110, 111, bids=((99.2, 1.0),))) is Outcome.GAP
    assert book.apply(diff(112, 112, bids=((99.3, 1.0),))) is Outcome.BUFFERED
    fresh = snapshot(111, ((99.2, 1.0), (99.0, 1.0)), ((101.0, 1.0),))
    assert book.apply(fresh) is Outcome.APPLIED
    assert book.live and book.last_seq == 112 and book.best_bid == 99.3


def test_a_diff_that_crosses_the_book_is_treated_as_lost_updates() -> None:
    book = live_book()
    assert book.apply(diff(101, 101, bids=((105.0, 1.0),))) is Outcome.GAP
    assert not book.live


def test_buffer_overflow_is_reported_not_grown() -> None:
    book = OrderBook("binance", "BTC/USDT", max_buffered=2)
    book.apply(diff(1, 1))
    book.apply(diff(2, 2))
    assert book.apply(diff(3, 3)) is Outcome.OVERFLOW


def test_books_publish_top_only_when_it_changes_and_signal_gaps() -> None:
    gaps: list[tuple[str, str]] = []
    drops = DropCounter("binance")
    books = Books({"binance": drops}, on_gap=lambda v, s: gaps.append((v, s)))
    top = books.on_depth(BASE)
    assert top is not None and (top.bid, top.ask, top.bid_size) == (99.0, 101.0, 1.0)
    assert books.top("binance", "BTC/USDT") is top
    assert books.on_depth(diff(101, 101, bids=((98.0, 5.0),))) is None  # below the top
    changed = books.on_depth(diff(102, 102, bids=((99.0, 4.0),)))
    assert changed is not None and changed.bid_size == 4.0
    assert books.on_depth(diff(200, 201)) is None
    assert gaps == [("binance", "BTC/USDT")]
    assert books.out_of_sync() == [("binance", "BTC/USDT")]
    books.on_depth(diff(90, 91))
    assert drops.counts == {}  # buffered while out of sync, not dropped


def test_books_drop_out_of_order_tickers() -> None:
    drops = DropCounter("binance")
    books = Books({"binance": drops})
    newer = BookTicker("binance", "BTC/USDT", 1.0, 1.0, 2.0, 1.0, 10, 0, 0)
    older = BookTicker("binance", "BTC/USDT", 1.5, 1.0, 2.0, 1.0, 9, 0, 0)
    assert books.on_ticker(newer)
    assert not books.on_ticker(older)
    assert books.top("binance", "BTC/USDT") is newer
    assert drops.counts == {DropReason.OUT_OF_ORDER: 1}


def test_stale_snapshot_from_a_snapshot_venue_is_dropped() -> None:
    books = Books()
    new = DepthUpdate("upbit", "BTC/KRW", 20, 20, ((1.0, 1.0),), ((2.0, 1.0),), True, 20, 0)
    old = DepthUpdate("upbit", "BTC/KRW", 10, 10, ((1.5, 1.0),), ((2.0, 1.0),), True, 10, 0)
    assert books.on_depth(new) is not None
    assert books.on_depth(old) is None
    top = books.top("upbit", "BTC/KRW")
    assert top is not None and top.bid == 1.0


@settings(max_examples=150, deadline=None)
@given(
    updates=st.lists(
        st.tuples(
            st.sampled_from(["bid", "ask"]),
            st.integers(1, 40),
            st.sampled_from([0.0, 1.0, 2.5]),
        ),
        max_size=60,
    )
)
def test_best_prices_always_match_the_levels(updates: list[tuple[str, int, float]]) -> None:
    """Incremental best-price tracking agrees with recomputing from the levels."""
    book = OrderBook("binance", "X/Y")
    book.apply(DepthUpdate("binance", "X/Y", 1, 1, ((20.0, 1.0),), ((21.0, 1.0),), True, 0, 0))
    seq = 1
    for side, tick, size in updates:
        seq += 1
        price = float(tick) if side == "bid" else 20.0 + tick
        price = min(price, 20.0) if side == "bid" else max(price, 21.0)
        levels = ((price, size),)
        book.apply(
            diff(
                seq, seq, bids=levels if side == "bid" else (), asks=levels if side == "ask" else ()
            )
        )
        if not book.live:
            return
        assert book.best_bid == max(book.bids, default=0.0)
        assert book.best_ask == min(book.asks, default=float("inf"))


@pytest.mark.parametrize("count", [1, 3])
def test_level_views_are_sorted_best_first(count: int) -> None:
    book = live_book()
    assert book.bid_levels(count) == sorted(book.bids.items(), reverse=True)[:count]
    assert book.ask_levels(count) == sorted(book.asks.items())[:count]
