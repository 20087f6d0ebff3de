"""The writer's handling of batches PostgreSQL refuses, with the database faked away (the real
COPY paths are in tests/integration/test_writer.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncpg

from runtime.core.logging import logger
from runtime.persistence.spill import Batch
from runtime.persistence.tables import event_row
from runtime.persistence.writer import BatchWriter


async def test_a_refused_batch_that_cannot_be_kept_on_disk_does_not_stop_the_writer(
    tmp_path: Path,
) -> None:
    spill = tmp_path / "spill"
    writer = BatchWriter("postgresql://nobody@127.0.0.1:1/none", spill, batch_rows=1)
    (spill / "rejected-system_events.log").mkdir()  # where the refused rows would go: EISDIR
    written: list[Batch] = []

    async def database(batch: Batch) -> None:  # refuses the first batch for its content
        if batch.rows[0][2] == "bad":
            raise asyncpg.exceptions.CheckViolationError("violates check constraint")
        written.append(batch)

    writer._write = database  # type: ignore[method-assign]
    errors: list[Any] = []
    sink = logger.add(errors.append, level="ERROR", format="{message}")
    await writer.start()
    try:
        writer.put("system_events", event_row(1, "test", "bad", "refused"))
        writer.put("system_events", event_row(2, "test", "good", "written"))
        assert await writer.drain(5.0)
    finally:
        logger.remove(sink)
        await writer.close(1.0)
    assert [batch.rows[0][2] for batch in written] == ["good"]
    assert writer.stats.rejected["system_events"] == 1
    assert writer.stats.rejected_unkept["system_events"] == 1
    assert writer.last_error.startswith("IsADirectoryError")
    [message] = [m for m in errors if "refused a batch" in m]
    assert "could not be kept" in message and "rows are lost" in message
    assert message.record["extra"] == {"table": "system_events", "rows": 1}
