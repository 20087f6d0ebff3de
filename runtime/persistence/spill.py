"""The writer's spill: a first-in first-out queue of row batches in append-only local files.

When the database is unreachable and the rows held in memory reach their bound, further batches
are appended here instead, and read back in the same order when the database returns. Files are
``spill-<sequence>.log`` in one directory, read oldest first, each a series of checksummed records
(``recordlog``), one record per batch: ``[table, [row, ...]]`` in MessagePack. A file is removed
once every batch in it was written. A batch that must go *before* everything spilled (the rows
still in memory when the engine stops) gets a file sorting before the others.

Spill files outlive the process: a restarted writer finds them and replays them first. A batch
read back twice (the engine stopped between writing a batch and removing its file) is harmless:
every table has a key and the writer skips rows already there. Damage (a torn last record, a
corrupt one) is reported with its offset and size through ``on_damage``; the batches around it
are recovered.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import msgspec

from runtime.persistence.recordlog import Appender, Damage, Record, scan, sync_directory
from runtime.persistence.tables import Row

FILE_BYTES: Final = 64 * 1024 * 1024
_NAME = re.compile(r"^spill-(\d{20})\.log$")
_FIRST_SEQUENCE: Final = 10**15
"""Room on both sides: files appended count up from here, files pushed in front count down."""


@dataclass
class Batch:
    """Rows of one table, written to the database in one COPY."""

    table: str
    rows: list[Row]
    parts: tuple[int, ...] = ()
    """The row counts of the batches merged into this one (runtime/persistence/writer.py), if
    it is a merge: ``split`` gives them back."""

    def split(self) -> list[Batch]:
        """The batches merged into this one, or this one."""
        if len(self.parts) < 2:
            return [self]
        batches, start = [], 0
        for count in self.parts:
            batches.append(Batch(self.table, self.rows[start : start + count]))
            start += count
        return batches


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(tuple[str, list[tuple[object, ...]]])


def encode_batch(batch: Batch) -> bytes:
    return _encoder.encode((batch.table, batch.rows))


def decode_batch(payload: bytes) -> Batch:
    table, rows = _decoder.decode(payload)
    return Batch(table, rows)


class SpillLog:
    """See the module docstring; ``peek`` the oldest batch, ``ack`` it once written."""

    def __init__(
        self,
        directory: Path,
        *,
        file_bytes: int = FILE_BYTES,
        on_damage: Callable[[Damage], None] = lambda _damage: None,
    ) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self._file_bytes = file_bytes
        self._on_damage = on_damage
        self._files: list[int] = sorted(
            int(m[1]) for p in directory.iterdir() if (m := _NAME.match(p.name))
        )
        self._appender: Appender | None = None
        self._reading: int | None = None
        self._records: Iterator[Record | Damage] | None = None
        self._current: Record | None = None
        self._read_offset = 0
        self.damaged = 0

    def _path(self, sequence: int) -> Path:
        return self.directory / f"spill-{sequence:020d}.log"

    @property
    def empty(self) -> bool:
        return not self._files

    @property
    def bytes(self) -> int:
        """Bytes spilled and not yet written to the database."""
        total = 0
        for sequence in self._files:
            path = self._path(sequence)
            if path.exists():
                total += path.stat().st_size
        return max(total - self._read_offset, 0)

    # --- writing -----------------------------------------------------------------------------

    def append(self, batch: Batch) -> None:
        """Queue ``batch`` behind everything spilled so far."""
        appender = self._appender
        if appender is None or appender.size >= self._file_bytes:
            appender = self._new_appender()
        appender.append(encode_batch(batch))

    def _new_appender(self) -> Appender:
        if self._appender is not None:
            self._appender.sync()
            self._appender.close()
        sequence = max(self._files, default=_FIRST_SEQUENCE) + 1
        self._files.append(sequence)
        self._appender = Appender(self._path(sequence))
        sync_directory(self.directory)
        return self._appender

    def push_front(self, batches: list[Batch]) -> None:
        """Queue ``batches`` before everything spilled so far, durably."""
        if not batches:
            return
        sequence = min(self._files, default=_FIRST_SEQUENCE) - 1
        appender = Appender(self._path(sequence))
        try:
            for batch in batches:
                appender.append(encode_batch(batch))
            appender.sync()
        finally:
            appender.close()
        self._files.insert(0, sequence)
        sync_directory(self.directory)
        self._forget_reader()  # whatever was being read comes after the new file

    def sync(self) -> None:
        """Make every appended batch durable (power loss, not only a killed process)."""
        if self._appender is not None:
            self._appender.sync()

    # --- reading -----------------------------------------------------------------------------

    def peek(self) -> Batch | None:
        """The oldest batch not yet acknowledged; None when the spill is drained."""
        while self._current is None:
            if self._records is None and not self._open_oldest():
                return None
            assert self._records is not None
            item = next(self._records, None)
            if item is None:
                self._remove_read_file()
            elif isinstance(item, Damage):
                self.damaged += 1
                self._on_damage(item)
            else:
                self._current = item
        return decode_batch(self._current.payload)

    def ack(self) -> None:
        """The batch ``peek`` returned is in the database."""
        if self._current is not None:
            self._read_offset = self._current.end
            self._current = None

    def _open_oldest(self) -> bool:
        if not self._files:
            return False
        sequence = self._files[0]
        if self._appender is not None and self._appender.path == self._path(sequence):
            self._appender.sync()
            self._appender.close()  # read only closed files: the next append starts a new one
            self._appender = None
        self._reading = sequence
        self._records = scan(self._path(sequence))
        self._read_offset = 0
        return True

    def _remove_read_file(self) -> None:
        assert self._reading is not None
        self._path(self._reading).unlink(missing_ok=True)
        self._files.remove(self._reading)
        sync_directory(self.directory)
        self._forget_reader()

    def _forget_reader(self) -> None:
        self._reading = None
        self._records = None
        self._current = None
        self._read_offset = 0

    def close(self) -> None:
        if self._appender is not None:
            self._appender.sync()
            self._appender.close()
            self._appender = None
