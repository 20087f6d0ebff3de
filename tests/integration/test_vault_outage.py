"""Vault sealed, then gone: the engine keeps its keys, says it is degraded, and recovers.

A Vault dev server of this test's own (the shared stack's must never be sealed or stopped).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import socket
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import hvac
import pytest

from runtime.devstack import toolchain
from runtime.devstack.simulator import ExchangeSimulator, SimulatorConfig
from runtime.ops.platform.cli import apply_layout
from runtime.ops.rotation import KeyManagementApi, Rotation, StaticEngines
from runtime.platform.vault import ExchangeKeys, VaultSession
from tests.integration.test_simulator_roundtrip import wait_for
from tests.integration.vault_kit import (
    ADMIN_TOKEN,
    deployment,
    live_engine,
    token_file,
    unique_layout,
)
from tests.stack_plugin import wait_for as wait_until

pytestmark = pytest.mark.stack


@dataclass
class OwnVault:
    process: subprocess.Popen[bytes]
    url: str
    client: hvac.Client
    unseal_key: str

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=20)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def own_vault(tmp_path: Path) -> Iterator[OwnVault]:
    port = free_port()
    root = secrets.token_urlsafe(16)
    log = tmp_path / "vault.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(toolchain.bin_dir() / "bao"), "server", "-dev",
             f"-dev-listen-address=127.0.0.1:{port}", "-dev-no-store-token"],
            stdout=out, stderr=subprocess.STDOUT,
            env={**os.environ, "BAO_DEV_ROOT_TOKEN_ID": root},
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    client = hvac.Client(url=url, token=root)
    try:
        wait_until(lambda: _initialized(client), 60, "own OpenBao dev server")
        unseal = wait_until(lambda: re.search(r"Unseal Key: (\S+)", log.read_text()), 10)
        yield OwnVault(process, url, client, unseal.group(1))
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=20)


def _initialized(client: hvac.Client) -> bool:
    try:
        return bool(client.sys.is_initialized() and not client.sys.is_sealed())
    except OSError:
        return False


@pytest.fixture
async def sim() -> AsyncIterator[ExchangeSimulator]:
    simulator = ExchangeSimulator(
        SimulatorConfig(tick_interval_ms=20, admin_token=ADMIN_TOKEN, credentials={})
    )
    await simulator.start()
    yield simulator
    await simulator.stop()


async def health(url: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        report = json.loads(await response.text())
        assert isinstance(report, dict)
        return report


async def test_a_sealed_then_unreachable_vault_never_stops_trading(
    own_vault: OwnVault, sim: ExchangeSimulator, tmp_path: Path
) -> None:
    layout = unique_layout({"xex": {"binance": "main", "upbit": "main"}})
    apply_layout(own_vault.client, layout)
    root = ExchangeKeys(VaultSession(own_vault.url, token=own_vault.client.token), layout.kv_mount)
    api = KeyManagementApi(sim.http_url, ADMIN_TOKEN)
    for venue in ("binance", "upbit"):
        await Rotation(root, api, StaticEngines(()), venue, "main").provision()
    policy = layout.deployment_policy_name(deployment(layout, "xex"))
    token = token_file(own_vault.client, [policy], tmp_path, "engine")
    accounts = {"binance": "main", "upbit": "main"}
    running = await live_engine(sim, own_vault.url, token, layout.kv_mount, accounts)
    keys = running.node.keys
    assert keys is not None
    try:
        before = keys.current["binance"]
        own_vault.client.sys.seal()
        await wait_for(lambda: keys.problem is not None, timeout_s=10)
        sealed = await health(running.health_url)
        assert keys.problem is not None and keys.problem.reason == "sealed"
        assert sealed["degraded"] == [f"exchange keys not refreshed: {keys.problem}"]
        assert not any("API key" in str(r) for r in sealed["reasons"])  # trading goes on
        assert keys.source("binance").credentials() == before.credentials
        own_vault.client.sys.submit_unseal_key(own_vault.unseal_key)
        await asyncio.to_thread(
            root.write, "binance", "main", before.credentials, cas=before.version
        )
        await wait_for(lambda: keys.current["binance"].version == 2, timeout_s=30)
        assert (await health(running.health_url))["degraded"] == []
        own_vault.stop()
        await wait_for(lambda: keys.problem is not None, timeout_s=10)
        assert keys.problem is not None and keys.problem.reason == "unreachable"
        # It retries with backoff and does not give up: each failed attempt leaves a new
        # problem behind. Two more attempts after the first failure are enough, because
        # KeyProvider.run has no way out but cancellation: what is checked is that it loops.
        for _ in range(2):
            seen = keys.problem
            await wait_for(lambda: keys.problem is not seen, timeout_s=10)  # noqa: B023
        assert not running.task.done()
        assert keys.source("binance").credentials() == before.credentials
        assert (await health(running.health_url))["exchange_keys"]["binance"]["version"] == 2
    finally:
        await running.close()
