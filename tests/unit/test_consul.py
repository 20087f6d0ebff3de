"""The Consul side's decisions that need no Consul: off by default, safe before its first read."""

from __future__ import annotations

import asyncio
import collections

import pytest
from aiohttp import web

from runtime.cli.main import build_parser
from runtime.config import load_config
from runtime.core.errors import ConfigError
from runtime.node import Node
from runtime.platform.consul import describe_kill_switch
from tests.integration.polling import until


def test_embedded_defaults_run_without_consul() -> None:
    engine = Node(load_config(env={}))
    assert engine.consul is None
    assert "consul" not in " ".join(engine.health()["reasons"])


def test_enabled_consul_locks_the_vault_accounts_and_blocks_orders_until_it_has_looked() -> None:
    env = {
        "ARBFLEET_CONSUL__ENABLED": "true",
        "ARBFLEET_VAULT__ADDRESS": "http://127.0.0.1:8200",
        "ARBFLEET_VAULT__TOKEN_FILE": "/nonexistent/token",
        "ARBFLEET_VAULT__ACCOUNTS__BINANCE": "main",
    }
    link = Node(load_config(env=env)).consul
    assert link is not None and link.needs_lock
    assert link.blocked() == "consul: kill switch not read yet"
    link.kill_switch_read = True
    assert link.blocked() == "consul: account lock not held"  # no lock, no trading


def test_consul_settings_are_validated() -> None:
    with pytest.raises(ConfigError, match=r"consul\.session_ttl_s"):
        load_config(env={}, overrides={"consul": {"session_ttl_s": 5}})  # Consul's minimum: 10 s


def test_an_unreadable_kill_switch_still_names_itself() -> None:
    assert describe_kill_switch('{"reason": "drill", "who": "ops", "when": "now"}') == (
        "drill (by ops at now)"
    )
    assert describe_kill_switch("not json").startswith("unreadable value")


def test_halt_needs_a_reason() -> None:
    parser = build_parser()
    with pytest.raises(SystemExit):
        parser.parse_args(["halt"])
    args = parser.parse_args(["halt", "--reason", "drill", "--consul", "http://c:8500"])
    assert (args.reason, args.consul, args.key) == (
        "drill",
        "http://c:8500",
        "arbfleet/kill-switch",
    )


class FakeConsul:
    """Just enough of Consul's HTTP API for one engine, on a real in-process aiohttp server;
    ``fail`` names the paths (``kv``, ``check``) that answer 500."""

    def __init__(self, fail: str) -> None:
        self.fail = fail
        self.hits: collections.Counter[str] = collections.Counter()
        app = web.Application()
        app.router.add_get("/v1/kv/{key:.*}", self._kv)
        app.router.add_put("/v1/agent/service/register", self._ok)
        app.router.add_put("/v1/agent/service/deregister/{id}", self._ok)
        app.router.add_put("/v1/agent/check/update/{id}", self._check)
        self.runner = web.AppRunner(app, shutdown_timeout=0.5)
        self.address = ""

    async def __aenter__(self) -> FakeConsul:
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.address = f"http://127.0.0.1:{self.runner.addresses[0][1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.runner.cleanup()

    async def _kv(self, request: web.Request) -> web.Response:
        self.hits["kv"] += 1
        if self.fail == "kv":
            return web.Response(status=500, text="kv store down")
        if request.query.get("index", "0") != "0":
            await asyncio.sleep(0.1)  # a blocking query whose wait ends without a change
        return web.Response(status=404, headers={"X-Consul-Index": "7"})

    async def _check(self, request: web.Request) -> web.Response:
        self.hits["check"] += 1
        if self.fail == "check":
            return web.Response(status=500, text="agent busy")
        return web.Response(text="")

    async def _ok(self, request: web.Request) -> web.Response:
        self.hits[request.path.split("/")[4]] += 1
        return web.Response(text="")


def consul_engine(address: str) -> Node:
    """An engine whose TTL check reports every 0.1 s and whose Consul retries wait 30 s."""
    consul = {"enabled": True, "address": address, "check_ttl_s": 0.3, "retry_s": 30.0}
    return Node(load_config(env={}, overrides={"consul": consul}))


@pytest.mark.parametrize(
    ("failing", "named"), [("kv", "kill switch"), ("check", "check")], ids=["kv", "check"]
)
async def test_a_consul_problem_is_cleared_only_by_the_task_that_met_it(
    failing: str, named: str
) -> None:
    async with FakeConsul(fail=failing) as consul:
        engine = consul_engine(consul.address)
        link = engine.consul
        assert link is not None
        await link.start(engine)
        try:  # the kill switch fails once (then waits 30 s) or the reports keep failing
            await until(
                lambda: consul.hits["check"] >= 4 and consul.hits["kv"] >= 1, 5, "four reports"
            )
            degraded = link.degraded()
        finally:
            await link.stop()
    assert len(degraded) == 1
    assert degraded[0].startswith(f"consul unreachable ({named}): ")
    assert "HTTP 500" in degraded[0]


async def test_stopping_the_consul_link_twice_or_before_starting_is_harmless() -> None:
    async with FakeConsul(fail="") as consul:
        engine = consul_engine(consul.address)
        link = engine.consul
        assert link is not None
        await link.stop()  # never started: nothing to undo
        await link.start(engine)
        await until(lambda: consul.hits["check"] >= 1, 5, "a first report")
        await link.stop()
        await link.stop()
    assert consul.hits["deregister"] == 1
