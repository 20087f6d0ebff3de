"""Persistence as the engine sees it: a few synchronous hooks, and start/reconcile/stop.

The engine calls ``before_send`` with every batch of intents that passed the risk guards (the
intents are in the journal, on disk, when it returns; if they cannot be, it returns the reason
and the engine blocks them), and ``on_fill``, ``on_result`` and ``on_opportunity`` as executors
and strategies report. None of these waits on the network: rows go to the writer's queue.

``start`` restores state before the first event: the accounts from the journal's newest
checkpoint plus the fills after it, or (no journal state, e.g. a new node) from the Redis
snapshot; plugin state from the snapshot; the rows of every outcome still in the journal are
written again (keys make that harmless). ``reconcile`` then asks the venue about every order
sent but never reported, and reports what the venue says through the executor's usual path.
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
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Final

import asyncpg
from loguru import logger

from runtime.core.errors import ConfigError, PersistenceError
from runtime.core.logging import BoundedLog
from runtime.core.orders import Fill, Opportunity, OrderIntent, OrderResult, new_session
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
from runtime.persistence.snapshots import Restored, SnapshotStore, StrategySnapshot
from runtime.persistence.tables import (
    event_row,
    fill_row,
    opportunity_row,
    order_row,
    tick_row,
)
from runtime.persistence.writer import BatchWriter

if TYPE_CHECKING:
    from runtime.config import EngineConfig
    from runtime.engine.engine import Engine

OPPORTUNITY_LINK_NS: Final = 1_000_000_000
"""An order acts on its strategy's latest opportunity if it was created within this of it."""
RECONCILE_RETRY_S: Final = 10.0


def spill_dir(config: EngineConfig) -> Path:
    if config.postgres.spill_dir is not None:
        return config.postgres.spill_dir
    if config.journal.dir is not None:
        return config.journal.dir / "spill"
    raise ConfigError(
        "postgres.spill_dir: required when postgres is configured without journal.dir "
        "(rows spill there while the database is unreachable)"
    )


class Persistence:
    """See the module docstring."""

    def __init__(self, config: EngineConfig, *, clock_ns: Callable[[], int] = time.time_ns):
        self._config = config
        self._clock_ns = clock_ns
        journal = config.journal
        self.journal = OrderJournal(journal.dir, fsync=journal.fsync) if journal.dir else None
        self.replay = self.journal.replay() if self.journal is not None else Replay()
        self.writer = self._build_writer(config) if config.postgres.enabled else None
        self.snapshots = self._build_snapshots(config) if config.redis.enabled else None
        self.active = any(p is not None for p in (self.journal, self.writer, self.snapshots))
        self.session = later_session(new_session(), self.replay.last_session)
        """This run's session: after every session the journal has seen (runtime.core.orders)."""
        self.in_doubt: dict[str, OrderSent] = {}
        self.restored_from = ""
        self.unrestored = ""
        """Why state that should have been restored was not: the engine runs on start balances."""
        self.problems: list[str] = []
        self.migrations_pending = config.postgres.migrate_on_start
        self._engine: Engine | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._open: dict[str, OrderSent] = {}
        self._fills: dict[str, list[Fill]] = {}
        self._last_opportunity: dict[str, int] = {}
        self._ticks_recorded: dict[tuple[str, str], int] = {}
        self._journal_errors = BoundedLog()

    @staticmethod
    def _build_writer(config: EngineConfig) -> BatchWriter:
        settings = config.postgres
        return BatchWriter(
            settings.resolve_dsn(),
            spill_dir(config),
            batch_rows=settings.batch_rows,
            flush_interval_s=settings.flush_interval_ms / 1000.0,
            memory_rows=settings.memory_rows,
            connect_timeout_s=settings.connect_timeout_s,
        )

    @staticmethod
    def _build_snapshots(config: EngineConfig) -> SnapshotStore:
        settings = config.redis
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
        orders = [OrderSent(intent, self._opportunity_of(intent)) for intent in intents]
        if self.journal is not None:
            try:
                self.journal.sent(orders)
            except OSError as exc:
                self._journal_errors.warning("sent", f"order journal write failed: {exc}")
                return f"order journal unavailable: {exc.strerror or exc}"
        for order in orders:
            self._open[order.intent.client_order_id] = order
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
        top = self._engine.books.top(venue, symbol)
        if top is None or self._ticks_recorded.get((venue, symbol)) == top.local_ts_ns:
            return
        self._ticks_recorded[(venue, symbol)] = top.local_ts_ns
        self.writer.put("ticks", tick_row(top))

    def _sample_ticks(self) -> None:
        assert self._engine is not None
        for venue, tops in self._engine.books.tops.items():
            for symbol in list(tops):
                self._record_tick(venue, symbol)

    def _record_positions(self) -> None:
        engine, writer = self._engine, self.writer
        assert engine is not None and writer is not None
        now = self._clock_ns()
        portfolio = engine.portfolio
        for safe in engine.strategies:
            for (venue, asset), balance in portfolio.account(safe.name).items():
                position = portfolio.position(safe.name, venue, asset)
                writer.put("position_snapshots", (now, safe.name, venue, asset, balance, position))
            writer.put("pnl_snapshots", (now, safe.name, portfolio.pnl(safe.name, engine.prices)))

    def event(self, kind: str, detail: str) -> None:
        """A row in ``system_events`` (if there is a database), from this deployment: engines of
        several deployments share one database."""
        if self.writer is not None:
            source = self._config.redis.deployment
            self.writer.put("system_events", event_row(self._clock_ns(), source, kind, detail))

    # --- start --------------------------------------------------------------------------------

    async def start(self, engine: Engine) -> None:
        """Restore state and start the background tasks; before strategies start."""
        self._engine = engine
        if not self.active:
            return
        if self.writer is not None:
            await self._start_writer()
        restored = await self._load_snapshots(engine)
        self._restore_accounts(engine, restored)
        self._restore_strategy_state(engine, restored)
        self._report_problems(restored)
        self._rewrite_journaled_rows()
        self._hold_in_doubt(engine)
        if self.journal is not None:
            older = self.journal.rotate(self._checkpoint_now())
            self.journal.start_session(engine.session, self._clock_ns())
            await self._forget(older)
        self.event("engine_started", self._start_detail(engine))
        self._start_tasks()

    async def _start_writer(self) -> None:
        assert self.writer is not None
        # With users from Vault, the DSN names no user until the first one arrives.
        if self._config.vault.database_mount is None and self.migrations_pending:
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
            report = await run_migrations(dsn, self._config.postgres)
        except (OSError, TimeoutError, asyncpg.PostgresError, PersistenceError) as exc:
            raise PersistenceError(f"migrations on start failed: {exc}") from exc
        self.migrations_pending = False
        logger.info(str(report))

    async def _load_snapshots(self, engine: Engine) -> Restored:
        if self.snapshots is None:
            return Restored()
        return await self.snapshots.load(safe.name for safe in engine.strategies)

    def _restore_accounts(self, engine: Engine, restored: Restored) -> None:
        replay = self.replay
        if replay.checkpoint is not None:
            for strategy, account in replay.checkpoint.accounts.items():
                balances = {(venue, asset): x for venue, asset, x in account.balances}
                engine.portfolio.restore(strategy, balances, account.fees, account.fills)
            for fill in replay.fills:
                engine.portfolio.apply_fill(fill)
            self.restored_from = "journal"
        elif restored.snapshots:
            for strategy, snapshot in restored.snapshots.items():
                self._restore_from_snapshot(engine, strategy, snapshot)
            self.restored_from = "redis"
        self.in_doubt.update(replay.open_orders)

    def _restore_from_snapshot(
        self, engine: Engine, strategy: str, snapshot: StrategySnapshot
    ) -> None:
        if snapshot.balances is not None:
            balances = {(venue, asset): x for venue, asset, x in snapshot.balances}
            engine.portfolio.restore(strategy, balances, snapshot.fees, snapshot.fills)
        for intent in snapshot.open_orders or ():
            self.in_doubt[intent.client_order_id] = OrderSent(intent)
        if self.journal is None:
            self._adopt_later_session(engine, snapshot.session)

    def _adopt_later_session(self, engine: Engine, seen: str) -> None:
        """Without a journal, the snapshot's session is the newest known: order ids of this run
        must not repeat that run's (a restart within the same second)."""
        session = later_session(engine.session, seen)
        if session != engine.session:
            engine.session = session
            for safe in engine.strategies:
                safe.strategy.fleet_context.session = session

    def _restore_strategy_state(self, engine: Engine, restored: Restored) -> None:
        for safe in engine.strategies:
            snapshot = restored.snapshots.get(safe.name)
            if snapshot is not None and snapshot.state is not None:
                safe.restore_state(snapshot.state)

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

    def _hold_in_doubt(self, engine: Engine) -> None:
        for order in self.in_doubt.values():
            self._open[order.intent.client_order_id] = order
            engine.risk.order_opened(order.intent)

    def _start_detail(self, engine: Engine) -> str:
        source = self.restored_from or "nothing to restore"
        return f"session {engine.session}; state from {source}; {len(self.in_doubt)} in doubt"

    # --- reconcile ----------------------------------------------------------------------------

    async def reconcile(self, engine: Engine) -> None:
        """Ask the venue about every order in doubt; report what it says; never resend.
        Orders the venue could not be asked about are asked again every ``RETRY_S``."""
        if not self.in_doubt:
            return
        logger.info(f"reconciling {len(self.in_doubt)} orders sent before the restart")
        await self._ask_venue(engine)
        if self.in_doubt:
            logger.error(f"{len(self.in_doubt)} orders still in doubt: the venue was not asked")
            self._every("reconcile-retry", RECONCILE_RETRY_S, lambda: self._ask_venue(engine))

    async def _ask_venue(self, engine: Engine) -> None:
        orders = list(self.in_doubt.values())
        settle_s = self._config.journal.settle_s
        answered = await asyncio.gather(
            *(engine.executor.recover(order.intent, settle_s) for order in orders)
        )
        for order, known in zip(orders, answered, strict=True):
            order_id = order.intent.client_order_id
            if known:
                del self.in_doubt[order_id]
                self.event("order_reconciled", order_id)

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
        for safe in engine.strategies:
            name = safe.name
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
                pnl=portfolio.pnl(name, engine.prices),
                state=safe.save_state(),
            )
        return snapshots

    async def save_snapshot(self) -> bool:
        return self.snapshots is not None and await self.snapshots.save(self.snapshot_now())

    async def _maintain(self) -> None:
        assert self.writer is not None
        report = await run_maintenance(self.writer.dsn, self._config.postgres)
        if report.created or report.dropped:
            logger.info(f"partition maintenance: {report}")

    # --- background tasks -----------------------------------------------------------------------

    def _start_tasks(self) -> None:
        postgres, redis, journal = self._config.postgres, self._config.redis, self._config.journal
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
        if self.in_doubt:
            reasons.append(f"{len(self.in_doubt)} orders in doubt: the venue could not be asked")
        if self.unrestored:
            reasons.append(self.unrestored)
        return reasons
