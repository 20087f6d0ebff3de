"""Prometheus metrics, read from the engine's own counters when scraped.

Every family's name, type, help text and label names come from ``catalogue.py``, which
``monitoring/`` derives its rules, dashboards and ``metrics.md`` from. The hot path bumps plain
integers; prometheus-client's counters take a lock per increment, which would cost more than
parsing a message, so a custom collector turns the integers into metric families at scrape
time instead. Labels are venues, strategy ids, hooks, instruments and reason classes: never
keys, never free text.
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
from runtime.observability import catalogue as m
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


def counter_of(metric: m.Metric) -> CounterMetricFamily:
    """An empty family of the catalogue's `metric` (which must be a counter)."""
    _expect(metric, "counter")
    return CounterMetricFamily(metric.name, metric.help, labels=metric.labels)


def gauge_of(metric: m.Metric) -> GaugeMetricFamily:
    _expect(metric, "gauge")
    return GaugeMetricFamily(metric.name, metric.help, labels=metric.labels)


def histogram_of(metric: m.Metric) -> HistogramMetricFamily:
    _expect(metric, "histogram")
    return HistogramMetricFamily(metric.name, metric.help, labels=metric.labels)


def _expect(metric: m.Metric, kind: m.Kind) -> None:
    if metric.kind != kind:
        raise TypeError(f"{metric.name} is a {metric.kind} in the catalogue, not a {kind}")


def _instrument(symbol: str) -> str:
    return symbol.replace("/", "-")  # the contract's instrument ids: BTC-USDT


class EngineCollector(Collector):
    def __init__(self, node: Observed) -> None:
        self._node = node
        self._engine = node.engine

    def collect(self) -> Iterator[Metric]:
        info = gauge_of(m.ENGINE_INFO)
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
        frames, dropped = counter_of(m.FEED_FRAMES), counter_of(m.FEED_DROPPED)
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
            "connected": gauge_of(m.FEED_CONNECTED),
            "stale": gauge_of(m.FEED_STALE),
            "staleness_seconds": gauge_of(m.FEED_STALENESS),
        }
        reconnects, restarts = counter_of(m.FEED_RECONNECTS), counter_of(m.FEED_RESTARTS)
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
        gaps = counter_of(m.BOOK_GAPS)
        for venue, count in engine.stats.gaps.items():
            gaps.add_metric([venue], count)
        yield gaps

    def _replay(self) -> CounterMetricFamily:
        """Lines of a replay file by outcome; no samples unless the engine plays one."""
        lines = counter_of(m.REPLAY_LINES)
        for feed in self._engine.feeds.values():
            if isinstance(feed, ReplayFeed):
                for outcome, count in feed.stats.lines().items():
                    lines.add_metric([outcome], count)
        return lines

    def _strategies(self) -> Iterator[Metric]:
        engine = self._engine
        by_strategy = [(s, engine.stats.by_strategy[s.name]) for s in engine.strategies]
        yield self._per_strategy(m.STRATEGY_OPPORTUNITIES, "opportunities", by_strategy)
        yield self._per_strategy(m.STRATEGY_BLOCKED, "blocked", by_strategy)
        for metric, name in ((m.STRATEGY_ORDERS, "orders"), (m.STRATEGY_FILLS, "fills")):
            family = counter_of(metric)
            for safe, stats in by_strategy:
                for venue, count in getattr(stats, f"{name}_by_venue").items():
                    family.add_metric([safe.name, venue], count)
            yield family
        rejections = counter_of(m.VENUE_REJECTIONS)
        for safe, stats in by_strategy:
            for (venue, reason), count in stats.rejections.items():
                rejections.add_metric([safe.name, venue, reason], count)
        yield rejections
        yield self._latency(by_strategy)
        yield from self._health_of_plugins()
        yield from self._positions()

    @staticmethod
    def _per_strategy(
        metric: m.Metric, name: str, by_strategy: list[tuple[SafeStrategy, StrategyStats]]
    ) -> CounterMetricFamily:
        family = counter_of(metric)
        for safe, stats in by_strategy:
            family.add_metric([safe.name], getattr(stats, name))
        return family

    @staticmethod
    def _latency(by_strategy: list[tuple[SafeStrategy, StrategyStats]]) -> HistogramMetricFamily:
        family = histogram_of(m.TICK_TO_INTENT)
        for safe, stats in by_strategy:
            cumulative = 0
            buckets: list[tuple[str, float]] = []
            for bound, count in zip(m.TICK_TO_INTENT.buckets, stats.tick_to_intent, strict=True):
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
        errors, quarantines = counter_of(m.STRATEGY_ERRORS), counter_of(m.STRATEGY_QUARANTINES)
        quarantined, pnl = gauge_of(m.STRATEGY_QUARANTINED), gauge_of(m.STRATEGY_PNL)
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
        family = gauge_of(m.POSITION)
        for safe in engine.strategies:
            for sub in safe.subscriptions():
                base, _ = split_symbol(sub.symbol)
                position = engine.portfolio.position(safe.name, sub.venue, base)
                family.add_metric([safe.name, sub.venue, _instrument(sub.symbol)], position)
        yield family

    def _risk(self) -> Iterator[Metric]:
        engine = self._engine
        blocked = counter_of(m.RISK_BLOCKED)
        for reason, count in engine.risk.blocked.items():
            blocked.add_metric([reason], count)
        yield blocked
        loss, limit = gauge_of(m.RISK_DAILY_LOSS), gauge_of(m.RISK_DAILY_LOSS_LIMIT)
        for safe in engine.strategies:
            lost = engine.risk.daily_loss(safe.name)
            loss.add_metric([safe.name], max(lost or 0.0, 0.0))
            limit.add_metric([safe.name], engine.risk.limits.max_daily_loss)
        yield loss
        yield limit
        kill_switch = gauge_of(m.KILL_SWITCH)
        kill_switch.add_metric([], float(engine.kill_switch.engaged))
        yield kill_switch

    def _loop(self) -> Iterator[Metric]:
        watchdog = self._engine.watchdog
        lag, stalls = gauge_of(m.LOOP_LAG), counter_of(m.LOOP_STALLS)
        lag.add_metric([], watchdog.lag_s)
        stalls.add_metric([], watchdog.stalls)
        yield from (lag, stalls)

    def _exchange_keys(self) -> Iterator[Metric]:
        """Key version in use and its age per account, and the TTL of every Vault lease (families
        without samples when the engine reads no secret from Vault)."""
        keys, database = self._node.keys, self._node.db_credentials
        version, age = gauge_of(m.EXCHANGE_KEY_VERSION), gauge_of(m.EXCHANGE_KEY_AGE)
        for venue, report in (keys.report() if keys is not None else {}).items():
            if report["version"] is not None:
                version.add_metric([venue, report["account"]], report["version"])
                age.add_metric([venue, report["account"]], report["age_s"])
        ttl = gauge_of(m.VAULT_LEASE_TTL)
        for source in (keys, database):
            for secret, seconds in (source.lease_ttls() if source is not None else {}).items():
                ttl.add_metric([secret], seconds)
        yield from (version, age, ttl)

    def _writer(self) -> Iterator[Metric]:
        """The database writer: back-pressure (queue depth, spill) and throughput."""
        writer = self._node.writer
        depth, spill = gauge_of(m.WRITER_QUEUE_DEPTH), gauge_of(m.WRITER_SPILL)
        rows = counter_of(m.WRITER_ROWS)
        if writer is not None:
            for table, count in writer.queue_depth().items():
                depth.add_metric([table], count)
            for table, count in writer.stats.rows.items():
                rows.add_metric([table], count)
            spill.add_metric([], writer.spill.bytes)
        yield from (depth, rows, spill)

    def _consul(self) -> Iterator[Metric]:
        """The state of the "can trade" TTL check last sent to Consul (no samples without it)."""
        link = self._node.consul
        state = gauge_of(m.CONSUL_CHECK_STATE)
        if link is not None:
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
    """The catalogue's ``BACKUP`` families, read from the backup directory at each scrape (the
    backup job is a periodic batch job with nothing to scrape: `arbfleet db backup-exporter`
    serves these)."""

    def __init__(self, backups: Path) -> None:
        self._backups = backups

    def collect(self) -> Iterator[Metric]:
        from runtime.persistence.backup import status

        last, size = gauge_of(m.BACKUP_LAST_SUCCESS), gauge_of(m.BACKUP_LAST_SIZE)
        failed = gauge_of(m.BACKUP_LAST_RUN_FAILED)
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
