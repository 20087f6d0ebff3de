"""Prometheus metrics, read from the engine's own counters when scraped.

Names, types and labels follow ``monitoring/metrics.md`` (the contract the alert rules and
dashboards are tested against). The hot path bumps plain integers; prometheus-client's counters
take a lock per increment, which would cost more than parsing a message, so a custom collector
turns the integers into metric families at scrape time instead. Labels are venues, strategy ids,
hooks, instruments and reason classes: never keys, never free text.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from prometheus_client import ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from runtime import __version__
from runtime.core.instruments import split_symbol
from runtime.engine.stats import TICK_TO_INTENT_BUCKETS_S
from runtime.platform.consul import CHECK_NAME, STATES
from runtime.venues.replay import ReplayFeed

if TYPE_CHECKING:
    from runtime.engine.engine import Engine
    from runtime.engine.plugins import SafeStrategy
    from runtime.engine.stats import StrategyStats
    from runtime.persistence.writer import BatchWriter
    from runtime.platform.consul import ConsulLink
    from runtime.platform.dbcreds import DatabaseCredentials
    from runtime.platform.vault import KeyProvider


class Observed(Protocol):
    """What the collector reads: the engine and the parts the node wired around it."""

    @property
    def engine(self) -> Engine: ...

    @property
    def keys(self) -> KeyProvider | None: ...

    @property
    def db_credentials(self) -> DatabaseCredentials | None: ...

    @property
    def writer(self) -> BatchWriter | None: ...

    @property
    def consul(self) -> ConsulLink | None: ...


def _instrument(symbol: str) -> str:
    return symbol.replace("/", "-")  # the contract's instrument ids: BTC-USDT


class EngineCollector(Collector):
    def __init__(self, node: Observed) -> None:
        self._node = node
        self._engine = node.engine

    def collect(self) -> Iterator[Metric]:
        info = GaugeMetricFamily(
            "arbfleet_engine_info", "The engine's version and mode", labels=["version", "mode"]
        )
        info.add_metric([__version__, self._engine.config.mode], 1.0)
        yield info
        yield from self._feeds()
        yield self._replay()
        yield from self._strategies()
        yield from self._risk()
        yield from self._loop()
        yield from self._exchange_keys()
        yield from self._writer()
        yield from self._consul()

    def _feeds(self) -> Iterator[Metric]:
        engine = self._engine
        now = time.time_ns()
        frames = CounterMetricFamily(
            "arbfleet_feed_frames", "Messages parsed into events", labels=["venue", "type"]
        )
        dropped = CounterMetricFamily(
            "arbfleet_feed_dropped", "Messages dropped", labels=["venue", "reason"]
        )
        for venue, counter in engine.stats.frames.items():
            drops = engine.drops[venue].counts
            not_parsed = engine.drops[venue].frames_dropped
            depth = engine.stats.parsed[(venue, "depth")]
            trades = engine.stats.parsed[(venue, "trade")]
            tickers = max(counter[0] - not_parsed - depth - trades, 0)
            for kind, count in (("book_ticker", tickers), ("depth", depth), ("trade", trades)):
                frames.add_metric([venue, kind], count)
            for reason, count in drops.items():
                dropped.add_metric([venue, str(reason)], count)
        yield frames
        yield dropped
        gauges = {
            name: GaugeMetricFamily(f"arbfleet_feed_{name}", text, labels=["venue"])
            for name, text in (
                ("connected", "1 while the websocket is connected"),
                ("stale", "1 while the engine considers the venue silent"),
                ("staleness_seconds", "Seconds since the last message"),
            )
        }
        reconnects = CounterMetricFamily(
            "arbfleet_feed_reconnects", "Connections after the first", labels=["venue"]
        )
        restarts = CounterMetricFamily(
            "arbfleet_feed_restarts",
            "Feed tasks restarted after an unexpected error",
            labels=["venue"],
        )
        for venue, feed in engine.feeds.items():
            gauges["connected"].add_metric([venue], float(feed.connected))
            gauges["stale"].add_metric([venue], float(feed.stale(now)))
            # A venue silent since the engine started is as stale as the engine is old: without
            # a sample, ArbfleetFeedStale could never fire for a venue that never delivered.
            last_ns = feed.last_frame_ns or engine.stats.started_ns
            gauges["staleness_seconds"].add_metric([venue], max(now - last_ns, 0) / 1e9)
            reconnects.add_metric([venue], max(feed.connects - 1, 0))
            restarts.add_metric([venue], engine.stats.feed_restarts[venue])
        yield from gauges.values()
        yield reconnects
        yield restarts
        gaps = CounterMetricFamily("arbfleet_book_gaps", "Order book gaps", labels=["venue"])
        for venue, count in engine.stats.gaps.items():
            gaps.add_metric([venue], count)
        yield gaps

    def _replay(self) -> CounterMetricFamily:
        """Lines of a replay file by outcome; no samples unless the engine plays one."""
        lines = CounterMetricFamily(
            "arbfleet_replay_lines",
            "Lines of the replay file: played, blank, bad_record, unknown_venue",
            labels=["outcome"],
        )
        for feed in self._engine.feeds.values():
            if isinstance(feed, ReplayFeed):
                for outcome, count in feed.stats.lines().items():
                    lines.add_metric([outcome], count)
        return lines

    def _strategies(self) -> Iterator[Metric]:
        engine = self._engine
        by_strategy = [(s, engine.stats.by_strategy[s.name]) for s in engine.strategies]
        yield self._per_strategy("opportunities", "Opportunities acted on", by_strategy)
        yield self._per_strategy("blocked", "Orders the risk guards blocked", by_strategy)
        for name, text in (("orders", "Orders sent"), ("fills", "Fills received")):
            family = CounterMetricFamily(
                f"arbfleet_strategy_{name}", text, labels=["strategy", "venue"]
            )
            for safe, stats in by_strategy:
                for venue, count in getattr(stats, f"{name}_by_venue").items():
                    family.add_metric([safe.name, venue], count)
            yield family
        rejections = CounterMetricFamily(
            "arbfleet_venue_rejections",
            "Orders refused",
            labels=["strategy", "venue", "reason"],
        )
        for safe, stats in by_strategy:
            for (venue, reason), count in stats.rejections.items():
                rejections.add_metric([safe.name, venue, reason], count)
        yield rejections
        yield self._latency(by_strategy)
        yield from self._health_of_plugins()
        yield from self._positions()

    @staticmethod
    def _per_strategy(
        name: str, text: str, by_strategy: list[tuple[SafeStrategy, StrategyStats]]
    ) -> CounterMetricFamily:
        family = CounterMetricFamily(f"arbfleet_strategy_{name}", text, labels=["strategy"])
        for safe, stats in by_strategy:
            family.add_metric([safe.name], getattr(stats, name))
        return family

    @staticmethod
    def _latency(by_strategy: list[tuple[SafeStrategy, StrategyStats]]) -> HistogramMetricFamily:
        family = HistogramMetricFamily(
            "arbfleet_tick_to_intent_seconds",
            "Local receive time of a market event to the intents it caused",
            labels=["strategy"],
        )
        for safe, stats in by_strategy:
            cumulative = 0
            buckets: list[tuple[str, float]] = []
            for bound, count in zip(TICK_TO_INTENT_BUCKETS_S, stats.tick_to_intent, strict=True):
                cumulative += count
                buckets.append((repr(bound), cumulative))
            buckets.append(("+Inf", stats.tick_to_intent_count))
            family.add_metric(
                [safe.name],
                buckets,
                sum_value=stats.tick_to_intent_sum_s,
            )
        return family

    def _health_of_plugins(self) -> Iterator[Metric]:
        engine = self._engine
        errors = CounterMetricFamily(
            "arbfleet_strategy_errors", "Plugin hook failures", labels=["strategy", "hook"]
        )
        quarantines = CounterMetricFamily(
            "arbfleet_strategy_quarantines", "Times quarantined", labels=["strategy"]
        )
        quarantined = GaugeMetricFamily(
            "arbfleet_strategy_quarantined", "1 while quarantined", labels=["strategy"]
        )
        pnl = GaugeMetricFamily(
            "arbfleet_strategy_pnl", "PnL marked to market (USDT)", labels=["strategy"]
        )
        for safe in engine.strategies:
            for hook, count in safe.errors.items():
                errors.add_metric([safe.name, hook], count)
            quarantines.add_metric([safe.name], safe.quarantines)
            quarantined.add_metric([safe.name], float(safe.quarantined))
            value = engine.portfolio.pnl(safe.name, engine.prices)
            if value is not None:
                pnl.add_metric([safe.name], value)
        yield from (errors, quarantines, quarantined, pnl)

    def _positions(self) -> Iterator[Metric]:
        engine = self._engine
        family = GaugeMetricFamily(
            "arbfleet_position",
            "Signed position in base units",
            labels=["strategy", "venue", "instrument"],
        )
        for safe in engine.strategies:
            for sub in safe.subscriptions():
                base, _ = split_symbol(sub.symbol)
                position = engine.portfolio.position(safe.name, sub.venue, base)
                family.add_metric([safe.name, sub.venue, _instrument(sub.symbol)], position)
        yield family

    def _risk(self) -> Iterator[Metric]:
        engine = self._engine
        blocked = CounterMetricFamily(
            "arbfleet_risk_blocked", "Orders blocked by guard", labels=["reason"]
        )
        for reason, count in engine.risk.blocked.items():
            blocked.add_metric([reason], count)
        yield blocked
        loss = GaugeMetricFamily(
            "arbfleet_risk_daily_loss", "Loss so far this UTC day", labels=["strategy"]
        )
        limit = GaugeMetricFamily(
            "arbfleet_risk_daily_loss_limit", "max_daily_loss", labels=["strategy"]
        )
        for safe in engine.strategies:
            lost = engine.risk.daily_loss(safe.name)
            loss.add_metric([safe.name], max(lost or 0.0, 0.0))
            limit.add_metric([safe.name], engine.risk.limits.max_daily_loss)
        yield loss
        yield limit
        yield GaugeMetricFamily(
            "arbfleet_kill_switch", "1 while engaged", value=float(engine.kill_switch.engaged)
        )

    def _loop(self) -> Iterator[Metric]:
        watchdog = self._engine.watchdog
        yield GaugeMetricFamily("arbfleet_loop_lag_seconds", "Event loop lag", value=watchdog.lag_s)
        yield CounterMetricFamily(
            "arbfleet_loop_stalls", "Times the loop was blocked", value=watchdog.stalls
        )

    def _exchange_keys(self) -> Iterator[Metric]:
        """Key version in use and its age per account, and the TTL of every Vault lease."""
        keys, database = self._node.keys, self._node.db_credentials
        if keys is None and database is None:
            return
        version = GaugeMetricFamily(
            "arbfleet_exchange_key_version",
            "KV v2 version of the exchange key in use",
            labels=["venue", "account"],
        )
        age = GaugeMetricFamily(
            "arbfleet_exchange_key_age_seconds",
            "Age of the exchange key in use (its KV version's created_time)",
            labels=["venue", "account"],
        )
        for venue, report in (keys.report() if keys is not None else {}).items():
            if report["version"] is not None:
                version.add_metric([venue, report["account"]], report["version"])
                age.add_metric([venue, report["account"]], report["age_s"])
        ttl = GaugeMetricFamily(
            "arbfleet_vault_lease_ttl_seconds",
            "Seconds left on each Vault lease or token the engine holds",
            labels=["secret"],
        )
        for source in (keys, database):
            for secret, seconds in (source.lease_ttls() if source is not None else {}).items():
                ttl.add_metric([secret], seconds)
        yield from (version, age, ttl)

    def _writer(self) -> Iterator[Metric]:
        """The database writer: back-pressure (queue depth, spill) and throughput."""
        writer = self._node.writer
        depth = GaugeMetricFamily(
            "arbfleet_writer_queue_depth", "Rows waiting in the writer's queue", labels=["table"]
        )
        rows = CounterMetricFamily(
            "arbfleet_writer_rows", "Rows written to the database", labels=["table"]
        )
        spill = GaugeMetricFamily(
            "arbfleet_writer_spill_bytes", "Bytes spilled to disk while the database is away"
        )
        if writer is not None:
            for table, count in writer.queue_depth().items():
                depth.add_metric([table], count)
            for table, count in writer.stats.rows.items():
                rows.add_metric([table], count)
            spill.add_metric([], writer.spill.bytes)
        yield from (depth, rows, spill)

    def _consul(self) -> Iterator[Metric]:
        """The state of the "can trade" TTL check last sent to Consul (when Consul is on)."""
        link = self._node.consul
        if link is None:
            return
        state = GaugeMetricFamily(
            "arbfleet_consul_check_state",
            "1 for the Consul check's current state",
            labels=["check", "state"],
        )
        for name in STATES:
            state.add_metric([CHECK_NAME, name], float(link.status == name))
        yield state


def engine_registry(node: Observed) -> CollectorRegistry:
    """A registry of its own per engine (so tests can run several), with process metrics."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(EngineCollector(node))
    ProcessCollector(registry=registry)
    return registry


class BackupCollector(Collector):
    """``arbfleet_backup_*``, read from the backup directory at each scrape (the backup job is a
    periodic batch job with nothing to scrape: `arbfleet db backup-exporter` serves these)."""

    def __init__(self, backups: Path) -> None:
        self._backups = backups

    def collect(self) -> Iterator[Metric]:
        from runtime.persistence.backup import status

        last = GaugeMetricFamily(
            "arbfleet_backup_last_success_timestamp_seconds",
            "When the newest backup of the store ended",
            labels=["store"],
        )
        size = GaugeMetricFamily(
            "arbfleet_backup_last_size_bytes", "Size of the newest backup", labels=["store"]
        )
        failed = GaugeMetricFamily(
            "arbfleet_backup_last_run_failed",
            "1 when the backup job's last run for the store failed",
            labels=["store"],
        )
        for store in status(self._backups):
            if store.last_success is not None and store.size_bytes is not None:
                last.add_metric([store.store], float(store.last_success))
                size.add_metric([store.store], float(store.size_bytes))
            failed.add_metric([store.store], float(store.last_run_failed))
        yield from (last, size, failed)


def backup_registry(backups: Path) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(BackupCollector(backups))
    return registry
