"""The engine: frames in, books, strategies behind their safe wrappers, risk, executor, fills out.

One asyncio loop. The hot path, ``frame_handler(venue)``, is a closure per venue that parses a
frame, updates the book and hands a changed top to the strategies subscribed to it; it does no I/O
and touches no lock. Everything slower (websocket reads, REST snapshots, the health server, timers,
the loop watchdog) runs in its own task. With embedded defaults nothing outside the process is
needed: state is in memory and keys come from the environment.
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import contextlib
import functools
import time
from array import array
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Protocol

from loguru import logger

from runtime.config import EngineConfig, StrategyEntry, strategy_errors
from runtime.core.errors import ConfigError
from runtime.core.events import BookTicker, DepthUpdate, MarketEvent, Trade
from runtime.core.frames import DropCounter, FrameHandler, Parser
from runtime.core.instruments import instrument
from runtime.core.orders import Fill, Opportunity, OrderResult, OrderStatus
from runtime.core.retry import Backoff
from runtime.engine.plugins import (
    HookTracker,
    Intents,
    PluginRegistry,
    SafeStrategy,
    StrategyContext,
    Subscription,
    build_strategy,
    deliver_book,
    discover,
)
from runtime.engine.watchdog import LoopWatchdog
from runtime.observability.catalogue import TICK_TO_INTENT_BUCKETS_S
from runtime.observability.health import HealthServer
from runtime.persistence.service import Persistence
from runtime.platform.consul import ConsulLink, consul_link
from runtime.trading.book import Books
from runtime.trading.execution import Executor
from runtime.trading.execution.live import Credentials, KeySource, LiveExecutor, venue_clients
from runtime.trading.execution.paper import PaperExecutor
from runtime.trading.portfolio import MidPrices, Portfolio
from runtime.trading.risk import KillSwitch, RiskGuard
from runtime.venues.binance.feed import DepthSnapshots
from runtime.venues.registry import build_feed, build_parser
from runtime.venues.replay import FrameRecorder, ReplayFeed

if TYPE_CHECKING:
    from runtime.platform.dbcreds import DatabaseCredentials
    from runtime.platform.vault import KeyProvider

LATENCY_SAMPLES: Final = 1 << 16
_LATENCY_MASK: Final = LATENCY_SAMPLES - 1
_SAMPLE_SHIFT: Final = 3
_SAMPLE_EVERY_MASK: Final = (1 << _SAMPLE_SHIFT) - 1
"""Latency is sampled on one frame in eight: reading the clock costs a tenth of a frame."""
FEED_RESTART_CAP_S: Final = 30.0
"""Longest pause before a dead feed task is restarted (see ``Engine._supervise``)."""


class Feed(Protocol):
    """A source of frames for one venue: a websocket connection or a replay file."""

    venue: str
    connected: bool
    connects: int
    last_frame_ns: int

    def stale(self, now_ns: int | None = None) -> bool: ...

    async def run(self) -> None: ...


@dataclass
class StrategyStats:
    opportunities: int = 0
    orders: int = 0
    blocked: int = 0
    fills: int = 0
    rejected: int = 0
    last_blocked: str = ""
    orders_by_venue: collections.Counter[str] = field(default_factory=collections.Counter)
    fills_by_venue: collections.Counter[str] = field(default_factory=collections.Counter)
    rejections: collections.Counter[tuple[str, str]] = field(default_factory=collections.Counter)
    """(venue, reason class) -> orders the venue (or the paper executor) refused."""
    tick_to_intent: list[int] = field(default_factory=lambda: [0] * len(TICK_TO_INTENT_BUCKETS_S))
    """Non-cumulative bucket counts (``le`` each bound); the overflow is count minus their sum."""
    tick_to_intent_count: int = 0
    tick_to_intent_sum_s: float = 0.0

    def record_tick_to_intent(self, seconds: float) -> None:
        index = bisect.bisect_left(TICK_TO_INTENT_BUCKETS_S, seconds)
        if index < len(self.tick_to_intent):
            self.tick_to_intent[index] += 1
        self.tick_to_intent_count += 1
        self.tick_to_intent_sum_s += seconds


class EngineStats:
    """Counters and a ring of per-frame latencies (receive to decision, nanoseconds)."""

    def __init__(self) -> None:
        self.started_ns = time.time_ns()
        self.frames: dict[str, list[int]] = {}  # venue -> [count]: a list the hot path bumps
        self.by_strategy: dict[str, StrategyStats] = collections.defaultdict(StrategyStats)
        self.recent: collections.deque[Opportunity] = collections.deque(maxlen=20)
        self.latency_ns = array("q", bytes(8 * LATENCY_SAMPLES))
        self.gaps: collections.Counter[str] = collections.Counter()
        self.parsed: collections.Counter[tuple[str, str]] = collections.Counter()
        """(venue, type) of events off the fast path (depth, trades); tickers are derived."""
        self.feed_restarts: collections.Counter[str] = collections.Counter()
        """venue -> times its feed task died of an unexpected error and was restarted."""

    def frame_count(self) -> int:
        return sum(count[0] for count in self.frames.values())

    def latency_percentile_us(self, quantile: float) -> float | None:
        taken = min(self.frame_count() >> _SAMPLE_SHIFT, LATENCY_SAMPLES)
        samples = sorted(self.latency_ns[:taken])
        if not samples:
            return None
        return samples[min(len(samples) - 1, int(quantile * len(samples)))] / 1000.0


class Engine:
    """Builds everything from an ``EngineConfig`` and runs it; see the module docstring."""

    def __init__(
        self,
        config: EngineConfig,
        registry: PluginRegistry | None = None,
        *,
        executor: Executor | None = None,
        clock_ns: Callable[[], int] = time.time_ns,
        keys: KeyProvider | None = None,
    ) -> None:
        self.config = config
        self.keys = keys if keys is not None else _vault_keys(config)
        """Exchange keys from Vault, swapped while running; None: keys from the config."""
        self.registry = (
            registry if registry is not None else discover(blocked=config.blocked_plugins)
        )
        problems = strategy_errors(config, self.registry)
        if problems:
            raise ConfigError("invalid strategies:\n  " + "\n  ".join(problems))
        self.persistence = Persistence(config, clock_ns=clock_ns)
        """Journal, database writer and Redis snapshots; inert with embedded defaults."""
        self.session = self.persistence.session
        self.db_credentials = _vault_database(config, self.persistence)
        """The writer's PostgreSQL user from Vault, replaced before it lapses; None: as given."""
        self.accepting = True
        """False once stopping: strategies' intents are blocked from then on."""
        self.stats = EngineStats()
        self.drops = {venue: DropCounter(venue) for venue in config.venues}
        self.books = Books(self.drops, on_gap=self._on_gap)
        self.portfolio = Portfolio(config.paper.initial_balances)
        self.prices = MidPrices(self.books.tops)
        self.kill_switch = KillSwitch()
        self.consul: ConsulLink | None = consul_link(config)
        """TTL check, account locks and kill switch in Consul; None: Consul not configured."""
        self.feeds: dict[str, Feed] = {}
        self.snapshots: dict[str, DepthSnapshots] = {}
        self.risk = RiskGuard(
            config.risk, self.portfolio, self.prices, self.kill_switch, stale_venue=self._stale
        )
        self.tracker = HookTracker()
        self.watchdog = LoopWatchdog(self.tracker, config.isolation.loop_lag_threshold_ms / 1000)
        self._clock_ns = clock_ns
        self.strategies = [
            self._build(index, entry) for index, entry in enumerate(config.strategies)
        ]
        self._by_id = {safe.name: safe for safe in self.strategies}
        self.subscriptions = self._collect_subscriptions()
        self._book_routes: dict[str, dict[str, tuple[SafeStrategy, ...]]] = {}
        self._trade_routes: dict[str, dict[str, tuple[SafeStrategy, ...]]] = {}
        self._route()
        self.parsers: dict[str, Parser] = {
            venue: build_parser(venue, list(subs.values()), self.drops[venue])
            for venue, subs in self.subscriptions.items()
        }
        self.executor: Executor = executor if executor is not None else self._default_executor()
        self._next_timer_ns: dict[str, int] = {}
        self._started = False
        self.health_url = ""
        self.replaying = False
        """Frames come from a replay: their latency says nothing about this engine."""
        self.recorder: FrameRecorder | None = None
        """When set, every frame is also written to this replay file."""
        self.ready = asyncio.Event()
        """Set once the engine runs: strategies started, health server listening."""

    # --- construction ------------------------------------------------------------------------

    def _build(self, index: int, entry: StrategyEntry) -> SafeStrategy:
        context = StrategyContext(
            entry.id,
            self.books,
            self.portfolio.view(entry.id),
            session=self.session,
            clock_ns=self._clock_ns,
            on_opportunity=self._on_opportunity,
        )
        info = self.registry.get(entry.plugin)
        strategy = build_strategy(info, entry.config, context, prefix=f"strategies.{index}.config")
        isolation = self.config.isolation
        return SafeStrategy(
            strategy,
            max_failures=isolation.max_failures,
            window_s=isolation.window_s,
            tracker=self.tracker,
            on_quarantine=self._on_quarantine,
        )

    def _collect_subscriptions(self) -> dict[str, dict[str, Subscription]]:
        merged: dict[str, dict[str, Subscription]] = {}
        for index, safe in enumerate(self.strategies):
            for sub in safe.subscriptions():
                if sub.venue not in self.config.venues:
                    raise ConfigError(
                        f"strategies.{index}: venue {sub.venue!r} is not configured under [venues]"
                    )
                try:
                    instrument(sub.venue, sub.symbol)
                except ConfigError as exc:
                    raise ConfigError(f"strategies.{index}: {exc}") from exc
                known = merged.setdefault(sub.venue, {}).get(sub.symbol)
                if known is not None:
                    sub = Subscription(
                        sub.venue, sub.symbol, sub.depth or known.depth, sub.trades or known.trades
                    )
                merged[sub.venue][sub.symbol] = sub
        return merged

    def _route(self) -> None:
        """(Re)build who hears about which symbol; the dicts are updated in place."""
        books: dict[str, dict[str, list[SafeStrategy]]] = collections.defaultdict(dict)
        trades: dict[str, dict[str, list[SafeStrategy]]] = collections.defaultdict(dict)
        for safe in self.strategies:
            if safe.quarantined:
                continue
            for sub in safe.subscriptions():
                if safe.wants["on_book"]:
                    books[sub.venue].setdefault(sub.symbol, []).append(safe)
                if sub.trades and safe.wants["on_trade"]:
                    trades[sub.venue].setdefault(sub.symbol, []).append(safe)
        for routes, wanted in ((self._book_routes, books), (self._trade_routes, trades)):
            for venue in set(routes) | set(wanted):
                table = routes.setdefault(venue, {})
                table.clear()
                table.update(
                    {symbol: tuple(subs) for symbol, subs in wanted.get(venue, {}).items()}
                )

    def _default_executor(self) -> Executor:
        if self.config.mode == "paper":
            return PaperExecutor(
                self.books,
                self.portfolio,
                self.config.paper,
                self._on_fill,
                self._on_result,
                clock_ns=self._clock_ns,
            )
        venues: dict[str, tuple[str, KeySource, float]] = {}
        for venue in self.subscriptions:
            settings = self.config.venues[venue]
            keys: KeySource
            if self.keys is not None and venue in self.keys.accounts:
                keys = self.keys.source(venue)
            else:
                assert settings.api_key is not None and settings.api_secret is not None  # checked
                keys = Credentials(
                    settings.api_key.get_secret_value(), settings.api_secret.get_secret_value()
                )
            venues[venue] = (settings.rest_url, keys, settings.rest_requests_per_s)
        return LiveExecutor(
            venue_clients(venues),
            self.books,
            self.portfolio,
            self._on_fill,
            self._on_result,
            clock_ns=self._clock_ns,
        )

    # --- the hot path ------------------------------------------------------------------------

    def frame_handler(self, venue: str) -> FrameHandler:
        """The function a feed calls with every frame of ``venue``."""
        parse = self.parsers[venue].parse
        on_ticker = self.books.ticker_sink(venue)
        tops = self.books.venue_tops(venue)
        routes = self._book_routes.setdefault(venue, {})
        on_other = self.on_event
        submit = self._submit
        deliver = deliver_book
        count = self.stats.frames.setdefault(venue, [0])
        samples = self.stats.latency_ns
        mask = _LATENCY_MASK
        time_ns = time.time_ns
        on_depth = self.books.on_depth
        parsed = self.stats.parsed
        depth_key = (venue, "depth")

        def on_frame(raw: bytes, local_ts_ns: int) -> None:
            event = parse(raw, local_ts_ns)
            if type(event) is BookTicker:
                # on_ticker's in-order case inlined (a call is a twentieth of the frame); an
                # out-of-order ticker goes to it, which drops and counts it.
                symbol = event.symbol
                previous = tops.get(symbol)
                if previous is None or event.seq >= previous.seq:
                    tops[symbol] = event
                    subscribers = routes.get(symbol)
                    if subscribers:
                        deliver(subscribers, event, submit)
                else:
                    on_ticker(event)
            elif type(event) is DepthUpdate:  # on_event's depth branch, without its lookups
                parsed[depth_key] += 1
                top = on_depth(event)
                if top is not None:
                    subscribers = routes.get(top.symbol)
                    if subscribers:
                        deliver(subscribers, top, submit)
            elif event is not None:
                on_other(event)
            frames = count[0] = count[0] + 1
            if not frames & _SAMPLE_EVERY_MASK:
                samples[(frames >> _SAMPLE_SHIFT) & mask] = time_ns() - local_ts_ns

        if self.recorder is not None:
            return self.recorder.tap(venue, on_frame)
        return on_frame

    def on_event(self, event: MarketEvent) -> None:
        """Apply one normalized event (the path for depth, trades, snapshots and replays)."""
        if isinstance(event, BookTicker):
            if self.books.on_ticker(event):
                self._deliver_top(event)
        elif isinstance(event, DepthUpdate):
            self.stats.parsed[(event.venue, "depth")] += 1
            top = self.books.on_depth(event)
            if top is not None:
                self._deliver_top(top)
        elif isinstance(event, Trade):
            self.stats.parsed[(event.venue, "trade")] += 1
            for safe in self._trade_routes.get(event.venue, {}).get(event.symbol, ()):
                intents = safe.on_trade(event)
                if intents:
                    self._submit(safe, intents, event.local_ts_ns)

    def _deliver_top(self, top: BookTicker) -> None:
        subscribers = self._book_routes.get(top.venue, {}).get(top.symbol)
        if subscribers:
            deliver_book(subscribers, top, self._submit)

    # --- orders ------------------------------------------------------------------------------

    def _submit(self, safe: SafeStrategy, intents: Intents, trigger_ns: int = 0) -> None:
        """Risk-check a strategy's intents and send them; ``trigger_ns``: when the market event
        that caused them arrived (0 for fills and timers)."""
        stats = self.stats.by_strategy[safe.name]
        if trigger_ns:
            stats.record_tick_to_intent((time.time_ns() - trigger_ns) / 1e9)
        reason = "engine stopping" if not self.accepting else None
        if reason is None and self.consul is not None:
            reason = self.consul.blocked()  # no account lock (or kill switch unknown): no order
        if reason is None:
            reason = self.risk.check_batch(intents)
        if reason is None:
            reason = self.persistence.before_send(intents)  # on disk before any leaves
        if reason is not None:
            stats.blocked += len(intents)
            stats.last_blocked = reason
            return
        for intent in intents:
            stats.orders += 1
            stats.orders_by_venue[intent.venue] += 1
            self.risk.order_opened(intent)
            self.executor.submit(intent)

    def _on_fill(self, fill: Fill) -> None:
        self.persistence.on_fill(fill)
        stats = self.stats.by_strategy[fill.strategy]
        stats.fills += 1
        stats.fills_by_venue[fill.venue] += 1
        safe = self._by_id.get(fill.strategy)
        if safe is not None and not safe.quarantined and safe.wants["on_fill"]:
            intents = safe.on_fill(fill)
            if intents:
                self._submit(safe, intents)

    def _on_result(self, result: OrderResult) -> None:
        self.persistence.on_result(result)
        self.risk.order_closed(result.intent)
        if result.status is OrderStatus.REJECTED:
            stats = self.stats.by_strategy[result.intent.strategy]
            stats.rejected += 1
            stats.rejections[(result.intent.venue, result.code or "rejected")] += 1

    def _on_opportunity(self, opportunity: Opportunity) -> None:
        self.persistence.on_opportunity(opportunity)
        self.stats.by_strategy[opportunity.strategy].opportunities += 1
        self.stats.recent.append(opportunity)

    # --- events from the machinery -----------------------------------------------------------

    def _on_gap(self, venue: str, symbol: str) -> None:
        self.stats.gaps[venue] += 1
        snapshots = self.snapshots.get(venue)
        if snapshots is not None:
            snapshots.request(symbol)

    def _on_quarantine(self, safe: SafeStrategy) -> None:
        self._route()

    def _stale(self, venue: str) -> bool:
        feed = self.feeds.get(venue)
        return feed is not None and feed.stale(self._clock_ns())

    def tick_timers(self, now_ns: int) -> None:
        """Call ``on_timer`` of every strategy whose interval has elapsed."""
        for safe in self.strategies:
            interval = safe.strategy.timer_interval_s
            if interval is None or safe.quarantined or not safe.wants["on_timer"]:
                continue
            due = self._next_timer_ns.get(safe.name, 0)
            if now_ns >= due:
                self._next_timer_ns[safe.name] = now_ns + int(interval * 1e9)
                intents = safe.on_timer(now_ns)
                if intents:
                    self._submit(safe, intents)

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Call every strategy's ``on_start`` (once)."""
        if not self._started:
            self._started = True
            for safe in self.strategies:
                safe.on_start()

    def stop(self) -> None:
        if self._started:
            self._started = False
            for safe in self.strategies:
                if not safe.quarantined:
                    safe.on_stop()

    def websocket_feeds(self) -> list[Feed]:
        """One websocket feed per venue in use, from the venue config."""
        feeds: list[Feed] = []
        for venue, subs in self.subscriptions.items():
            settings = self.config.venues[venue]
            feed, snapshots = build_feed(
                venue,
                settings.ws_url,
                settings.rest_url,
                list(subs.values()),
                self.frame_handler(venue),
                self.on_event,
                stale_after_s=settings.stale_after_s,
                rest_requests_per_s=settings.rest_requests_per_s,
            )
            if snapshots is not None:
                self.snapshots[venue] = snapshots
            feeds.append(feed)
        return feeds

    async def run(
        self, stop: asyncio.Event, feeds: Sequence[Feed] | None = None, *, serve_health: bool = True
    ) -> None:
        """Run until ``stop`` is set: feeds, timers, the watchdog and the health server.

        Whatever has started is stopped again however ``run`` ends, a failure while starting
        included (see ``_shut_down``)."""
        sources = list(feeds) if feeds is not None else self.websocket_feeds()
        self.feeds.update({feed.venue: feed for feed in sources})
        health = (
            HealthServer(self, self.config.health.host, self.config.health.port)
            if serve_health
            else None
        )
        tasks: list[asyncio.Task[None]] = []
        persisting = False
        deadline = float("inf")
        try:
            if health is not None:
                await health.start()
                self.health_url = health.url
            persisting = True  # a half-done start is stopped too: it may have opened the writer
            await self.persistence.start(self)  # state back before strategies see an event
            self.start()
            if self.keys is not None:
                await self.keys.sync()  # the first keys before the first order (or why not)
                tasks.append(asyncio.create_task(self.keys.run(), name="exchange-keys"))
            if self.db_credentials is not None:  # rows wait in the writer until the first user
                tasks.append(asyncio.create_task(self.db_credentials.run(), name="db-credentials"))
            await self.executor.start()
            await self.persistence.reconcile(self)  # orders a killed run sent: ask, never resend
            if self.consul is not None:  # registers with the health server's address
                await self.consul.start(self)
            self.ready.set()
            self.watchdog.start()
            tasks += [
                asyncio.create_task(self._supervise(feed), name=f"feed-{feed.venue}")
                for feed in sources
            ]
            tasks.append(asyncio.create_task(self.watchdog.heartbeat(), name="loop-lag"))
            tasks.append(asyncio.create_task(self._timers(), name="timers"))
            logger.info(
                f"engine running: {len(self.strategies)} strategies, mode {self.config.mode}"
            )
            await stop.wait()
            deadline = time.monotonic() + self.config.shutdown.deadline_s
            self.accepting = False
            if self.config.shutdown.open_orders == "keep":
                await self._drain_orders(self.config.shutdown.deadline_s / 2)
        finally:
            failures = await self._shut_down(tasks, health, persisting, deadline)
        if failures:  # reached only when running and stopping raised nothing else
            raise failures[0]

    async def _shut_down(
        self,
        tasks: list[asyncio.Task[None]],
        health: HealthServer | None,
        persisting: bool,
        deadline: float,
    ) -> list[Exception]:
        """Stop what ``run`` started, in order, after a clean stop or a failed start alike.

        Every step runs even if one before it failed (a failure is logged and returned, so the
        error that ended ``run`` is never hidden by one from cleaning up), and each is a no-op
        for a part that never started. Orders in flight report before the Consul lock goes.
        """
        failures: list[Exception] = []

        async def step(what: str, action: Callable[[], Awaitable[None] | None]) -> None:
            try:
                result = action()
                if result is not None:
                    await result
            except Exception as exc:
                logger.opt(exception=exc).error(f"engine shutdown: {what} failed")
                failures.append(exc)

        for task in tasks:
            task.cancel()
        for task in tasks:
            await step(task.get_name(), functools.partial(_finished, task))
        for venue, snapshots in self.snapshots.items():
            await step(f"{venue} depth snapshots", snapshots.close)
        await step("executor", self.executor.close)
        if self.consul is not None:  # orders in flight have reported: the lock may go
            await step("consul", self.consul.stop)
        if health is not None:
            await step("health server", health.stop)
        await step("loop watchdog", self.watchdog.stop)
        await step("strategies", self.stop)
        if persisting:
            until = min(deadline, time.monotonic() + self.config.shutdown.deadline_s)
            await step("persistence", lambda: self.persistence.stop(until))
        logger.info("engine stopped")
        return failures

    def reload_keys(self) -> None:
        """SIGHUP: a Nomad template saw a new key version; look at Vault now."""
        if self.keys is not None:
            self.keys.refresh_now()
        else:
            logger.info("SIGHUP ignored: exchange keys come from the config, not Vault")

    async def _drain_orders(self, timeout_s: float = 2.0) -> None:
        """Give orders in flight a moment to report, so their fills are not lost at shutdown."""
        deadline = time.monotonic() + timeout_s
        # Polling a counter for two seconds at shutdown is simpler than an event per executor.
        while self.executor.pending and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.01)

    async def _supervise(self, feed: Feed) -> None:
        """Run ``feed`` until cancelled, restarting it with backoff whenever it dies.

        A feed handles the failures it expects (the connection) itself; anything else (a bug
        in a parser or a handler raising out of ``on_frame``) would end its task for good and
        leave the venue silent until the TTL check notices. The delay grows while restarts
        keep failing and starts over once the feed has run longer than the longest delay.
        """
        backoff = Backoff(base_s=0.25, cap_s=FEED_RESTART_CAP_S)
        venue = feed.venue
        while True:
            started = time.monotonic()
            try:
                await feed.run()
            except Exception as exc:
                self.stats.feed_restarts[venue] += 1
                if time.monotonic() - started > FEED_RESTART_CAP_S:
                    backoff.reset()
                delay = backoff.next_delay()
                logger.opt(exception=exc).bind(venue=venue).error(
                    f"{venue} feed task died ({type(exc).__name__}: {exc}); "
                    f"restart {self.stats.feed_restarts[venue]} in {delay:.2f}s"
                )
                await asyncio.sleep(delay)
            else:
                return  # a feed that ends by itself (a replay played out) is done

    async def _timers(self) -> None:
        tick_s = max(self.config.timer_tick_ms, 1) / 1000.0
        while True:
            await asyncio.sleep(tick_s)
            self.tick_timers(self._clock_ns())

    # --- reporting ---------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """Whether the engine can trade, and every reason it cannot."""
        now = self._clock_ns()
        reasons = [f"feed {venue} stale" for venue, feed in self.feeds.items() if feed.stale(now)]
        if not self.watchdog.healthy():
            reasons.append(f"event loop lagging ({self.watchdog.lag_s * 1000:.0f} ms)")
        if self.kill_switch.engaged:
            reasons.append(f"kill switch: {self.kill_switch.reason}")
        active = [s.name for s in self.strategies if not s.quarantined]
        if not active:
            reasons.append("every strategy is quarantined")
        keys = self.keys.report() if self.keys is not None else {}
        if self.keys is not None:
            reasons += self.keys.missing()
        if self.consul is not None:
            reasons += self.consul.reasons()
        return {
            "can_trade": not reasons,
            "reasons": reasons,
            "degraded": [
                *(self.keys.degraded() if self.keys is not None else []),
                *(self.db_credentials.degraded() if self.db_credentials is not None else []),
                *(self.db_credentials.missing() if self.db_credentials is not None else []),
                *self.persistence.degraded(),
                *(self.consul.degraded() if self.consul is not None else []),
            ],
            "exchange_keys": keys,
            "consul": self.consul.report() if self.consul is not None else None,
            "strategies": {
                s.name: ("quarantined" if s.quarantined else "active") for s in self.strategies
            },
            "feeds": {
                venue: {
                    "connected": feed.connected,
                    "stale": feed.stale(now),
                    "restarts": self.stats.feed_restarts[venue],
                }
                for venue, feed in self.feeds.items()
            },
        }

    def summary(self) -> Summary:
        elapsed_s = max((time.time_ns() - self.stats.started_ns) / 1e9, 1e-9)
        frames = self.stats.frame_count()
        rows = []
        for safe in self.strategies:
            stats = self.stats.by_strategy[safe.name]
            rows.append(
                StrategySummary(
                    safe.name,
                    type(safe.strategy).__name__,
                    "quarantined" if safe.quarantined else "active",
                    stats.opportunities,
                    stats.orders,
                    stats.blocked,
                    stats.fills,
                    stats.rejected,
                    self.portfolio.pnl(safe.name, self.prices),
                    safe.error_count,
                )
            )
        return Summary(
            elapsed_s=elapsed_s,
            frames=frames,
            frames_per_s=frames / elapsed_s,
            p50_us=None if self.replaying else self.stats.latency_percentile_us(0.50),
            p99_us=None if self.replaying else self.stats.latency_percentile_us(0.99),
            dropped={venue: dict(d.counts) for venue, d in self.drops.items() if d.counts},
            gaps=sum(self.stats.gaps.values()),
            loop_stalls=self.watchdog.stalls,
            max_loop_lag_ms=self.watchdog.max_lag_s * 1000,
            strategies=rows,
            replay_lines=self._replay_lines(),
            frames_dropped=sum(drops.frames_dropped for drops in self.drops.values()),
        )

    def _replay_lines(self) -> dict[str, int]:
        lines: collections.Counter[str] = collections.Counter()
        for feed in self.feeds.values():
            if isinstance(feed, ReplayFeed):
                lines.update(feed.stats.lines())
        return dict(lines)


def _vault_database(config: EngineConfig, persistence: Persistence) -> DatabaseCredentials | None:
    """Dynamic PostgreSQL users for the writer when the config names a database mount."""
    settings = config.vault
    if persistence.writer is None or settings.address is None or settings.database_mount is None:
        return None
    from runtime.platform.dbcreds import DatabaseCredentials
    from runtime.platform.vault import VaultSession

    return DatabaseCredentials(
        VaultSession(settings.address, token_file=settings.token_file),
        settings.database_mount,
        settings.database_role,
        config.postgres.resolve_dsn(),
        persistence.use_credentials,
    )


def _vault_keys(config: EngineConfig) -> KeyProvider | None:
    """A key provider when the config names a Vault and live mode needs keys from it."""
    settings = config.vault
    if config.mode != "live" or settings.address is None or not settings.accounts:
        return None
    from runtime.platform.vault import ExchangeKeys, KeyProvider, VaultSession

    session = VaultSession(settings.address, token_file=settings.token_file)
    return KeyProvider(
        ExchangeKeys(session, settings.kv_mount),
        settings.accounts,
        poll_interval_s=settings.poll_interval_s,
    )


async def _finished(task: asyncio.Task[None]) -> None:
    """Wait for a cancelled task to end; its cancellation is not a failure."""
    with contextlib.suppress(asyncio.CancelledError):
        await task


@dataclass(frozen=True)
class StrategySummary:
    name: str
    plugin_class: str
    state: str
    opportunities: int
    orders: int
    blocked: int
    fills: int
    rejected: int
    pnl: float | None
    errors: int


@dataclass(frozen=True)
class Summary:
    elapsed_s: float
    frames: int
    frames_per_s: float
    p50_us: float | None
    p99_us: float | None
    dropped: dict[str, dict[str, int]]
    gaps: int
    loop_stalls: int
    max_loop_lag_ms: float
    strategies: list[StrategySummary] = field(default_factory=list)
    replay_lines: dict[str, int] = field(default_factory=dict)
    """Lines of a replay file by outcome (``ReplayStats.lines``); empty unless replaying."""
    frames_dropped: int = 0
    """Frames the parsers refused, whatever the reason (events the books refused left out)."""

    @property
    def frames_used(self) -> int:
        """Frames a parser turned into an event."""
        return self.frames - self.frames_dropped
