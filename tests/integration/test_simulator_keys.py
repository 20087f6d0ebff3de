"""The simulator's key management API over real loopback HTTP, and what revoking does to orders."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from runtime.core.errors import ExchangeError
from runtime.core.orders import OrderStatus
from runtime.core.venue import Credentials
from runtime.devstack.simulator import ExchangeSimulator, SimulatorConfig
from runtime.ops.rotation import KeyManagementApi
from runtime.trading.book import Books
from runtime.trading.execution.live import LiveExecutor
from runtime.trading.portfolio import Portfolio
from runtime.venues.registry import venue_clients
from tests.integration.test_simulator_roundtrip import Recorder, intent, settle

ADMIN = "sim-admin-token-5d1e"


@pytest.fixture
async def simulator() -> AsyncIterator[ExchangeSimulator]:
    sim = ExchangeSimulator(
        SimulatorConfig(tick_interval_ms=50, admin_token=ADMIN, max_keys_per_label=2)
    )
    await sim.start()
    yield sim
    await sim.stop()


async def place(sim: ExchangeSimulator, keys: Credentials, venue: str, n: int) -> OrderStatus:
    """One signed order with ``keys``; its final status."""
    recorder = Recorder()
    url = sim.http_url if venue == "binance" else sim.upbit_rest_url
    clients = venue_clients({venue: (url, keys, 50.0)})
    executor = LiveExecutor(clients, Books(), Portfolio(), recorder.fills.append,
                            recorder.results.append)  # fmt: skip
    symbol = "BTC/USDT" if venue == "binance" else "BTC/KRW"
    ladder = sim.model.ladders[(venue, symbol)]
    executor.submit(intent(venue, symbol, "buy", 0.001, ladder.ask * 1.01, n))
    await settle(executor, recorder, 1)
    return recorder.results[0].status


async def test_created_keys_sign_orders_and_revoked_ones_are_refused_with_401(
    simulator: ExchangeSimulator,
) -> None:
    api = KeyManagementApi(simulator.http_url, ADMIN)
    keys = await api.create("arbfleet/main", ["trade"])
    assert await place(simulator, keys, "binance", 1) is OrderStatus.FILLED
    assert await place(simulator, keys, "upbit", 2) is OrderStatus.FILLED
    assert await api.revoke(keys.api_key)
    assert await place(simulator, keys, "binance", 3) is OrderStatus.REJECTED
    assert await place(simulator, keys, "upbit", 4) is OrderStatus.REJECTED
    assert simulator.stats.auth_failures == 2
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{simulator.http_url}/api/v3/order?symbol=BTCUSDT&signature=x",
            headers={"X-MBX-APIKEY": keys.api_key},
        ) as response,
    ):
        assert response.status == 401


async def test_listing_never_shows_a_secret_and_marks_revoked_keys(
    simulator: ExchangeSimulator,
) -> None:
    api = KeyManagementApi(simulator.http_url, ADMIN)
    first = await api.create("arbfleet/main", ["trade"])
    second = await api.create("arbfleet/main", ["trade"])
    await api.create("arbfleet/other", ["trade"])
    await api.revoke(first.api_key)
    listed = await api.list("arbfleet/main")
    assert listed is not None
    assert {(k.api_key, k.revoked) for k in listed} == {
        (first.api_key, True),
        (second.api_key, False),
    }
    async with (
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {ADMIN}"}) as http,
        http.get(f"{simulator.http_url}/admin/keys") as response,
    ):
        raw = await response.text()
    assert first.secret not in raw and second.secret not in raw


async def test_key_api_refuses_a_wrong_admin_token_and_keys_beyond_the_cap(
    simulator: ExchangeSimulator,
) -> None:
    with pytest.raises(ExchangeError, match="401"):
        await KeyManagementApi(simulator.http_url, "not-the-token").create("a", ["trade"])
    api = KeyManagementApi(simulator.http_url, ADMIN)
    await api.create("arbfleet/main", ["trade"])
    await api.create("arbfleet/main", ["trade"])
    with pytest.raises(ExchangeError, match="Too many API keys"):
        await api.create("arbfleet/main", ["trade"])
    with pytest.raises(ExchangeError, match="404"):
        await api.revoke("sim-unknown")


async def test_key_api_is_off_without_an_admin_token() -> None:
    sim = ExchangeSimulator(SimulatorConfig(tick_interval_ms=50))
    await sim.start()
    try:
        with pytest.raises(ExchangeError, match="401"):
            await KeyManagementApi(sim.http_url, "anything").list("x")
    finally:
        await sim.stop()
