"""Replay files: recorded frames come back byte for byte, gzip or not, bad lines skipped."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from runtime.venues.replay import FrameRecorder, ReplayFeed
from tests.fixtures import ws_message

FRAMES = [
    ("binance", ws_message("binance_book_ticker"), 1_000),
    ("upbit", ws_message("upbit_orderbook"), 2_000),
    ("binance", b'{"u":1,"s":"BNBUSDT","b":"25.35', 3_000),  # malformed frames are kept verbatim
]


def record(path: Path) -> None:
    with FrameRecorder(path) as recorder:
        sink = recorder.tap("binance", lambda raw, ts: None)
        for venue, raw, ts in FRAMES:
            if venue == "binance":
                sink(raw, ts)
            else:
                recorder.record(venue, raw, ts)


@pytest.mark.parametrize("name", ["session.jsonl", "session.jsonl.gz"])
async def test_recorded_frames_replay_in_order_with_their_spacing(
    tmp_path: Path, name: str
) -> None:
    path = tmp_path / name
    record(path)
    seen: list[tuple[str, bytes, int]] = []
    handlers = {
        "binance": lambda raw, ts: seen.append(("binance", raw, ts)),
        "upbit": lambda raw, ts: seen.append(("upbit", raw, ts)),
    }
    feed = ReplayFeed(path, handlers)
    await feed.run()
    assert [(v, raw) for v, raw, _ in seen] == [(v, raw) for v, raw, _ in FRAMES]
    assert [ts - seen[0][2] for *_, ts in seen] == [0, 1_000, 2_000]
    assert feed.stats.frames == 3 and feed.done.is_set()


def test_gzip_file_is_really_compressed(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl.gz"
    record(path)
    assert gzip.decompress(path.read_bytes()).count(b"\n") == 3


async def test_bad_blank_and_unknown_venue_lines_are_counted_not_fatal(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    record(path)
    with path.open("a") as file:
        file.write("not json\n")
        file.write("\n  \n")
        file.write('{"ts_ns": 5, "venue": "kraken", "frame": "{}"}\n')
        file.write('{"ts_ns": "x"}\n')
        file.write('{"ts_ns": 6, "venue": "binance", "frame": "\\ud800"}\n')  # not UTF-16
    seen: list[bytes] = []
    feed = ReplayFeed(
        path, {"binance": lambda raw, ts: seen.append(raw), "upbit": lambda r, t: None}
    )
    await feed.run()
    assert len(seen) == 2
    assert feed.stats.lines() == {
        "played": 3,
        "blank": 2,
        "bad_record": 3,
        "unknown_venue": 1,
    }


async def test_raw_frames_play_byte_for_byte_as_the_given_venue(tmp_path: Path) -> None:
    frames = [ws_message("binance_book_ticker_combined"), b"\xff not utf-8", b"{}"]
    path = tmp_path / "binance.log.gz"
    with gzip.open(path, "wb") as file:
        file.write(b"\n".join(frames) + b"\n\n")
    seen: list[bytes] = []
    feed = ReplayFeed(path, {"binance": lambda raw, ts: seen.append(raw)}, venue="binance")
    await feed.run()
    assert seen == frames
    assert feed.stats.lines() == {"played": 3, "blank": 1, "bad_record": 0, "unknown_venue": 0}
