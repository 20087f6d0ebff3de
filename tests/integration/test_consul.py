"""The engine and a real Consul (the local stack's): the "can trade" TTL check, the account lock
held by one engine at a time, and the cluster-wide kill switch with ``arbfleet halt/resume``.

Each test has a service name and KV prefix of its own, so tests never see each other's engines.
Engines run in this process against the exchange simulator, as in test_simulator_roundtrip.py.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import secrets
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest

from runtime.config import load_config
from runtime.devstack.demo import demo_config
from runtime.devstack.simulator import ExchangeSimulator, MarketParams, SimulatorConfig
from runtime.engine.engine import Engine
from runtime.node import Node
from tests.integration.polling import until
from tests.stack_plugin import Consul

pytestmark = pytest.mark.stack

LIVELY = SimulatorConfig(tick_interval_ms=10, market=MarketParams(dislocations_per_s=5.0))


@dataclass(frozen=True)
class Names:
    service: str
    prefix: str


@pytest.fixture
async def simulator() -> AsyncIterator[ExchangeSimulator]:
    sim = ExchangeSimulator(LIVELY)
    await sim.start()
    yield sim
    await sim.stop()


@pytest.fixture
def names(consul: Consul) -> Iterator[Names]:
    tag = secrets.token_hex(4)
    unique = Names(service=f"arbfleet-test-{tag}", prefix=f"arbfleet-test/{tag}")
    yield unique
    consul.http.delete(f"{consul.address}/v1/kv/{unique.prefix}", params={"recurse": "true"})


def settings(consul: Consul, names: Names, **extra: Any) -> dict[str, Any]:
    return {
        "enabled": True,
        "address": consul.address,
        "service": names.service,
        "check_ttl_s": 3.0,  # refreshed every second
        "lock_prefix": f"{names.prefix}/locks/accounts",
        "kill_switch_key": f"{names.prefix}/kill-switch",
        "accounts": {"binance": "main"},
        "session_ttl_s": 10.0,
        "lock_delay_s": 1.0,
        "retry_s": 0.2,
        **extra,
    }


class Running:
    """An engine with Consul on, running against the simulator until ``close()``."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.engine = node.engine
        self.stop = asyncio.Event()
        self.task = asyncio.create_task(node.run(self.stop))

    async def close(self) -> None:
        self.stop.set()
        await self.task


async def start(sim: ExchangeSimulator, consul_settings: dict[str, Any], **over: Any) -> Running:
    base = demo_config(sim).model_dump()
    base["consul"] = consul_settings
    base["paper"] = {"latency_ms": 0.0, "latency_jitter_ms": 0.0}
    base.update(over)
    running = Running(Node(load_config(env={}, overrides=base)))
    await running.node.ready.wait()
    return running


def orders(engine: Engine) -> int:
    return sum(stats.orders for stats in engine.stats.by_strategy.values())


def fills(engine: Engine) -> int:
    return sum(stats.fills for stats in engine.stats.by_strategy.values())


def check(consul: Consul, node: Node) -> dict[str, Any] | None:
    """The engine's "can trade" check as the Consul agent reports it (None: not registered).

    The agent's view, not the catalog's: Consul copies a change of output alone (critical for
    a new reason) to the catalog only every ``check_update_interval`` (5 min); a change of
    status goes at once."""
    assert node.consul is not None
    found = consul.get("agent/checks").get(node.consul.check_id)
    return dict(found) if found is not None else None


def check_is(consul: Consul, node: Node, status: str, *words: str) -> bool:
    found = check(consul, node)
    return (
        found is not None
        and found["Status"] == status
        and all(word in found["Output"] for word in words)
    )


async def get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        return response.status, await response.text()


def kv(consul: Consul, key: str) -> dict[str, Any] | None:
    response = consul.http.get(f"{consul.address}/v1/kv/{key}", timeout=10)
    if response.status_code == 404:
        return None
    response.raise_for_status()
    return dict(response.json()[0])


def lock_session(consul: Consul, names: Names) -> str | None:
    entry = kv(consul, f"{names.prefix}/locks/accounts/binance/main")
    return entry.get("Session") if entry else None


async def test_the_check_passes_goes_critical_naming_a_stalled_venue_and_goes_on_shutdown(
    simulator: ExchangeSimulator, consul: Consul, names: Names
) -> None:
    venues = demo_config(simulator).model_dump()["venues"]
    for venue in venues.values():
        venue["stale_after_s"] = 0.5
    running = await start(simulator, settings(consul, names), venues=venues)
    node = running.node
    try:
        await until(lambda: check_is(consul, node, "passing", "can trade"), 30, "passing")
        simulator.stalled.add("binance")
        await until(
            lambda: check_is(consul, node, "critical", "feed binance stale"), 30, "critical"
        )
        found = check(consul, node)
        assert found is not None and "upbit" not in found["Output"]  # names only the stale one
        status, body = await get(f"{node.health_url}/health")
        _, metrics = await get(f"{node.health_url}/metrics")
        simulator.stalled.clear()
        await until(lambda: check_is(consul, node, "passing"), 30, "passing again")
    finally:
        await running.close()
    assert status == 200 and json.loads(body)["can_trade"] is False  # alive, cannot trade
    assert 'arbfleet_consul_check_state{check="can-trade",state="critical"} 1.0' in metrics
    assert check(consul, node) is None  # deregistered on shutdown
    assert consul.get(f"catalog/service/{names.service}") == []


async def test_two_engines_on_one_account_only_one_trades_and_the_other_takes_over(
    simulator: ExchangeSimulator, consul: Consul, names: Names
) -> None:
    first = await start(simulator, settings(consul, names))
    second: Running | None = None
    try:
        await until(lambda: fills(first.engine) > 0, 30, "the first engine to trade")
        holder = lock_session(consul, names)
        second = await start(simulator, settings(consul, names))
        waiting = f"waiting for account lock binance/main held by session {holder}"
        await until(lambda: waiting in str(second.node.health()["reasons"]), 30, "the wait")
        await until(lambda: check_is(consul, second.node, "critical", waiting), 30, "check")
        traded = fills(first.engine)
        await until(lambda: fills(first.engine) > traded + 2, 30, "the first to go on")
        blocked = {s.last_blocked for s in second.engine.stats.by_strategy.values()}
        assert orders(second.engine) == 0  # while the first held the lock, not one order
        assert "consul: account lock not held" in blocked  # it wanted to, and was stopped
        await first.close()
        await until(lambda: fills(second.engine) > 0, 30, "the second to take over")
        assert lock_session(consul, names) not in (None, holder)
    finally:
        await first.close()
        if second is not None:
            await second.close()
    assert lock_session(consul, names) is None  # released on shutdown


async def test_a_lost_lock_stops_trading_and_is_acquired_again(
    simulator: ExchangeSimulator, consul: Consul, names: Names
) -> None:
    running = await start(simulator, settings(consul, names, lock_delay_s=3.0))
    node = running.node
    engine = node.engine
    try:
        await until(lambda: fills(engine) > 0, 30, "trading")
        session = lock_session(consul, names)
        consul.http.put(f"{consul.address}/v1/session/destroy/{session}").raise_for_status()
        await until(lambda: node.consul and node.consul.blocked(), 10, "the loss noticed")
        lost = "consul: account lock not held"
        await until(
            lambda: lost in {s.last_blocked for s in engine.stats.by_strategy.values()},
            30,
            "intents blocked for want of the lock",
        )
        await until(lambda: lock_session(consul, names) not in (None, session), 30, "re-acquired")
        traded = fills(engine)
        await until(lambda: fills(engine) > traded, 30, "trading again")
    finally:
        await running.close()


async def arbfleet(*args: str) -> str:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "runtime.cli.main", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    return out.decode()


async def every(nodes: list[Node], condition: Callable[[Node], object], what: str) -> None:
    for node in nodes:
        await until(functools.partial(condition, node), 30, what)


async def test_arbfleet_halt_stops_every_engine_and_resume_lets_them_trade(
    simulator: ExchangeSimulator, consul: Consul, names: Names
) -> None:
    running = [await start(simulator, settings(consul, names, lock=False)) for _ in range(2)]
    nodes = [r.node for r in running]
    target = ["--consul", consul.address, "--key", f"{names.prefix}/kill-switch"]
    try:
        await every(nodes, lambda n: fills(n.engine) > 0, "trading")
        said = await arbfleet("halt", "--reason", "venue outage drill", "--who", "ops", *target)
        entry = kv(consul, f"{names.prefix}/kill-switch")
        assert entry is not None
        stored = json.loads(base64.b64decode(entry["Value"]))
        await every(nodes, lambda n: n.engine.kill_switch.engaged, "the kill switch")
        await every(nodes, lambda n: n.engine.risk.blocked["kill_switch"] > 0, "orders blocked")
        await every(nodes, lambda n: check_is(consul, n, "critical", "drill"), "the check")
        _, metrics = await get(f"{nodes[0].health_url}/metrics")
        await arbfleet("resume", *target)
        await every(nodes, lambda n: not n.engine.kill_switch.engaged, "the release")
        traded = {id(n): fills(n.engine) for n in nodes}
        await every(nodes, lambda n: fills(n.engine) > traded[id(n)], "trading again")
    finally:
        for one in running:
            await one.close()
    assert "venue outage drill" in said
    assert stored["reason"] == "venue outage drill" and stored["who"] == "ops" and stored["when"]
    assert "arbfleet_kill_switch 1.0" in metrics
    assert kv(consul, f"{names.prefix}/kill-switch") is None


class CuttableProxy:
    """A loopback TCP proxy to Consul that the test can cut: Consul unreachable, for real."""

    def __init__(self, target: str) -> None:
        parts = urlsplit(target)
        self._target = (parts.hostname or "127.0.0.1", parts.port or 8500)
        self._writers: list[asyncio.StreamWriter] = []
        self._server: asyncio.Server | None = None
        self.open = True
        self.address = ""

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.address = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.open:
            writer.close()
            return
        upstream_reader, upstream = await asyncio.open_connection(*self._target)
        self._writers += [writer, upstream]
        await asyncio.gather(
            self._pipe(reader, upstream), self._pipe(upstream_reader, writer),
            return_exceptions=True,
        )  # fmt: skip

    @staticmethod
    async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
        finally:
            sink.close()

    def cut(self) -> None:
        self.open = False
        for writer in self._writers:
            writer.close()
        self._writers.clear()

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


async def test_with_consul_unreachable_trading_lasts_only_as_long_as_the_session_ttl(
    simulator: ExchangeSimulator, consul: Consul, names: Names
) -> None:
    proxy = CuttableProxy(consul.address)
    await proxy.start()
    running = await start(simulator, settings(consul, names, address=proxy.address))
    node = running.node
    engine = node.engine
    link = node.consul
    assert link is not None
    try:
        await until(lambda: fills(engine) > 0, 30, "trading")
        proxy.cut()
        await until(lambda: link.degraded() and link.blocked() is None, 30, "lock still valid")
        await until(lambda: link.blocked() == "consul: account lock not held", 30, "TTL run out")
        assert "Consul unreachable past the session TTL" in str(node.health()["reasons"])
        await until(lambda: check_is(consul, node, "critical", "TTL expired"), 30, "silent")
        proxy.open = True
        traded = fills(engine)
        await until(lambda: fills(engine) > traded, 60, "trading once Consul is back")
    finally:
        await running.close()
        await proxy.close()


async def test_an_instance_removed_from_consul_registers_again(
    simulator: ExchangeSimulator, consul: Consul, names: Names
) -> None:
    """What happens after Consul's reaper removed an instance critical for longer than
    deregister_critical_service_after (a long halt), or after an agent restart."""
    running = await start(simulator, settings(consul, names, lock=False))
    node = running.node
    assert node.consul is not None
    service_id = node.consul.service_id
    try:
        await until(lambda: check_is(consul, node, "passing"), 30, "passing")
        deregister = f"{consul.address}/v1/agent/service/deregister/{service_id}"
        consul.http.put(deregister, timeout=10).raise_for_status()
        assert check(consul, node) is None
        await until(lambda: check_is(consul, node, "passing"), 30, "registered again")
        registered = consul.get(f"agent/service/{service_id}")
    finally:
        await running.close()
    assert registered["Service"] == names.service
    assert registered["Port"] == int(node.health_url.rsplit(":", 1)[1])  # where /health is
