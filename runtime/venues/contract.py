"""What a venue package provides: one frozen ``Venue`` naming its symbols, URLs and factories.

A venue lives in one folder (``runtime/venues/binance/``: ``feed.py``, ``rest.py``,
``signing.py``) whose ``__init__`` builds a ``Venue`` and is named in the ``arbfleet.venues``
entry-point group; ``runtime.venues.registry`` finds it there. The engine knows venues only
through these factories, so a third-party package adds one without touching this repository.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from runtime.core.events import DepthUpdate
from runtime.core.frames import DropCounter, FrameHandler, Parser
from runtime.core.instruments import Instrument, split_symbol
from runtime.core.venue import KeySource, VenueClient
from runtime.venues.base import RestLimiter, WebsocketFeed


class Stream(NamedTuple):
    """One instrument a feed subscribes to: tops always, L2 depth and trades when asked."""

    instrument: Instrument
    depth: bool
    trades: bool


@dataclass(frozen=True)
class FeedRequest:
    """What a venue's feed factory gets: where to connect, what to subscribe, whom to tell."""

    venue: str
    ws_url: str
    rest_url: str
    streams: Sequence[Stream]
    on_frame: FrameHandler
    on_snapshot: Callable[[DepthUpdate], None]
    """Where book snapshots fetched over REST go (the engine's ``on_event``)."""
    stale_after_s: float
    rest_requests_per_s: float


class BookResync(Protocol):
    """Fetches a fresh snapshot of a book that lost its sequence (a gap) or its connection."""

    def request(self, symbol: str) -> None: ...

    async def close(self) -> None: ...


class VenueFeed(NamedTuple):
    """A venue's websocket feed and, for venues that send diffs, what resyncs their books."""

    feed: WebsocketFeed
    resync: BookResync | None = None


ParserFactory = Callable[[dict[str, str], DropCounter], Parser]
"""(venue symbol -> normalized symbol, drop counter) -> the parser of one connection's frames."""
FeedFactory = Callable[[FeedRequest], VenueFeed]
ClientFactory = Callable[["Venue", str, KeySource, RestLimiter], VenueClient]
"""(the venue, REST URL, key source, rate limiter) -> the REST client for live orders."""


@dataclass(frozen=True)
class Venue:
    """One venue, as the engine, the config and the strategies' validation see it."""

    name: str
    symbol_format: str
    """How the venue writes ``BASE/QUOTE``: ``"{base}{quote}"`` gives BTCUSDT."""
    ws_url: str
    """The public websocket the config defaults to."""
    rest_url: str
    """The REST API the config defaults to."""
    parser: ParserFactory
    feed: FeedFactory
    client: ClientFactory

    def instrument(self, symbol: str) -> Instrument:
        """The instrument for a normalized ``BASE/QUOTE`` symbol; ConfigError if malformed."""
        base, quote = split_symbol(symbol)
        venue_symbol = self.symbol_format.format(base=base, quote=quote)
        return Instrument(self.name, symbol, base, quote, venue_symbol)
