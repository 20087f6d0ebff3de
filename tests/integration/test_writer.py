"""The batched writer against real PostgreSQL: every table, rows exactly once, partitions on
demand, an unreachable database (spill, then a credential swap), damaged spill files, refused
batches."""

from __future__ import annotations

import secrets
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from runtime.core.errors import PersistenceError
from runtime.devstack.scratch import free_port
from runtime.persistence.admin import run_maintenance
from runtime.persistence.schema import TimeseriesTable, ensure_partitions
from runtime.persistence.settings import PostgresConfig
from runtime.persistence.spill import Batch, SpillLog
from runtime.persistence.tables import TABLES, Row
from runtime.persistence.writer import BatchWriter, init_connection
from tests.integration.polling import until

pytest_plugins = ["tests.integration.persistence_fixtures"]

T0 = 1_795_000_000 * 10**9  # 2026-11-18: rows of this module live around here


def tick(number: int, venue: str = "binance", ts: int | None = None) -> Row:
    at = T0 + number * 1_000 if ts is None else ts
    return (at, venue, "BTC/USDT", 100.0 + number, 1.0, 101.0 + number, 2.0, number, at - 5_000)


@pytest.fixture
async def db(migrated: str) -> AsyncIterator[Any]:
    conn = await asyncpg.connect(migrated, server_settings={"timezone": "UTC"})
    await init_connection(conn)
    yield conn
    await conn.close()


async def started(dsn: str, spill: Path, **options: Any) -> BatchWriter:
    writer = BatchWriter(dsn, spill, flush_interval_s=0.05, **options)
    await writer.start()
    return writer


async def count(db: Any, table: str, where: str = "true", *args: Any) -> int:
    return int(await db.fetchval(f"SELECT count(*) FROM {table} WHERE {where}", *args))


async def test_rows_of_every_table_arrive_as_they_were_put(
    migrated: str, db: Any, tmp_path: Path
) -> None:
    writer = await started(migrated, tmp_path / "spill")
    rows: dict[str, Row] = {
        "ticks": tick(1, venue="every-table"),
        "opportunities": (T0, "every-table", "premium", 41.5, 2.25, "binance->upbit"),
        "position_snapshots": (T0, "every-table", "binance", "BTC", 2.5, 0.5),
        "pnl_snapshots": (T0, "every-table", None),
        "system_events": (T0, "every-table", "test", "détail"),
        "orders": ("every-table-1", T0, "every-table", "binance", "BTC/USDT", "buy", 0.1, 100.5,
                   "leg", None, "filled", 0.1, 100.4, "", "", "42", T0 + 7_000),
        "fills": ("every-table-1", 1, T0 + 7_000, "every-table", "binance", "BTC/USDT", "sell",
                  0.1, 100.4, 0.01, "USDT"),
    }  # fmt: skip
    for table, row in rows.items():
        writer.put(table, row)
    assert await writer.drain(30.0)
    await writer.close()
    for table, row in rows.items():
        columns = ", ".join(TABLES[table].columns)
        stored = await db.fetch(f"SELECT {columns} FROM {table} WHERE {TABLES[table].columns[1]} "
                                "= $1", row[1])  # fmt: skip
        assert [tuple(r) for r in stored] == [row], table
    assert writer.stats.rows == dict.fromkeys(rows, 1)


async def test_rows_written_twice_land_once(migrated: str, db: Any, tmp_path: Path) -> None:
    writer = await started(migrated, tmp_path / "spill", batch_rows=500)
    for number in range(1_000):
        writer.put("ticks", tick(number, venue="twice"))
    assert await writer.drain(30.0)
    for number in range(500, 1_500):  # half of them again, half new
        writer.put("ticks", tick(number, venue="twice"))
    assert await writer.drain(30.0)
    await writer.close()
    assert await count(db, "ticks", "venue = 'twice'") == 1_500
    assert writer.stats.rows["ticks"] == 1_500
    assert writer.stats.skipped["ticks"] == 500
    assert writer.stats.retries == 1  # only the mixed batch took the slow path


async def test_a_time_no_partition_covers_gets_its_partition(
    migrated: str, db: Any, tmp_path: Path
) -> None:
    far = 2_051_222_400 * 10**9  # 2035-01-01
    writer = await started(migrated, tmp_path / "spill")
    writer.put("ticks", tick(1, venue="far", ts=far))
    writer.put("ticks", tick(2, venue="far", ts=far + 10 * 3_600 * 10**9))
    assert await writer.drain(30.0)
    await writer.close()
    assert await count(db, "ticks", "venue = 'far'") == 2
    assert writer.stats.partitions_created == 2  # the hours the rows fall in, nothing between


async def test_a_silent_host_listed_first_does_not_keep_the_writer_from_the_primary(
    migrated: str, db: Any, tmp_path: Path
) -> None:
    # A member that takes TCP connections and never answers, listed before the real server in a
    # primary-and-standbys DSN: the way a dead old primary looks after a failover.
    with socket.create_server(("127.0.0.1", 0)) as silent:
        parts = urlsplit(migrated)
        auth, _, host = parts.netloc.rpartition("@")
        query = "&".join(q for q in (parts.query, "target_session_attrs=read-write") if q)
        netloc = f"{auth}@127.0.0.1:{silent.getsockname()[1]},{host}"
        dsn = urlunsplit(parts._replace(netloc=netloc, query=query))
        # asyncpg alone tries the hosts in turn within one timeout: the silent one uses it up.
        with pytest.raises(TimeoutError):
            await asyncpg.connect(dsn, timeout=2)
        writer = await started(dsn, tmp_path / "spill", connect_timeout_s=2)
        writer.put("ticks", tick(7_001, venue="silent-first"))
        assert await writer.drain(10.0)
        await writer.close()
    assert await count(db, "ticks", "venue = 'silent-first'") == 1
    assert writer.available


def unreachable(dsn: str) -> str:
    parts = urlsplit(dsn)
    netloc = parts.netloc.rsplit(":", 1)[0] + f":{free_port()}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


@pytest.fixture
async def other_user(migrated: str, db: Any) -> AsyncIterator[str]:
    """A DSN with a user of its own that may write rows, as rotated credentials are; dropped
    afterwards (roles belong to the server, not to this test's database)."""
    role, password = f"writer_{secrets.token_hex(3)}", secrets.token_urlsafe(12)
    await db.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
    await db.execute(f"GRANT INSERT, SELECT ON ALL TABLES IN SCHEMA public TO {role}")
    parts = urlsplit(migrated)
    netloc = f"{role}:{password}@{parts.hostname}:{parts.port}"
    yield urlunsplit((parts.scheme, netloc, parts.path, "", ""))
    await db.execute(f"DROP OWNED BY {role}")
    await db.execute(f"DROP ROLE {role}")


async def test_an_unreachable_database_spills_then_new_credentials_write_everything(
    migrated: str, db: Any, other_user: str, tmp_path: Path
) -> None:
    # The new user may write, not create partitions: as in production, maintenance made them.
    await run_maintenance(migrated, PostgresConfig())
    await ensure_partitions(db, TimeseriesTable("ticks", 3_600, "native"), [T0])
    writer = await started(unreachable(migrated), tmp_path / "spill", batch_rows=100,
                           memory_rows=1_000, connect_timeout_s=1.0)  # fmt: skip
    for number in range(5_000):  # beyond the memory bound: put itself spills the rest
        writer.put("ticks", tick(number, venue="swap"))
    await until(lambda: not writer.available, 30, "the writer to find the database unreachable")
    assert writer.memory_rows <= 1_000 + 100
    assert writer.spill.bytes > 0 and writer.stats.spilled_rows >= 3_900
    with pytest.raises(PersistenceError, match="new database credentials do not work"):
        await writer.replace_pool(unreachable(migrated))
    await writer.replace_pool(other_user)
    assert await writer.drain(60.0)
    await writer.close()
    seqs = [r["seq"] for r in await db.fetch("SELECT seq FROM ticks WHERE venue = 'swap'")]
    assert sorted(seqs) == list(range(5_000))
    assert writer.available and writer.spill.empty
    assert list((tmp_path / "spill").glob("spill-*.log")) == []
    events = await db.fetch(
        "SELECT detail FROM system_events WHERE kind = 'database_unreachable' AND ts > $1", T0
    )
    assert len(events) == 1 and "Error" in events[0]["detail"]


async def test_a_damaged_spill_file_is_reported_and_the_rest_written(
    migrated: str, db: Any, tmp_path: Path
) -> None:
    spill_dir = tmp_path / "spill"
    spill = SpillLog(spill_dir)
    for number in range(3):
        spill.append(Batch("ticks", [tick(number * 10 + i, venue="damaged") for i in range(10)]))
    spill.close()
    path = next(spill_dir.glob("spill-*.log"))
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # inside the second batch
    path.write_bytes(bytes(data))
    writer = await started(migrated, spill_dir)
    assert await writer.drain(30.0)
    await writer.close()
    seqs = sorted(r["seq"] for r in await db.fetch("SELECT seq FROM ticks WHERE venue = 'damaged'"))
    assert seqs == [*range(10), *range(20, 30)]
    assert len(writer.stats.spill_damage) == 1 and str(path) in writer.stats.spill_damage[0]
    events = await db.fetch("SELECT detail FROM system_events WHERE kind = 'spill_damaged'")
    assert [e["detail"] for e in events] == writer.stats.spill_damage


async def test_a_batch_the_database_refuses_is_kept_aside_and_the_rest_go_on(
    migrated: str, db: Any, tmp_path: Path
) -> None:
    writer = await started(migrated, tmp_path / "spill")
    bad = ("refused-1", T0, "refused", "binance", "BTC/USDT", "hold", 0.1, None, "", None,
           "filled", 0.1, 100.0, "", "", "", T0)  # fmt: skip
    writer.put("orders", bad)  # side 'hold' breaks a CHECK constraint
    assert await writer.drain(30.0)
    writer.put("ticks", tick(1, venue="after-refused"))
    assert await writer.drain(30.0)
    await writer.close()
    assert await count(db, "orders", "strategy = 'refused'") == 0
    assert await count(db, "ticks", "venue = 'after-refused'") == 1
    assert writer.stats.rejected["orders"] == 1
    kept = SpillLog(tmp_path / "spill").directory / "rejected-orders.log"
    assert kept.exists() and b"refused-1" in kept.read_bytes()


def order(client_order_id: str, side: str = "buy") -> Row:
    return (client_order_id, T0, "merged", "binance", "BTC/USDT", side, 0.1, None, "", None,
            "filled", 0.1, 100.0, "", "", "", T0)  # fmt: skip


async def test_batches_waiting_together_go_in_one_copy_and_a_refused_one_alone(
    migrated: str, db: Any, tmp_path: Path
) -> None:
    """Behind, the writer merges the waiting batches of a table into one COPY; when the database
    refuses the merge, each batch goes alone and only the one at fault is set aside."""
    writer = await started(migrated, tmp_path / "spill", batch_rows=2)
    for n in range(10):  # five batches sealed before the writer runs
        writer.put("ticks", tick(n, venue="merged"))
    assert await writer.drain(30.0)
    assert (writer.stats.batches, await count(db, "ticks", "venue = 'merged'")) == (1, 10)
    for batch in (["m-1", "m-2"], ["m-3", "m-bad"], ["m-5", "m-6"]):
        for client_order_id in batch:
            writer.put(
                "orders", order(client_order_id, "hold" if "bad" in client_order_id else "buy")
            )
    assert await writer.drain(30.0)
    await writer.close()
    written = await db.fetch("SELECT client_order_id FROM orders WHERE strategy = 'merged'")
    assert sorted(r["client_order_id"] for r in written) == ["m-1", "m-2", "m-5", "m-6"]
    assert writer.stats.rejected["orders"] == 2  # the refused batch: m-3 and m-bad
    kept = (tmp_path / "spill" / "rejected-orders.log").read_bytes()
    assert b"m-bad" in kept and b"m-1" not in kept


async def test_closing_with_the_database_away_keeps_every_row_for_the_next_writer(
    migrated: str, db: Any, tmp_path: Path
) -> None:
    writer = await started(unreachable(migrated), tmp_path / "spill", connect_timeout_s=0.5)
    for number in range(300):
        writer.put("ticks", tick(number, venue="closed-away"))
    await writer.close(timeout_s=1.0)  # nothing reaches the database: all of it is spilled
    assert not writer.spill.empty and sum(writer.stats.rows.values()) == 0
    successor = await started(migrated, tmp_path / "spill")
    assert await successor.drain(30.0)
    await successor.close()
    assert await count(db, "ticks", "venue = 'closed-away'") == 300
