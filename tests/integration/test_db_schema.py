"""Migrations, storage choice, partition maintenance, retention and the shipped views, on real
PostgreSQL (the shared server, one fresh database per test that changes the schema)."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from runtime.cli.main import main
from runtime.core.errors import MigrationError
from runtime.core.orders import Fill, OrderIntent, OrderResult, OrderStatus
from runtime.persistence.admin import run_maintenance, run_migrations, session
from runtime.persistence.migrate import MIGRATIONS, migrate
from runtime.persistence.schema import partition_name, partitions
from runtime.persistence.settings import PostgresConfig
from runtime.persistence.tables import fill_row, order_row
from runtime.persistence.writer import BatchWriter, init_connection
from tests.integration.databases import create_database, drop_database

pytest_plugins = ["tests.integration.persistence_fixtures"]

HOUR_NS = 3_600 * 10**9
NOW = 1_893_456_000 * 10**9  # 2030-01-01 00:00 UTC: far from any other test's rows
SETTINGS = PostgresConfig()
STEPS = ["0001_records", "0002_timeseries", "0003_views"]


@pytest.fixture
def empty_database(postgres_dsn: str) -> Iterator[str]:
    dsn = create_database(postgres_dsn, "empty")
    yield dsn
    drop_database(postgres_dsn, dsn)


@pytest.fixture
async def conn(empty_database: str) -> AsyncIterator[Any]:
    async with session(empty_database, SETTINGS, "test") as connection:
        await init_connection(connection)  # timestamps as integer nanoseconds, as the writer
        yield connection


async def test_migrations_apply_from_empty_and_a_rerun_changes_nothing(
    empty_database: str,
) -> None:
    first = await run_migrations(empty_database, SETTINGS)
    assert (first.applied, first.version, first.storage) == (STEPS, 3, "native")
    again = await run_migrations(empty_database, SETTINGS)
    assert (again.applied, again.version) == ([], 3)
    conn = await asyncpg.connect(empty_database)
    try:
        rows = await conn.fetch("SELECT version, name, storage FROM arbfleet_schema_version")
        assert sorted(tuple(r) for r in rows) == [
            (1, "records", "native"),
            (2, "timeseries", "native"),
            (3, "views", "native"),
        ]
        partitioned = await conn.fetch(
            "SELECT c.relname FROM pg_partitioned_table p JOIN pg_class c ON c.oid = p.partrelid"
        )
        assert {r["relname"] for r in partitioned} == {
            "ticks", "opportunities", "position_snapshots", "pnl_snapshots", "system_events",
        }  # fmt: skip
        views = await conn.fetch("SELECT viewname FROM pg_views WHERE schemaname = 'public'")
        assert {r["viewname"] for r in views} == {
            "strategy_pnl_hourly", "opportunity_capture_hourly", "feed_latency_hourly",
        }  # fmt: skip
        assert (
            await conn.fetchval(
                "SELECT count(*) FROM pg_extension WHERE extname = $1", "timescaledb"
            )
            == 0
        )
    finally:
        await conn.close()


def test_the_command_migrates_and_says_what_it_did(
    empty_database: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dsn_file = tmp_path / "postgres.dsn"
    dsn_file.write_text(empty_database)
    assert main(["db", "migrate", "--dsn-file", str(dsn_file)]) == 0
    assert "applied 0001_records, 0002_timeseries, 0003_views" in capsys.readouterr().out
    assert main(["db", "migrate", "--dsn-file", str(dsn_file)]) == 0
    assert "schema up to date at version 3 (native storage)" in capsys.readouterr().out
    assert main(["db", "maintain", "--dsn-file", str(dsn_file)]) == 0
    assert "partitions created" in capsys.readouterr().out


def test_the_command_names_an_unreachable_server_without_its_password(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dsn_file = tmp_path / "postgres.dsn"
    dsn_file.write_text("postgresql://writer:canary-pw-7731@127.0.0.1:9/arbfleet")
    with pytest.raises(SystemExit) as excinfo:
        main(["db", "migrate", "--dsn-file", str(dsn_file)])
    assert excinfo.value.code == 2
    err = capsys.readouterr().err
    assert "cannot reach postgres at 127.0.0.1:9/arbfleet" in err
    assert "canary-pw-7731" not in err


def broken_steps(tmp_path: Path, sql: str) -> Path:
    directory = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS, directory, ignore=shutil.ignore_patterns("__*"))
    (directory / "0004_extra.sql").write_text(sql)
    return directory


async def test_a_failing_step_is_rolled_back_whole_and_named(conn: Any, tmp_path: Path) -> None:
    directory = broken_steps(tmp_path, "CREATE TABLE extra (x int);\nSELECT no_such_function();\n")
    with pytest.raises(MigrationError, match="0004_extra failed and was rolled back") as excinfo:
        await migrate(conn, directory=directory)
    assert excinfo.value.step == "0004_extra"
    assert await conn.fetchval("SELECT max(version) FROM arbfleet_schema_version") == 3
    assert await conn.fetchval("SELECT to_regclass('extra')") is None  # its first statement too
    (directory / "0004_extra.sql").write_text("CREATE TABLE extra (x int);\n")
    report = await migrate(conn, directory=directory)
    assert report.applied == ["0004_extra"]


async def test_an_applied_step_that_was_edited_is_refused(conn: Any, tmp_path: Path) -> None:
    directory = broken_steps(tmp_path, "SELECT 1;\n")
    await migrate(conn, directory=directory)
    (directory / "0003_views.sql").write_text("-- edited\n")
    with pytest.raises(MigrationError, match="0003_views was changed after it was applied"):
        await migrate(conn, directory=directory)


async def test_requiring_timescaledb_where_there_is_none_fails_clearly(conn: Any) -> None:
    with pytest.raises(MigrationError, match="not available on this server") as excinfo:
        await migrate(conn, timescaledb="require")
    assert excinfo.value.step == "storage"
    assert await conn.fetchval("SELECT count(*) FROM arbfleet_schema_version") == 0


async def test_maintenance_creates_partitions_ahead_and_is_idempotent(conn: Any) -> None:
    await migrate(conn)
    from runtime.persistence.schema import maintain

    report = await maintain(conn, SETTINGS.retention_hours, 6.0, NOW + 30 * 60 * 10**9)
    tick_parts = [p for p in report.created if p.startswith("ticks_")]
    assert tick_parts == [partition_name("ticks", NOW + h * HOUR_NS) for h in range(7)]
    assert "system_events_p20300101_0000" in report.created
    found = await partitions(conn, "ticks")
    assert [(p.start_ns, p.end_ns) for p in found] == [
        (NOW + h * HOUR_NS, NOW + (h + 1) * HOUR_NS) for h in range(7)
    ]
    again = await maintain(conn, SETTINGS.retention_hours, 6.0, NOW + 30 * 60 * 10**9)
    assert (again.created, again.dropped) == ([], [])


async def test_retention_drops_old_rows_and_keeps_recent_ones(
    empty_database: str, tmp_path: Path
) -> None:
    await run_migrations(empty_database, SETTINGS)
    writer = BatchWriter(empty_database, tmp_path / "spill", flush_interval_s=0.05)
    await writer.start()
    for hours_ago in (72, 50, 47, 1):
        ts = NOW - hours_ago * HOUR_NS
        writer.put("ticks", (ts, "binance", "BTC/USDT", 1.0, 1.0, 2.0, 1.0, hours_ago, None))
        writer.put("system_events", (ts, "test", f"event-{hours_ago}", ""))
    assert await writer.drain(30.0)
    await writer.close()
    report = await run_maintenance(empty_database, SETTINGS, now_ns=NOW)
    assert sorted(report.dropped) == [
        partition_name("ticks", NOW - 72 * HOUR_NS),
        partition_name("ticks", NOW - 50 * HOUR_NS),
    ]
    async with session(empty_database, SETTINGS, "test") as conn:
        kept = await conn.fetch("SELECT seq FROM ticks ORDER BY seq")
        assert [r["seq"] for r in kept] == [1, 47]
        events = await conn.fetchval("SELECT count(*) FROM system_events")
        assert events == 4  # kept 30 days


async def test_views_answer_from_known_rows(empty_database: str, tmp_path: Path) -> None:
    await run_migrations(empty_database, SETTINGS)
    writer = BatchWriter(empty_database, tmp_path / "spill", flush_interval_s=0.05)
    await writer.start()
    minute = 60 * 10**9
    for at, pnl in ((15, 5.0), (50, 7.0), (90, 4.0)):
        writer.put("pnl_snapshots", (NOW + at * minute, "s1", pnl))
    opportunity = NOW + 20 * minute
    writer.put("opportunities", (opportunity, "s1", "premium", 40.0, 1.5, ""))
    writer.put("opportunities", (NOW + 25 * minute, "s1", "premium", 35.0, 1.0, ""))
    order = OrderIntent("s1", "s1-a-1", "binance", "BTC/USDT", "buy", 0.1, None, "", opportunity)
    result = OrderResult(order, OrderStatus.FILLED, 0.1, 100.0, venue_order_id="7")
    writer.put("orders", order_row(result, opportunity, opportunity))
    fill = Fill("s1", "s1-a-1", "binance", "BTC/USDT", "buy", 0.1, 100.0, 0.01, "USDT", opportunity)
    writer.put("fills", fill_row(fill, 1))
    for delay_ms in (10, 20, 30):
        ts = NOW + delay_ms * 10**6
        writer.put("ticks", (ts, "upbit", "BTC/KRW", 1.0, 1.0, 2.0, 1.0, delay_ms, NOW))
    assert await writer.drain(30.0)
    await writer.close()
    async with session(empty_database, SETTINGS, "test") as conn:
        pnl = await conn.fetch(
            "SELECT pnl_close, pnl_change, fills FROM strategy_pnl_hourly ORDER BY hour"
        )
        assert [tuple(r) for r in pnl] == [(7.0, None, 1), (4.0, -3.0, 0)]
        capture = await conn.fetchrow(
            "SELECT opportunities, captured, capture_rate FROM opportunity_capture_hourly"
        )
        assert tuple(capture) == (2, 1, 0.5)
        latency = await conn.fetchrow(
            "SELECT samples, p50_ms, max_ms FROM feed_latency_percentiles($1, $2)",
            *(await conn.fetch("SELECT to_timestamp($1::float8), to_timestamp($2::float8)",
                               NOW / 1e9 - 1, NOW / 1e9 + 1))[0],
        )  # fmt: skip
        assert tuple(latency) == (3, pytest.approx(20.0), pytest.approx(30.0))
