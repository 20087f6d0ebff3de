"""What every feed shares: the parser contract and the count of dropped messages per reason.

A parser turns one websocket frame into one normalized event, or into ``None`` after counting why
the frame was dropped. It never raises: a venue sending garbage costs a counter increment and, at
a bounded rate, a log line, never the engine.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable
from typing import Annotated, Any, Final, Protocol

import msgspec

from runtime.core.events import Level, MarketEvent
from runtime.core.logging import BoundedLog

_EXCERPT_CHARS = 160
_INF: Final = float("inf")

DECODE_ERRORS = (msgspec.DecodeError, UnicodeDecodeError, RecursionError)
"""What decoding a frame can raise: bad JSON, wrong shape (ValidationError), invalid UTF-8,
nesting deeper than the decoder follows (about a thousand levels)."""

Id = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
"""An update id, trade id or timestamp: what the venues send and a BIGINT column holds. A larger
one would make every genuine update after it look stale, as a repeated key did (issue #13)."""

_OVERFLOW: Final = "Number out of range"  # msgspec's words for a number beyond a float's range
_BOUND: Final = ("Expected `int` >=", "Expected `int` <=")  # and for an ``Id`` beyond its bounds


class DropReason(enum.StrEnum):
    """Why a frame or event was dropped; the label of ``arbfleet_feed_dropped_total``."""

    MALFORMED = "malformed"
    """Not JSON, or truncated JSON."""
    DUPLICATE_KEY = "duplicate_key"
    """An object repeats a key: which value is meant is anyone's guess, so neither is used."""
    SCHEMA = "schema"
    """JSON, but not the venue's documented shape (missing field, wrong type)."""
    NON_FINITE = "non_finite"
    """A price or size that is NaN or infinite, spelled out ("nan") or overflowing ("1e309")."""
    OUT_OF_RANGE = "out_of_range"
    """An id or timestamp below 0 or beyond 2**63 - 1."""
    UNKNOWN_TYPE = "unknown_type"
    """A well-formed message of a kind this parser does not handle."""
    UNKNOWN_SYMBOL = "unknown_symbol"
    """A symbol no configured instrument maps to."""
    BAD_VALUE = "bad_value"
    """A price or size that is finite but not positive, or a crossed top of book."""
    CONTROL = "control"
    """Subscription acknowledgements and status replies: expected, carry no market data."""
    VENUE_ERROR = "venue_error"
    """The venue reported an error in-band."""
    OUT_OF_ORDER = "out_of_order"
    """Older than what the book already holds."""
    BUFFER_OVERFLOW = "buffer_overflow"
    """A diff that arrived while waiting for a snapshot, beyond the buffer's bound."""


EVENT_REASONS: Final = frozenset({DropReason.OUT_OF_ORDER, DropReason.BUFFER_OVERFLOW})
"""Drops of events a parser produced (the book refused them), not of frames."""


class DropCounter:
    """Counts dropped frames per reason for one venue and logs a bounded sample of them."""

    def __init__(self, venue: str, log: BoundedLog | None = None) -> None:
        self.venue = venue
        self.counts: dict[str, int] = {}
        self._log = log if log is not None else BoundedLog()

    def drop(self, reason: DropReason, raw: bytes | str | None = None, detail: str = "") -> None:
        self.counts[reason] = self.counts.get(reason, 0) + 1
        if reason is DropReason.CONTROL:
            return
        excerpt = _excerpt(raw)
        self._log.warning(
            f"{self.venue}:{reason}",
            f"dropped a {self.venue} message: {reason}",
            venue=self.venue,
            reason=str(reason),
            detail=detail[:200],
            excerpt=excerpt,
        )

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def frames_dropped(self) -> int:
        """Frames the parser refused (drops of events it produced left out)."""
        return sum(n for reason, n in self.counts.items() if reason not in EVENT_REASONS)


def decode_error_reason(exc: Exception) -> DropReason:
    """The reason to count a frame under that decoding or converting refused with ``exc``."""
    text = str(exc)
    if text.startswith(_OVERFLOW):
        return DropReason.NON_FINITE
    if text.startswith(_BOUND):
        return DropReason.OUT_OF_RANGE
    if isinstance(exc, msgspec.ValidationError):
        return DropReason.SCHEMA
    return DropReason.MALFORMED


def value_reason(*numbers: float) -> DropReason:
    """NON_FINITE if any of the prices and sizes a check refused is NaN or infinite, else
    BAD_VALUE (zero, negative, crossed). Called only once a frame has failed, off the hot path."""
    for number in numbers:
        if number != number or number in (_INF, -_INF):
            return DropReason.NON_FINITE
    return DropReason.BAD_VALUE


def levels_valid(levels: tuple[Level, ...]) -> bool:
    """True if every price is finite and positive and every size finite and not negative."""
    for price, size in levels:  # noqa: SIM110 - a loop is faster than all() over a generator
        if not (0.0 < price < _INF and 0.0 <= size < _INF):
            return False
    return True


class _RepeatedKey(Exception):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _RepeatedKey(key)
            seen.add(key)
    return obj


def repeated_key(raw: bytes) -> str | None:
    """The first key an object of ``raw`` repeats (escapes resolved: "\\u0073" is "s"), or None.

    ``raw`` must be JSON msgspec has accepted. The standard library's parser is the only one at
    hand that shows an object's keys before folding them into a dict; at ~10 µs a frame it is for
    the slow path: the fast paths prove the absence of repeats by counting colons instead.
    Raises RecursionError for nesting too deep to follow, as msgspec does.
    """
    try:
        json.loads(raw, object_pairs_hook=_unique_pairs)
    except _RepeatedKey as repeated:
        return repeated.key
    return None


def decode_object(raw: bytes, drops: DropCounter) -> dict[str, Any] | None:
    """The JSON object ``raw`` holds, keys checked for repeats, or None after counting why not.

    The slow paths' first step, shared by every venue: a frame that is not JSON, has a number
    beyond range, repeats a key anywhere or is not an object is dropped here, under one reason.
    """
    try:
        obj = msgspec.json.decode(raw)
        repeated = repeated_key(raw)
    except (*DECODE_ERRORS, ValueError) as exc:  # ValueError: a number json will not convert
        drops.drop(decode_error_reason(exc), raw, str(exc))
        return None
    if repeated is not None:
        drops.drop(DropReason.DUPLICATE_KEY, raw, f"key {repeated!r} repeated")
        return None
    if not isinstance(obj, dict):
        drops.drop(DropReason.SCHEMA, raw, "not a JSON object")
        return None
    return obj


def _excerpt(raw: bytes | str | None) -> str:
    if raw is None:
        return ""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes | bytearray) else raw
    return text[:_EXCERPT_CHARS]


class Parser(Protocol):
    """Turns one frame from a venue into a normalized event, or None after counting a drop."""

    drops: DropCounter

    @property
    def venue(self) -> str: ...

    def parse(self, raw: bytes, local_ts_ns: int) -> MarketEvent | None: ...


FrameHandler = Callable[[bytes, int], None]
"""Takes one frame's bytes and the ``time.time_ns()`` it arrived at."""
