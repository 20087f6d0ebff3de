"""The venues this installation knows: every ``Venue`` in the ``arbfleet.venues`` entry-point group.

The built-in venues are registered in ``pyproject.toml`` like any third-party package's, so
adding one is a folder plus one entry point. The group is loaded on first use, not on import; a
venue whose import fails, or whose entry point does not name a ``Venue`` of its own name, is
logged and remembered by name, and asking for it raises a ``ConfigError`` saying why. The other
venues work on.

Everything that lists venues asks here: the config's defaults, the strategies' venue fields
(``VenueName``), symbols (``instrument``), and the engine's parsers, feeds and REST clients.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from typing import Annotated, Final, Protocol

import pydantic
from loguru import logger

from runtime.core.errors import ConfigError
from runtime.core.events import DepthUpdate
from runtime.core.frames import DropCounter, FrameHandler, Parser
from runtime.core.instruments import Instrument, symbol_map
from runtime.core.venue import KeySource, VenueClient
from runtime.venues.base import RestLimiter
from runtime.venues.contract import FeedRequest, Stream, Venue, VenueFeed

ENTRY_POINT_GROUP: Final = "arbfleet.venues"
CLIENT_BURST: Final = 5
"""Orders a REST client may send back to back before its rate limit spaces them."""


@dataclass(frozen=True)
class VenueRegistry:
    """The venues that loaded, and why the others did not (name -> reason)."""

    venues: Mapping[str, Venue]
    failures: Mapping[str, str]

    def get(self, name: str) -> Venue:
        """The venue called ``name``; ConfigError saying why if there is none."""
        found = self.venues.get(name)
        if found is None:
            raise ConfigError(f"venue {self.problem(name)}")
        return found

    def problem(self, name: str) -> str:
        """Why there is no venue ``name`` (empty if there is one), starting with the name."""
        if name in self.venues:
            return ""
        if name in self.failures:
            return f"{name!r}: its plugin could not be loaded ({self.failures[name]})"
        if not self.venues:  # the package's own entry points are missing: a stale install
            return f"{name!r}: no venue is installed (reinstall arbfleet: pip install -e .)"
        return f"{name!r} is not one of {', '.join(sorted(self.venues))}"


def load(entry_points: Iterable[metadata.EntryPoint] | None = None) -> VenueRegistry:
    """Import every venue of the group; a broken one becomes a failure, not a crash.

    A second entry point claiming a name already taken is skipped: the first one stays."""
    if entry_points is None:
        entry_points = metadata.entry_points(group=ENTRY_POINT_GROUP)
    venues: dict[str, Venue] = {}
    failures: dict[str, str] = {}
    for entry_point in entry_points:
        name = entry_point.name
        try:
            if name in venues:
                raise ValueError("another plugin registered this name first")
            venues[name] = _checked(name, entry_point.load())
        except Exception as exc:  # a plugin's import may raise anything
            reason = f"{type(exc).__name__}: {exc}"
            failures.setdefault(name, reason)
            logger.bind(venue=name).warning(
                f"venue plugin {name!r} ({entry_point.value}) skipped: {reason}"
            )
    return VenueRegistry(venues, failures)


def _checked(name: str, candidate: object) -> Venue:
    if not isinstance(candidate, Venue):
        raise TypeError(f"{candidate!r} is not a runtime.venues.contract.Venue")
    if candidate.name != name:
        raise ValueError(f"the entry point is called {name!r} but the venue {candidate.name!r}")
    return candidate


@functools.cache
def registry() -> VenueRegistry:
    """The installed venues, loaded once per process (``registry.cache_clear()`` reloads)."""
    return load()


def venue(name: str) -> Venue:
    return registry().get(name)


def venue_names() -> tuple[str, ...]:
    """Every venue that loaded, sorted."""
    return tuple(sorted(registry().venues))


def instrument(venue_name: str, symbol: str) -> Instrument:
    """The instrument for a normalized symbol on a known venue; ConfigError otherwise."""
    return venue(venue_name).instrument(symbol)


def known_venue(name: str) -> str:
    """``name`` if a venue of that name is installed; ValueError naming the choices if not."""
    problem = registry().problem(name)
    if problem:
        raise ValueError(problem)
    return name


VenueName = Annotated[str, pydantic.AfterValidator(known_venue)]
"""A config field holding a venue name, checked against the installed venues."""


class Wanted(Protocol):
    """What is wanted of one symbol (``runtime.engine.plugins.Subscription`` fits)."""

    @property
    def symbol(self) -> str: ...

    @property
    def depth(self) -> bool: ...

    @property
    def trades(self) -> bool: ...


def build_parser(venue_name: str, subscriptions: Sequence[Wanted], drops: DropCounter) -> Parser:
    """The parser of ``venue_name``'s frames, knowing the symbols of ``subscriptions``."""
    found = venue(venue_name)
    symbols = symbol_map(found.instrument(s.symbol) for s in subscriptions)
    return found.parser(symbols, drops)


def build_feed(
    venue_name: str,
    ws_url: str,
    rest_url: str,
    subscriptions: Sequence[Wanted],
    on_frame: FrameHandler,
    on_snapshot: Callable[[DepthUpdate], None],
    *,
    stale_after_s: float,
    rest_requests_per_s: float,
) -> VenueFeed:
    """The websocket feed for ``subscriptions`` on the venue, and what resyncs its books, if any."""
    found = venue(venue_name)
    streams = [Stream(found.instrument(s.symbol), s.depth, s.trades) for s in subscriptions]
    request = FeedRequest(
        venue_name,
        ws_url,
        rest_url,
        streams,
        on_frame,
        on_snapshot,
        stale_after_s=stale_after_s,
        rest_requests_per_s=rest_requests_per_s,
    )
    return found.feed(request)


def venue_clients(venues: Mapping[str, tuple[str, KeySource, float]]) -> dict[str, VenueClient]:
    """A REST client per venue from (REST URL, key source, requests per second)."""
    clients: dict[str, VenueClient] = {}
    for name, (rest_url, keys, rate) in venues.items():
        found = venue(name)
        clients[name] = found.client(found, rest_url, keys, RestLimiter(rate, burst=CLIENT_BURST))
    return clients
