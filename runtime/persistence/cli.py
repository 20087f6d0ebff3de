"""``arbfleet db migrate`` and ``arbfleet db maintain``.

Both read the engine config (``--config``, ``ARBFLEET_POSTGRES__*``) for the DSN and the
``[postgres]`` settings; ``--dsn-file`` overrides where the DSN comes from (the local stack's is
printed by ``arbfleet dev env`` as ``ARBFLEET_POSTGRES_DSN_FILE``).
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from runtime.errors import PersistenceError
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
