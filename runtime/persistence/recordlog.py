"""Append-only files of checksummed records: the framing of the order journal and the spill.

Each record is ``MAGIC | length (u32) | crc32 (u32) | payload``, big-endian. The checksum covers
the length and the payload, so a torn write (the process killed mid-record, the usual end of a
journal after kill -9), a flipped bit or a record overwritten by garbage is detected. Reading
never stops at damage: it reports where the damage is and how many bytes were skipped, then
looks for the next ``MAGIC`` whose record checks out and goes on from there, so everything
after a damaged record is recovered.

Records are written with one ``os.write`` each, straight to the file descriptor (no user-space
buffer), so a record written before kill -9 is in the kernel and survives the process;
``sync()`` (``fdatasync``) makes it survive a power cut too.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

MAGIC: Final = b"\xa7AFR"
_HEADER: Final = struct.Struct(">4sII")
HEADER_SIZE: Final = _HEADER.size
MAX_RECORD: Final = 256 * 1024 * 1024
"""A length beyond this is damage, not a record (a batch of rows is a few megabytes at most)."""


def _checksum(length: int, payload: bytes) -> int:
    return zlib.crc32(payload, zlib.crc32(length.to_bytes(4, "big")))


def frame(payload: bytes) -> bytes:
    """``payload`` as one record."""
    return _HEADER.pack(MAGIC, len(payload), _checksum(len(payload), payload)) + payload


@dataclass(frozen=True)
class Damage:
    """Bytes of a file that were not a valid record and were skipped."""

    path: Path
    offset: int
    length: int
    reason: str

    def __str__(self) -> str:
        return (
            f"{self.path}: {self.length} bytes at offset {self.offset} are not a valid record "
            f"({self.reason}); skipped, the records after them were recovered"
        )


@dataclass(frozen=True)
class Record:
    offset: int
    end: int
    payload: bytes


def _record_at(data: bytes, offset: int) -> Record | str:
    """The record starting at ``offset``, or why there is none."""
    if len(data) - offset < HEADER_SIZE:
        return "truncated header"
    magic, length, crc = _HEADER.unpack_from(data, offset)
    if magic != MAGIC:
        return "no record marker"
    if length > MAX_RECORD:
        return f"implausible length {length}"
    start = offset + HEADER_SIZE
    end = start + length
    if end > len(data):
        return f"truncated: {length} bytes announced, {len(data) - start} present"
    payload = data[start:end]
    if _checksum(length, payload) != crc:
        return "checksum mismatch"
    return Record(offset, end, payload)


def _next_valid(data: bytes, offset: int) -> Record | None:
    """The first valid record after ``offset``, searching marker by marker."""
    position = data.find(MAGIC, offset + 1)
    while position != -1:
        found = _record_at(data, position)
        if isinstance(found, Record):
            return found
        position = data.find(MAGIC, position + 1)
    return None


def scan(path: Path, start: int = 0) -> Iterator[Record | Damage]:
    """Every record of ``path`` from ``start``, with a ``Damage`` for each damaged stretch."""
    data = path.read_bytes()
    offset = start
    while offset < len(data):
        found = _record_at(data, offset)
        if isinstance(found, Record):
            yield found
            offset = found.end
            continue
        following = _next_valid(data, offset)
        resume = following.offset if following is not None else len(data)
        yield Damage(path, offset, resume - offset, found)
        offset = resume


class Appender:
    """Appends records to a file; ``sync()`` makes what was appended durable."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self.size = os.fstat(self._fd).st_size

    def append(self, payload: bytes) -> int:
        """Write one record; returns the offset it starts at."""
        return self.append_all([payload])

    def append_all(self, payloads: list[bytes]) -> int:
        """Write records with one system call; returns the offset the first starts at."""
        data = b"".join(frame(payload) for payload in payloads)
        offset = self.size
        written = os.write(self._fd, data)
        if written != len(data):  # a full disk; the partial record reads back as damage
            raise OSError(f"short write to {self.path}: {written} of {len(data)} bytes")
        self.size += written
        return offset

    def sync(self) -> None:
        os.fdatasync(self._fd)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def sync_directory(directory: Path) -> None:
    """Make a file's creation, rename or removal in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
