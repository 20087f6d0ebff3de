"""The recording rules the dashboards draw: per-deployment rates and latency quantiles."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from monitoring.settings import Settings, q, selectors
from runtime.observability import catalogue as m
from runtime.observability.catalogue import Metric


@dataclass(frozen=True)
class Rate:
    """`sum by (by) (rate(counter[window]))` over the engines, recorded under `record`."""

    metric: Metric
    by: tuple[str, ...]
    window: str

    @property
    def record(self) -> str:
        return f"{'_'.join(self.by)}:{self.metric.name}:rate{self.window}"

    def rule(self, engine: str) -> dict[str, Any]:
        by = ", ".join(self.by)
        rate = f"rate({q(self.metric, engine, window=self.window)})"
        return {"record": self.record, "expr": f"sum by ({by}) ({rate})"}


RATES = {
    rate.metric: rate
    for rate in (
        Rate(m.FEED_FRAMES, ("deployment", "venue", "type"), "1m"),
        Rate(m.FEED_DROPPED, ("deployment", "venue", "reason"), "5m"),
        Rate(m.STRATEGY_OPPORTUNITIES, ("deployment", "strategy"), "5m"),
        Rate(m.STRATEGY_ORDERS, ("deployment", "strategy", "venue"), "5m"),
        Rate(m.STRATEGY_FILLS, ("deployment", "strategy", "venue"), "5m"),
        Rate(m.STRATEGY_BLOCKED, ("deployment", "strategy"), "5m"),
        Rate(m.RISK_BLOCKED, ("deployment", "reason"), "5m"),
    )
}
"""The recorded rate of each counter the dashboards draw per deployment, by the counter."""

LATENCY = f"deployment_strategy:{m.TICK_TO_INTENT.name}:histogram_quantile"
QUANTILES = ("0.5", "0.99")


def _latency_rule(engine: str, quantile: str) -> dict[str, Any]:
    buckets = q(m.TICK_TO_INTENT, engine, suffix="_bucket", window="5m")
    return {
        "record": LATENCY,
        "expr": (
            f"histogram_quantile({quantile}, sum by (deployment, strategy, le) (rate({buckets})))"
        ),
        "labels": {"quantile": quantile},
    }


def recording_rules(settings: Settings) -> dict[str, Any]:
    engine = selectors(settings)["engine"]
    rules = [rate.rule(engine) for rate in RATES.values()]
    rules += [_latency_rule(engine, quantile) for quantile in QUANTILES]
    return {"groups": [{"name": "arbfleet-recording", "rules": rules}]}
