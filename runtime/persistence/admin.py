"""Short-lived database sessions for migrations and partition maintenance.

Used by ``arbfleet db migrate|maintain`` and by the engine (``migrate_on_start``, the periodic
maintenance task). Sessions run in UTC, so partition bounds print and parse the same everywhere.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from runtime.core.logging import register_secret
from runtime.persistence.migrate import MigrationReport, migrate
from runtime.persistence.schema import MaintenanceReport, maintain
from runtime.persistence.settings import PostgresConfig


@asynccontextmanager
async def session(dsn: str, config: PostgresConfig, purpose: str) -> AsyncIterator[Any]:
    register_secret(dsn)
    conn = await asyncpg.connect(
        dsn,
        timeout=config.connect_timeout_s,
        server_settings={"application_name": f"arbfleet-{purpose}", "timezone": "UTC"},
    )
    try:
        yield conn
    finally:
        await conn.close()


async def run_migrations(dsn: str, config: PostgresConfig) -> MigrationReport:
    async with session(dsn, config, "migrate") as conn:
        return await migrate(conn, timescaledb=config.timescaledb, owner_role=config.owner_role)


async def run_maintenance(
    dsn: str, config: PostgresConfig, now_ns: int | None = None
) -> MaintenanceReport:
    async with session(dsn, config, "maintain") as conn:
        if config.owner_role is not None:
            await conn.execute(f'SET ROLE "{config.owner_role}"')
        return await maintain(
            conn,
            config.retention_hours,
            config.partitions_ahead_hours,
            time.time_ns() if now_ns is None else now_ns,
        )
