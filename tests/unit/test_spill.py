"""The writer's spill: batches come back first-in first-out, across files and restarts."""

from __future__ import annotations

from pathlib import Path

from runtime.persistence.recordlog import HEADER_SIZE, Damage
from runtime.persistence.spill import Batch, SpillLog


def batch(number: int, rows: int = 3) -> Batch:
    return Batch("ticks", [(number, "binance", "BTC/USDT", float(i)) for i in range(rows)])


def drain(spill: SpillLog) -> list[int]:
    """Read and acknowledge every batch; the number of each."""
    numbers = []
    while (found := spill.peek()) is not None:
        numbers.append(int(found.rows[0][0]))  # type: ignore[call-overload]
        spill.ack()
    return numbers


def test_batches_come_back_in_the_order_they_were_spilled(tmp_path: Path) -> None:
    spill = SpillLog(tmp_path, file_bytes=200)  # a new file every batch or two
    for number in range(10):
        spill.append(batch(number))
    assert len(list(tmp_path.glob("spill-*.log"))) > 2
    assert spill.bytes > 0
    assert drain(spill) == list(range(10))
    assert spill.empty and spill.bytes == 0
    assert list(tmp_path.glob("spill-*.log")) == []


def test_rows_survive_as_they_were_put(tmp_path: Path) -> None:
    spill = SpillLog(tmp_path)
    rows = [(1_795_000_000_123_456_789, "upbit", "BTC/KRW", 1.5e8, None, "text with ünïcode")]
    spill.append(Batch("ticks", list(rows)))
    found = spill.peek()
    assert found is not None and found.table == "ticks" and found.rows == rows


def test_a_batch_not_acknowledged_is_read_again(tmp_path: Path) -> None:
    spill = SpillLog(tmp_path)
    spill.append(batch(1))
    spill.append(batch(2))
    first = spill.peek()
    again = spill.peek()
    assert first is not None and again is not None and first.rows == again.rows
    spill.ack()
    assert drain(spill) == [2]


def test_batches_pushed_in_front_come_before_everything_spilled(tmp_path: Path) -> None:
    spill = SpillLog(tmp_path)
    spill.append(batch(3))
    spill.append(batch(4))
    spill.push_front([batch(1), batch(2)])
    assert drain(spill) == [1, 2, 3, 4]


def test_batches_appended_while_draining_come_after(tmp_path: Path) -> None:
    spill = SpillLog(tmp_path)
    spill.append(batch(1))
    assert spill.peek() is not None
    spill.append(batch(2))  # the file being read is closed: this starts the next one
    spill.ack()
    assert drain(spill) == [2]


def test_a_restarted_writer_finds_what_the_last_one_spilled(tmp_path: Path) -> None:
    spill = SpillLog(tmp_path)
    for number in range(3):
        spill.append(batch(number))
    spill.close()
    assert drain(SpillLog(tmp_path)) == [0, 1, 2]


def spilled_file(tmp_path: Path) -> tuple[Path, bytearray, int]:
    """Three equal-sized batches in one closed spill file: (path, bytes, record size)."""
    spill = SpillLog(tmp_path)
    for number in range(3):
        spill.append(batch(number))
    spill.close()
    path = next(tmp_path.glob("spill-*.log"))
    data = bytearray(path.read_bytes())
    return path, data, len(data) // 3


def test_a_corrupt_batch_is_reported_and_the_batches_after_it_recovered(tmp_path: Path) -> None:
    path, data, size = spilled_file(tmp_path)
    data[size + HEADER_SIZE + 4] ^= 0xFF  # inside the second batch
    path.write_bytes(bytes(data))
    damage: list[Damage] = []
    reopened = SpillLog(tmp_path, on_damage=damage.append)
    assert drain(reopened) == [0, 2]
    assert [(d.path, d.offset, d.length, d.reason) for d in damage] == [
        (path, size, size, "checksum mismatch")
    ]
    assert reopened.damaged == 1


def test_a_torn_last_batch_is_reported_and_the_others_recovered(tmp_path: Path) -> None:
    path, data, size = spilled_file(tmp_path)
    path.write_bytes(bytes(data[:-7]))
    damage: list[Damage] = []
    assert drain(SpillLog(tmp_path, on_damage=damage.append)) == [0, 1]
    assert [(d.offset, d.reason.split(":")[0]) for d in damage] == [(2 * size, "truncated")]
