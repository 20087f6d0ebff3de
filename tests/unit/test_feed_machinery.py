"""Backoff with full jitter, the REST limiter's pacing and the snapshot fetcher's close (no
sockets, no sleeping on time)."""

from __future__ import annotations

import asyncio
import random

import pytest

from runtime.core.retry import Backoff
from runtime.venues import base
from runtime.venues.binance.feed import DepthSnapshots


def test_backoff_ceilings_double_up_to_the_cap_and_delays_stay_under_them() -> None:
    backoff = Backoff(base_s=0.5, cap_s=4.0, rng=random.Random(3))
    delays = [backoff.next_delay() for _ in range(8)]
    ceilings = [0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0, 4.0]
    assert all(0.0 <= d <= c for d, c in zip(delays, ceilings, strict=True))
    assert len(set(delays)) == len(delays)  # jittered, not a fixed schedule


def test_backoff_reset_starts_over_from_the_base() -> None:
    backoff = Backoff(base_s=1.0, cap_s=60.0, rng=random.Random(1))
    for _ in range(5):
        backoff.next_delay()
    backoff.reset()
    assert backoff.attempt == 0
    assert backoff.next_delay() <= 1.0


async def test_rest_limiter_lets_a_burst_through_then_spaces_requests(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    waits: list[float] = []

    async def record_sleep(seconds: float) -> None:
        waits.append(round(seconds, 6))

    monkeypatch.setattr(base.time, "monotonic", lambda: 100.0)
    monkeypatch.setattr(base.asyncio, "sleep", record_sleep)
    limiter = base.RestLimiter(rate=10.0, burst=2)
    for _ in range(4):
        await limiter.acquire()
    assert waits == [0.1, 0.2]  # two at once, then one every 100 ms


async def test_closing_depth_snapshots_ends_the_requests_in_flight() -> None:
    limiter = base.RestLimiter(rate=1.0)
    await limiter.acquire()  # the next request waits its turn for a second
    snapshots = DepthSnapshots(
        "http://127.0.0.1:1", {"BTC/USDT": "BTCUSDT"}, lambda _: None, limiter
    )
    snapshots.request("BTC/USDT")
    [fetch] = asyncio.all_tasks() - {asyncio.current_task()}
    await asyncio.sleep(0)  # it started and waits for the limiter
    await snapshots.close()
    assert fetch.cancelled()  # ended, not merely asked to
    snapshots.request("BTC/USDT")  # too late: nothing starts after the close
    assert asyncio.all_tasks() == {asyncio.current_task()}
    await snapshots.close()  # and a second close is harmless
