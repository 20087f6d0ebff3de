"""The engine against the exchange simulator over real loopback sockets."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from runtime.config import load_config
from runtime.core.logging import configure, register_secret
from runtime.core.orders import Fill, OrderIntent, OrderResult, OrderStatus
from runtime.core.venue import Credentials
from runtime.devstack.demo import demo_config
from runtime.devstack.simulator import ExchangeSimulator, FaultParams, MarketParams, SimulatorConfig
from runtime.engine.engine import Engine
from runtime.node import Node
from runtime.trading.book import Books
from runtime.trading.execution.live import LiveExecutor
from runtime.trading.portfolio import Portfolio
from runtime.venues.registry import venue_clients

LIVELY = MarketParams(dislocations_per_s=5.0)
CANARY = "sim-canary-secret-41b7"


async def wait_for(condition: Callable[[], bool], timeout_s: float = 30.0) -> None:
    """Poll until ``condition`` holds; fail with a clear message if it never does."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s}s")
        await asyncio.sleep(0.05)


@pytest.fixture
async def simulator(request: pytest.FixtureRequest) -> AsyncIterator[ExchangeSimulator]:
    config = getattr(request, "param", SimulatorConfig(tick_interval_ms=10, market=LIVELY))
    sim = ExchangeSimulator(config)
    await sim.start()
    yield sim
    await sim.stop()


class Running:
    """An engine running against the simulator until the test ends."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.engine = node.engine
        self.stop = asyncio.Event()
        self.task = asyncio.create_task(node.run(self.stop))

    async def close(self) -> None:
        self.stop.set()
        await self.task


async def start_engine(sim: ExchangeSimulator, **overrides: Any) -> Running:
    base = demo_config(sim).model_dump()
    for key, value in overrides.items():
        base[key] = value if not isinstance(value, dict) else base[key] | value
    running = Running(Node(load_config(env={}, overrides=base)))
    await running.node.ready.wait()
    return running


def fills(engine: Engine) -> int:
    return sum(stats.fills for stats in engine.stats.by_strategy.values())


async def test_engine_trades_against_the_simulator(simulator: ExchangeSimulator) -> None:
    running = await start_engine(simulator)
    node = running.node
    engine = node.engine
    try:
        await wait_for(lambda: fills(engine) >= 2)
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{node.health_url}/health") as response:
                health = await response.json()
                assert response.status == 200, health
            async with http.get(f"{node.health_url}/metrics") as response:
                metrics = await response.text()
    finally:
        await running.close()
    assert health["can_trade"] is True
    assert engine.stats.frames["binance"][0] > 0 and engine.stats.frames["upbit"][0] > 0
    assert engine.drops["binance"].counts == {} and engine.drops["upbit"].counts == {}
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(metrics)
        for sample in family.samples
    }
    tickers = samples[
        ("arbfleet_feed_frames_total", (("type", "book_ticker"), ("venue", "binance")))
    ]
    assert tickers > 0
    fills_total = sum(
        v for (name, _), v in samples.items() if name == "arbfleet_strategy_fills_total"
    )
    assert fills_total >= 2
    assert samples[("arbfleet_engine_info", (("mode", "paper"), ("version", "0.1.0")))] == 1.0


@pytest.mark.parametrize(
    "simulator",
    [SimulatorConfig(tick_interval_ms=10, faults=FaultParams(malformed_ratio=0.1))],
    indirect=True,
)
async def test_malformed_frames_are_counted_and_the_feed_carries_on(
    simulator: ExchangeSimulator,
) -> None:
    running = await start_engine(simulator)
    node = running.node
    engine = node.engine
    try:
        await wait_for(lambda: engine.drops["binance"].counts.get("malformed", 0) >= 5)
        before = engine.stats.frame_count()
        await wait_for(lambda: engine.stats.frame_count() > before + 50)
    finally:
        await running.close()
    assert simulator.stats.malformed_sent >= 5
    assert engine.feeds["binance"].connects == 1  # garbage is dropped, not a reason to reconnect


@pytest.mark.parametrize(
    "simulator",
    [SimulatorConfig(tick_interval_ms=10, faults=FaultParams(disconnect_every_s=0.4))],
    indirect=True,
)
async def test_disconnected_feeds_reconnect_and_data_flows_again(
    simulator: ExchangeSimulator,
) -> None:
    running = await start_engine(simulator)
    node = running.node
    engine = node.engine
    try:
        await wait_for(lambda: engine.feeds["binance"].connects >= 3)
        after_reconnects = engine.stats.frames["binance"][0]
        await wait_for(lambda: engine.stats.frames["binance"][0] > after_reconnects + 20)
    finally:
        await running.close()
    assert simulator.stats.forced_disconnects >= 2
    assert engine.feeds["upbit"].disconnects >= 2


@pytest.mark.parametrize(
    "simulator",
    [SimulatorConfig(tick_interval_ms=10, faults=FaultParams(gap_ratio=0.05))],
    indirect=True,
)
async def test_depth_gaps_are_resynchronized_from_rest_snapshots(
    simulator: ExchangeSimulator,
) -> None:
    strategies = [{"plugin": "cross_exchange", "id": "xex-depth", "config": {"use_depth": True}}]
    running = await start_engine(simulator, strategies=strategies)
    node = running.node
    engine = node.engine
    try:
        await wait_for(lambda: engine.stats.gaps["binance"] >= 2)
        await wait_for(lambda: engine.snapshots["binance"].fetched >= 3)
        await wait_for(lambda: not engine.books.out_of_sync())
    finally:
        await running.close()
    assert simulator.stats.gaps_made >= 2
    book = engine.books.book("binance", "BTC/USDT")
    assert book is not None and book.live and book.best_bid < book.best_ask


@pytest.mark.parametrize("simulator", [SimulatorConfig(tick_interval_ms=500)], indirect=True)
async def test_a_silent_venue_is_stale_and_the_engine_says_it_cannot_trade(
    simulator: ExchangeSimulator,
) -> None:
    venues = demo_config(simulator).model_dump()["venues"]
    for settings in venues.values():
        settings["stale_after_s"] = 0.1
    running = await start_engine(simulator, venues=venues)
    node = running.node
    engine = node.engine
    try:
        await wait_for(lambda: engine.stats.frame_count() > 0)
        await wait_for(lambda: not node.health()["can_trade"])
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{node.health_url}/health") as response,
        ):
            status, health = response.status, await response.json()
    finally:
        await running.close()
    assert status == 200  # alive and serving: Nomad must not restart it for a quiet venue
    assert health["can_trade"] is False
    assert any("stale" in reason for reason in health["reasons"])


class Recorder:
    def __init__(self) -> None:
        self.fills: list[Fill] = []
        self.results: list[OrderResult] = []


def live_executor(
    sim: ExchangeSimulator, books: Books, recorder: Recorder, secret: str = "sim-secret"
) -> LiveExecutor:
    credentials = Credentials("sim-key", secret)
    clients = venue_clients(
        {
            "binance": (sim.http_url, credentials, 50.0),
            "upbit": (sim.upbit_rest_url, credentials, 50.0),
        }
    )
    return LiveExecutor(clients, books, Portfolio(), recorder.fills.append, recorder.results.append)


def intent(venue: str, symbol: str, side: str, qty: float, price: float, n: int = 1) -> OrderIntent:
    return OrderIntent("live", f"live-t-{venue}-{n}", venue, symbol, side, qty, price)  # type: ignore[arg-type]


async def settle(executor: LiveExecutor, recorder: Recorder, count: int) -> None:
    await wait_for(lambda: len(recorder.results) >= count, timeout_s=15)
    await executor.close()


async def test_live_executor_signs_orders_that_the_simulator_fills(
    simulator: ExchangeSimulator,
) -> None:
    recorder = Recorder()
    executor = live_executor(simulator, Books(), recorder)
    btc = simulator.model.ladders[("binance", "BTC/USDT")]
    krw = simulator.model.ladders[("upbit", "BTC/KRW")]
    executor.submit(intent("binance", "BTC/USDT", "buy", 0.01, btc.ask * 1.01))
    executor.submit(intent("upbit", "BTC/KRW", "sell", 0.01, krw.bid * 0.99))
    await settle(executor, recorder, 2)
    assert {r.status for r in recorder.results} == {OrderStatus.FILLED}
    assert {f.venue for f in recorder.fills} == {"binance", "upbit"}
    assert all(f.fee > 0 for f in recorder.fills)
    assert simulator.stats.orders == 2 and simulator.stats.auth_failures == 0
    assert set(simulator.orders) == {"live-t-binance-1", "live-t-upbit-1"}


async def test_the_venues_list_the_accounts_orders_from_a_time_as_intents_could_be_rebuilt(
    simulator: ExchangeSimulator,
) -> None:
    """``orders_since`` (allOrders, orders/closed): what a new node's engine reads of the orders
    its lost predecessor sent (runtime/persistence/lookback.py)."""
    recorder = Recorder()
    executor = live_executor(simulator, Books(), recorder)
    btc = simulator.model.ladders[("binance", "BTC/USDT")]
    krw = simulator.model.ladders[("upbit", "BTC/KRW")]
    executor.submit(intent("binance", "BTC/USDT", "buy", 0.01, btc.ask * 1.01, n=1))
    await wait_for(lambda: len(recorder.results) == 1, timeout_s=15)
    since = time.time_ns()
    await asyncio.sleep(0.01)  # Binance lists by millisecond: the first order is before ``since``
    executor.submit(intent("binance", "BTC/USDT", "sell", 0.02, btc.bid * 0.99, n=2))
    executor.submit(intent("upbit", "BTC/KRW", "sell", 0.01, krw.bid * 0.99, n=3))
    await wait_for(lambda: len(recorder.results) == 3, timeout_s=15)
    # Upbit's times have whole seconds: its list is asked from the second ``since`` falls in.
    binance = await executor.orders_since({"binance": ["BTC/USDT", "ETH/USDT"]}, since)
    upbit = await executor.orders_since({"upbit": ["BTC/KRW"]}, since // 10**9 * 10**9)
    by_id = {
        order.client_order_id: (venue, order) for venue, order in (binance or []) + (upbit or [])
    }
    assert set(by_id) == {"live-t-binance-2", "live-t-upbit-3"}
    venue, order = by_id["live-t-binance-2"]
    assert (venue, order.symbol, order.side, order.quantity) == (
        "binance",
        "BTC/USDT",
        "sell",
        0.02,
    )
    assert order.limit_price == pytest.approx(btc.bid * 0.99, rel=1e-6)
    assert abs(order.created_ns - since) < 5e9
    venue, order = by_id["live-t-upbit-3"]
    assert (venue, order.symbol, order.side, order.quantity) == ("upbit", "BTC/KRW", "sell", 0.01)
    markets = {"binance": ["BTC/USDT"], "upbit": ["BTC/KRW"]}
    everything = await executor.orders_since(markets, 0)
    assert {o.client_order_id for _, o in everything or []} == set(simulator.orders)
    await executor.close()


async def test_a_wrong_secret_is_refused_and_never_logged(
    simulator: ExchangeSimulator, capfd: pytest.CaptureFixture[str]
) -> None:
    register_secret(CANARY)
    configure("DEBUG", json=True)  # stdout, as the engine logs under Nomad
    recorder = Recorder()
    executor = live_executor(simulator, Books(), recorder, secret=CANARY)
    btc = simulator.model.ladders[("binance", "BTC/USDT")]
    executor.submit(intent("binance", "BTC/USDT", "buy", 0.01, btc.ask * 1.01))
    executor.submit(intent("upbit", "BTC/KRW", "buy", 0.01, 1.0))
    await settle(executor, recorder, 2)
    assert {r.status for r in recorder.results} == {OrderStatus.REJECTED}
    assert any("Signature for this request is not valid" in r.reason for r in recorder.results)
    assert simulator.stats.auth_failures == 2 and simulator.stats.orders == 0
    configure("WARNING")
    out, err = capfd.readouterr()
    assert "order live-t-binance-1 failed" in out  # the failure itself is logged...
    assert CANARY not in out + err  # ...without the secret


@pytest.mark.parametrize(
    "simulator",
    [SimulatorConfig(tick_interval_ms=10, faults=FaultParams(rate_limit_ratio=0.3))],
    indirect=True,
)
async def test_rate_limits_are_waited_out_and_retries_never_double_an_order(
    simulator: ExchangeSimulator,
) -> None:
    recorder = Recorder()
    executor = live_executor(simulator, Books(), recorder)
    btc = simulator.model.ladders[("binance", "BTC/USDT")]
    order = intent("binance", "BTC/USDT", "buy", 0.01, btc.ask * 1.01, n=7)
    executor.submit(order)
    executor.submit(order)  # the same intent again, as a confused retry would
    await settle(executor, recorder, 2)
    assert [r.status for r in recorder.results] == [OrderStatus.FILLED] * 2
    assert simulator.stats.orders == 1  # one order at the venue, whatever the retries
    assert list(simulator.orders) == ["live-t-binance-7"]


LIVE_CANARY = "live-canary-secret-93c2a1"


@pytest.mark.parametrize(
    "simulator",
    [SimulatorConfig(tick_interval_ms=10, market=LIVELY, credentials={"canary": LIVE_CANARY})],
    indirect=True,
)
async def test_live_mode_engine_trades_through_signed_orders_and_hides_its_keys(
    simulator: ExchangeSimulator, capfd: pytest.CaptureFixture[str]
) -> None:
    env = {
        "ARBFLEET_MODE": "live",
        "ARBFLEET_SECRET_BINANCE_API_KEY": "canary",
        "ARBFLEET_SECRET_BINANCE_API_SECRET": LIVE_CANARY,
        "ARBFLEET_SECRET_UPBIT_API_KEY": "canary",
        "ARBFLEET_SECRET_UPBIT_API_SECRET": LIVE_CANARY,
    }
    overrides = demo_config(simulator).model_dump(include={"venues", "health"})
    for settings in overrides["venues"].values():
        settings.pop("api_key")
        settings.pop("api_secret")
    node = Node(load_config(env=env, overrides=overrides))
    configure("DEBUG", json=True)
    running = Running(node)
    try:
        await node.ready.wait()
        await wait_for(lambda: fills(node.engine) >= 2)
        async with aiohttp.ClientSession() as http:
            pages = [
                await (await http.get(f"{node.health_url}/{page}")).text()
                for page in ("health", "metrics")
            ]
    finally:
        await running.close()
        configure("WARNING")
    assert simulator.stats.orders >= 2
    assert simulator.stats.auth_failures == 0
    out, err = capfd.readouterr()
    assert "engine running" in out  # the debug logs were captured...
    assert all(LIVE_CANARY not in text for text in (*pages, out, err))  # ...without the key


async def test_the_demo_takes_opportunities_and_prints_a_final_summary() -> None:
    import io

    from runtime.devstack.demo import run_demo

    out = io.StringIO()
    config = SimulatorConfig(tick_interval_ms=10, market=MarketParams(dislocations_per_s=20.0))
    summary = await run_demo(3.0, out=out, refresh_s=1.0, simulator_config=config)
    assert sum(row.opportunities for row in summary.strategies) > 0
    assert sum(row.fills for row in summary.strategies) > 0
    assert summary.frames > 0 and summary.p99_us is not None
    text = out.getvalue()
    assert "final summary" in text and "xex-btc" in text and "pnl USDT" in text


def test_the_demo_command_exits_zero() -> None:
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "runtime.cli.main", "demo", "--duration", "1.5"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "final summary" in result.stdout
