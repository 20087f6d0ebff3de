"""Recorded frames: write them as JSON lines, play them back into the engine.

One line per frame, exactly as the venue sent it::

    {"ts_ns": 1732198440123456789, "venue": "binance", "frame": "{\\"u\\":400900217,...}"}

A path ending in ``.gz`` is gzip-compressed. Frames are kept verbatim, malformed ones included,
so a replay exercises the parsers exactly as the live session did. Playback shifts the recorded
times so the first frame is "now" and keeps their spacing; with ``speed`` it also waits out that
spacing (``speed=2`` plays twice as fast), without it frames go as fast as the engine takes them.
A line that is not a valid record is counted and skipped, never fatal.
"""

from __future__ import annotations

import asyncio
import gzip
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Final, cast

import msgspec
from loguru import logger

from runtime.feeds.base import FrameHandler

_YIELD_EVERY: Final = 1_000  # frames between yields to the loop when playing flat out


class Record(msgspec.Struct, frozen=True):
    ts_ns: int
    venue: str
    frame: str


def _open(path: Path, mode: str) -> IO[bytes]:
    if path.suffix == ".gz":
        return cast(IO[bytes], gzip.open(path, mode + "b"))
    return path.open(mode + "b")


class FrameRecorder:
    """Appends frames to a replay file; use as a context manager, ``tap`` a frame handler."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = _open(path, "a")
        self._encoder = msgspec.json.Encoder()
        self.frames = 0

    def record(self, venue: str, raw: bytes, ts_ns: int) -> None:
        frame = raw.decode("utf-8", "replace")
        self._file.write(self._encoder.encode(Record(ts_ns, venue, frame)) + b"\n")
        self.frames += 1

    def tap(self, venue: str, handler: FrameHandler) -> FrameHandler:
        """``handler``, recording every frame before handing it on."""

        def recording(raw: bytes, ts_ns: int) -> None:
            self.record(venue, raw, ts_ns)
            handler(raw, ts_ns)

        return recording

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> FrameRecorder:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


@dataclass
class ReplayStats:
    frames: int = 0
    bad_lines: int = 0
    unknown_venues: int = 0


def read_records(path: Path, stats: ReplayStats) -> Iterator[Record]:
    """The valid records of a replay file, counting the lines that are not."""
    decoder = msgspec.json.Decoder(Record)
    with _open(path, "r") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                yield decoder.decode(line)
            except (msgspec.DecodeError, UnicodeDecodeError) as exc:
                stats.bad_lines += 1
                logger.bind(path=str(path), line=number).warning(f"skipped replay line: {exc}")


class ReplayFeed:
    """Plays a replay file into per-venue frame handlers; ``run`` returns at the end of it."""

    venue = "replay"

    def __init__(
        self, path: Path, handlers: Mapping[str, FrameHandler], *, speed: float | None = None
    ) -> None:
        self.path = path
        self._handlers = dict(handlers)
        self._speed = speed
        self.stats = ReplayStats()
        self.connected = False
        self.connects = 0
        self.last_frame_ns = 0
        self.done = asyncio.Event()

    def stale(self, now_ns: int | None = None) -> bool:
        return False

    async def run(self) -> None:
        self.connected = True
        self.connects += 1
        try:
            await self._play()
        finally:
            self.connected = False
            self.done.set()

    async def _play(self) -> None:
        offset: int | None = None
        first = 0
        started = time.monotonic_ns()
        for record in read_records(self.path, self.stats):
            handler = self._handlers.get(record.venue)
            if handler is None:
                self.stats.unknown_venues += 1
                continue
            if offset is None:
                first = record.ts_ns
                offset = time.time_ns() - first
            if self._speed is not None:
                due_ns = (record.ts_ns - first) / self._speed
                wait_ns = due_ns - (time.monotonic_ns() - started)
                if wait_ns > 0:
                    await asyncio.sleep(wait_ns / 1e9)
            elif self.stats.frames % _YIELD_EVERY == 0:
                await asyncio.sleep(0)
            self.last_frame_ns = record.ts_ns + offset
            handler(record.frame.encode(), self.last_frame_ns)
            self.stats.frames += 1
