"""Persistence as the engine sees it: a few synchronous hooks, and restore/start/reconcile/stop.

The engine calls ``before_send`` with every batch of intents that passed the risk guards (the
intents are in the journal, on disk, when it returns; if they cannot be, it returns the reason
and the engine blocks them), and ``on_fill``, ``on_result`` and ``on_opportunity`` as executors
and strategies report. None of these waits on the network: rows go to the writer's queue.

``restore`` returns the state to put back before the first event (the node applies it to the
engine): the accounts from the journal's newest checkpoint plus the fills after it, or (no
journal state, e.g. a new node) from the Redis snapshot; plugin state from the snapshot.
``start`` then writes the rows of every outcome still in the journal again (keys make that
harmless) and starts the background tasks, reading the engine through a read-only view.
``reconcile`` asks the venue about every order sent but never reported, and reports what the
venue says through the executor's usual path. Restored from a Redis snapshot (no journal state:
a new node), ``look_back`` first finds the orders sent after the snapshot in the venues' lists
(runtime/persistence/lookback.py); until then ``before_send`` blocks every intent.
``stop`` snapshots to Redis, checkpoints the journal and closes the writer within the deadline.

Background tasks: a Redis snapshot every ``redis.snapshot_interval_s``, a journal checkpoint
every ``journal.checkpoint_interval_s``, a sample of every book's top every
``postgres.tick_sample_ms``, position and PnL rows every ``postgres.position_snapshot_interval_s``
and partition maintenance every ``postgres.maintenance_interval_s``. A failing task logs, waits
its interval and tries again; it never stops the engine.

With nothing configured (embedded defaults), every hook returns at once and nothing is kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from functools import partial
from pathlib import Path
from typing import Any, Final, Protocol, TypeVar

import asyncpg
from loguru import logger

from runtime.core.errors import ConfigError, PersistenceError
from runtime.core.events import BookTicker
from runtime.core.logging import BoundedLog
from runtime.core.orders import Fill, Opportunity, OrderIntent, OrderResult, new_session
from runtime.core.restoration import Account, Restoration
from runtime.core.venue import ListedOrder
from runtime.persistence.admin import run_maintenance, run_migrations
from runtime.persistence.journal import (
    AccountState,
    Checkpoint,
    OrderDone,
    OrderJournal,
    OrderSent,
    Replay,
    later_session,
)
from runtime.persistence.lookback import later_id, sort_listed
from runtime.persistence.settings import JournalConfig, PostgresConfig, RedisConfig
from runtime.persistence.snapshots import Restored, SnapshotStore, StrategySnapshot
from runtime.persistence.tables import (
    event_row,
    fill_row,
    opportunity_row,
    order_row,
    tick_row,
)
from runtime.persistence.writer import BatchWriter

OPPORTUNITY_LINK_NS: Final = 1_000_000_000
"""An order acts on its strategy's latest opportunity if it was created within this of it."""
RECONCILE_RETRY_S: Final = 10.0


_T = TypeVar("_T")


async def _answered(ask: Callable[[], Awaitable[_T | None]], what: str) -> _T:
    """``ask()`` again every ``RECONCILE_RETRY_S`` until the venue answers."""
    while True:
        answer = await ask()
        if answer is not None:
            return answer
        logger.error(f"{what}: a venue did not answer; asking again in {RECONCILE_RETRY_S:.0f} s")
        await asyncio.sleep(RECONCILE_RETRY_S)


def spill_dir(postgres: PostgresConfig, journal: JournalConfig) -> Path:
    if postgres.spill_dir is not None:
        return postgres.spill_dir
    if journal.dir is not None:
        return journal.dir / "spill"
    raise ConfigError(
        "postgres.spill_dir: required when postgres is configured without journal.dir "
        "(rows spill there while the database is unreachable)"
    )


class Portfolio(Protocol):
    """What persistence reads of the engine's portfolio (runtime.trading.portfolio)."""

    @property
    def fees_paid(self) -> Mapping[str, Mapping[str, float]]: ...

    @property
    def fills(self) -> Mapping[str, int]: ...

    def strategies(self) -> Iterable[str]: ...

    def account(self, strategy: str) -> Mapping[tuple[str, str], float]: ...

    def position(self, strategy: str, venue: str, asset: str) -> float: ...


class TradingView(Protocol):
    """The running engine, read-only, as persistence sees it (runtime.engine.engine.EngineView)."""

    @property
    def session(self) -> str: ...

    @property
    def portfolio(self) -> Portfolio: ...

    def strategy_names(self) -> list[str]: ...

    def top(self, venue: str, symbol: str) -> BookTicker | None: ...

    def markets(self) -> list[tuple[str, str]]: ...

    def pnl(self, strategy: str) -> float | None: ...

    def save_state(self, strategy: str) -> Any: ...


Recover = Callable[[OrderIntent, float], Awaitable[bool]]
"""The executor's ``recover``: asks the venue about one order; True once the venue answered."""


class Venues(Protocol):
    """The executor as the look-back uses it (runtime.trading.execution.Executor)."""

    async def orders_since(
        self, symbols: Mapping[str, Iterable[str]], since_ns: int
    ) -> list[tuple[str, ListedOrder]] | None: ...

    async def outcome(
        self, intent: OrderIntent, settle_s: float
    ) -> tuple[OrderResult, Fill | None] | None: ...

    async def recover(self, intent: OrderIntent, settle_s: float) -> bool: ...


class Persistence:
    """See the module docstring."""

    def __init__(
        self,
        postgres: PostgresConfig,
        redis: RedisConfig,
        journal: JournalConfig,
        *,
        dynamic_users: bool = False,
        clock_ns: Callable[[], int] = time.time_ns,
    ):
        self._postgres, self._redis, self._journal_settings = postgres, redis, journal
        self._dynamic_users = dynamic_users
        """PostgreSQL users come from the secrets store: the DSN names none until the first."""
        self._clock_ns = clock_ns
        self.journal = OrderJournal(journal.dir, fsync=journal.fsync) if journal.dir else None
        self.replay = self.journal.replay() if self.journal is not None else Replay()
        self.writer = self._build_writer(postgres, journal) if postgres.enabled else None
        self.snapshots = self._build_snapshots(redis) if redis.enabled else None
        self.active = any(p is not None for p in (self.journal, self.writer, self.snapshots))
        self.session = later_session(new_session(), self.replay.last_session)
        """This run's session: after every session the journal has seen (runtime.core.orders)."""
        self.in_doubt: dict[str, OrderSent] = {}
        self._asking: set[str] = set()
        """Orders in doubt a call of ``_ask_venue`` is asking the venue about."""
        self._retrying = False
        self.marks: dict[str, str] = {}
        """Per strategy, the id of the last order sent (runtime.persistence.lookback)."""
        self.look_back_from: int | None = None
        """Restored from a snapshot: the venues' orders from then on are read before trading."""
        self.restored_from = ""
        self.unrestored = ""
        """Why state that should have been restored was not: the engine runs on start balances."""
        self.problems: list[str] = []
        self.migrations_pending = postgres.migrate_on_start
        self._engine: TradingView | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._open: dict[str, OrderSent] = {}
        self._fills: dict[str, list[Fill]] = {}
        self._last_opportunity: dict[str, int] = {}
        self._ticks_recorded: dict[tuple[str, str], int] = {}
        self._journal_errors = BoundedLog()

    @staticmethod
    def _build_writer(settings: PostgresConfig, journal: JournalConfig) -> BatchWriter:
        return BatchWriter(
            settings.resolve_dsn(),
            spill_dir(settings, journal),
            batch_rows=settings.batch_rows,
            flush_interval_s=settings.flush_interval_ms / 1000.0,
            memory_rows=settings.memory_rows,
            connect_timeout_s=settings.connect_timeout_s,
        )

    @staticmethod
    def _build_snapshots(settings: RedisConfig) -> SnapshotStore:
        return SnapshotStore(
            settings.resolve_url(),
            settings.environment,
            settings.deployment,
            timeout_s=settings.timeout_s,
        )

    # --- the engine's hooks (synchronous, no network) ----------------------------------------

    def before_send(self, intents: list[OrderIntent]) -> str | None:
        """Journal ``intents``; the reason to block them if that failed, else None."""
        if not self.active:
            return None
        if self.look_back_from is not None:
            return "looking back: the venues' orders of the engine before this one are read first"
        orders = [OrderSent(intent, self._opportunity_of(intent)) for intent in intents]
        if self.journal is not None:
            try:
                self.journal.sent(orders)
            except OSError as exc:
                self._journal_errors.warning("sent", f"order journal write failed: {exc}")
                return f"order journal unavailable: {exc.strerror or exc}"
        for order in orders:
            self._open[order.intent.client_order_id] = order
            self.marks[order.intent.strategy] = order.intent.client_order_id
        if self.writer is not None:
            self._record_ticks_of(intents)
        return None

    def on_fill(self, fill: Fill) -> None:
        if not self.active:
            return
        fills = self._fills.setdefault(fill.client_order_id, [])
        fills.append(fill)
        if self.writer is not None:
            self.writer.put("fills", fill_row(fill, len(fills)))

    def on_result(self, result: OrderResult) -> None:
        if not self.active:
            return
        order_id = result.intent.client_order_id
        sent = self._open.pop(order_id, None)
        opportunity_ns = sent.opportunity_ns if sent is not None else None
        now = self._clock_ns()
        if self.journal is not None:
            done = OrderDone(result, self._fills.pop(order_id, []), now, opportunity_ns)
            try:
                self.journal.done(done)
            except OSError as exc:  # the venue will be asked about it after a restart
                self._journal_errors.warning("done", f"order journal write failed: {exc}")
        else:
            self._fills.pop(order_id, None)
        if self.writer is not None:
            self.writer.put("orders", order_row(result, opportunity_ns, now))

    def on_opportunity(self, opportunity: Opportunity) -> None:
        if not self.active:
            return
        self._last_opportunity[opportunity.strategy] = opportunity.ts_ns
        if self.writer is not None:
            self.writer.put("opportunities", opportunity_row(opportunity))

    def _opportunity_of(self, intent: OrderIntent) -> int | None:
        seen = self._last_opportunity.get(intent.strategy)
        if seen is None or not 0 <= intent.created_ns - seen <= OPPORTUNITY_LINK_NS:
            return None
        return seen

    # --- ticks, positions, events --------------------------------------------------------------

    def _record_ticks_of(self, intents: list[OrderIntent]) -> None:
        if self._engine is None:  # orders before start(): only tests do that
            return
        for intent in intents:
            self._record_tick(intent.venue, intent.symbol)

    def _record_tick(self, venue: str, symbol: str) -> None:
        assert self._engine is not None and self.writer is not None
        top = self._engine.top(venue, symbol)
        if top is None or self._ticks_recorded.get((venue, symbol)) == top.local_ts_ns:
            return
        self._ticks_recorded[(venue, symbol)] = top.local_ts_ns
        self.writer.put("ticks", tick_row(top))

    def _sample_ticks(self) -> None:
        assert self._engine is not None
        for venue, symbol in self._engine.markets():
            self._record_tick(venue, symbol)

    def _record_positions(self) -> None:
        engine, writer = self._engine, self.writer
        assert engine is not None and writer is not None
        now = self._clock_ns()
        portfolio = engine.portfolio
        for name in engine.strategy_names():
            for (venue, asset), balance in portfolio.account(name).items():
                position = portfolio.position(name, venue, asset)
                writer.put("position_snapshots", (now, name, venue, asset, balance, position))
            writer.put("pnl_snapshots", (now, name, engine.pnl(name)))

    def event(self, kind: str, detail: str) -> None:
        """A row in ``system_events`` (if there is a database), from this deployment: engines of
        several deployments share one database."""
        if self.writer is not None:
            source = self._redis.deployment
            self.writer.put("system_events", event_row(self._clock_ns(), source, kind, detail))

    # --- restore and start -------------------------------------------------------------------

    async def restore(self, strategies: list[str]) -> Restoration:
        """What to put back before the first event (see the module docstring); the session to
        run under included. Starts the writer, so the journal's rows can be written again."""
        if not self.active:
            return Restoration(self.session)
        if self.writer is not None:
            await self._start_writer()
        restored = await self._load_snapshots(strategies)
        accounts, fills = self._restore_accounts(restored)
        if self.journal is None:  # without a journal, the snapshots' sessions are the newest
            for snapshot in restored.snapshots.values():
                self.session = later_session(self.session, snapshot.session)
        self._report_problems(restored)
        states = {
            name: snapshot.state
            for name, snapshot in restored.snapshots.items()
            if snapshot.state is not None
        }
        in_doubt = [order.intent for order in self.in_doubt.values()]
        return Restoration(self.session, accounts, fills, states, in_doubt)

    async def start(self, engine: TradingView) -> None:
        """Start keeping the running engine's state: after ``restore`` was applied to it."""
        self._engine = engine
        if not self.active:
            return
        self._rewrite_journaled_rows()
        for order in self.in_doubt.values():
            self._open[order.intent.client_order_id] = order
        if self.journal is not None:
            older = self.journal.rotate(self._checkpoint_now())
            self.journal.start_session(engine.session, self._clock_ns())
            await self._forget(older)
        self.event("engine_started", self._start_detail(engine))
        self._start_tasks()

    async def _start_writer(self) -> None:
        assert self.writer is not None
        # With users from Vault, the DSN names no user until the first one arrives.
        if not self._dynamic_users and self.migrations_pending:
            try:
                await self._migrate(self.writer.dsn)
            except PersistenceError as exc:
                logger.error(f"{exc}; rows are kept meanwhile")
        await self.writer.start()

    async def use_credentials(self, dsn: str) -> None:
        """The writer's next PostgreSQL user (runtime/platform/dbcreds.py). The migrations on
        start run with the first; PersistenceError if they fail, so that user is given back and
        the next one tries again (with backoff) instead of the writer waiting a day for its
        replacement."""
        assert self.writer is not None
        if self.migrations_pending:
            await self._migrate(dsn)
        await self.writer.replace_pool(dsn)

    async def _migrate(self, dsn: str) -> None:
        try:
            report = await run_migrations(dsn, self._postgres)
        except (OSError, TimeoutError, asyncpg.PostgresError, PersistenceError) as exc:
            raise PersistenceError(f"migrations on start failed: {exc}") from exc
        self.migrations_pending = False
        logger.info(str(report))

    async def _load_snapshots(self, strategies: list[str]) -> Restored:
        if self.snapshots is None:
            return Restored()
        return await self.snapshots.load(strategies)

    def _restore_accounts(self, restored: Restored) -> tuple[dict[str, Account], list[Fill]]:
        replay = self.replay
        accounts: dict[str, Account] = {}
        fills: list[Fill] = []
        if replay.checkpoint is not None:
            for strategy, state in replay.checkpoint.accounts.items():
                balances = {(venue, asset): x for venue, asset, x in state.balances}
                accounts[strategy] = Account(balances, state.fees, state.fills)
            fills = list(replay.fills)
            self.restored_from = "journal"
        elif restored.snapshots:
            for strategy, snapshot in restored.snapshots.items():
                if snapshot.balances is not None:
                    balances = {(venue, asset): x for venue, asset, x in snapshot.balances}
                    accounts[strategy] = Account(balances, snapshot.fees, snapshot.fills)
                for intent in snapshot.open_orders or ():
                    self.in_doubt[intent.client_order_id] = OrderSent(intent)
            self.restored_from = "redis"
            oldest = min(snapshot.ts_ns for snapshot in restored.snapshots.values())
            self.look_back_from = oldest - int(self._journal_settings.look_back_s * 1e9)
        self.in_doubt.update(replay.open_orders)
        self._restore_marks(restored)
        return accounts, fills

    def _restore_marks(self, restored: Restored) -> None:
        """The last id sent per strategy, from every record of one: a later snapshot must not
        claim fewer orders than the accounts it holds."""
        checkpoint = self.replay.checkpoint
        accounts = checkpoint.accounts.items() if checkpoint is not None else ()
        sent = [(name, state.last_sent) for name, state in accounts]
        sent += [(name, snapshot.last_sent) for name, snapshot in restored.snapshots.items()]
        sent += [(o.intent.strategy, o.intent.client_order_id) for o in self.in_doubt.values()]
        sent += [
            (d.result.intent.strategy, d.result.intent.client_order_id) for d in self.replay.done
        ]
        for strategy, order_id in sent:
            self.marks[strategy] = later_id(self.marks.get(strategy, ""), order_id)

    def _report_problems(self, restored: Restored) -> None:
        if restored.unreachable and not self.restored_from:
            self.unrestored = (
                f"state not restored: redis unreachable at start ({restored.unreachable})"
            )
            logger.error(self.unrestored)
            self.event("state_not_restored", restored.unreachable)
        for damage in self.replay.damage:
            logger.error(f"order journal damaged: {damage}")
            self.problems.append(f"order journal: {damage}")
        for problem in restored.problems:
            logger.error(f"redis snapshot damaged: {problem}")
            self.problems.append(f"redis snapshot: {problem}")
        for problem in self.problems:
            self.event("state_damaged", problem)

    def _rewrite_journaled_rows(self) -> None:
        if self.writer is None:
            return
        for done in self.replay.done:
            self.writer.put("orders", order_row(done.result, done.opportunity_ns, done.finished_ns))
            for number, fill in enumerate(done.fills, start=1):
                self.writer.put("fills", fill_row(fill, number))

    def _start_detail(self, engine: TradingView) -> str:
        source = self.restored_from or "nothing to restore"
        return f"session {engine.session}; state from {source}; {len(self.in_doubt)} in doubt"

    # --- reconcile ----------------------------------------------------------------------------

    async def reconcile(self, recover: Recover) -> None:
        """Ask the venue about every order in doubt; report what it says; never resend.
        Orders the venue could not be asked about are asked again every ``RETRY_S``."""
        if not self.in_doubt:
            return
        logger.info(f"reconciling {len(self.in_doubt)} orders sent before the restart")
        await self._ask_venue(recover)
        if self.in_doubt and not self._retrying:  # reconcile runs again after a look-back
            logger.error(f"{len(self.in_doubt)} orders still in doubt: the venue was not asked")
            self._retrying = True
            self._every("reconcile-retry", RECONCILE_RETRY_S, lambda: self._ask_venue(recover))

    async def _ask_venue(self, recover: Recover) -> None:
        """Ask about the orders in doubt no other call is asking about: an order reported twice
        would be a fill counted twice."""
        orders = [o for i, o in self.in_doubt.items() if i not in self._asking]
        asked = {order.intent.client_order_id for order in orders}
        self._asking |= asked
        settle_s = self._journal_settings.settle_s
        try:
            answered = await asyncio.gather(*(recover(o.intent, settle_s) for o in orders))
        finally:
            self._asking -= asked
        for order, known in zip(orders, answered, strict=True):
            order_id = order.intent.client_order_id
            if known:
                del self.in_doubt[order_id]
                self.event("order_reconciled", order_id)

    async def look_back(self, venues: Venues, markets: Iterable[tuple[str, str]]) -> None:
        """Find the orders the previous engine sent after the snapshot this one restored
        (runtime.persistence.lookback); call once the account locks are held and the settle
        time has passed. Trading stays blocked until the venues have answered."""
        since = self.look_back_from
        if since is None:
            return
        symbols: dict[str, list[str]] = {}
        for venue, symbol in markets:
            symbols.setdefault(venue, []).append(symbol)
        listed = await _answered(lambda: venues.orders_since(symbols, since), "listing orders")
        found = sort_listed(listed, self.marks, self.session, self.in_doubt)
        for intent in found.accounted:  # in the accounts: their rows only
            outcome = await _answered(partial(venues.outcome, intent, 0.0), intent.client_order_id)
            self._rewrite_rows(*outcome)
        for intent in found.in_doubt:
            self.in_doubt[intent.client_order_id] = self._open[intent.client_order_id] = OrderSent(
                intent
            )
            self.marks[intent.strategy] = later_id(
                self.marks[intent.strategy], intent.client_order_id
            )
        await self.reconcile(venues.recover)
        self.look_back_from = None  # the accounts are whole (or what stays in doubt is retried)
        detail = (
            f"{len(listed)} orders listed since {since}: {len(found.in_doubt)} after the snapshot, "
            f"{len(found.accounted)} in it; {len(self.in_doubt)} still in doubt"
        )
        logger.info(f"look-back: {detail}")  # once its orders are reported (tests wait for it)
        self.event("look_back_done", detail)

    def _rewrite_rows(self, result: OrderResult, fill: Fill | None) -> None:
        if self.writer is None:
            return
        self.writer.put("orders", order_row(result, None, self._clock_ns()))
        if fill is not None:
            self.writer.put("fills", fill_row(fill, 1))

    # --- checkpoints and snapshots ------------------------------------------------------------

    def _checkpoint_now(self) -> Checkpoint:
        engine = self._engine
        assert engine is not None
        portfolio = engine.portfolio
        accounts = {
            strategy: AccountState(
                [(venue, asset, x) for (venue, asset), x in portfolio.account(strategy).items()],
                dict(portfolio.fees_paid.get(strategy, {})),
                portfolio.fills.get(strategy, 0),
                self.marks.get(strategy, ""),
            )
            for strategy in list(portfolio.strategies())
        }
        return Checkpoint(self._clock_ns(), accounts, list(self._open.values()), engine.session)

    async def checkpoint(self) -> None:
        """A new journal segment; the old ones go once the rows they describe are durable."""
        if self.journal is not None:
            await self._forget(self.journal.rotate(self._checkpoint_now()))

    async def _forget(self, segments: list[Path]) -> None:
        assert self.journal is not None
        if self.writer is not None:
            await self.writer.persist()
        self.journal.remove(segments)

    def snapshot_now(self) -> dict[str, StrategySnapshot]:
        engine = self._engine
        assert engine is not None
        now, portfolio = self._clock_ns(), engine.portfolio
        snapshots = {}
        for name in engine.strategy_names():
            account = portfolio.account(name)
            positions = [(v, a, portfolio.position(name, v, a)) for v, a in account]
            snapshots[name] = StrategySnapshot(
                ts_ns=now,
                session=engine.session,
                balances=[(venue, asset, x) for (venue, asset), x in account.items()],
                positions=[p for p in positions if p[2] != 0.0],
                fees=dict(portfolio.fees_paid.get(name, {})),
                fills=portfolio.fills.get(name, 0),
                open_orders=[o.intent for o in self._open.values() if o.intent.strategy == name],
                pnl=engine.pnl(name),
                state=engine.save_state(name),
                last_sent=self.marks.get(name, ""),
            )
        return snapshots

    async def save_snapshot(self) -> bool:
        """Save the accounts to Redis; not while looking back (they are not whole yet: the
        snapshot restored from stays, and the next engine looks back from it again)."""
        if self.snapshots is None or self.look_back_from is not None:
            return False
        return await self.snapshots.save(self.snapshot_now())

    async def _maintain(self) -> None:
        assert self.writer is not None
        report = await run_maintenance(self.writer.dsn, self._postgres)
        if report.created or report.dropped:
            logger.info(f"partition maintenance: {report}")

    # --- background tasks -----------------------------------------------------------------------

    def _start_tasks(self) -> None:
        postgres, redis, journal = self._postgres, self._redis, self._journal_settings
        if self.snapshots is not None:
            self._every("redis-snapshots", redis.snapshot_interval_s, self.save_snapshot)
        if self.journal is not None:
            self._every("journal-checkpoints", journal.checkpoint_interval_s, self.checkpoint)
        if self.writer is None:
            return
        if postgres.tick_sample_ms:
            self._every("tick-samples", postgres.tick_sample_ms / 1000.0, self._sample_ticks)
        interval = postgres.position_snapshot_interval_s
        self._every("position-rows", interval, self._record_positions)
        if postgres.maintenance_interval_s is not None:
            self._every("db-maintenance", postgres.maintenance_interval_s, self._maintain, now=True)

    def _every(
        self,
        name: str,
        interval_s: float,
        work: Callable[[], object],
        *,
        now: bool = False,
    ) -> None:
        async def loop() -> None:
            if not now:
                await asyncio.sleep(interval_s)
            while True:
                try:
                    outcome = work()
                    if isinstance(outcome, Awaitable):
                        await outcome
                except Exception as exc:  # a background chore must never stop the engine
                    logger.opt(exception=exc).error(f"{name} failed; next try in {interval_s} s")
                await asyncio.sleep(interval_s)

        self._tasks.append(asyncio.create_task(loop(), name=name))

    # --- stop ---------------------------------------------------------------------------------

    async def stop(self, deadline: float) -> None:
        """Snapshot, checkpoint, flush; whatever the database cannot take by ``deadline``
        (``time.monotonic()``) stays in the spill for the next start."""
        if not self.active:
            return
        self.active = False  # a paper fill firing after this is not recorded: nothing is open
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.writer is not None:
            self._record_positions()
            self.event("engine_stopped", f"session {self._session_of_engine()}")
        await self._final_snapshot(deadline)
        older = self.journal.rotate(self._checkpoint_now()) if self.journal is not None else []
        if self.writer is not None:
            await self.writer.close(timeout_s=max(deadline - time.monotonic(), 0.1))
        if self.journal is not None:
            self.journal.remove(older)
            self.journal.close()

    def _session_of_engine(self) -> str:
        return self._engine.session if self._engine is not None else ""

    async def _final_snapshot(self, deadline: float) -> None:
        if self.snapshots is None:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(deadline - time.monotonic(), 0.1)):
                await self.save_snapshot()
        await self.snapshots.close()

    # --- health ---------------------------------------------------------------------------------

    def degraded(self) -> list[str]:
        """Why the engine trades but is not whole; empty when it is."""
        reasons = []
        writer = self.writer
        if writer is not None and not writer.available:
            since = time.monotonic() - (writer.unavailable_since or time.monotonic())
            reasons.append(
                f"postgres unreachable for {since:.0f} s: {writer.memory_rows} rows in memory, "
                f"{writer.spill.bytes} bytes spilled ({writer.last_error})"
            )
        if self.snapshots is not None and not self.snapshots.available:
            reasons.append(f"redis unreachable: snapshots paused ({self.snapshots.last_error})")
        if self.snapshots is not None and self.snapshots.superseded:
            reasons.append(f"snapshots refused: session {self.snapshots.superseded} is newer")
        if self.in_doubt:
            reasons.append(f"{len(self.in_doubt)} orders in doubt: the venue could not be asked")
        if self.unrestored:
            reasons.append(self.unrestored)
        return reasons
