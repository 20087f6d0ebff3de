"""The input series of the promtool test cases: fixtures for threshold alerts (series on which an
alert's query evaluates to a given value) and hand-made cases for the others."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from monitoring.elsewhere import NODE_FS_AVAIL, NODE_FS_SIZE, PG_DATABASE_SIZE, UP
from monitoring.settings import Labels, number
from runtime.observability import catalogue as m
from runtime.observability.catalogue import Metric

Fixture = Callable[[float, str], list["Series"]]
STATES = ("passing", "warning", "critical")  # CONSUL_CHECK_STATE's `state` values


@dataclass(frozen=True)
class Series:
    metric: Metric
    labels: Labels
    values: str  # promtool's expanding notation, one value per minute

    def promql(self) -> str:
        inner = ", ".join(f'{k}="{v}"' for k, v in self.labels.items())
        return f"{self.metric.series}{{{inner}}}"


@dataclass(frozen=True)
class Firing:
    labels: Labels  # the alert's labels, without alertname
    value: float = 0.0  # what {{ $value }} renders to


@dataclass(frozen=True)
class Case:
    """Input series whose alert condition holds from minute `starts` on."""

    series: list[Series]
    fires: list[Firing]
    starts: int = 0


def engine_labels(job: str, **more: str) -> Labels:
    return {
        "job": job,
        "instance": "10.0.1.7:20135",
        "deployment": "xarb-binance-kraken",
        "strategy": "cross_venue",
        "mode": "live",
        **more,
    }


def gauge(metric: Metric, labels: Labels, value: float) -> Series:
    return Series(metric, labels, f"{number(value)}+0x120")


def _firing(labels: Labels, p: dict[str, Any], value: float = 0.0) -> Firing:
    keep = ("deployment", "strategy", "mode")
    return Firing({k: labels[k] for k in keep} | {"severity": p["severity"]}, value)


# --- hand-made cases: `p` is the rule's placeholders plus `jobs` and `severity` --------------


def engine_down(p: dict[str, Any]) -> list[Case]:
    job = p["jobs"]["engine"]
    down, up, gone = (engine_labels(job, deployment=d) for d in ("down", "up", "gone"))
    return [
        Case([Series(UP, down, "0+0x120"), Series(UP, up, "1+0x120")], [_firing(down, p)]),
        # Scraped for ten minutes, then deregistered: its last sample is a staleness marker.
        Case([Series(UP, gone, "1+0x9 stale"), Series(UP, up, "1+0x120")], [_firing(gone, p)], 10),
    ]


def no_fills(p: dict[str, Any]) -> list[Case]:
    job = p["jobs"]["engine"]
    per_minute = number(2 * p["threshold"] + 1)  # past the threshold from the second sample on
    stuck = engine_labels(job, strategy="stuck", venue="binance")
    trading = engine_labels(job, strategy="trading", venue="binance")
    series = [
        Series(m.STRATEGY_OPPORTUNITIES, stuck, f"0+{per_minute}x120"),
        Series(m.STRATEGY_FILLS, stuck, "0+0x120"),
        Series(m.STRATEGY_OPPORTUNITIES, trading, f"0+{per_minute}x120"),
        Series(m.STRATEGY_FILLS, trading, "0+1x120"),
    ]
    # increase() needs two samples: the condition first holds at minute 1.
    return [Case(series, [_firing(stuck, p)], starts=1)]


def quarantine(p: dict[str, Any]) -> list[Case]:
    job = p["jobs"]["engine"]
    bad, good = engine_labels(job, strategy="flaky"), engine_labels(job, strategy="steady")
    series = [gauge(m.STRATEGY_QUARANTINED, bad, 1), gauge(m.STRATEGY_QUARANTINED, good, 0)]
    return [Case(series, [Firing(bad | {"severity": p["severity"]})])]


def _check_state(job: str, state: str, check: str, **more: str) -> list[Series]:
    """The engine's Consul check as `prometheus_client` exports an Enum: 1 for `state`."""
    labels = engine_labels(job, **more)
    return [
        gauge(m.CONSUL_CHECK_STATE, labels | {"check": check, "state": s}, float(s == state))
        for s in STATES
    ]


def can_trade(state: str) -> Callable[[dict[str, Any]], list[Case]]:
    """Deployments (one allocation each unless named `canary`) in every state that matters.

    `state` is the state of the deployment's best allocation that raises the alert; the other
    deployments must stay silent: the other states, a canary waiting for the account lock beside
    an engine that trades, and (for critical) an engine halted by the kill switch.
    """

    def cases(p: dict[str, Any]) -> list[Case]:
        job = p["jobs"]["engine"]
        check = re.fullmatch(r'check="([^"]+)"', p["can_trade"])
        assert check, f'selectors.can_trade: expected check="...", got {p["can_trade"]!r}'

        def engine(deployment: str, state: str, instance: str = "10.0.1.7:20135") -> list[Series]:
            return _check_state(job, state, check[1], deployment=deployment, instance=instance)

        series = [s for each in STATES for s in engine(each, each)]
        for each in ("passing", "warning"):  # the engine trading, its canary waiting for the lock
            series += engine(f"canary-beside-{each}", each)
            series += engine(f"canary-beside-{each}", "critical", instance="10.0.1.9:24410")
        halted = engine_labels(job, deployment="halted")
        series += [*engine("halted", "critical"), gauge(m.KILL_SWITCH, halted, 1)]
        series += [gauge(m.KILL_SWITCH, engine_labels(job, deployment=s), 0) for s in STATES]
        # A check other than the can-trade one does not count.
        series += _check_state(job, state, "other-check", deployment="other-check")
        firing = [state] + (["canary-beside-warning"] if state == "warning" else [])
        return [Case(series, [_firing(engine_labels(job, deployment=d), p) for d in firing])]

    return cases


def kill_switch(p: dict[str, Any]) -> list[Case]:
    job = p["jobs"]["engine"]
    series = [
        gauge(m.KILL_SWITCH, engine_labels(job, deployment="a"), 1),
        gauge(m.KILL_SWITCH, engine_labels(job, deployment="b", mode="paper"), 1),
        gauge(m.KILL_SWITCH, engine_labels(job, deployment="c"), 0),
        # Another job's series of the same name is not an engine's.
        gauge(m.KILL_SWITCH, engine_labels("not-the-engine", deployment="d"), 1),
    ]
    # One alert for the cluster: the switch is one Consul key; the value counts halted engines.
    return [Case(series, [Firing({"severity": p["severity"]}, 2)])]


# --- fixtures of threshold alerts: series on which the query is `value` -----------------------


def disk(job: str) -> Fixture:
    def fixture(percent_used: float, name: str) -> list[Series]:
        labels = {
            "job": job,
            "instance": "10.0.1.7:9100",
            "device": "/dev/sda1",
            "fstype": "ext4",
            "mountpoint": f"/{name}",
        }
        size = 10**9
        avail = size - percent_used * size / 100
        return [gauge(NODE_FS_SIZE, labels, size), gauge(NODE_FS_AVAIL, labels, avail)]

    return fixture


def engine_gauge(metric: Metric, job: str, label: str, scale: float = 1, **more: str) -> Fixture:
    """Fixture for `metric / scale`: the case name goes on `label`, `more` labels are fixed."""

    def fixture(value: float, name: str) -> list[Series]:
        return [gauge(metric, engine_labels(job, **more, **{label: name}), value * scale)]

    return fixture


def daily_loss(job: str) -> Fixture:
    def fixture(percent: float, name: str) -> list[Series]:
        labels = engine_labels(job, strategy=name)
        limit = 500.0
        return [
            gauge(m.RISK_DAILY_LOSS, labels, percent * limit / 100),
            gauge(m.RISK_DAILY_LOSS_LIMIT, labels, limit),
        ]

    return fixture


def database(job: str) -> Fixture:
    def fixture(gigabytes: float, name: str) -> list[Series]:
        labels = {"job": job, "instance": "10.0.1.8:9187", "datname": name}
        return [gauge(PG_DATABASE_SIZE, labels, gigabytes * 1e9)]

    return fixture


def _backup_labels(job: str, store: str) -> Labels:
    return {"job": job, "instance": "10.0.1.8:25001", "store": store}


def backup_age(job: str) -> Fixture:
    """A backup `hours` old at every evaluation: promtool's time() advances 60 s a minute, so
    the timestamp does too, from `-hours` at time 0."""

    def fixture(hours: float, name: str) -> list[Series]:
        values = f"{number(-hours * 3600)}+60x120"
        return [Series(m.BACKUP_LAST_SUCCESS, _backup_labels(job, name), values)]

    return fixture


def backup_gauge(job: str, metric: Metric) -> Fixture:
    def fixture(value: float, name: str) -> list[Series]:
        return [gauge(metric, _backup_labels(job, name), value)]

    return fixture
