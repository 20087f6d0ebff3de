"""Loop-lag monitor: notices a blocked event loop and names the strategy that blocked it.

Two halves. A coroutine sleeps ``interval_s`` at a time and measures how late it wakes: that is
the loop's lag, kept as the latest and the worst value. A daemon thread watches the coroutine's
heartbeat; when it is older than ``threshold_s`` the loop is stuck *now*, and the thread reads the
``HookTracker`` to see which strategy is inside a hook at that moment. The thread is needed
because nothing on the loop can run while the loop is blocked, and a plugin that returns before
the coroutine wakes has already left the tracker.
"""

from __future__ import annotations

import asyncio
import collections
import threading
import time

from loguru import logger

from runtime.engine.plugins import HookTracker


class LoopWatchdog:
    """See the module docstring; ``start`` the thread, run ``heartbeat`` on the loop."""

    def __init__(
        self, tracker: HookTracker, threshold_s: float = 0.1, interval_s: float = 0.02
    ) -> None:
        self._tracker = tracker
        self.threshold_s = threshold_s
        self._interval_s = interval_s
        self._beat = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lag_s = 0.0
        self.max_lag_s = 0.0
        self.stalls = 0
        self.blocked_by: collections.Counter[str] = collections.Counter()

    async def heartbeat(self) -> None:
        """Measure lag forever (cancel to stop)."""
        while True:
            before = time.monotonic()
            self._beat = before
            await asyncio.sleep(self._interval_s)
            after = time.monotonic()
            self._beat = after
            self.lag_s = max(0.0, after - before - self._interval_s)
            self.max_lag_s = max(self.max_lag_s, self.lag_s)

    def healthy(self) -> bool:
        return (
            self.lag_s < self.threshold_s and time.monotonic() - self._beat < self.threshold_s * 5
        )

    def start(self) -> None:
        self._beat = time.monotonic()
        self._thread = threading.Thread(target=self._watch, name="loop-watchdog", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1.0)

    def _watch(self) -> None:
        reported_beat = 0.0
        while not self._stop.wait(self.threshold_s / 2):
            beat = self._beat
            stuck_for = time.monotonic() - beat
            if stuck_for < self.threshold_s or beat == reported_beat:
                continue
            reported_beat = beat  # one report per stall, however long it lasts
            culprit = self._tracker.running
            self.stalls += 1
            if culprit is not None:
                self.blocked_by[culprit] += 1
            logger.bind(strategy=culprit or "", stuck_ms=round(stuck_for * 1000)).warning(
                f"event loop blocked for {stuck_for * 1000:.0f} ms"
                + (f", strategy {culprit!r} is inside a hook" if culprit else "")
            )
