"""A venue is one folder plus one registration: a package written here, outside the repository,
with its own distribution metadata naming it in the ``arbfleet.venues`` entry-point group, is
found, configured, validated and traded by the engine; a broken one is reported by name."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import textwrap
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from runtime.config import load_config
from runtime.core.errors import ConfigError
from runtime.engine.engine import Engine
from runtime.node import Node
from runtime.venues import registry
from tests.integration.polling import until

# --- the third-party package: a folder and a registration, nothing else ---------------------

TINYEX = {
    "tinyex_venue/__init__.py": '''
        """tinyex: its registration, named by this distribution's entry point."""
        from runtime.venues.contract import Venue
        from tinyex_venue.feed import TinyParser, open_feed
        from tinyex_venue.rest import TinyClient

        VENUE = Venue(
            name="tinyex",
            symbol_format="{base}_{quote}",
            ws_url="wss://tinyex.invalid/ws",
            rest_url="https://tinyex.invalid",
            parser=TinyParser,
            feed=open_feed,
            client=TinyClient,
        )
    ''',
    "tinyex_venue/feed.py": '''
        """Tops as JSON objects; the symbols are chosen by a message sent once connected."""
        import json

        from runtime.core.events import BookTicker
        from runtime.core.frames import DropReason
        from runtime.venues.base import WebsocketFeed
        from runtime.venues.contract import VenueFeed


        class TinyParser:
            venue = "tinyex"

            def __init__(self, symbols, drops):
                self._symbols = symbols
                self.drops = drops

            def parse(self, raw, local_ts_ns):
                top = json.loads(raw)
                symbol = self._symbols.get(top["sym"])
                if symbol is None:
                    self.drops.drop(DropReason.UNKNOWN_SYMBOL, raw)
                    return None
                return BookTicker(
                    "tinyex", symbol, top["bid"], top["size"], top["ask"], top["size"],
                    top["seq"], top["seq"], local_ts_ns,
                )


        def open_feed(request):
            symbols = [stream.instrument.venue_symbol for stream in request.streams]
            feed = WebsocketFeed(
                request.venue,
                request.ws_url,
                request.on_frame,
                stale_after_s=request.stale_after_s,
                subscribe=json.dumps(symbols).encode(),
            )
            return VenueFeed(feed)
    ''',
    "tinyex_venue/rest.py": '''
        """Orders as JSON, filled in full at the limit price (the venue is that generous)."""
        import aiohttp

        from runtime.core.orders import OrderStatus
        from runtime.core.venue import VenueOrder


        class TinyClient:
            def __init__(self, venue, rest_url, keys, limiter):
                self.venue = venue.name
                self._instrument = venue.instrument
                self._url = rest_url
                self._keys = keys
                self._limiter = limiter
                self._http = None

            async def place(self, intent, price):
                await self._limiter.acquire()
                self._http = self._http or aiohttp.ClientSession()
                order = {
                    "sym": self._instrument(intent.symbol).venue_symbol,
                    "side": intent.side,
                    "qty": intent.quantity,
                    "price": price,
                    "id": intent.client_order_id,
                }
                headers = {"X-Key": self._keys.credentials().api_key}
                async with self._http.post(f"{self._url}/order", json=order, headers=headers) as r:
                    fill = await r.json()
                return VenueOrder(OrderStatus.FILLED, fill["qty"], fill["price"], 0.0, fill["id"])

            async def find(self, client_order_id):
                return None

            async def orders_since(self, symbol, since_ns):
                return []

            async def warm_up(self):
                pass

            async def close(self):
                if self._http is not None:
                    await self._http.close()
    ''',
}
BROKEN = {
    "brokenex_venue/__init__.py": """
        import exotic_exchange_sdk  # not installed: this venue cannot load
    """,
}
ENTRY_POINTS = {
    "tinyex": "tinyex_venue:VENUE",
    "brokenex": "brokenex_venue:VENUE",
    "notavenue": "tinyex_venue.feed:TinyParser",
}
KEY = "tinyex-test-key-7c41"


@pytest.fixture
def install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., None]]:
    """Install distributions into a directory put on ``sys.path``, as pip would."""
    site = tmp_path / "site"
    packages: set[str] = set()

    def install_(name: str, files: dict[str, str], entry_points: dict[str, str]) -> None:
        for relative, text in files.items():
            path = site / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(text))
            packages.add(relative.split("/")[0])
        info = site / f"{name}-0.1.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
        lines = [f"{key} = {value}" for key, value in entry_points.items()]
        (info / "entry_points.txt").write_text("[arbfleet.venues]\n" + "\n".join(lines) + "\n")
        monkeypatch.syspath_prepend(str(site))
        registry.registry.cache_clear()

    yield install_
    registry.registry.cache_clear()  # the next test sees only the venues installed for real
    for module in [m for m in sys.modules if m.split(".")[0] in packages]:
        del sys.modules[module]


# --- an exchange for the new venue: websocket tops and an order endpoint ---------------------

TOPS = {  # USDT -> BTC -> ETH -> USDT returns 4 %: the triangular strategy takes it
    "BTC_USDT": (49_990.0, 50_000.0),
    "ETH_BTC": (0.0499, 0.05),
    "ETH_USDT": (2_600.0, 2_601.0),
}


@contextlib.asynccontextmanager
async def tinyex_exchange(orders: list[dict[str, Any]]) -> AsyncIterator[str]:
    """Sends the subscribed tops every 20 ms; fills every order in full; yields its URL."""

    async def stream(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        symbols = json.loads((await ws.receive()).data)  # the subscription, sent as bytes
        seq = 0
        while not ws.closed:
            for symbol in symbols:
                seq += 1
                bid, ask = TOPS[symbol]
                top = {"sym": symbol, "bid": bid, "ask": ask, "size": 10.0, "seq": seq}
                await ws.send_str(json.dumps(top))
            await asyncio.sleep(0.02)  # the exchange's pace, not the test waiting
        return ws

    async def order(request: web.Request) -> web.Response:
        body = await request.json()
        orders.append({**body, "key": request.headers["X-Key"]})
        return web.json_response({"qty": body["qty"], "price": body["price"], "id": body["id"]})

    app = web.Application()
    app.router.add_get("/ws", stream)
    app.router.add_post("/order", order)
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


# --- the tests ---------------------------------------------------------------------------------


def test_an_installed_venue_is_in_the_config_defaults_and_the_strategies_accept_it(
    install: Callable[..., None],
) -> None:
    install("tinyex-venue", TINYEX, {"tinyex": ENTRY_POINTS["tinyex"]})
    config = load_config(env={})
    assert set(config.venues) == {"binance", "upbit", "tinyex"}
    assert config.venues["tinyex"].ws_url == "wss://tinyex.invalid/ws"
    assert registry.instrument("tinyex", "ETH/BTC").venue_symbol == "ETH_BTC"
    strategies = [{"plugin": "triangular", "id": "tri-tiny", "config": {"venue": "tinyex"}}]
    engine = Engine(load_config(env={}, overrides={"strategies": strategies}))
    assert set(engine.parsers) == {"tinyex"}


async def test_the_engine_trades_live_on_a_venue_added_in_its_own_folder(
    install: Callable[..., None],
) -> None:
    install("tinyex-venue", TINYEX, {"tinyex": ENTRY_POINTS["tinyex"]})
    orders: list[dict[str, Any]] = []
    async with tinyex_exchange(orders) as address:
        overrides = {
            "mode": "live",
            "venues": {"tinyex": {"ws_url": f"ws://{address}/ws", "rest_url": f"http://{address}"}},
            "strategies": [
                {"plugin": "triangular", "id": "tri-tiny", "config": {"venue": "tinyex"}}
            ],
            "paper": {"initial_balances": {"tinyex": {"USDT": 10_000.0}}},
        }
        keys = {
            f"ARBFLEET_SECRET_{venue}_API_{part}": f"{KEY}-{venue}"
            for venue in ("BINANCE", "UPBIT", "TINYEX")
            for part in ("KEY", "SECRET")
        }
        node = Node(load_config(env=keys, overrides=overrides))
        engine = node.engine
        stop = asyncio.Event()
        running = asyncio.create_task(node.run(stop, serve_health=False))
        stats = engine.stats.by_strategy["tri-tiny"]
        try:
            await until(lambda: stats.fills >= 3, 30, "the three legs of a round trip filled")
        finally:
            stop.set()
            await running
    top = engine.books.top("tinyex", "ETH/USDT")
    assert top is not None and (top.bid, top.ask) == TOPS["ETH_USDT"]
    assert stats.opportunities >= 1
    first = orders[:3]
    assert [(o["sym"], o["side"]) for o in first] == [
        ("BTC_USDT", "buy"),
        ("ETH_BTC", "buy"),
        ("ETH_USDT", "sell"),
    ]
    assert {o["key"] for o in orders} == {f"{KEY}-TINYEX"}


def test_a_venue_that_cannot_load_is_named_and_the_others_still_work(
    install: Callable[..., None],
) -> None:
    install("odd-venues", {**TINYEX, **BROKEN}, ENTRY_POINTS)
    venues = registry.registry()
    assert set(venues.venues) == {"binance", "upbit", "tinyex"}
    assert (
        venues.failures["brokenex"] == "ModuleNotFoundError: No module named 'exotic_exchange_sdk'"
    )
    assert venues.failures["notavenue"].startswith("TypeError: <class 'tinyex_venue.feed.")
    with pytest.raises(ConfigError, match=r"venue 'brokenex': its plugin could not be loaded"):
        registry.venue("brokenex")
    strategies = [{"plugin": "triangular", "id": "tri-broken", "config": {"venue": "brokenex"}}]
    with pytest.raises(ConfigError, match=r"config\.venue: .*'brokenex': its plugin could not"):
        Engine(load_config(env={}, overrides={"strategies": strategies}))
    broken_table = {"brokenex": {"ws_url": "ws://127.0.0.1:1", "rest_url": "http://127.0.0.1:1"}}
    with pytest.raises(ConfigError, match=r"venues\.brokenex\.\[key\]: 'brokenex': its plugin"):
        load_config(env={}, overrides={"venues": broken_table})
    assert set(load_config(env={}).venues) == {"binance", "upbit", "tinyex"}
