"""The engine: frames in, books, strategies behind their safe wrappers, risk, executor, fills out.

One asyncio loop. The hot path, ``frame_handler(venue)``, is a closure per venue that parses a
frame, updates the book and hands a changed top to the strategies subscribed to it; it does no I/O
and touches no lock. Everything slower (websocket reads, REST snapshots, timers, the loop
watchdog) runs in its own task. The engine knows no store, secrets store or Consul: the
composition root (runtime/node.py) hands it a ``Keeper`` (persistence), an ``OrderGate`` (the
Consul link) and ``KeySources``, applies the state a restart returns, and runs its lifecycle.
Alone, on embedded defaults, state is in memory and keys come from the config.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from loguru import logger

from runtime.core.errors import ConfigError
from runtime.core.events import BookTicker, DepthUpdate, MarketEvent, Trade
from runtime.core.frames import DropCounter, FrameHandler, Parser
from runtime.core.orders import (
    Fill,
    Opportunity,
    OrderIntent,
    OrderResult,
    OrderStatus,
    new_session,
)
from runtime.core.restoration import Restoration
from runtime.core.retry import Backoff
from runtime.core.venue import Credentials, KeySource
from runtime.engine.plugins import (
    HookTracker,
    PluginRegistry,
    SafeStrategy,
    build_strategy,
    deliver_book,
    discover,
)
from runtime.engine.settings import EngineSettings, StrategyEntry, strategy_errors
from runtime.engine.stats import (
    LATENCY_MASK,
    SAMPLE_EVERY_MASK,
    SAMPLE_SHIFT,
    EngineStats,
)
from runtime.engine.watchdog import LoopWatchdog
from runtime.sdk import Intents, StrategyContext, Subscription
from runtime.trading.book import Books
from runtime.trading.execution import Executor
from runtime.trading.execution.live import LiveExecutor
from runtime.trading.execution.paper import PaperExecutor
from runtime.trading.portfolio import MidPrices, Portfolio
from runtime.trading.risk import KillSwitch, RiskGuard
from runtime.venues.contract import BookResync
from runtime.venues.registry import build_feed, build_parser, instrument, venue_clients
from runtime.venues.replay import FrameRecorder, ReplayFeed

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


class Keeper(Protocol):
    """What keeps what the engine does (the node wires persistence in here). None of these
    may wait on the network: they run on the hot path."""

    def before_send(self, intents: list[OrderIntent]) -> str | None:
        """Keep ``intents`` before they leave; the reason to block them if that failed."""

    def on_fill(self, fill: Fill) -> None: ...

    def on_result(self, result: OrderResult) -> None: ...

    def on_opportunity(self, opportunity: Opportunity) -> None: ...


class NothingKept:
    """The recorder with embedded defaults: state lives in memory only."""

    def before_send(self, intents: list[OrderIntent]) -> str | None:
        return None

    def on_fill(self, fill: Fill) -> None:
        pass

    def on_result(self, result: OrderResult) -> None:
        pass

    def on_opportunity(self, opportunity: Opportunity) -> None:
        pass


class OrderGate(Protocol):
    """Whether orders may go out at all (the Consul link: account lock held, kill switch read)."""

    def blocked(self) -> str | None: ...


class KeySources(Protocol):
    """Exchange keys kept fresh by the secrets store, for the venues in ``accounts``."""

    @property
    def accounts(self) -> Mapping[str, str]: ...

    def source(self, venue: str) -> KeySource: ...


class EngineView:
    """A running engine, read-only, for the parts the node wires around it: persistence samples
    books and saves accounts and plugin state through it, and none of them holds the engine
    itself, so none can change it behind the hot path's back."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    @property
    def session(self) -> str:
        return self._engine.session

    @property
    def portfolio(self) -> Portfolio:
        """Read it, never change it: fills reach the portfolio through the engine only."""
        return self._engine.portfolio

    def strategy_names(self) -> list[str]:
        return [safe.name for safe in self._engine.strategies]

    def top(self, venue: str, symbol: str) -> BookTicker | None:
        return self._engine.books.top(venue, symbol)

    def markets(self) -> list[tuple[str, str]]:
        """Every (venue, symbol) with a top of book."""
        tops = self._engine.books.tops
        return [(venue, symbol) for venue, symbols in tops.items() for symbol in symbols]

    def pnl(self, strategy: str) -> float | None:
        return self._engine.portfolio.pnl(strategy, self._engine.prices)

    def save_state(self, strategy: str) -> Any:
        return self._engine.strategy(strategy).save_state()


class Engine:
    """The trading core built from its ``EngineSettings``; see the module docstring. What it
    is wired to (persistence, the Consul gate, keys from the secrets store) comes in from the
    composition root, runtime/node.py; alone it runs on embedded defaults."""

    def __init__(
        self,
        config: EngineSettings,
        registry: PluginRegistry | None = None,
        *,
        executor: Executor | None = None,
        clock_ns: Callable[[], int] = time.time_ns,
        keys: KeySources | None = None,
        persistence: Keeper | None = None,
        gate: OrderGate | None = None,
        session: str | None = None,
    ) -> None:
        self.config = config
        self.keys = keys
        """Exchange keys from the secrets store; None: keys from the config."""
        self.registry = (
            registry if registry is not None else discover(blocked=config.blocked_plugins)
        )
        problems = strategy_errors(config, self.registry)
        if problems:
            raise ConfigError("invalid strategies:\n  " + "\n  ".join(problems))
        self.persistence: Keeper = persistence if persistence is not None else NothingKept()
        self.gate = gate
        self.session = session if session is not None else new_session()
        self.accepting = True
        """False once stopping: strategies' intents are blocked from then on."""
        self.stats = EngineStats()
        self.drops = {venue: DropCounter(venue) for venue in config.venues}
        self.books = Books(self.drops, on_gap=self._on_gap)
        self.portfolio = Portfolio(config.paper.initial_balances)
        self.prices = MidPrices(self.books.tops)
        self.kill_switch = KillSwitch()
        self.feeds: dict[str, Feed] = {}
        self._sources: list[Feed] = []
        self.snapshots: dict[str, BookResync] = {}
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
        self.replaying = False
        """Frames come from a replay: their latency says nothing about this engine."""
        self.recorder: FrameRecorder | None = None
        """When set, every frame is also written to this replay file."""

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
        mask = LATENCY_MASK
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
            if not frames & SAMPLE_EVERY_MASK:
                samples[(frames >> SAMPLE_SHIFT) & mask] = time_ns() - local_ts_ns

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
        if reason is None and self.gate is not None:
            reason = self.gate.blocked()  # no account lock (or kill switch unknown): no order
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

    @property
    def view(self) -> EngineView:
        """The engine, read-only, for the parts around it."""
        return EngineView(self)

    def strategy(self, name: str) -> SafeStrategy:
        return self._by_id[name]

    def restore(self, state: Restoration) -> None:
        """Put back what a restart returned (runtime/core/restoration.py); before ``start``."""
        for strategy, account in state.accounts.items():
            self.portfolio.restore(strategy, account.balances, account.fees, account.fills)
        for fill in state.fills:
            self.portfolio.apply_fill(fill)
        if state.session != self.session:  # order ids of this run must not repeat an older one's
            self.session = state.session
            for safe in self.strategies:
                safe.strategy.fleet_context.session = state.session
        for safe in self.strategies:
            saved = state.states.get(safe.name)
            if saved is not None:
                safe.restore_state(saved)
        for intent in state.in_doubt:
            self.risk.order_opened(intent)

    def attach(self, feeds: Sequence[Feed]) -> None:
        """The sources of frames this run: their staleness counts from now, before any starts."""
        self._sources = list(feeds)
        self.feeds.update({feed.venue: feed for feed in feeds})

    def launch(self) -> list[asyncio.Task[None]]:
        """Start the loop's work once the engine may trade: every attached feed under
        supervision, the loop-lag watchdog and the strategies' timers; the node cancels the
        tasks to stop."""
        self.watchdog.start()
        tasks = [
            asyncio.create_task(self._supervise(feed), name=f"feed-{feed.venue}")
            for feed in self._sources
        ]
        tasks.append(asyncio.create_task(self.watchdog.heartbeat(), name="loop-lag"))
        tasks.append(asyncio.create_task(self._timers(), name="timers"))
        logger.info(f"engine running: {len(self.strategies)} strategies, mode {self.config.mode}")
        return tasks

    async def wind_down(self, open_orders: str, deadline_s: float) -> None:
        """Stop taking intents; with ``open_orders = "keep"``, let orders in flight report."""
        self.accepting = False
        if open_orders == "keep":
            await self._drain_orders(deadline_s / 2)

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
        """Whether the engine itself can trade, every reason it cannot, its strategies and feeds
        (the node adds what the parts around it report)."""
        now = self._clock_ns()
        reasons = [f"feed {venue} stale" for venue, feed in self.feeds.items() if feed.stale(now)]
        if not self.watchdog.healthy():
            reasons.append(f"event loop lagging ({self.watchdog.lag_s * 1000:.0f} ms)")
        if self.kill_switch.engaged:
            reasons.append(f"kill switch: {self.kill_switch.reason}")
        active = [s.name for s in self.strategies if not s.quarantined]
        if not active:
            reasons.append("every strategy is quarantined")
        return {
            "reasons": reasons,
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
