"""``arbfleet db migrate|maintain|backups|restore|expire``.

``migrate`` and ``maintain`` read the engine config (``--config``, ``ARBFLEET_POSTGRES__*``) for
the DSN and the ``[postgres]`` settings; ``--dsn-file`` overrides where the DSN comes from (the
local stack's is printed by ``arbfleet dev env`` as ``ARBFLEET_POSTGRES_DSN_FILE``). The backup
commands work on the backup job's directory (``--backups``) and the stores' data directories, on
the stores' node (runtime/persistence/backup.py).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from runtime.core.errors import PersistenceError
from runtime.persistence.settings import PostgresConfig, describe_url

T = TypeVar("T")


def add_db(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("db", help="the PostgreSQL schema: migrations, partitions")
    commands = parser.add_subparsers(dest="db_command", required=True)
    for name, handler, text in (
        ("migrate", _migrate, "apply pending schema migrations (idempotent)"),
        ("maintain", _maintain, "create future partitions, drop expired ones"),
    ):
        command = commands.add_parser(name, help=text)
        command.add_argument("--config", type=Path, help="engine TOML config with [postgres]")
        command.add_argument("--dsn-file", type=Path, help="file holding the DSN")
        command.set_defaults(handler=handler)
    _add_backup_commands(commands)


def _add_backup_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from runtime.persistence.backup import RETENTION_DAYS

    listing = commands.add_parser("backups", help="the PostgreSQL backups and Redis snapshots")
    restore = commands.add_parser(
        "restore", help="restore PostgreSQL (to a point in time) and/or Redis from the backups"
    )
    expire = commands.add_parser("expire", help="delete backups older than the retention")
    exporter = commands.add_parser("backup-exporter", help="serve arbfleet_backup_* metrics")
    exporter.add_argument("--listen", default="127.0.0.1:9188", help="HOST:PORT of /metrics")
    for command in (listing, restore, expire, exporter):
        command.add_argument("--backups", type=Path, required=True, help="the backup directory")
    restore.add_argument("--pgdata", type=Path, help="PostgreSQL data directory to restore into")
    restore.add_argument("--redis-dir", type=Path, help="Redis data directory to restore into")
    restore.add_argument(
        "--time", type=_moment, help="restore to this moment (ISO 8601; UTC unless it says)"
    )
    restore.add_argument("--dry-run", action="store_true", help="say what would be restored")
    expire.add_argument("--days", type=int, default=RETENTION_DAYS, help="retention in days")
    listing.set_defaults(handler=_backups)
    restore.set_defaults(handler=_restore)
    expire.set_defaults(handler=_expire)
    exporter.set_defaults(handler=_backup_exporter)


def _moment(text: str) -> datetime.datetime:
    moment = datetime.datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=datetime.UTC)


def _settings(args: argparse.Namespace) -> tuple[str, PostgresConfig]:
    from runtime.config import load_config

    overrides = {"postgres": {"dsn_file": args.dsn_file}} if args.dsn_file else None
    settings = load_config(args.config, overrides=overrides).postgres
    return settings.resolve_dsn(), settings


def _run(dsn: str, work: Callable[[], Coroutine[Any, Any, T]]) -> T:
    try:
        return asyncio.run(work())
    except (OSError, TimeoutError) as exc:
        raise PersistenceError(f"cannot reach postgres at {describe_url(dsn)}: {exc}") from exc


def _migrate(args: argparse.Namespace) -> int:
    from runtime.persistence.admin import run_migrations

    dsn, settings = _settings(args)
    report = _run(dsn, lambda: run_migrations(dsn, settings))
    print(report)
    return 0


def _maintain(args: argparse.Namespace) -> int:
    from runtime.persistence.admin import run_maintenance

    dsn, settings = _settings(args)
    report = _run(dsn, lambda: run_maintenance(dsn, settings))
    print(report)
    return 0


def _backups(args: argparse.Namespace) -> int:
    from runtime.persistence import backup

    for found in backup.backup_sets(args.backups):
        print(f"postgres {found.label} {found.kind} stop={found.stop} bytes={found.size_bytes}")
    for snapshot in backup.redis_snapshots(args.backups):
        print(f"redis {snapshot.path.name} taken={snapshot.taken} bytes={snapshot.size_bytes}")
    return 0


def _restore(args: argparse.Namespace) -> int:
    from runtime.persistence import backup

    if args.pgdata is None and args.redis_dir is None:
        raise PersistenceError("nothing to restore: give --pgdata and/or --redis-dir")
    # Both plans first: a dry run says everything, and a restore fails before touching anything.
    pg = args.pgdata and backup.plan_postgres(args.backups, args.pgdata, args.time)
    rd = args.redis_dir and backup.plan_redis(args.backups, args.redis_dir, args.time)
    for plan in (pg, rd):
        if plan:
            print(("would " if args.dry_run else "") + str(plan))
    if args.dry_run:
        return 0
    if pg:
        backup.restore_postgres(pg)
    if rd:
        kept = backup.restore_redis(rd)
        if kept:
            print(f"redis: the AOF it replaced is in {kept}")
    print("restored: start the stores' jobs again")
    return 0


def _expire(args: argparse.Namespace) -> int:
    from runtime.persistence import backup

    backup.expire(args.backups, args.days)
    print(f"backups older than {args.days} days and their WAL expired")
    return 0


def _backup_exporter(args: argparse.Namespace) -> int:
    import signal
    import threading

    from prometheus_client import start_http_server

    from runtime.observability.metrics import backup_registry

    host, _, port = args.listen.rpartition(":")
    server, _thread = start_http_server(int(port), host, backup_registry(args.backups))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print(f"serving backup metrics of {args.backups} on http://{args.listen}/metrics", flush=True)
    stop.wait()
    server.shutdown()
    return 0
