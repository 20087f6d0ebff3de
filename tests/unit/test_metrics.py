"""The engine's metrics: the families its collectors expose are exactly the catalogue's
(runtime/observability/catalogue.py, which monitoring/ derives its rules and metrics.md from),
and their values reflect what the engine did."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry

from runtime.config import load_config
from runtime.node import Node
from runtime.observability import catalogue
from runtime.observability.metrics import backup_registry, engine_registry, gauge_of
from runtime.venues.base import WebsocketFeed
from runtime.venues.replay import ReplayFeed
from tests.unit.market_kit import binance_ticker, upbit_book


def scrape(node: Node) -> dict[str, list[tuple[dict[str, str], float]]]:
    text = generate_latest(engine_registry(node)).decode()
    exposed: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            exposed.setdefault(sample.name, []).append((sample.labels, sample.value))
    return exposed


Exposed = tuple[str, str, tuple[float, ...], set[str]]  # type, help, buckets, label names


def families(registry: CollectorRegistry) -> dict[str, Exposed]:
    """Every `arbfleet_` family exposed, samples or not, as read back from the exposition text:
    label names from its samples (none without samples), bucket bounds from `le`."""
    text = generate_latest(registry).decode()
    out = {}
    for family in text_string_to_metric_families(text):
        labels = {name for sample in family.samples for name in sample.labels} - {"le"}
        bounds = {s.labels["le"] for s in family.samples if s.name.endswith("_bucket")}
        buckets = tuple(sorted(float(b) for b in bounds - {"+Inf"}))
        out[family.name] = (family.type, family.documentation, buckets, labels)
    return {name: f for name, f in out.items() if name.startswith("arbfleet_")}


def assert_exposes_exactly(
    registry: CollectorRegistry, entries: tuple[catalogue.Metric, ...]
) -> None:
    exposed = families(registry)
    assert {name: f[:3] for name, f in exposed.items()} == {
        m.name: (m.kind, m.help, m.buckets) for m in entries
    }
    for metric in entries:
        assert exposed[metric.name][3] in (set(), set(metric.labels)), metric.name


def traded_engine() -> Node:
    overrides = {"paper": {"latency_ms": 0.0, "latency_jitter_ms": 0.0}}
    node = Node(load_config(env={}, overrides=overrides))
    engine = node.engine
    now = time.time_ns()
    engine.frame_handler("upbit")(upbit_book("KRW-USDT", 1_399.5, 1_400.5, 1), now)
    engine.frame_handler("binance")(binance_ticker(59_995.0, 60_000.0, 1), now)
    krw = 60_000.0 * 1.006 * 1_400.0
    engine.frame_handler("upbit")(upbit_book("KRW-BTC", krw, krw * 1.0002, 2, size=0.05), now)
    return node


def test_the_engine_exposes_exactly_the_catalogue_families() -> None:
    assert_exposes_exactly(engine_registry(traded_engine()), catalogue.ENGINE)


def test_the_backup_exporter_exposes_exactly_the_catalogue_families(tmp_path: Path) -> None:
    assert_exposes_exactly(backup_registry(tmp_path), catalogue.BACKUP)


def test_a_family_of_the_wrong_kind_is_refused() -> None:
    with pytest.raises(TypeError, match="arbfleet_feed_frames is a counter"):
        gauge_of(catalogue.FEED_FRAMES)


def test_values_reflect_what_happened() -> None:
    exposed = scrape(traded_engine())
    fills = {labels["venue"]: value for labels, value in exposed["arbfleet_strategy_fills_total"]}
    assert fills == {"binance": 1.0, "upbit": 1.0}
    buckets = exposed["arbfleet_tick_to_intent_seconds_bucket"]
    infinite = [v for labels, v in buckets if labels == {"strategy": "xex-btc", "le": "+Inf"}]
    assert infinite == [1.0]
    positions = {
        (labels["venue"], labels["instrument"]): value
        for labels, value in exposed["arbfleet_position"]
        if labels["strategy"] == "xex-btc"
    }
    assert positions[("upbit", "BTC-KRW")] == pytest.approx(-positions[("binance", "BTC-USDT")])
    assert abs(positions[("binance", "BTC-USDT")]) > 0
    assert "process_resident_memory_bytes" in exposed


def test_the_series_the_alerts_read_are_exported_for_every_venue_and_strategy() -> None:
    node = traded_engine()
    engine = node.engine
    engine.stats.started_ns = time.time_ns() - 60 * 10**9  # up for a minute
    for venue in ("binance", "upbit"):
        engine.feeds[venue] = WebsocketFeed(venue, "ws://127.0.0.1:1", lambda raw, ts: None)
    engine.feeds["binance"].last_frame_ns = time.time_ns() - 20 * 10**9
    exposed = scrape(node)
    staleness = {
        labels["venue"]: value for labels, value in exposed["arbfleet_feed_staleness_seconds"]
    }
    assert staleness["binance"] == pytest.approx(20.0, abs=1.0)
    assert staleness["upbit"] == pytest.approx(60.0, abs=1.0)  # never delivered: since start
    strategies = {safe.name for safe in engine.strategies}
    for name in ("arbfleet_risk_daily_loss", "arbfleet_risk_daily_loss_limit"):
        assert {labels["strategy"] for labels, _ in exposed[name]} == strategies
    assert all(value >= 0.0 for _, value in exposed["arbfleet_risk_daily_loss"])
    assert all(value > 0.0 for _, value in exposed["arbfleet_risk_daily_loss_limit"])
    assert {labels["strategy"] for labels, _ in exposed["arbfleet_position"]} == strategies


async def test_replay_lines_are_exported_by_outcome(tmp_path: Path) -> None:
    path = tmp_path / "binance.log"
    path.write_bytes(binance_ticker(59_995.0, 60_000.0, 1) + b"\n\n")
    node = traded_engine()
    engine = node.engine
    feed = ReplayFeed(path, {"binance": engine.frame_handler("binance")}, venue="binance")
    await feed.run()
    engine.feeds[feed.venue] = feed
    lines = {labels["outcome"]: n for labels, n in scrape(node)["arbfleet_replay_lines_total"]}
    assert lines == {"played": 1.0, "blank": 1.0, "bad_record": 0.0, "unknown_venue": 0.0}
