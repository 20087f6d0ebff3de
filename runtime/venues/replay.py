"""Recorded frames: write them as JSON lines, play them back into the engine.

Two formats are played. **Recorded** (what ``--record`` writes): one line per frame, exactly as
the venue sent it, with its venue and arrival time::

    {"ts_ns": 1732198440123456789, "venue": "binance", "frame": "{\\"u\\":400900217,...}"}

**Raw** (what people save from a websocket client): one frame a line as the venue sent it, all
of one venue, given separately (``ReplayFeed(..., venue="binance")``, ``--replay-venue``)::

    {"stream":"btcusdt@bookTicker","data":{"u":400900217,"s":"BTCUSDT",...}}

A path ending in ``.gz`` is gzip-compressed. Frames are kept verbatim, malformed ones included,
so a replay exercises the parsers exactly as the live session did. Playback shifts the recorded
times so the first frame is "now" and keeps their spacing; with ``speed`` it also waits out that
spacing (``speed=2`` plays twice as fast), without it frames go as fast as the engine takes them.
Raw frames carry no times: each is stamped when played. Every line is counted by what became of
it (``ReplayStats.lines``): played, blank, not a record, or of a venue nobody listens to; a line
that cannot be used is skipped, never fatal. Whether a file yielded anything the engine could use
is the caller's question (``usable_formats`` names what was expected).
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

from runtime.core.frames import FrameHandler

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


RECORDED_FORMAT: Final = '{"ts_ns": <int>, "venue": "<venue>", "frame": "<the frame as text>"}'
RAW_FORMAT: Final = "one frame a line, exactly as the venue sent it"


def usable_formats(path: Path, venue: str | None) -> str:
    """What a replay file that yielded nothing should have held, for the error that says so."""
    if venue is None:
        return (
            f"{path}: no line is a recorded frame; expected {RECORDED_FORMAT} a line "
            f"(what --record writes), or raw venue frames ({RAW_FORMAT}) with --replay-venue"
        )
    return (
        f"{path}: no line is a {venue} frame the engine could use; expected {RAW_FORMAT} "
        f"(e.g. a {venue} websocket log), or recorded lines ({RECORDED_FORMAT}) "
        "without --replay-venue"
    )


@dataclass
class ReplayStats:
    frames: int = 0
    """Lines played into a frame handler (whether its parser then used the frame or not)."""
    blank_lines: int = 0
    bad_lines: int = 0
    """Lines that are not a record (recorded format only: a raw line is the parser's to judge)."""
    unknown_venues: int = 0

    def lines(self) -> dict[str, int]:
        """Lines by outcome: the labels of ``arbfleet_replay_lines_total``."""
        return {
            "played": self.frames,
            "blank": self.blank_lines,
            "bad_record": self.bad_lines,
            "unknown_venue": self.unknown_venues,
        }


def _lines(path: Path, stats: ReplayStats) -> Iterator[tuple[int, bytes]]:
    """Numbered non-blank lines of a replay file, counting the blank ones."""
    with _open(path, "r") as lines:
        for number, line in enumerate(lines, start=1):
            stripped = line.strip()
            if stripped:
                yield number, stripped
            else:
                stats.blank_lines += 1


def read_records(path: Path, stats: ReplayStats) -> Iterator[Record]:
    """The valid records of a replay file, counting the lines that are not."""
    decoder = msgspec.json.Decoder(Record)
    for number, line in _lines(path, stats):
        try:
            yield decoder.decode(line)
        except (msgspec.DecodeError, UnicodeDecodeError) as exc:
            stats.bad_lines += 1
            logger.bind(path=str(path), line=number).warning(f"skipped replay line: {exc}")


def _recorded_frames(path: Path, stats: ReplayStats) -> Iterator[tuple[int, str, bytes]]:
    for record in read_records(path, stats):
        yield record.ts_ns, record.venue, record.frame.encode()


def _raw_frames(path: Path, venue: str, stats: ReplayStats) -> Iterator[tuple[int, str, bytes]]:
    """The lines of a file of raw frames, byte for byte, as frames of ``venue`` stamped now."""
    for _, line in _lines(path, stats):
        yield time.time_ns(), venue, line


class ReplayFeed:
    """Plays a replay file into per-venue frame handlers; ``run`` returns at the end of it."""

    venue = "replay"

    def __init__(
        self,
        path: Path,
        handlers: Mapping[str, FrameHandler],
        *,
        speed: float | None = None,
        venue: str | None = None,
    ) -> None:
        self.path = path
        self._handlers = dict(handlers)
        self._speed = speed
        self.raw_venue = venue
        """None: the recorded format; a venue: a file of that venue's raw frames."""
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
        frames = (
            _recorded_frames(self.path, self.stats)
            if self.raw_venue is None
            else _raw_frames(self.path, self.raw_venue, self.stats)
        )
        for ts_ns, venue, frame in frames:
            handler = self._handlers.get(venue)
            if handler is None:
                self.stats.unknown_venues += 1
                continue
            if offset is None:
                first = ts_ns
                offset = time.time_ns() - first
            if self._speed is not None:
                due_ns = (ts_ns - first) / self._speed
                wait_ns = due_ns - (time.monotonic_ns() - started)
                if wait_ns > 0:
                    await asyncio.sleep(wait_ns / 1e9)
            elif self.stats.frames % _YIELD_EVERY == 0:
                await asyncio.sleep(0)
            self.last_frame_ns = ts_ns + offset
            handler(frame, self.last_frame_ns)
            self.stats.frames += 1
