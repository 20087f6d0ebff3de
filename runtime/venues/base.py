"""What every venue's connections share: a reconnecting websocket feed and a REST rate limit."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import aiohttp
from loguru import logger

from runtime.core.frames import FrameHandler
from runtime.core.retry import Backoff


class WebsocketFeed:
    """One websocket connection to a venue, reconnected with backoff until cancelled.

    Every frame is stamped with ``time.time_ns()`` on arrival and handed to ``on_frame``. The
    backoff resets only once a connection has delivered data, so a venue that accepts and at once
    drops connections is not hammered. ``stale`` says whether the venue has been silent longer
    than ``stale_after_s``; the engine stops trading on a stale venue.
    """

    def __init__(
        self,
        venue: str,
        url: str,
        on_frame: FrameHandler,
        *,
        stale_after_s: float = 5.0,
        subscribe: bytes | None = None,
        on_connected: Callable[[], Awaitable[None]] | None = None,
        backoff: Backoff | None = None,
        heartbeat_s: float = 20.0,
    ) -> None:
        self.venue = venue
        self.url = url
        self._on_frame = on_frame
        self._stale_after_ns = int(stale_after_s * 1e9)
        self._subscribe = subscribe
        self._on_connected = on_connected
        self.backoff = backoff if backoff is not None else Backoff()
        self._heartbeat_s = heartbeat_s
        self.connects = 0
        self.disconnects = 0
        self.frames = 0
        self.connected = False
        self.last_frame_ns = 0
        self.last_error = ""

    def stale(self, now_ns: int | None = None) -> bool:
        now = time.time_ns() if now_ns is None else now_ns
        return now - self.last_frame_ns > self._stale_after_ns

    async def run(self) -> None:
        """Connect, read, reconnect; returns only when cancelled."""
        async with aiohttp.ClientSession() as session:
            while True:
                try:
                    await self._connection(session)
                except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                    self.last_error = f"{type(exc).__name__}: {exc}"
                    logger.bind(venue=self.venue).warning(
                        f"{self.venue} feed connection failed: {self.last_error}"
                    )
                finally:
                    if self.connected:
                        self.disconnects += 1
                    self.connected = False
                delay = self.backoff.next_delay()
                logger.bind(venue=self.venue).info(
                    f"{self.venue} feed reconnecting in {delay:.2f}s"
                )
                await asyncio.sleep(delay)

    async def _connection(self, session: aiohttp.ClientSession) -> None:
        async with session.ws_connect(
            self.url, heartbeat=self._heartbeat_s, max_msg_size=16 * 1024 * 1024
        ) as ws:
            self.connected = True
            self.connects += 1
            logger.bind(venue=self.venue).info(f"{self.venue} feed connected to {self.url}")
            if self._subscribe is not None:
                await ws.send_bytes(self._subscribe)
            if self._on_connected is not None:
                await self._on_connected()
            await self._read(ws)

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        on_frame = self._on_frame
        time_ns = time.time_ns
        delivered = False
        while True:
            message = await ws.receive()
            received_ns = time_ns()
            if message.type is aiohttp.WSMsgType.TEXT:
                data = message.data.encode()
            elif message.type is aiohttp.WSMsgType.BINARY:
                data = message.data
            else:
                self.last_error = f"websocket {message.type.name.lower()}"
                return
            self.last_frame_ns = received_ns
            self.frames += 1
            if not delivered:
                self.backoff.reset()
                delivered = True
            on_frame(data, received_ns)


class RestLimiter:
    """At most ``rate`` REST requests per second (bursts up to ``burst``), awaited, not refused."""

    def __init__(self, rate: float, burst: int = 1) -> None:
        self._interval = 1.0 / rate
        self._burst = burst
        self._next = 0.0

    async def acquire(self) -> None:
        now = time.monotonic()
        earliest = max(self._next, now - self._interval * (self._burst - 1))
        self._next = earliest + self._interval
        if earliest > now:
            await asyncio.sleep(earliest - now)
