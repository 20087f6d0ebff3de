"""Backup and restore of 1,000,000 ticks with pgBackRest, the way the backup job and
``arbfleet db restore`` do them.

Usage: ``python -m bench.backup [--quick]`` (200,000 ticks). A throwaway PostgreSQL of its own
(``runtime.devstack.scratch``) archives its WAL into a pgBackRest repository in a temporary
directory, with the options the jobs use (``runtime.persistence.backup.pgbackrest_env``, in the
server's environment as in the Nomad job). The ticks go in through the engine's writer.

- ``backup.full_1m_ticks.s``: ``pgbackrest backup --type=full`` (immediate checkpoint, as the job
  runs it), wall clock, the database holding the ticks.
- ``backup.size_1m_ticks.bytes``: what that backup takes in the repository (compressed).
- ``backup.restore_1m_ticks.s``: the data directory destroyed, then ``restore_postgres`` (the
  code behind ``arbfleet db restore``) and the server started until it accepts connections
  (recovery from the archive included), wall clock; every tick is counted afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import asyncpg

from bench.persistence import T0, tick_rows, writer_pass
from bench.results import load_average, write_results
from runtime.devstack.scratch import ScratchPostgres
from runtime.persistence import backup
from runtime.persistence.admin import run_migrations
from runtime.persistence.schema import TimeseriesTable, ensure_partitions
from runtime.persistence.settings import PostgresConfig

ARCHIVING = {"archive_mode": "on", "archive_command": "pgbackrest archive-push %p"}


async def fill(server: ScratchPostgres, count: int, spill: Path) -> None:
    await run_migrations(server.dsn, PostgresConfig())
    conn = await asyncpg.connect(server.dsn)
    await ensure_partitions(conn, TimeseriesTable("ticks", 3_600, "native"), [T0])
    await conn.close()
    await writer_pass(server.dsn, spill, tick_rows(count))


async def count_ticks(server: ScratchPostgres) -> int:
    conn = await asyncpg.connect(server.dsn)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM ticks"))
    finally:
        await conn.close()


def measure(count: int, work: Path) -> dict[str, float]:
    backups = work / "backups"
    (backups / backup.REPO_DIR).mkdir(parents=True)
    shutil.chown(backups / backup.REPO_DIR, "postgres", "postgres")
    server = ScratchPostgres(settings=ARCHIVING)
    env = backup.pgbackrest_env(backups, server.data)
    # The server's archive_command and restore_command read the options from its environment,
    # as in the Nomad job; pgBackRest connects through the server's socket with the password.
    connect = {
        "PGBACKREST_PG1_PORT": str(server.port),
        "PGBACKREST_PG1_SOCKET_PATH": str(server.root),
        "PGPASSWORD": server.password,
    }
    os.environ.update(env | connect)
    try:
        server.start()
        backup.pgbackrest(["stanza-create"], backup.pgbackrest_env(backups), user="postgres")
        asyncio.run(fill(server, count, work / "spill"))
        started = time.perf_counter()
        backup.pgbackrest(
            ["backup", "--type=full", "--start-fast"],
            backup.pgbackrest_env(backups, server.data),
            user="postgres",
        )
        backup_s = time.perf_counter() - started
        (made,) = backup.backup_sets(backups)
        server.stop("immediate")
        shutil.rmtree(server.data)
        started = time.perf_counter()
        backup.restore_postgres(backup.plan_postgres(backups, server.data))
        server.start()
        restore_s = time.perf_counter() - started
        restored = asyncio.run(count_ticks(server))
    finally:
        server.destroy()
    if restored != count:
        raise RuntimeError(f"restored {restored} of {count} ticks")
    return {
        "backup.full_1m_ticks.s": backup_s,
        "backup.size_1m_ticks.bytes": made.size_bytes,
        "backup.restore_1m_ticks.s": restore_s,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.backup", description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    load_before = load_average()
    with tempfile.TemporaryDirectory() as work:
        Path(work).chmod(0o711)
        figures = measure(200_000 if args.quick else 1_000_000, Path(work))
    for name, value in figures.items():
        print(f"{name:32} {value:>14,.3f}")
    print(f"load average {load_before:.1f} before, {load_average():.1f} after")
    if not args.quick:  # the figures are named for a million ticks
        write_results(figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
