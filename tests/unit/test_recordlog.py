"""Checksummed record files: damage is found, reported where it is, and never hides the rest."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from runtime.persistence.recordlog import HEADER_SIZE, Appender, Damage, Record, scan


def write(path: Path, payloads: list[bytes]) -> list[int]:
    appender = Appender(path)
    offsets = [appender.append(payload) for payload in payloads]
    appender.sync()
    appender.close()
    return offsets


def payloads_and_damage(path: Path) -> tuple[list[bytes], list[Damage]]:
    items = list(scan(path))
    return (
        [item.payload for item in items if isinstance(item, Record)],
        [item for item in items if isinstance(item, Damage)],
    )


def test_records_read_back_in_order(tmp_path: Path) -> None:
    path = tmp_path / "log"
    write(path, [b"one", b"", b"three" * 1000])
    assert payloads_and_damage(path) == ([b"one", b"", b"three" * 1000], [])


def test_appending_continues_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "log"
    write(path, [b"first run"])
    write(path, [b"second run"])
    assert payloads_and_damage(path)[0] == [b"first run", b"second run"]


def test_a_torn_last_record_is_reported_and_the_rest_kept(tmp_path: Path) -> None:
    path = tmp_path / "log"
    offsets = write(path, [b"a" * 50, b"b" * 50, b"c" * 50])
    data = path.read_bytes()
    path.write_bytes(data[: offsets[2] + HEADER_SIZE + 10])  # killed in the middle of a write
    payloads, damage = payloads_and_damage(path)
    assert payloads == [b"a" * 50, b"b" * 50]
    assert len(damage) == 1
    assert damage[0].offset == offsets[2]
    assert "truncated" in damage[0].reason
    assert str(path) in str(damage[0]) and "recovered" in str(damage[0])


def test_a_corrupt_record_in_the_middle_is_skipped_and_later_ones_recovered(
    tmp_path: Path,
) -> None:
    path = tmp_path / "log"
    offsets = write(path, [b"a" * 50, b"b" * 50, b"c" * 50])
    data = bytearray(path.read_bytes())
    data[offsets[1] + HEADER_SIZE + 5] ^= 0xFF  # one flipped bit in the second payload
    path.write_bytes(bytes(data))
    payloads, damage = payloads_and_damage(path)
    assert payloads == [b"a" * 50, b"c" * 50]
    assert [(d.offset, d.length, d.reason) for d in damage] == [
        (offsets[1], offsets[2] - offsets[1], "checksum mismatch")
    ]


def test_garbage_between_records_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "log"
    write(path, [b"before"])
    with path.open("ab") as handle:
        handle.write(b"\x00garbage that is not a record\xff")
    write(path, [b"after"])
    payloads, damage = payloads_and_damage(path)
    assert payloads == [b"before", b"after"]
    assert len(damage) == 1 and damage[0].reason == "no record marker"


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.binary(max_size=64), min_size=1, max_size=8),
    st.integers(min_value=0),
)
def test_a_file_cut_anywhere_yields_a_prefix_of_the_records(
    payloads: list[bytes], cut: int
) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "log"
        write(path, payloads)
        data = path.read_bytes()
        path.write_bytes(data[: cut % (len(data) + 1)])
        recovered, damage = payloads_and_damage(path)
        assert recovered == payloads[: len(recovered)]
        assert len(damage) <= 1
