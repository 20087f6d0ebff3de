"""In the local stack, the real Prometheus (the prometheus job) scrapes the real engine (the local
paper deployment, trading against the exchange simulator): found through Consul, labelled from
the engine service's meta, its series queryable through Prometheus's API."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from tests.infra.conftest import ENGINE_DEPLOYMENT, Workload
from tests.stack_plugin import Consul, wait_for

pytestmark = pytest.mark.stack

# Service meta that Prometheus relabels into every engine series (monitoring/README.md).
META = ("deployment", "strategy", "mode", "venues")


def prometheus_api(workload: Workload, path: str, **params: str) -> Any:
    response = requests.get(f"{workload.prometheus}/api/v1/{path}", params=params, timeout=10)
    response.raise_for_status()
    return response.json()["data"]


def engine_target(workload: Workload) -> dict[str, Any] | None:
    targets = prometheus_api(workload, "targets", state="active")["activeTargets"]
    engine = workload.engine.removeprefix("http://")
    return next(
        (
            t
            for t in targets
            if t["labels"]["job"] == "arbfleet-engine"
            and t["labels"]["instance"] == engine
            and t["health"] == "up"
        ),
        None,
    )


def feed_series(workload: Workload) -> list[dict[str, Any]]:
    query = f'arbfleet_feed_frames_total{{deployment="{ENGINE_DEPLOYMENT}"}} > 0'
    return list(prometheus_api(workload, "query", query=query)["result"])


def test_prometheus_scrapes_the_engine_found_in_consul(local_workload: Workload) -> None:
    target = wait_for(lambda: engine_target(local_workload), 90, "the engine target to be up")
    assert target["scrapeUrl"] == f"{local_workload.engine}/metrics"


def test_engine_series_carry_the_consul_meta(local_workload: Workload, consul: Consul) -> None:
    wait_for(lambda: engine_target(local_workload), 90, "the engine target to be up")
    series = wait_for(lambda: feed_series(local_workload), 90, "arbfleet_feed_frames_total > 0")
    (meta,) = [
        e["ServiceMeta"]
        for e in consul.get("catalog/service/arbfleet-engine")
        if f"http://{e['ServiceAddress']}:{e['ServicePort']}" == local_workload.engine
    ]
    labels = {name: {s["metric"][name] for s in series} for name in META}
    assert labels == {name: {meta[name]} for name in META}
    # The meta is the deployment's: the job name, its strategy, paper mode, both venues.
    assert {name: meta[name] for name in META} == {
        "deployment": ENGINE_DEPLOYMENT,
        "strategy": "cross_exchange",
        "mode": "paper",
        "venues": "binance,upbit",
    }


def test_engine_series_cover_every_venue(local_workload: Workload) -> None:
    def venues() -> set[str]:
        return {s["metric"]["venue"] for s in feed_series(local_workload)}

    wait_for(lambda: venues() == {"binance", "upbit"}, 90, "frames from both venues")
    assert venues() == {"binance", "upbit"}
