# The compiled scanner of runtime/venues/binance/_wire.c (optional: feed.py runs without it).
from collections.abc import Mapping

from runtime.core.events import BookTicker, DepthUpdate

class Scanner:
    def __init__(
        self,
        symbols: Mapping[str, str],
        venue: str,
        book_ticker: type[BookTicker],
        depth_update: type[DepthUpdate],
    ) -> None: ...
    def ticker(self, raw: bytes, local_ts_ns: int, /) -> BookTicker | None: ...
    def depth(self, raw: bytes, local_ts_ns: int, /) -> DepthUpdate | None: ...
