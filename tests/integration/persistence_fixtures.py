"""Fixtures for persistence tests on real PostgreSQL and Redis.

- ``database``: a database of this test module's own on the shared server (``CREATE DATABASE``),
  dropped afterwards, so modules never see each other's rows; ``migrated`` is it migrated.
- ``redis_prefix``: a deployment name of this test's own on the shared Redis; its keys are
  deleted afterwards.
- ``scratch_postgres`` / ``scratch_redis``: servers of the test's own, on other ports, for tests
  that stop and start them (outages) without disturbing anyone on the shared stack.

Import them into a test module with ``pytest_plugins = ["tests.integration.persistence_fixtures"]``.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator

import pytest
import redis

from runtime.devstack.scratch import ScratchPostgres, ScratchRedis
from runtime.persistence.admin import run_migrations
from runtime.persistence.settings import PostgresConfig
from tests.integration.databases import create_database, drop_database


@pytest.fixture(scope="module")
def database(postgres_dsn: str, request: pytest.FixtureRequest) -> Iterator[str]:
    label = request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_")[:20]
    dsn = create_database(postgres_dsn, label)
    yield dsn
    drop_database(postgres_dsn, dsn)


@pytest.fixture(scope="module")
def migrated(database: str) -> str:
    asyncio.run(run_migrations(database, PostgresConfig()))
    return database


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[tuple[str, str]]:
    """(environment, deployment) unique to this test on the shared Redis."""
    deployment = f"test-{secrets.token_hex(4)}"
    yield "test", deployment
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(f"arbfleet:test:{deployment}:*"))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def scratch_postgres() -> Iterator[ScratchPostgres]:
    with ScratchPostgres() as server:
        yield server


@pytest.fixture
def scratch_redis() -> Iterator[ScratchRedis]:
    with ScratchRedis() as server:
        yield server
