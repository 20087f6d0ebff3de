"""Persistence: the writer against psql's COPY and per-row INSERT; a Redis snapshot of 10k.

Usage: ``python -m bench.persistence [--quick]``. Runs a throwaway PostgreSQL and redis-server of
its own (``runtime.devstack.scratch``), so neither the shared stack nor other work on it colours
the figures, and all three writing methods meet the same server, table and rows in one run.

- ``writer.copy.rows_per_s``: 1,000,000 tick rows (200,000 with ``--quick``) through
  ``BatchWriter.put`` until ``drain`` says every one is committed: the engine's real path,
  binary COPY in batches of 10,000, the producer yielding to the loop every 10,000 rows as the
  engine's loop does between events, and the memory bound above the pass (producing outruns
  any database; beyond the bound rows would go through the spill file, which the outage tests
  exercise). Wall clock, best of three passes.
- ``writer.bare_copy.rows_per_s``: the same rows in one ``copy_records_to_table`` call on one
  connection (binary COPY, nothing around it): the floor the writer is held to. The passes
  alternate with the writer's; ``writer.vs_bare_copy`` is the writer over it (target >= 0.85).
  ``writer.bare_copy_batched.rows_per_s``: the same, one call per 10,000 rows (the writer's
  batch), one transaction each; ``writer.vs_bare_copy_batched`` splits the gap in two: what the
  batch size costs, and what the writer adds to the same COPYs.
- ``writer.psql_copy.rows_per_s``: the same rows as text, ``psql -c "\\copy ticks FROM STDIN"``,
  timed around the psql process (rendering the text is not timed). Best of three.
- ``writer.insert.rows_per_s``: 20,000 of the same rows (5,000 with ``--quick``), one ``INSERT``
  each in its own transaction, over one asyncpg connection: the per-row baseline.
- ``writer.copy_partman.rows_per_s``: the writer's pass again, into a second database of the same
  server whose ``ticks`` partitions pg_partman 4.7 made (``create_parent``, hourly, native: its
  premade children and its default partition) instead of our maintenance. The passes alternate
  with ours; ``writer.partman_vs_native`` is the ratio (docs/adr/0001-partitions.md).
- ``writer.copy_vs_psql`` and ``writer.copy_vs_insert``: the ratios, from this one run.
- ``redis.snapshot_10k.ms``: ``SnapshotStore.save`` of one strategy holding 10,000 balances and
  10,000 open orders (encode, MULTI/EXEC, reply), median of 20 (5 with ``--quick``).

Every pass writes into the same ``ticks`` table, emptied before it, with its partition made
beforehand: the table's primary key is maintained in all three methods alike.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg

from bench.results import load_average, write_results
from runtime.core.orders import OrderIntent
from runtime.devstack.scratch import ScratchPostgres, ScratchRedis
from runtime.persistence.admin import run_migrations
from runtime.persistence.schema import TimeseriesTable, ensure_partitions
from runtime.persistence.settings import PostgresConfig
from runtime.persistence.snapshots import SnapshotStore, StrategySnapshot
from runtime.persistence.tables import TICKS, Row
from runtime.persistence.writer import BatchWriter, init_connection

T0 = 1_795_000_000 * 10**9
COLUMNS = ", ".join(TICKS.columns)
WRITER_BATCH_ROWS = PostgresConfig().batch_rows  # the engine's default


def tick_rows(count: int) -> list[Row]:
    """Distinct ticks within one hour (one partition), as the engine records them."""
    return [
        (T0 + i * 1_000, "binance", "BTC/USDT", 60_000.0 + (i % 97) * 0.01, 1.25,
         60_000.5 + (i % 89) * 0.01, 0.75, i, T0 + i * 1_000 - 4_000_000)
        for i in range(count)
    ]  # fmt: skip


def as_text(rows: list[Row]) -> bytes:
    """The rows in COPY's text format, as a client feeding psql would send them."""

    def when(ns: int) -> str:
        moment = datetime.datetime.fromtimestamp(ns // 1000 / 1e6, datetime.UTC)
        return moment.isoformat()

    lines = (
        f"{when(r[0])}\t{r[1]}\t{r[2]}\t{r[3]!r}\t{r[4]!r}\t{r[5]!r}\t{r[6]!r}\t{r[7]}\t{when(r[8])}"
        for r in rows
    )
    return ("\n".join(lines) + "\n").encode()


async def empty_ticks(conn: Any) -> None:
    await conn.execute("TRUNCATE ticks")
    await ensure_partitions(conn, TimeseriesTable("ticks", 3_600, "native"), [T0])


async def writer_pass(dsn: str, spill: Path, rows: list[Row]) -> float:
    # Memory bound above the pass: producing is faster than any database takes rows, and the
    # figure is the COPY path, not the spill (which the outage tests cover).
    writer = BatchWriter(
        dsn, spill, batch_rows=WRITER_BATCH_ROWS, flush_interval_s=0.05, memory_rows=len(rows) + 1
    )
    await writer.start()
    started = time.perf_counter()
    for start in range(0, len(rows), 10_000):
        for row in rows[start : start + 10_000]:
            writer.put("ticks", row)
        await asyncio.sleep(0)  # as the engine's loop does between events: the writer runs too
    if not await writer.drain(600.0):
        raise RuntimeError("the writer did not finish")
    elapsed = time.perf_counter() - started
    await writer.close()
    if writer.stats.rows["ticks"] != len(rows):
        raise RuntimeError(f"wrote {writer.stats.rows['ticks']} of {len(rows)} rows")
    return len(rows) / elapsed


async def bare_copy_pass(conn: Any, rows: list[Row], batch_rows: int) -> float:
    """The floor: the same rows through ``copy_records_to_table`` alone, ``batch_rows`` a call."""
    started = time.perf_counter()
    for start in range(0, len(rows), batch_rows):
        batch = rows[start : start + batch_rows]
        await conn.copy_records_to_table("ticks", records=batch, columns=TICKS.columns)
    return len(rows) / (time.perf_counter() - started)


def psql_pass(server: ScratchPostgres, text: bytes, count: int) -> float:
    where = urlsplit(server.dsn)
    env = dict(os.environ, PGPASSWORD=server.password)
    argv = ["psql", "-h", str(where.hostname), "-p", str(where.port), "-U", "postgres",
            "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-q",
            "-c", f"\\copy ticks ({COLUMNS}) FROM STDIN"]  # fmt: skip
    started = time.perf_counter()
    subprocess.run(argv, input=text, env=env, check=True)
    return count / (time.perf_counter() - started)


async def insert_pass(conn: Any, rows: list[Row]) -> float:
    statement = f"INSERT INTO ticks ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
    started = time.perf_counter()
    for row in rows:
        await conn.execute(statement, *row)
    return len(rows) / (time.perf_counter() - started)


async def partman_database(server: ScratchPostgres) -> str:
    """A database of the same server with our schema, its ticks partitioned by pg_partman."""
    admin = await asyncpg.connect(server.dsn)
    await admin.execute("DROP DATABASE IF EXISTS partman")
    await admin.execute("CREATE DATABASE partman")
    await admin.close()
    dsn = server.dsn.rsplit("/", 1)[0] + "/partman"
    await run_migrations(dsn, PostgresConfig())
    conn = await asyncpg.connect(dsn)
    start = datetime.datetime.fromtimestamp(T0 // 10**9, datetime.UTC)
    await conn.execute("CREATE SCHEMA partman; CREATE EXTENSION pg_partman SCHEMA partman")
    await conn.execute(
        "SELECT partman.create_parent('public.ticks', 'ts', 'native', 'hourly', "
        "p_premake := 6, p_start_partition := $1)",
        start.strftime("%Y-%m-%d %H:00:00+00"),
    )
    await conn.close()
    return dsn


async def writer_figures(
    server: ScratchPostgres, rows: list[Row], inserts: int
) -> dict[str, float]:
    await run_migrations(server.dsn, PostgresConfig())
    partman_dsn = await partman_database(server)
    conn = await asyncpg.connect(server.dsn, server_settings={"timezone": "UTC"})
    partman = await asyncpg.connect(partman_dsn)
    await init_connection(conn)
    text = as_text(rows)
    copy, bare, bare_batched, psql, by_partman = [], [], [], [], []
    with tempfile.TemporaryDirectory() as spill:
        for _ in range(3):
            await empty_ticks(conn)
            copy.append(await writer_pass(server.dsn, Path(spill), rows))
            await empty_ticks(conn)
            bare.append(await bare_copy_pass(conn, rows, len(rows)))
            await empty_ticks(conn)
            bare_batched.append(await bare_copy_pass(conn, rows, WRITER_BATCH_ROWS))
            await partman.execute("TRUNCATE ticks")  # its children stay: pg_partman made them
            by_partman.append(await writer_pass(partman_dsn, Path(spill), rows))
            await empty_ticks(conn)
            psql.append(await asyncio.to_thread(psql_pass, server, text, len(rows)))
    await empty_ticks(conn)
    insert = await insert_pass(conn, rows[:inserts])
    await conn.close()
    await partman.close()
    return {
        "writer.copy.rows_per_s": max(copy),
        "writer.bare_copy.rows_per_s": max(bare),
        "writer.vs_bare_copy": max(copy) / max(bare),
        "writer.bare_copy_batched.rows_per_s": max(bare_batched),
        "writer.vs_bare_copy_batched": max(copy) / max(bare_batched),
        "writer.copy_partman.rows_per_s": max(by_partman),
        "writer.psql_copy.rows_per_s": max(psql),
        "writer.insert.rows_per_s": insert,
        "writer.copy_vs_psql": max(copy) / max(psql),
        "writer.copy_vs_insert": max(copy) / insert,
        "writer.partman_vs_native": max(by_partman) / max(copy),
    }


def big_snapshot(count: int) -> StrategySnapshot:
    balances = [(f"venue{i % 10}", f"ASSET{i}", 1_000.0 + i) for i in range(count)]
    orders = [
        OrderIntent("s1", f"s1-bench-{i}", "binance", "BTC/USDT", "buy", 0.001, 60_000.0, "", i)
        for i in range(count)
    ]
    return StrategySnapshot(
        ts_ns=T0, session="bench", balances=balances,
        positions=[(v, a, x - 1_000.0) for v, a, x in balances],
        fees={"USDT": 12.5}, fills=count, open_orders=orders, pnl=1.0, state={"k": 1},
    )  # fmt: skip


async def snapshot_figure(server: ScratchRedis, passes: int) -> dict[str, float]:
    store = SnapshotStore(server.url, "bench", "bench")
    snapshot = {"s1": big_snapshot(10_000)}
    await store.save(snapshot)  # connection and first allocation out of the way
    times = []
    for _ in range(passes):
        started = time.perf_counter()
        if not await store.save(snapshot):
            raise RuntimeError(f"snapshot failed: {store.last_error}")
        times.append((time.perf_counter() - started) * 1000.0)
    await store.close()
    return {"redis.snapshot_10k.ms": statistics.median(times)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.persistence", description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    rows = tick_rows(200_000 if args.quick else 1_000_000)
    inserts = 5_000 if args.quick else 20_000
    load_before = load_average()
    with ScratchPostgres() as postgres, ScratchRedis() as redis:
        figures = asyncio.run(writer_figures(postgres, rows, inserts))
        figures |= asyncio.run(snapshot_figure(redis, 5 if args.quick else 20))
    for name, value in figures.items():
        print(f"{name:32} {value:>14,.3f}")
    print(f"load average {load_before:.1f} before, {load_average():.1f} after")
    write_results(figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
