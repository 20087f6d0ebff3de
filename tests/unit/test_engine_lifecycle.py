"""Node.run's start and stop: a failed start undoes what it started, feed tasks that die are
restarted, and every stop is safe to repeat."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from prometheus_client import generate_latest

from runtime.config import load_config
from runtime.core.logging import logger
from runtime.core.retry import Backoff
from runtime.node import Node
from runtime.observability.health import HealthServer
from runtime.observability.metrics import engine_registry
from runtime.venues.base import WebsocketFeed
from tests.integration.polling import until

NO_LATENCY = {"latency_ms": 0.0, "latency_jitter_ms": 0.0}


class Forever:
    """A background job (key provider, DB credentials) that runs until cancelled."""

    def __init__(self) -> None:
        self.running = False
        self.cancelled = False

    async def run(self) -> None:
        self.running = True
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled = True
            raise


class FakeKeys(Forever):
    """What the engine asks of a key provider, with no Vault behind it."""

    accounts: dict[str, str] = {}  # noqa: RUF012 - read-only

    async def sync(self) -> float:
        return 1.0

    def missing(self) -> list[str]:
        return []

    def degraded(self) -> list[str]:
        return []

    def report(self) -> dict[str, Any]:
        return {}


class FakeCredentials(Forever):
    def missing(self) -> list[str]:
        return []

    def degraded(self) -> list[str]:
        return []


def other_tasks() -> set[asyncio.Task[Any]]:
    return asyncio.all_tasks() - {asyncio.current_task()}  # type: ignore[arg-type]


async def test_a_failed_start_stops_everything_started_before_it(tmp_path: Path) -> None:
    overrides = {"journal": {"dir": tmp_path, "fsync": False}, "paper": NO_LATENCY}
    overrides |= {"health": {"port": 0}}
    keys, credentials = FakeKeys(), FakeCredentials()
    node = Node(load_config(env={}, overrides=overrides), keys=keys)  # type: ignore[arg-type]
    node.db_credentials = credentials  # type: ignore[assignment]

    async def venue_down() -> None:
        await asyncio.sleep(0)  # the key and credential tasks are running by now
        raise ConnectionError("venue unreachable at start")

    node.engine.executor.start = venue_down  # type: ignore[method-assign]
    with pytest.raises(ConnectionError, match="venue unreachable"):
        await node.run(asyncio.Event(), feeds=[])
    assert keys.running and keys.cancelled
    assert credentials.running and credentials.cancelled
    assert other_tasks() == set()
    assert not node.persistence.active  # the journal was checkpointed and closed
    assert node.health_url
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.ClientConnectionError):
            await http.get(f"{node.health_url}/health")


async def test_the_health_server_stops_once_however_often_it_is_stopped() -> None:
    node = Node(load_config(env={}))
    server = HealthServer(node.health, engine_registry(node), "127.0.0.1", 0)
    await server.stop()  # never started: nothing to undo
    await server.start()
    async with aiohttp.ClientSession() as http:
        assert (await http.get(f"{server.url}/health")).status == 200
        await server.stop()
        await server.stop()
        with pytest.raises(aiohttp.ClientConnectionError):
            await http.get(f"{server.url}/health")


# --- feed supervision ----------------------------------------------------------------------


@contextlib.asynccontextmanager
async def venue() -> AsyncIterator[str]:
    """A websocket venue that sends one frame per connection and then stays quiet."""

    async def stream(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_str('{"u":1}')
        async for _ in ws:  # until the client goes away
            pass
        return ws

    app = web.Application()
    app.router.add_get("/ws", stream)
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"ws://127.0.0.1:{runner.addresses[0][1]}/ws"
    finally:
        await runner.cleanup()


async def test_a_feed_task_killed_by_its_frame_handler_is_restarted_until_stopped() -> None:
    frames: list[bytes] = []

    def on_frame(raw: bytes, ts_ns: int) -> None:
        frames.append(raw)
        if len(frames) == 1:
            raise ValueError("a parser bug")

    errors: list[Any] = []
    sink = logger.add(errors.append, level="ERROR", format="{message}")
    node = Node(load_config(env={}, overrides={"paper": NO_LATENCY}))
    engine = node.engine
    stop = asyncio.Event()
    try:
        async with venue() as url:
            feed = WebsocketFeed("binance", url, on_frame, backoff=Backoff(0.01, 0.05))
            running = asyncio.create_task(node.run(stop, feeds=[feed], serve_health=False))
            await until(lambda: len(frames) == 2, 5, "the restarted feed's first frame")
            assert engine.stats.feed_restarts == {"binance": 1}
            assert node.health()["feeds"]["binance"]["restarts"] == 1
            scraped = generate_latest(engine_registry(node)).decode()
            assert 'arbfleet_feed_restarts_total{venue="binance"} 1.0' in scraped
            stop.set()
            await asyncio.wait_for(running, 5.0)
            assert not feed.connected
            # Cancelled for good: no task is left that could restart the feed (a restart can
            # only come from the supervisor's task), so the count cannot move after this.
            assert other_tasks() == set()
            assert feed.connects == 2
    finally:
        logger.remove(sink)
    assert other_tasks() == set()
    [message] = [m for m in errors if "feed task died" in m]
    assert message.record["extra"]["venue"] == "binance"
    assert "ValueError: a parser bug" in message
