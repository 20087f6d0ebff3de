"""Order books per venue and symbol: tops from book tickers, L2 books from depth, gap detection.

Each side of an L2 book is a ``Side``: price -> size with its best price kept as levels come and
go. ``_sides.c`` is that type compiled (a dict hashing float objects was most of the depth path's
time); ``PythonSide`` is the same in Python, used where the package was installed without a C
compiler and what the tests hold the compiled one to.

An L2 book follows Binance's procedure for a local book: diffs that arrive before the snapshot
are buffered; the snapshot's ``last_seq`` (Binance ``lastUpdateId``) decides which buffered diffs
are stale; the first diff applied must straddle ``last_seq + 1``; from then on every diff must
start exactly one after the previous one ended. A diff that does not, or a book that ends up
crossed, means updates were lost: the book stops publishing, buffers what follows and asks its
owner for a new snapshot through ``on_gap``. Venues that send whole books (Upbit) just replace it.
"""

from __future__ import annotations

import enum
import heapq
import math
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping

from runtime.core.events import BookTicker, DepthUpdate, Level
from runtime.core.frames import DropCounter, DropReason

_INF = math.inf
DEFAULT_MAX_BUFFERED = 1_000


class PythonSide:
    """One side of an L2 book: price -> size, and ``best``, the highest bid or lowest ask (0.0
    or infinity once empty). Prices must be positive; a size of 0 (or below) deletes a level."""

    __slots__ = ("_bids", "_levels", "best")

    def __init__(self, bids: bool) -> None:
        self._bids = bids
        self._levels: dict[float, float] = {}
        self.best = 0.0 if bids else _INF

    def apply(self, levels: Iterable[Level]) -> None:
        """Store each (price, size) with a size above 0, delete the others' prices."""
        book = self._levels
        bids = self._bids
        best = self.best  # in a local through the loop; a removed best is recomputed once
        lost_best = False
        try:
            for price, size in levels:
                if size > 0.0:
                    if not price > 0.0:
                        raise ValueError(f"a level's price must be positive, not {price!r}")
                    book[price] = size
                    if price > best if bids else price < best:
                        best = price
                elif book.pop(price, None) is not None and price == best:
                    lost_best = True
        finally:
            self.best = self._best_of() if lost_best else best

    def _best_of(self) -> float:
        if self._bids:
            return max(self._levels, default=0.0)
        return min(self._levels, default=_INF)

    def replace(self, levels: Iterable[Level]) -> None:
        """Hold exactly the levels of ``levels`` with a size above 0 (a snapshot)."""
        self.clear()
        self.apply(levels)

    def clear(self) -> None:
        self._levels.clear()
        self.best = 0.0 if self._bids else _INF

    def items(self) -> list[Level]:
        """Every (price, size), unordered."""
        return list(self._levels.items())

    def best_levels(self, count: int) -> list[Level]:
        """The best ``count`` levels, best first."""
        if self._bids:
            return heapq.nlargest(count, self._levels.items())
        return heapq.nsmallest(count, self._levels.items())

    def get(self, price: float, default: float | None = None) -> float | None:
        return self._levels.get(price, default)

    def __getitem__(self, price: float) -> float:
        return self._levels[price]

    def __contains__(self, price: object) -> bool:
        return price in self._levels

    def __len__(self) -> int:
        return len(self._levels)

    def __iter__(self) -> Iterator[float]:
        return iter(list(self._levels))


try:
    from runtime.trading._sides import Side
except ImportError:  # installed without a C compiler (pyproject.toml): the same, in Python
    Side = PythonSide  # type: ignore[assignment,misc]
    COMPILED = False
else:
    COMPILED = True  # tests/unit/test_compiled.py requires it


class Outcome(enum.Enum):
    """What applying one depth message did to a book."""

    APPLIED = "applied"
    BUFFERED = "buffered"
    """Waiting for a snapshot: kept to replay once it comes."""
    STALE = "stale"
    """Entirely older than the book: ignored."""
    GAP = "gap"
    """Updates were lost: the book is out of sync until a new snapshot."""
    OVERFLOW = "overflow"
    """Waiting for a snapshot and the buffer is full: dropped."""


_APPLIED = Outcome.APPLIED
"""A module global: the hot path's test against it is one lookup, ``Outcome.APPLIED`` two (and
an enum class's attribute lookup is not a cheap one)."""


class OrderBook:
    """The L2 book of one venue and symbol; see the module docstring for the sync rules."""

    __slots__ = (
        "_buffer",
        "asks",
        "bids",
        "gaps",
        "last_seq",
        "live",
        "symbol",
        "venue",
        "venue_ts_ms",
    )

    def __init__(self, venue: str, symbol: str, max_buffered: int = DEFAULT_MAX_BUFFERED) -> None:
        self.venue = venue
        self.symbol = symbol
        self.bids = Side(True)
        self.asks = Side(False)
        self.last_seq = 0
        self.venue_ts_ms = 0
        self.live = False
        self.gaps = 0
        self._buffer: deque[DepthUpdate] = deque(maxlen=max_buffered)

    @property
    def best_bid(self) -> float:
        return self.bids.best

    @property
    def best_ask(self) -> float:
        return self.asks.best

    def apply(self, update: DepthUpdate) -> Outcome:
        if update.is_snapshot:
            return self.apply_snapshot(update)
        return self.apply_diff(update)

    def apply_snapshot(self, snapshot: DepthUpdate) -> Outcome:
        if self.live and snapshot.last_seq < self.last_seq:
            return Outcome.STALE
        self.bids.replace(snapshot.bids)
        self.asks.replace(snapshot.asks)
        self.last_seq = snapshot.last_seq
        self.venue_ts_ms = snapshot.venue_ts_ms
        self.live = True
        if self.bids.best >= self.asks.best:
            return self._lose_sync(None)
        return self._replay_buffer()

    def apply_diff(self, diff: DepthUpdate) -> Outcome:
        if not self.live:
            if len(self._buffer) == self._buffer.maxlen:
                return Outcome.OVERFLOW
            self._buffer.append(diff)
            return Outcome.BUFFERED
        if diff.last_seq <= self.last_seq:
            return Outcome.STALE
        if diff.first_seq != self.last_seq + 1:
            return self._lose_sync(diff)
        return self._apply_levels(diff)

    def _replay_buffer(self) -> Outcome:
        first = True
        while self._buffer:
            diff = self._buffer.popleft()
            if diff.last_seq <= self.last_seq:
                continue
            straddles = diff.first_seq <= self.last_seq + 1
            if (first and not straddles) or (not first and diff.first_seq != self.last_seq + 1):
                return self._lose_sync(diff)
            first = False
            if self._apply_levels(diff) is Outcome.GAP:
                return Outcome.GAP
        return Outcome.APPLIED

    def _apply_levels(self, diff: DepthUpdate) -> Outcome:
        self.bids.apply(diff.bids)
        self.asks.apply(diff.asks)
        self.last_seq = diff.last_seq
        self.venue_ts_ms = diff.venue_ts_ms
        if self.bids.best >= self.asks.best:
            # A crossed book cannot come from a venue's matching engine: we missed updates.
            return self._lose_sync(None)
        return _APPLIED

    def _lose_sync(self, pending: DepthUpdate | None) -> Outcome:
        self.live = False
        self.gaps += 1
        self.bids.clear()
        self.asks.clear()
        self._buffer.clear()
        if pending is not None:
            self._buffer.append(pending)
        return Outcome.GAP

    def top(self, local_ts_ns: int) -> BookTicker | None:
        """The best bid and ask as an event, or None while out of sync or one-sided."""
        if not self.live or not self.bids or not self.asks:
            return None
        bid = self.bids.best
        ask = self.asks.best
        return BookTicker(
            self.venue,
            self.symbol,
            bid,
            self.bids[bid],
            ask,
            self.asks[ask],
            self.last_seq,
            self.venue_ts_ms,
            local_ts_ns,
        )

    def bid_levels(self, count: int) -> list[Level]:
        """The best ``count`` bids, best first."""
        return self.bids.best_levels(count)

    def ask_levels(self, count: int) -> list[Level]:
        """The best ``count`` asks, best first."""
        return self.asks.best_levels(count)


class Books:
    """The latest top of book per venue and symbol, and L2 books where a venue sends depth.

    ``tops`` is read by strategies on every event, so it is a dict per venue (one lookup by
    symbol) rather than one dict keyed by tuples, which would build a tuple per lookup.
    """

    def __init__(
        self,
        drops: Mapping[str, DropCounter] | None = None,
        on_gap: Callable[[str, str], None] | None = None,
        max_buffered: int = DEFAULT_MAX_BUFFERED,
    ) -> None:
        self.tops: dict[str, dict[str, BookTicker]] = {}
        self.l2: dict[tuple[str, str], OrderBook] = {}
        self._drops: dict[str, DropCounter] = dict(drops or {})
        self._on_gap = on_gap
        self._max_buffered = max_buffered
        self._sinks: dict[str, Callable[[BookTicker], bool]] = {}

    def set_gap_handler(self, on_gap: Callable[[str, str], None]) -> None:
        self._on_gap = on_gap

    def top(self, venue: str, symbol: str) -> BookTicker | None:
        tops = self.tops.get(venue)
        return tops.get(symbol) if tops is not None else None

    def book(self, venue: str, symbol: str) -> OrderBook | None:
        return self.l2.get((venue, symbol))

    def venue_tops(self, venue: str) -> dict[str, BookTicker]:
        """The live dict of tops for one venue (created empty if new)."""
        return self.tops.setdefault(venue, {})

    def on_ticker(self, ticker: BookTicker) -> bool:
        """Store ``ticker`` unless it is older than the stored top; True if stored."""
        sink = self._sinks.get(ticker.venue)
        if sink is None:
            sink = self._sinks[ticker.venue] = self.ticker_sink(ticker.venue)
        return sink(ticker)

    def ticker_sink(self, venue: str) -> Callable[[BookTicker], bool]:
        """``on_ticker`` for one venue, with its dict looked up once: the feed hot path's."""
        tops = self.venue_tops(venue)
        drop = self._drop

        def store(ticker: BookTicker) -> bool:
            previous = tops.get(ticker.symbol)
            if previous is not None and ticker.seq < previous.seq:
                drop(venue, DropReason.OUT_OF_ORDER)
                return False
            tops[ticker.symbol] = ticker
            return True

        return store

    def on_depth(self, update: DepthUpdate) -> BookTicker | None:
        """Apply a depth message; the new top if it changed, else None."""
        key = (update.venue, update.symbol)
        book = self.l2.get(key)
        if book is None:
            book = self.l2[key] = OrderBook(update.venue, update.symbol, self._max_buffered)
            self.venue_tops(update.venue)  # _publish_top's, made once
        outcome = book.apply_snapshot(update) if update.is_snapshot else book.apply_diff(update)
        if outcome is _APPLIED:  # nearly every message: tested first
            return self._publish_top(book, update.local_ts_ns)
        if outcome is Outcome.STALE:
            self._drop(update.venue, DropReason.OUT_OF_ORDER)
            return None
        if outcome is Outcome.OVERFLOW:
            self._drop(update.venue, DropReason.BUFFER_OVERFLOW)
            return None
        if outcome is Outcome.GAP:
            if self._on_gap is not None:
                self._on_gap(update.venue, update.symbol)
            return None
        return None  # buffered until the snapshot

    def _publish_top(self, book: OrderBook, local_ts_ns: int) -> BookTicker | None:
        # ``book.top()`` compared with the stored top, but the event is built only when the top
        # changed: most diffs leave it as it was.
        if not book.live or not book.bids or not book.asks:
            return None
        bid = book.bids.best
        ask = book.asks.best
        bid_size = book.bids[bid]
        ask_size = book.asks[ask]
        tops = self.tops[book.venue]
        previous = tops.get(book.symbol)
        if previous is not None:
            if book.last_seq < previous.seq:
                return None  # a faster book-ticker stream is already ahead of this diff
            unchanged = (
                previous.bid == bid
                and previous.ask == ask
                and previous.bid_size == bid_size
                and previous.ask_size == ask_size
            )
            if unchanged:
                return None
        top = BookTicker(
            book.venue,
            book.symbol,
            bid,
            bid_size,
            ask,
            ask_size,
            book.last_seq,
            book.venue_ts_ms,
            local_ts_ns,
        )
        tops[book.symbol] = top
        return top

    def out_of_sync(self) -> list[tuple[str, str]]:
        """(venue, symbol) of every L2 book waiting for a snapshot."""
        return [key for key, book in self.l2.items() if not book.live]

    def _drop(self, venue: str, reason: DropReason) -> None:
        drops = self._drops.get(venue)
        if drops is None:
            drops = self._drops[venue] = DropCounter(venue)
        drops.drop(reason)

    def drop_counters(self) -> Iterable[DropCounter]:
        return self._drops.values()
