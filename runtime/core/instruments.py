"""Symbols: the normalized ``BASE/QUOTE`` form and what each venue calls it.

Binance writes ``BTCUSDT`` (base then quote, no separator), Upbit writes ``KRW-BTC`` (quote first).
Feeds translate venue symbols to normalized ones through a map built from the configured
instruments, so a message for a symbol nobody asked for is dropped instead of growing the books.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

import msgspec

from runtime.core.errors import ConfigError

VENUE_SYMBOL_FORMATS: Final[dict[str, str]] = {
    "binance": "{base}{quote}",
    "upbit": "{quote}-{base}",
}
VENUES: Final = tuple(VENUE_SYMBOL_FORMATS)


class Instrument(msgspec.Struct, frozen=True):
    """One tradable pair on one venue."""

    venue: str
    symbol: str
    base: str
    quote: str
    venue_symbol: str


def split_symbol(symbol: str) -> tuple[str, str]:
    """``"BTC/USDT"`` -> ``("BTC", "USDT")``; raises ConfigError on anything else."""
    base, sep, quote = symbol.partition("/")
    if not sep or not base or not quote or "/" in quote or not symbol.isupper():
        raise ConfigError(f"symbol {symbol!r} must look like 'BASE/QUOTE' in upper case")
    return base, quote


def instrument(venue: str, symbol: str) -> Instrument:
    """The instrument for a normalized symbol on a known venue."""
    try:
        template = VENUE_SYMBOL_FORMATS[venue]
    except KeyError:
        raise ConfigError(f"venue {venue!r} is not one of {', '.join(VENUES)}") from None
    base, quote = split_symbol(symbol)
    return Instrument(venue, symbol, base, quote, template.format(base=base, quote=quote))


def symbol_map(instruments: Iterable[Instrument]) -> dict[str, str]:
    """Venue symbol -> normalized symbol, for a feed's parser."""
    return {i.venue_symbol: i.symbol for i in instruments}
