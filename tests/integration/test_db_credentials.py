"""Dynamic PostgreSQL credentials from real Vault, rotated under the writer's steady load."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import hvac
import pytest

from runtime.config import load_config
from runtime.core.logging import configure
from runtime.devstack.demo import demo_config
from runtime.devstack.simulator import ExchangeSimulator, SimulatorConfig
from runtime.node import Node
from runtime.ops.platform.cli import apply_layout
from runtime.persistence.migrate import migrate
from runtime.persistence.tables import event_row
from runtime.persistence.writer import BatchWriter
from runtime.platform.dbcreds import DatabaseCredentials, apply_database, bootstrap_roles
from runtime.platform.vault import Layout, VaultSession
from tests.integration.test_simulator_roundtrip import wait_for
from tests.integration.vault_kit import (
    deployment,
    get_text,
    remove_layout,
    token_file,
    unique_layout,
)

pytestmark = pytest.mark.stack
pytest_plugins = ["tests.integration.vault_fixtures"]


@pytest.fixture
def layout(vault: hvac.Client, vault_database: str) -> Iterator[Layout]:
    # Short leases, so a few seconds of load see renewals and replacements. Depends on
    # `vault_database` so that disabling the mount (which revokes the leases) precedes dropping it.
    layout = unique_layout({"writer": {}}, db_default_ttl="2s", db_max_ttl="5s")
    apply_layout(vault, layout)
    yield layout
    remove_layout(vault, layout)
    vault.sys.disable_secrets_engine(layout.db_mount)


async def test_credentials_rotate_under_write_load_and_no_row_is_lost(
    vault: hvac.Client,
    layout: Layout,
    vault_database: str,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    configure("INFO", json=True)
    password = await bootstrap_roles(vault_database)
    apply_database(vault, layout, vault_database, password)
    admin = await asyncpg.connect(vault_database)
    await migrate(admin, timescaledb="off", owner_role="arbfleet_writer")
    # The engine's own token: its deployment policy allows its database role and nothing else.
    policy = layout.deployment_policy_name(deployment(layout, "writer"))
    token = token_file(vault, [policy], tmp_path, "engine")
    users: list[str] = []
    passwords: list[str] = []
    writer: BatchWriter | None = None

    async def use(dsn: str) -> None:
        nonlocal writer
        users.append(str(urlsplit(dsn).username))
        passwords.append(str(urlsplit(dsn).password))
        if writer is None:
            writer = BatchWriter(dsn, tmp_path / "spill", flush_interval_s=0.05)
            await writer.start()
        else:
            await writer.replace_pool(dsn)

    credentials = DatabaseCredentials(
        VaultSession(vault.url, token_file=token), layout.db_mount, layout.db_role,
        vault_database, use,
    )  # fmt: skip
    keeper = asyncio.create_task(credentials.run())
    put = 0
    try:
        await wait_for(lambda: writer is not None, timeout_s=30)
        assert writer is not None
        base_ns = time.time_ns()
        give_up = time.monotonic() + 60  # a guard against hanging, not a speed requirement
        while credentials.replacements < 3:  # the first user and two replacements
            assert time.monotonic() < give_up, f"{credentials.replacements} users in 60 s"
            for _ in range(20):
                put += 1
                writer.put("system_events", event_row(base_ns + put * 1000, "load", "row", ""))
            await asyncio.sleep(0.02)
        assert await writer.drain(30)
        ttls = credentials.lease_ttls()
    finally:
        keeper.cancel()
        if writer is not None:
            await writer.close()
    written = await admin.fetchval("SELECT count(*) FROM system_events WHERE source = 'load'")
    remaining = await admin.fetch(
        "SELECT rolname FROM pg_roles WHERE rolname = ANY($1::text[])", users
    )
    await admin.close()
    assert written == put > 0
    assert writer.stats.rejected.total() == 0
    assert len(set(users)) == len(users) >= 3  # a new user each time, never a shared password
    assert [row["rolname"] for row in remaining] == [users[-1]]  # Vault dropped the old ones
    assert list(ttls) == [f"{layout.db_mount}/creds/{layout.db_role}"]
    configure("WARNING")
    out, err = capfd.readouterr()
    assert [p for p in passwords if p in out + err] == []


async def test_the_engine_writes_as_vault_users_and_reports_the_lease(
    vault: hvac.Client, layout: Layout, vault_database: str, tmp_path: Path
) -> None:
    """The engine wiring: ``vault.database_mount`` hands each new user to the engine's writer."""
    password = await bootstrap_roles(vault_database)
    apply_database(vault, layout, vault_database, password)
    admin = await asyncpg.connect(vault_database)
    await migrate(admin, timescaledb="off", owner_role="arbfleet_writer")
    policy = layout.deployment_policy_name(deployment(layout, "writer"))
    token = token_file(vault, [policy], tmp_path, "engine")
    sim = ExchangeSimulator(SimulatorConfig(tick_interval_ms=20))
    await sim.start()
    base = demo_config(sim).model_dump()
    parts = urlsplit(vault_database)  # host, port and database only: the user comes from Vault
    base["postgres"] = {
        "dsn": f"postgresql://{parts.hostname}:{parts.port}{parts.path}",
        "spill_dir": str(tmp_path / "spill"),
        "tick_sample_ms": 20,
        "maintenance_interval_s": None,
    }
    base["vault"] = {
        "address": vault.url,
        "token_file": str(token),
        "database_mount": layout.db_mount,
        "database_role": layout.db_role,
    }
    node = Node(load_config(env={}, overrides=base))
    stop = asyncio.Event()
    task = asyncio.create_task(node.run(stop))
    try:
        await node.ready.wait()
        credentials = node.db_credentials
        assert credentials is not None
        await wait_for(lambda: credentials.replacements >= 3, timeout_s=60)
        health = json.loads(await get_text(f"{node.health_url}/health"))
        metrics = await get_text(f"{node.health_url}/metrics")
    finally:
        stop.set()
        await task
        await sim.stop()
    writer = node.persistence.writer
    assert writer is not None
    ticks = await admin.fetchval("SELECT count(*) FROM ticks")
    await admin.close()
    assert ticks == writer.stats.rows["ticks"] > 0
    assert writer.stats.rejected.total() == 0 and writer.stats.spilled_rows == 0
    assert not any("database" in reason for reason in health["degraded"])
    assert f'secret="{layout.db_mount}/creds/{layout.db_role}"' in metrics
