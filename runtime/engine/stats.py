"""What the engine counts as it runs: frames, per-strategy outcomes, a ring of frame latencies.

The engine bumps these on the hot path; metrics, the demo's summary and health read them."""

from __future__ import annotations

import bisect
import collections
import time
from array import array
from dataclasses import dataclass, field
from typing import Final

from runtime.core.orders import Opportunity

LATENCY_SAMPLES: Final = 1 << 16
LATENCY_MASK: Final = LATENCY_SAMPLES - 1
SAMPLE_SHIFT: Final = 3
SAMPLE_EVERY_MASK: Final = (1 << SAMPLE_SHIFT) - 1
"""Latency is sampled on one frame in eight: reading the clock costs a tenth of a frame."""
TICK_TO_INTENT_BUCKETS_S: Final = (
    10e-6, 25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3,
)  # fmt: skip
"""Upper bounds of ``arbfleet_tick_to_intent_seconds``, as the metrics contract lists them."""


@dataclass
class StrategyStats:
    opportunities: int = 0
    orders: int = 0
    blocked: int = 0
    fills: int = 0
    rejected: int = 0
    last_blocked: str = ""
    orders_by_venue: collections.Counter[str] = field(default_factory=collections.Counter)
    fills_by_venue: collections.Counter[str] = field(default_factory=collections.Counter)
    rejections: collections.Counter[tuple[str, str]] = field(default_factory=collections.Counter)
    """(venue, reason class) -> orders the venue (or the paper executor) refused."""
    tick_to_intent: list[int] = field(default_factory=lambda: [0] * len(TICK_TO_INTENT_BUCKETS_S))
    """Non-cumulative bucket counts (``le`` each bound); the overflow is count minus their sum."""
    tick_to_intent_count: int = 0
    tick_to_intent_sum_s: float = 0.0

    def record_tick_to_intent(self, seconds: float) -> None:
        index = bisect.bisect_left(TICK_TO_INTENT_BUCKETS_S, seconds)
        if index < len(self.tick_to_intent):
            self.tick_to_intent[index] += 1
        self.tick_to_intent_count += 1
        self.tick_to_intent_sum_s += seconds


class EngineStats:
    """Counters and a ring of per-frame latencies (receive to decision, nanoseconds)."""

    def __init__(self) -> None:
        self.started_ns = time.time_ns()
        self.frames: dict[str, list[int]] = {}  # venue -> [count]: a list the hot path bumps
        self.by_strategy: dict[str, StrategyStats] = collections.defaultdict(StrategyStats)
        self.recent: collections.deque[Opportunity] = collections.deque(maxlen=20)
        self.latency_ns = array("q", bytes(8 * LATENCY_SAMPLES))
        self.gaps: collections.Counter[str] = collections.Counter()
        self.parsed: collections.Counter[tuple[str, str]] = collections.Counter()
        """(venue, type) of events off the fast path (depth, trades); tickers are derived."""
        self.feed_restarts: collections.Counter[str] = collections.Counter()
        """venue -> times its feed task died of an unexpected error and was restarted."""

    def frame_count(self) -> int:
        return sum(count[0] for count in self.frames.values())

    def latency_percentile_us(self, quantile: float) -> float | None:
        taken = min(self.frame_count() >> SAMPLE_SHIFT, LATENCY_SAMPLES)
        samples = sorted(self.latency_ns[:taken])
        if not samples:
            return None
        return samples[min(len(samples) - 1, int(quantile * len(samples)))] / 1000.0
