"""Exchange key rotation against real Vault, the exchange simulator and a live engine.

The engine signs with keys its key provider reads from Vault; rotation runs as the command the
periodic job runs (a subprocess) or in process where a step is made to fail.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import hvac
import pytest
import redis.asyncio as aioredis
from prometheus_client.parser import text_string_to_metric_families

from runtime.core.errors import RotationError
from runtime.core.logging import configure
from runtime.core.orders import OrderStatus
from runtime.core.venue import Credentials
from runtime.devstack.simulator import ExchangeSimulator, SimulatorConfig
from runtime.ops.platform.cli import apply_layout
from runtime.ops.rotation import (
    ConsulEngines,
    KeyManagementApi,
    OperatorKeys,
    Rotation,
    RotationSettings,
    StaticEngines,
    VenueKeyManager,
    venue_label,
)
from runtime.persistence.migrate import migrate
from runtime.platform.vault import ExchangeKeys, Layout, VaultSession
from runtime.trading.book import Books
from runtime.trading.execution.live import LiveExecutor
from runtime.trading.portfolio import Portfolio
from runtime.venues.registry import venue_clients
from tests.integration.test_simulator_roundtrip import Recorder, intent, wait_for
from tests.integration.vault_kit import (
    ADMIN_TOKEN,
    RunningEngine,
    deployment,
    get_text,
    live_engine,
    remove_layout,
    token_file,
    unique_layout,
    write_management,
)
from tests.stack_plugin import Consul

pytestmark = pytest.mark.stack
pytest_plugins = ["tests.integration.vault_fixtures"]
REPO = Path(__file__).parents[2]


@pytest.fixture
async def sim() -> AsyncIterator[ExchangeSimulator]:
    simulator = ExchangeSimulator(
        SimulatorConfig(tick_interval_ms=20, admin_token=ADMIN_TOKEN, credentials={})
    )
    await simulator.start()
    yield simulator
    await simulator.stop()


@pytest.fixture
def layout(vault: hvac.Client) -> Iterator[Layout]:
    layout = unique_layout({"xex": {"binance": "main", "upbit": "main"}})
    apply_layout(vault, layout)
    yield layout
    remove_layout(vault, layout)


def kv(vault: hvac.Client, layout: Layout, token: str | None = None) -> ExchangeKeys:
    return ExchangeKeys(VaultSession(vault.url, token=token or vault.token), layout.kv_mount)


def rotation(
    vault: hvac.Client,
    layout: Layout,
    tmp_path: Path,
    venue_keys: VenueKeyManager,
    engines: list[str],
    **settings: Any,
) -> Rotation:
    """A rotation of binance/main as the periodic job runs it: with the rotation policy only."""
    token = token_file(vault, [layout.rotation_policy_name], tmp_path, "rotation").read_text()
    return Rotation(
        kv(vault, layout, token), venue_keys, StaticEngines(tuple(engines)), "binance", "main",
        RotationSettings(confirm_timeout_s=settings.pop("confirm_timeout_s", 20.0), **settings),
    )  # fmt: skip


async def provision(vault: hvac.Client, layout: Layout, sim: ExchangeSimulator) -> None:
    api = KeyManagementApi(sim.http_url, ADMIN_TOKEN)
    for venue in ("binance", "upbit"):
        await Rotation(kv(vault, layout), api, StaticEngines(()), venue, "main").provision()


async def engine_on_vault(
    vault: hvac.Client, layout: Layout, sim: ExchangeSimulator, tmp_path: Path, **kwargs: Any
) -> RunningEngine:
    policy = layout.deployment_policy_name(deployment(layout, "xex"))
    token = token_file(vault, [policy], tmp_path, "engine")
    accounts = {"binance": "main", "upbit": "main"}
    return await live_engine(sim, vault.url, token, layout.kv_mount, accounts, **kwargs)


def active_keys(sim: ExchangeSimulator) -> set[str]:
    label = venue_label("binance", "main")
    return {k.api_key for k in sim.keys.keys.values() if k.label == label and not k.revoked_ms}


def key_of(vault: hvac.Client, layout: Layout, version: int) -> Credentials:
    return kv(vault, layout).read("binance", "main", version).credentials


class OrderLoad:
    """Binance orders at a steady rate, signed with the engine's key provider."""

    def __init__(self, sim: ExchangeSimulator, running: RunningEngine, rate_per_s: float) -> None:
        assert running.node.keys is not None
        source = running.node.keys.source("binance")
        self.recorder = Recorder()
        self.executor = LiveExecutor(
            venue_clients({"binance": (sim.http_url, source, 10 * rate_per_s)}),
            Books(), Portfolio(), self.recorder.fills.append, self.recorder.results.append,
        )  # fmt: skip
        self.ladder = sim.model.ladders[("binance", "BTC/USDT")]
        self.interval_s = 1 / rate_per_s
        self.sent = 0
        self.stop = asyncio.Event()
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while not self.stop.is_set():
            self.sent += 1
            self.executor.submit(
                intent("binance", "BTC/USDT", "buy", 0.001, self.ladder.ask * 1.02, self.sent)
            )
            await asyncio.sleep(self.interval_s)

    async def finish(self) -> list[OrderStatus]:
        self.stop.set()
        await self.task
        await wait_for(lambda: len(self.recorder.results) >= self.sent, timeout_s=15)
        await self.executor.close()
        return [result.status for result in self.recorder.results]


async def rotate_with_the_command(
    vault: hvac.Client, layout: Layout, tmp_path: Path, health_url: str
) -> tuple[int, str]:
    """``arbfleet secrets rotate binance main`` as the periodic job runs it: exit code, output."""
    token = token_file(vault, [layout.rotation_policy_name], tmp_path, "job").read_text()
    env = {**os.environ, "VAULT_ADDR": vault.url, "VAULT_TOKEN": token}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "runtime.cli.main", "secrets", "rotate", "binance", "main",
        "--mount", layout.kv_mount, "--engine", health_url, "--confirm-timeout", "30",
        cwd=REPO, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await process.communicate()
    return process.returncode or 0, output.decode()


async def scan_stores(redis_url: str, postgres_dsn: str, canaries: list[str]) -> list[str]:
    """Where in Redis and PostgreSQL (every key, every user table) a canary appears."""
    found = []
    client = aioredis.from_url(redis_url)
    try:
        async for key in client.scan_iter(count=1000):
            dump = await client.dump(key) or b""
            found += [f"redis {key!r}" for c in canaries if c.encode() in key + dump]
    finally:
        await client.aclose()
    connection = await asyncpg.connect(postgres_dsn)
    try:
        tables = await connection.fetch(
            "SELECT quote_ident(table_schema) || '.' || quote_ident(table_name) AS name "
            "FROM information_schema.tables WHERE table_type = 'BASE TABLE' "
            "AND table_schema NOT IN ('pg_catalog', 'information_schema')"
        )
        for table in tables:
            for canary in canaries:
                query = f"SELECT count(*) FROM {table['name']} t WHERE strpos(t::text, $1) > 0"
                if await connection.fetchval(query, canary):
                    found.append(f"postgres {table['name']}")
    finally:
        await connection.close()
    return found


async def test_rotation_under_steady_order_flow_fails_no_request(
    vault: hvac.Client,
    layout: Layout,
    sim: ExchangeSimulator,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    redis_url: str,
    vault_database: str,
) -> None:
    configure("INFO", json=True)  # stdout, as under Nomad
    await provision(vault, layout, sim)
    write_management(vault, layout, "binance", sim)
    old_key = key_of(vault, layout, 1)
    admin = await asyncpg.connect(vault_database)
    await migrate(admin, timescaledb="off")
    # Persistence on, so the canary scan below looks at rows and snapshots the engine wrote.
    stores = {
        "postgres": {"dsn": vault_database, "tick_sample_ms": 50},
        "redis": {"url": redis_url, "deployment": layout.prefix, "snapshot_interval_s": 0.2},
        "journal": {"dir": str(tmp_path / "journal"), "fsync": False},
    }
    running = await engine_on_vault(vault, layout, sim, tmp_path, extra=stores)
    try:
        load = OrderLoad(sim, running, rate_per_s=50)
        # Orders signed with the old key reach the venue before the rotation starts...
        await wait_for(lambda: sim.keys.keys[old_key.api_key].uses >= 10, timeout_s=15)
        code, output = await rotate_with_the_command(vault, layout, tmp_path, running.health_url)
        # ...and keep reaching it, signed with the new key, after the old one is revoked.
        new_api_key = key_of(vault, layout, 2).api_key
        after_rotation = sim.keys.keys[new_api_key].uses
        await wait_for(lambda: sim.keys.keys[new_api_key].uses >= after_rotation + 10, 15)
        statuses = await load.finish()
        health = json.loads(await get_text(running.health_url))
        metrics = await get_text(f"{running.node.health_url}/metrics")
    finally:
        await running.close()
        configure("WARNING")
    assert code == 0, output
    assert "binance/main: rotated: version 1 -> 2, old key revoked" in output
    new_key = key_of(vault, layout, 2)
    assert len(statuses) == load.sent > 50
    assert OrderStatus.REJECTED not in statuses
    assert sim.stats.auth_failures == 0
    assert sim.keys.keys[old_key.api_key].revoked_ms is not None
    assert sim.keys.keys[old_key.api_key].uses > 0 and sim.keys.keys[new_key.api_key].uses > 0
    assert active_keys(sim) == {new_key.api_key}
    assert health["exchange_keys"]["binance"]["account"] == "main"
    assert health["exchange_keys"]["binance"]["version"] == 2
    families = {f.name: f for f in text_string_to_metric_families(metrics)}
    versions = {
        s.labels["venue"]: s.value for s in families["arbfleet_exchange_key_version"].samples
    }
    assert versions == {"binance": 2.0, "upbit": 1.0}
    assert families["arbfleet_exchange_key_age_seconds"].samples[0].value >= 0
    assert [s.labels for s in families["arbfleet_vault_lease_ttl_seconds"].samples] == [
        {"secret": "auth/token"}
    ]
    steps = [
        json.loads(line)["record"]["extra"] for line in output.splitlines() if '"audit"' in line
    ]
    assert [s["step"] for s in steps] == ["read", "create", "write", "confirm", "revoke", "done"]
    out, err = capfd.readouterr()
    canaries = [old_key.secret, new_key.secret, ADMIN_TOKEN]
    texts = {"rotation output": output, "engine log": out + err, "health": json.dumps(health),
             "metrics": metrics}  # fmt: skip
    assert [where for where, text in texts.items() for c in canaries if c in text] == []
    assert await admin.fetchval("SELECT count(*) FROM ticks") > 0  # there was something to scan
    await admin.close()
    snapshots = aioredis.from_url(redis_url)
    assert [key async for key in snapshots.scan_iter(match=f"*{layout.prefix}*")]
    await snapshots.aclose()
    assert await scan_stores(redis_url, vault_database, canaries) == []


async def test_a_venue_that_refuses_a_new_key_leaves_everything_as_it_was(
    vault: hvac.Client, layout: Layout, sim: ExchangeSimulator, tmp_path: Path
) -> None:
    await provision(vault, layout, sim)
    sim.keys.max_keys_per_label = 1  # the account is at the venue's cap
    before = active_keys(sim)
    api = KeyManagementApi(sim.http_url, ADMIN_TOKEN)
    with pytest.raises(RotationError, match="Too many API keys") as failure:
        await rotation(vault, layout, tmp_path, api, []).rotate()
    assert failure.value.step == "create"
    metadata = kv(vault, layout).metadata("binance", "main")
    assert metadata.current_version == 1
    assert metadata.custom["rotation_failed_step"] == "create"
    assert active_keys(sim) == before
    sim.keys.max_keys_per_label = 2  # the cap raised: the same command now goes through
    report = await rotation(vault, layout, tmp_path, api, []).rotate()
    assert (report.old_version, report.new_version) == (1, 2)
    assert "rotation_failed_step" not in kv(vault, layout).metadata("binance", "main").custom


class Interloper:
    """The venue's API, and someone writing the entry while the rotation creates its key."""

    def __init__(self, api: KeyManagementApi, vault: hvac.Client, layout: Layout) -> None:
        self.api = api
        self.keys = kv(vault, layout)
        self.created: list[str] = []

    async def create(self, label: str, permissions: Any) -> Credentials:
        new = await self.api.create(label, permissions)
        self.created.append(new.api_key)
        current = self.keys.read("binance", "main")
        self.keys.write("binance", "main", current.credentials, cas=current.version)
        return new

    async def list(self, label: str) -> Any:
        return await self.api.list(label)

    async def revoke(self, api_key: str) -> bool:
        return await self.api.revoke(api_key)


async def test_a_check_and_set_conflict_rolls_the_new_key_back(
    vault: hvac.Client, layout: Layout, sim: ExchangeSimulator, tmp_path: Path
) -> None:
    await provision(vault, layout, sim)
    old = key_of(vault, layout, 1)
    interloper = Interloper(KeyManagementApi(sim.http_url, ADMIN_TOKEN), vault, layout)
    with pytest.raises(RotationError, match="check-and-set") as failure:
        await rotation(vault, layout, tmp_path, interloper, []).rotate()
    assert failure.value.step == "write"
    assert "new key" in str(failure.value) and "revoked at the venue" in str(failure.value)
    assert sim.keys.keys[interloper.created[0]].revoked_ms is not None
    assert kv(vault, layout).metadata("binance", "main").current_version == 2  # theirs only
    assert active_keys(sim) >= {old.api_key}
    api = KeyManagementApi(sim.http_url, ADMIN_TOKEN)
    report = await rotation(vault, layout, tmp_path, api, []).rotate()
    assert report.new_version == 3
    assert sim.keys.keys[old.api_key].revoked_ms is not None
    assert active_keys(sim) == {key_of(vault, layout, 3).api_key}


async def test_an_engine_that_never_confirms_keeps_both_keys_until_a_rerun_finishes(
    vault: hvac.Client, layout: Layout, sim: ExchangeSimulator, tmp_path: Path
) -> None:
    await provision(vault, layout, sim)
    old = key_of(vault, layout, 1)
    # An engine that polls once an hour and gets no SIGHUP: it will not see version 2 by itself.
    running = await engine_on_vault(vault, layout, sim, tmp_path, poll_interval_s=3600)
    api = KeyManagementApi(sim.http_url, ADMIN_TOKEN)
    try:
        with pytest.raises(RotationError, match="not on version 2") as failure:
            await rotation(
                vault, layout, tmp_path, api, [running.health_url], confirm_timeout_s=1.5
            ).rotate()
        assert failure.value.step == "confirm"
        assert running.health_url in str(failure.value)
        assert kv(vault, layout).metadata("binance", "main").custom["rotation_failed_step"] == (
            "confirm"
        )
        new = key_of(vault, layout, 2)
        assert active_keys(sim) >= {old.api_key, new.api_key}  # the engine still trades
        running.node.reload_keys()  # what SIGHUP does
        report = await rotation(vault, layout, tmp_path, api, [running.health_url]).rotate()
    finally:
        await running.close()
    assert report.resumed and (report.old_version, report.new_version) == (1, 2)
    assert sim.keys.keys[old.api_key].revoked_ms is not None
    assert new.api_key in active_keys(sim)


async def test_a_key_an_earlier_run_never_wrote_to_kv_is_revoked(
    vault: hvac.Client, layout: Layout, sim: ExchangeSimulator, tmp_path: Path
) -> None:
    await provision(vault, layout, sim)
    api = KeyManagementApi(sim.http_url, ADMIN_TOKEN)
    orphan = await api.create(venue_label("binance", "main"), ["trade"])  # died after create
    report = await rotation(vault, layout, tmp_path, api, [], orphan_grace_s=0).rotate()
    assert report.new_version == 2
    assert sim.keys.keys[orphan.api_key].revoked_ms is not None
    assert active_keys(sim) == {key_of(vault, layout, 2).api_key}
    assert key_of(vault, layout, 1).api_key not in active_keys(sim)


async def test_the_operator_step_for_a_venue_without_a_key_api(
    vault: hvac.Client, layout: Layout, sim: ExchangeSimulator, tmp_path: Path
) -> None:
    await provision(vault, layout, sim)
    old = key_of(vault, layout, 1)
    api = KeyManagementApi(sim.http_url, ADMIN_TOKEN)
    by_hand = await api.create("made at the website", ["trade"])  # the operator's new key
    report = await rotation(vault, layout, tmp_path, OperatorKeys(by_hand), []).rotate()
    assert report.new_version == 2
    assert "revoke the old key" in report.operator_action
    assert key_of(vault, layout, 2) == by_hand
    assert sim.keys.keys[old.api_key].revoked_ms is None  # left to the operator
    metadata = kv(vault, layout).metadata("binance", "main")
    assert metadata.custom["rotation_state"] == "awaiting_operator_revoke"
    again = await rotation(vault, layout, tmp_path, OperatorKeys(by_hand), []).rotate()
    assert "previous rotation waits" in again.operator_action
    assert kv(vault, layout).metadata("binance", "main").current_version == 2  # nothing new
    await api.revoke(old.api_key)  # the operator, at the website
    await rotation(vault, layout, tmp_path, api, []).operator_revoked()
    assert kv(vault, layout).metadata("binance", "main").custom["rotation_state"] == "idle"


async def test_sighup_makes_a_running_engine_use_a_new_version_at_once(
    vault: hvac.Client, layout: Layout, sim: ExchangeSimulator, tmp_path: Path
) -> None:
    """``arbfleet run`` as Nomad runs it: a template re-render sends SIGHUP."""
    await provision(vault, layout, sim)
    policy = layout.deployment_policy_name(deployment(layout, "xex"))
    token = token_file(vault, [policy], tmp_path, "engine")
    port = free_port()
    env = {
        **os.environ,
        "ARBFLEET_MODE": "live",
        "ARBFLEET_HEALTH__PORT": str(port),
        "ARBFLEET_VENUES__BINANCE__WS_URL": sim.binance_ws_url,
        "ARBFLEET_VENUES__BINANCE__REST_URL": sim.http_url,
        "ARBFLEET_VENUES__UPBIT__WS_URL": sim.upbit_ws_url,
        "ARBFLEET_VENUES__UPBIT__REST_URL": sim.upbit_rest_url,
        "ARBFLEET_VAULT__ADDRESS": vault.url,
        "ARBFLEET_VAULT__TOKEN_FILE": str(token),
        "ARBFLEET_VAULT__KV_MOUNT": layout.kv_mount,
        "ARBFLEET_VAULT__ACCOUNTS__BINANCE": "main",
        "ARBFLEET_VAULT__ACCOUNTS__UPBIT": "main",
        "ARBFLEET_VAULT__POLL_INTERVAL_S": "3600",  # only SIGHUP can make it look again
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "runtime.cli.main", "run", "--log-level", "WARNING",
        cwd=REPO, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/health"
    try:
        await until_version(url, 1)
        keys = kv(vault, layout)
        current = keys.read("binance", "main")
        keys.write("binance", "main", current.credentials, cas=current.version)
        process.send_signal(signal.SIGHUP)
        await until_version(url, 2)
        assert process.returncode is None  # SIGHUP reloads; it does not end the engine
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = await process.communicate()
    assert process.returncode == 0, stderr.decode()[-2000:]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def until_version(url: str, version: int) -> None:
    """Poll an engine's /health until it reports ``version`` for binance (30 s at most)."""
    deadline = asyncio.get_running_loop().time() + 30
    while True:
        try:
            report = json.loads(await get_text(url))
            if report["exchange_keys"]["binance"]["version"] == version:
                return
        except (aiohttp.ClientError, ValueError, KeyError):
            pass  # not listening yet
        assert asyncio.get_running_loop().time() < deadline, f"{url} never reported {version}"
        await asyncio.sleep(0.1)


async def test_engines_are_found_in_consul_and_an_unreachable_consul_changes_nothing(
    vault: hvac.Client,
    layout: Layout,
    sim: ExchangeSimulator,
    tmp_path: Path,
    consul: Consul,
) -> None:
    await provision(vault, layout, sim)
    running = await engine_on_vault(vault, layout, sim, tmp_path)
    service = f"arbfleet-engine-{layout.prefix}"  # the job registers `arbfleet-engine`
    port = int(running.node.health_url.rsplit(":", 1)[1])
    registration: dict[str, Any] = {
        "ID": service,
        "Name": service,
        "Address": "127.0.0.1",
        "Port": port,
    }
    consul.http.put(f"{consul.address}/v1/agent/service/register", json=registration, timeout=10)
    api = KeyManagementApi(sim.http_url, ADMIN_TOKEN)
    token = token_file(vault, [layout.rotation_policy_name], tmp_path, "rotation").read_text()
    keys = kv(vault, layout, token)
    settings = RotationSettings(confirm_timeout_s=20)
    try:
        found = await ConsulEngines(consul.address, service).health_urls()
        assert found == [running.health_url]
        report = await Rotation(
            keys, api, ConsulEngines(consul.address, service), "binance", "main", settings
        ).rotate()
        assert report.new_version == 2 and "confirm" in report.steps
        nowhere = ConsulEngines(f"http://127.0.0.1:{free_port()}", service)
        with pytest.raises(RotationError, match="nothing was changed") as failure:
            await Rotation(keys, api, nowhere, "binance", "main", settings).rotate()
        assert failure.value.step == "read"
        assert kv(vault, layout).metadata("binance", "main").current_version == 2
    finally:
        consul.http.put(f"{consul.address}/v1/agent/service/deregister/{service}", timeout=10)
        await running.close()
    assert active_keys(sim) == {key_of(vault, layout, 2).api_key}
