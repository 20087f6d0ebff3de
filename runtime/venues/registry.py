"""Which venue module speaks which protocol: the one place the engine asks for parsers and feeds.

The engine only deals in frames, events and ``Subscription`` lists.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from runtime.core.errors import ConfigError
from runtime.core.events import DepthUpdate
from runtime.core.frames import DropCounter, FrameHandler, Parser
from runtime.core.instruments import instrument, symbol_map
from runtime.core.subscriptions import Subscription
from runtime.venues.base import RestLimiter, WebsocketFeed
from runtime.venues.binance import feed as binance
from runtime.venues.upbit import feed as upbit

PARSERS: dict[str, Callable[[dict[str, str], DropCounter], Parser]] = {
    "binance": binance.BinanceParser,
    "upbit": upbit.UpbitParser,
}


def build_parser(venue: str, subscriptions: Sequence[Subscription], drops: DropCounter) -> Parser:
    try:
        parser_class = PARSERS[venue]
    except KeyError:
        raise ConfigError(f"no feed parser for venue {venue!r}") from None
    symbols = symbol_map(instrument(venue, s.symbol) for s in subscriptions)
    return parser_class(symbols, drops)


def build_feed(
    venue: str,
    ws_url: str,
    rest_url: str,
    subscriptions: Sequence[Subscription],
    on_frame: FrameHandler,
    on_snapshot: Callable[[DepthUpdate], None],
    *,
    stale_after_s: float,
    rest_requests_per_s: float,
) -> tuple[WebsocketFeed, binance.DepthSnapshots | None]:
    """The websocket feed for ``subscriptions`` on ``venue``, and its snapshot fetcher if any."""
    instruments = [(instrument(venue, s.symbol), s) for s in subscriptions]
    if venue == "binance":
        streams = binance.stream_names(
            [(i.venue_symbol, s.depth, s.trades) for i, s in instruments]
        )
        depth = {i.symbol: i.venue_symbol for i, s in instruments if s.depth}
        snapshots = None
        if depth:
            limiter = RestLimiter(rest_requests_per_s, burst=max(1, len(depth)))
            snapshots = binance.DepthSnapshots(rest_url, depth, on_snapshot, limiter)
        feed = WebsocketFeed(
            venue,
            binance.combined_stream_url(ws_url, streams),
            on_frame,
            stale_after_s=stale_after_s,
            on_connected=_request_all(snapshots),
        )
        return feed, snapshots
    if venue == "upbit":
        codes = [i.venue_symbol for i, _ in instruments]
        trade_codes = [i.venue_symbol for i, s in instruments if s.trades]
        message = upbit.subscription_message(codes, trade_codes)
        return WebsocketFeed(
            venue, ws_url, on_frame, stale_after_s=stale_after_s, subscribe=message
        ), None
    raise ConfigError(f"no websocket feed for venue {venue!r}")


def _request_all(snapshots: binance.DepthSnapshots | None) -> Callable[[], Awaitable[None]] | None:
    if snapshots is None:
        return None

    async def request() -> None:
        # After a (re)connect every L2 book needs a fresh snapshot to line the diffs up with.
        snapshots.request_all()

    return request
