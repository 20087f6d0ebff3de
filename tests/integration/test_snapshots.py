"""State snapshots in real Redis: layout, damage, and an engine restored from them."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import msgspec
import redis.asyncio as aioredis

from runtime.config import load_config
from runtime.core.orders import OrderIntent
from runtime.engine.plugins import PluginInfo, discover
from runtime.node import Node
from runtime.persistence.snapshots import SnapshotStore, StrategySnapshot
from runtime.sdk import Strategy, StrategyConfig, StrategyContext, Subscription
from tests.unit.test_engine import feed_dislocation

pytest_plugins = ["tests.integration.persistence_fixtures"]

NO_LATENCY = {"latency_ms": 0.0, "latency_jitter_ms": 0.0}


def snapshot(strategy: str, orders: int = 2) -> StrategySnapshot:
    intents = [
        OrderIntent(strategy, f"{strategy}-s-{n}", "binance", "BTC/USDT", "buy", 0.1, 100.0, "", n)
        for n in range(orders)
    ]
    return StrategySnapshot(
        ts_ns=1,
        session="s",
        balances=[("binance", "BTC", 1.5), ("binance", "USDT", 900.0)],
        positions=[("binance", "BTC", -0.5)],
        fees={"USDT": 0.25},
        fills=3,
        open_orders=intents,
        pnl=-1.5,
        state={"beta": 0.97, "window": [1, 2, 3]},
    )


async def test_snapshots_go_in_one_hash_per_strategy_and_come_back(
    redis_url: str, redis_prefix: tuple[str, str]
) -> None:
    store = SnapshotStore(redis_url, *redis_prefix)
    saved = {name: snapshot(name) for name in ("alpha", "beta")}
    assert await store.save(saved)
    client = aioredis.Redis.from_url(redis_url)
    fields = await client.hkeys(f"arbfleet:test:{redis_prefix[1]}:alpha:snapshot")
    await client.aclose()
    assert sorted(fields) == sorted(
        f.encode()
        for f in ("meta", "balances", "positions", "fees", "open_orders", "state", "session")
    )
    restored = await store.load(["alpha", "beta", "gamma"])
    await store.close()
    assert restored.problems == []
    assert restored.snapshots == saved  # gamma never saved one


async def test_an_engine_replaced_meanwhile_cannot_overwrite_the_later_snapshot(
    redis_url: str, redis_prefix: tuple[str, str]
) -> None:
    """A partitioned engine still reaching Redis keeps saving: its replacement's (later session)
    snapshot must stay. Sessions compare as base-36 numbers: a longer one is later."""
    store = SnapshotStore(redis_url, *redis_prefix)
    replacement = msgspec.structs.replace(snapshot("alpha"), session="zzzzzz", fills=7)
    assert await store.save({"alpha": replacement, "beta": snapshot("beta")})
    stale = msgspec.structs.replace(snapshot("alpha"), session="zzzzzy", fills=5)
    assert not await store.save({"alpha": stale, "beta": snapshot("beta")})
    assert store.superseded == "zzzzzz"
    assert (await store.load(["alpha"])).snapshots["alpha"].fills == 7
    later = msgspec.structs.replace(snapshot("alpha"), session="1000000", fills=9)
    assert await store.save({"alpha": later})  # the replacement's own saves go on, and later ones
    assert (await store.load(["alpha"])).snapshots["alpha"].fills == 9
    await store.close()


async def test_a_damaged_field_is_named_and_everything_else_restored(
    redis_url: str, redis_prefix: tuple[str, str]
) -> None:
    store = SnapshotStore(redis_url, *redis_prefix)
    await store.save({"alpha": snapshot("alpha"), "beta": snapshot("beta")})
    client = aioredis.Redis.from_url(redis_url)
    key = f"arbfleet:test:{redis_prefix[1]}:alpha:snapshot"
    balances = await client.hget(key, "balances")
    await client.hset(key, "balances", balances[:-4])  # truncated
    await client.hset(key, "state", b"not even a checksum")
    await client.aclose()
    restored = await store.load(["alpha", "beta"])
    await store.close()
    assert restored.problems == [
        f"{key} field 'balances': checksum mismatch (corrupted); not restored",
        f"{key} field 'state': no checksum (truncated or not written by arbfleet); not restored",
    ]
    alpha = restored.snapshots["alpha"]
    assert alpha.balances is None and alpha.state is None  # unknown, not empty
    assert alpha.open_orders == snapshot("alpha").open_orders and alpha.fills == 3
    assert restored.snapshots["beta"] == snapshot("beta")


async def test_redis_unreachable_is_reported_not_raised(redis_prefix: tuple[str, str]) -> None:
    store = SnapshotStore("redis://127.0.0.1:9/0", *redis_prefix, timeout_s=0.5)
    assert await store.save({"alpha": snapshot("alpha")}) is False
    assert not store.available and "Error" in store.last_error
    restored = await store.load(["alpha"])
    assert restored.snapshots == {} and restored.problems == []
    assert restored.unreachable == store.last_error
    await store.close()


async def test_an_engine_that_cannot_read_its_snapshot_says_so_and_trades_on() -> None:
    overrides = {"paper": NO_LATENCY, "redis": {"url": "redis://127.0.0.1:9/0", "timeout_s": 0.5}}
    node = Node(load_config(env={}, overrides=overrides))
    await node.restore()
    degraded = node.health()["degraded"]
    assert [r for r in degraded if r.startswith("state not restored: redis unreachable")]
    feed_dislocation(node.engine, premium=0.006)
    assert node.engine.stats.by_strategy["xex-btc"].fills == 2
    await node.persistence.stop(time.monotonic() + 2)


async def test_ten_thousand_open_orders_fit_in_one_snapshot(
    redis_url: str, redis_prefix: tuple[str, str]
) -> None:
    store = SnapshotStore(redis_url, *redis_prefix)
    big = snapshot("alpha", orders=10_000)
    assert await store.save({"alpha": big})
    restored = await store.load(["alpha"])
    await store.close()
    assert restored.snapshots["alpha"].open_orders == big.open_orders


class MemoConfig(StrategyConfig):
    pass


class Memo(Strategy[MemoConfig]):
    """Remembers how many times it started, across restarts."""

    config_class = MemoConfig

    def __init__(self, config: MemoConfig, context: StrategyContext) -> None:
        super().__init__(config, context)
        self.starts = 0

    def subscriptions(self) -> Sequence[Subscription]:
        return [Subscription("binance", "BTC/USDT")]

    def on_start(self, **kwargs: Any) -> None:
        self.starts += 1

    def on_save_state(self, **kwargs: Any) -> dict[str, Any] | None:
        return {"starts": self.starts}

    def on_restore_state(self, state: dict[str, Any], **kwargs: Any) -> None:
        self.starts = int(state["starts"])


def memo_engine(redis_url: str, deployment: str) -> Node:
    registry = discover()
    registry.plugins["memo"] = PluginInfo("memo", Memo, "tests")
    overrides = {
        "paper": NO_LATENCY,
        "redis": {"url": redis_url, "environment": "test", "deployment": deployment},
        "strategies": [
            {"plugin": "cross_exchange", "id": "xex-btc"},
            {"plugin": "memo", "id": "memo"},
        ],
    }
    return Node(load_config(env={}, overrides=overrides), registry)


async def test_without_a_journal_an_engine_restarts_from_its_redis_snapshot(
    redis_url: str, redis_prefix: tuple[str, str]
) -> None:
    first = memo_engine(redis_url, redis_prefix[1])
    await first.restore()
    first.engine.start()
    feed_dislocation(first.engine, premium=0.006)
    assert await first.persistence.save_snapshot()
    second = memo_engine(redis_url, redis_prefix[1])
    second.persistence.session = first.engine.session  # as if restarted within the same second
    await second.restore()
    second.engine.start()
    assert second.persistence.restored_from == "redis"
    assert second.engine.portfolio.account("xex-btc") == first.engine.portfolio.account("xex-btc")
    assert second.engine.strategies[1].strategy.starts == 2  # type: ignore[attr-defined]
    assert int(second.engine.session, 36) > int(first.engine.session, 36)
    order = second.engine.strategies[0].strategy.fleet_order("binance", "BTC/USDT", "buy", 0.1)
    assert order.client_order_id.split("-")[1] == second.engine.session
    await first.persistence.snapshots.close()  # type: ignore[union-attr]
    await second.persistence.snapshots.close()  # type: ignore[union-attr]


async def test_a_damaged_snapshot_leaves_the_account_at_its_start_and_says_so(
    redis_url: str, redis_prefix: tuple[str, str]
) -> None:
    first = memo_engine(redis_url, redis_prefix[1])
    await first.restore()
    feed_dislocation(first.engine, premium=0.006)
    assert await first.persistence.save_snapshot()
    client = aioredis.Redis.from_url(redis_url)
    key = f"arbfleet:test:{redis_prefix[1]}:xex-btc:snapshot"
    await client.hset(key, "balances", b"00000000:[]")  # an empty account: not what was saved
    await client.aclose()
    second = memo_engine(redis_url, redis_prefix[1])
    await second.restore()
    fresh = memo_engine(redis_url, "never-used")
    assert second.engine.portfolio.account("xex-btc") == fresh.engine.portfolio.account("xex-btc")
    assert [p for p in second.persistence.problems if "xex-btc" in p] == [
        f"redis snapshot: {key} field 'balances': checksum mismatch (corrupted); not restored"
    ]
    for node in (first, second):
        await node.persistence.snapshots.close()  # type: ignore[union-attr]
