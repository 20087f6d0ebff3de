"""Orders left in doubt by a killed engine, when the venue cannot be asked at restart: the engine
keeps asking, reports itself degraded meanwhile, and never sends them."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from runtime.config import load_config
from runtime.core.orders import OrderIntent
from runtime.devstack.scratch import free_port
from runtime.devstack.simulator import ExchangeSimulator, SimulatorConfig
from runtime.node import Node
from runtime.persistence.journal import OrderJournal
from tests.integration.polling import until


def live_engine(journal: Path, port: int) -> Node:
    http = f"http://127.0.0.1:{port}"
    keys = {"api_key": "sim-key", "api_secret": "sim-secret"}
    overrides: dict[str, Any] = {
        "mode": "live",
        "venues": {
            "binance": {"ws_url": f"ws://127.0.0.1:{port}", "rest_url": http, **keys},
            "upbit": {"ws_url": f"ws://127.0.0.1:{port}/upbit", "rest_url": f"{http}/upbit",
                      **keys},
        },
        "journal": {"dir": journal, "settle_s": 0.5},
    }  # fmt: skip
    return Node(load_config(env={}, overrides=overrides))


async def test_an_order_in_doubt_is_asked_about_until_the_venue_answers(tmp_path: Path) -> None:
    port = free_port()
    killed = live_engine(tmp_path, port)
    await killed.restore()
    intent = OrderIntent(
        "xex-btc", f"xex_btc-{killed.engine.session}-1", "binance", "BTC/USDT", "buy", 0.01, 60_000.0,
        "", time.time_ns(),
    )  # fmt: skip
    assert killed.persistence.before_send([intent]) is None  # journaled; then the kill
    restarted = live_engine(tmp_path, port)
    await restarted.restore()
    await restarted.engine.executor.start()
    await restarted.persistence.reconcile(
        restarted.engine.executor.recover
    )  # the venue is not there yet
    assert list(restarted.persistence.in_doubt) == [intent.client_order_id]
    assert "1 orders in doubt" in " ".join(restarted.health()["degraded"])
    simulator = ExchangeSimulator(SimulatorConfig(port=port))
    await simulator.start()
    try:
        await until(lambda: not restarted.persistence.in_doubt, 60, "the retry to ask the venue")
    finally:
        await simulator.stop()
    assert simulator.orders == {}  # asked about, never sent
    assert restarted.engine.risk.open_orders("xex-btc") == 0
    assert restarted.health()["degraded"] == []
    done = OrderJournal(tmp_path).replay().done
    assert [(d.result.intent.client_order_id, d.result.code) for d in done] == [
        (intent.client_order_id, "not_sent")
    ]
    await restarted.persistence.stop(time.monotonic() + 5)
    await restarted.engine.executor.close()
    assert OrderJournal(tmp_path).replay().open_orders == {}
