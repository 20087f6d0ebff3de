"""Symbols: the normalized ``BASE/QUOTE`` form and what each venue calls it.

Binance writes ``BTCUSDT`` (base then quote, no separator), Upbit writes ``KRW-BTC`` (quote first):
each venue's registration says how (``runtime.venues.contract.Venue.instrument``). Feeds translate
venue symbols to normalized ones through a map built from the configured instruments, so a message
for a symbol nobody asked for is dropped instead of growing the books.
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from runtime.core.errors import ConfigError


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


def symbol_map(instruments: Iterable[Instrument]) -> dict[str, str]:
    """Venue symbol -> normalized symbol, for a feed's parser."""
    return {i.venue_symbol: i.symbol for i in instruments}
