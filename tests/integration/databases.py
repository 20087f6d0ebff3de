"""Databases of a test's own on a PostgreSQL server: create one, drop it, point a DSN at it."""

from __future__ import annotations

import asyncio
import secrets
from urllib.parse import urlsplit, urlunsplit

import asyncpg


def with_database(dsn: str, name: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


async def _admin(dsn: str, statement: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


def create_database(server_dsn: str, label: str) -> str:
    """A new, empty database on ``server_dsn``'s server; its DSN."""
    name = f"arbfleet_{label}_{secrets.token_hex(3)}"
    asyncio.run(_admin(server_dsn, f'CREATE DATABASE "{name}"'))
    return with_database(server_dsn, name)


def drop_database(server_dsn: str, dsn: str) -> None:
    name = urlsplit(dsn).path.lstrip("/")
    asyncio.run(_admin(server_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
