# The compiled scanner of runtime/venues/binance/_wire.c (optional: feed.py runs without it).
from collections.abc import Callable, Mapping

from runtime.core.events import BookTicker, DepthUpdate, MarketEvent

class Scanner:
    def __init__(
        self,
        symbols: Mapping[str, str],
        venue: str,
        book_ticker: type[BookTicker],
        depth_update: type[DepthUpdate],
        fallback: Callable[[bytes, int], MarketEvent | None],
    ) -> None: ...
    def scan(self, raw: bytes, local_ts_ns: int, /) -> MarketEvent | None: ...
