"""Fixtures for the tests against real Vault (``pytest_plugins`` of the test module).

- ``vault_database``: the admin DSN of an empty database of the test's own on the shared
  PostgreSQL, dropped afterwards.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import asyncpg
import pytest

from tests.integration.vault_kit import in_database


@pytest.fixture
async def vault_database(postgres_dsn: str) -> AsyncIterator[str]:
    """The admin DSN of an empty database of the test's own, dropped afterwards."""
    name = f"arbfleet_vt_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(postgres_dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield in_database(postgres_dsn, name)
    finally:
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()
