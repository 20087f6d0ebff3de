"""Helpers for the tests against real Vault: unique layouts, tokens, a live engine on Vault keys."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import hvac
import hvac.exceptions

from runtime.config import load_config
from runtime.devstack.demo import demo_config
from runtime.devstack.simulator import ExchangeSimulator
from runtime.node import Node
from runtime.platform.vault import Layout

ADMIN_TOKEN = "sim-admin-canary-7c2f90"


def unique_layout(deployments: dict[str, dict[str, str]], **overrides: Any) -> Layout:
    """The repository's layout under a mount, names and database role of its own."""
    tag = secrets.token_hex(4)
    return Layout.load(
        kv_mount=f"exchanges-{tag}",
        prefix=f"t{tag}",
        db_mount=f"database-{tag}",
        db_connection=f"pg-{tag}",
        db_role=f"engine-{tag}",
        deployments={f"{name}-{tag}": accounts for name, accounts in deployments.items()},
        **overrides,
    )


def deployment(layout: Layout, name: str) -> str:
    """The full deployment name of ``name`` in a unique layout."""
    return next(d for d in layout.deployments if d.startswith(f"{name}-"))


def remove_layout(vault: hvac.Client, layout: Layout) -> None:
    with contextlib.suppress(hvac.exceptions.VaultError):
        vault.sys.disable_secrets_engine(layout.kv_mount)
    policies = [layout.rotation_policy_name]
    policies += [layout.deployment_policy_name(d) for d in layout.deployments]
    for policy in policies:
        vault.sys.delete_policy(policy)
    for name in [*layout.deployments, layout.rotation_job]:
        with contextlib.suppress(hvac.exceptions.VaultError):
            vault.auth.jwt.delete_role(layout.jwt_role_name(name), path=layout.jwt_auth_mount)


def token_file(vault: hvac.Client, policies: list[str], directory: Path, name: str) -> Path:
    """A token with exactly ``policies`` (and default), written to a 0600 file."""
    token = vault.auth.token.create(policies=policies, ttl="1h")["auth"]["client_token"]
    path = directory / f"{name}.token"
    path.touch(mode=0o600)
    path.write_text(token)
    return path


def write_management(
    vault: hvac.Client, layout: Layout, venue: str, sim: ExchangeSimulator
) -> None:
    """The venue's key management API, where the rotation command looks for it."""
    vault.secrets.kv.v2.create_or_update_secret(
        f"{venue}/_management",
        secret={"api_url": sim.http_url, "token": ADMIN_TOKEN},
        cas=0,
        mount_point=layout.kv_mount,
    )


class RunningEngine:
    """A live-mode engine on the simulator whose keys come from Vault, until ``close()``."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.engine = node.engine
        self.stop = asyncio.Event()
        self.task = asyncio.create_task(node.run(self.stop))

    @property
    def health_url(self) -> str:
        return f"{self.node.health_url}/health"

    async def close(self) -> None:
        self.stop.set()
        await self.task


async def live_engine(
    sim: ExchangeSimulator,
    vault_url: str,
    token: Path,
    mount: str,
    accounts: dict[str, str],
    *,
    poll_interval_s: float = 0.5,
    extra: dict[str, Any] | None = None,
) -> RunningEngine:
    base = demo_config(sim).model_dump() | (extra or {})
    base["mode"] = "live"
    base["vault"] = {
        "address": vault_url,
        "token_file": str(token),
        "kv_mount": mount,
        "accounts": accounts,
        "poll_interval_s": poll_interval_s,
    }
    running = RunningEngine(Node(load_config(env={}, overrides=base)))
    await running.node.ready.wait()
    return running


async def get_text(url: str) -> str:
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        return await response.text()


def in_database(dsn: str, database: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit((parts.scheme, parts.netloc, f"/{database}", parts.query, parts.fragment))
