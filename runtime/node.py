"""The composition root: one engine process, built from its config and wired together.

The engine (runtime/engine) trades; around it the node builds, from each part's own config
section, persistence (journal, database writer, Redis snapshots), keys and database users from
the secrets store, the Consul link (TTL check, account locks, kill switch) and the health and
metrics server, and runs them in order:

    health server -> restore state -> strategies -> keys -> executor -> reconcile -> Consul
    -> feeds, watchdog, timers (-> look back, once the account locks are held, when restored
    from a snapshot: runtime/persistence/lookback.py) ... stop ... the same in reverse

None of the parts holds another: the engine reports through the ``Keeper`` and ``OrderGate``
the node hands it, persistence reads an ``EngineView``, and the Consul link and the health server
read the node's report. With embedded defaults only the engine and the health server run.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import signal
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from loguru import logger

from runtime.config import EngineConfig
from runtime.engine.engine import Engine, Feed
from runtime.engine.plugins import PluginRegistry
from runtime.observability.health import HealthServer
from runtime.observability.metrics import engine_registry
from runtime.persistence.service import Persistence
from runtime.persistence.writer import BatchWriter
from runtime.platform.consul import ConsulLink
from runtime.platform.dbcreds import DatabaseCredentials
from runtime.platform.vault import ExchangeKeys, KeyProvider, VaultSession
from runtime.trading.execution import Executor
from runtime.trading.risk import KillSwitch
from runtime.venues.replay import ReplayFeed


class Node:
    """One engine and the parts around it; see the module docstring."""

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
        self.persistence = Persistence(
            config.postgres,
            config.redis,
            config.journal,
            dynamic_users=config.vault.database_mount is not None,
            clock_ns=clock_ns,
        )
        """Journal, database writer and Redis snapshots; inert with embedded defaults."""
        self.keys = keys if keys is not None else _vault_keys(config)
        """Exchange keys from the secrets store, swapped while running; None: from the config."""
        self.db_credentials = _vault_database(config, self.persistence)
        """The writer's PostgreSQL user from the secrets store, replaced before it lapses."""
        self.consul = _consul_link(config)
        """TTL check, account locks and kill switch in Consul; None: Consul not configured."""
        self.engine = Engine(
            config,
            registry,
            executor=executor,
            clock_ns=clock_ns,
            keys=self.keys,
            persistence=self.persistence,
            gate=self.consul,
            session=self.persistence.session,
        )
        self.health_url = ""
        self.ready = asyncio.Event()
        """Set once the engine runs: state restored, strategies started, health server up."""

    # --- what the Consul link, the health server and metrics read --------------------------

    @property
    def mode(self) -> str:
        return self.config.mode

    @property
    def kill_switch(self) -> KillSwitch:
        return self.engine.kill_switch

    @property
    def writer(self) -> BatchWriter | None:
        return self.persistence.writer

    def spill_bytes(self) -> int:
        writer = self.persistence.writer
        return writer.spill.bytes if writer is not None else 0

    def health(self) -> dict[str, Any]:
        """Whether the engine can trade, every reason it cannot, and what is degraded."""
        engine = self.engine.health()
        keys, database, consul = self.keys, self.db_credentials, self.consul
        reasons = [
            *engine["reasons"],
            *(keys.missing() if keys is not None else []),
            *(consul.reasons() if consul is not None else []),
        ]
        return {
            "can_trade": not reasons,
            "reasons": reasons,
            "degraded": [
                *(keys.degraded() if keys is not None else []),
                *(database.degraded() if database is not None else []),
                *(database.missing() if database is not None else []),
                *self.persistence.degraded(),
                *(consul.degraded() if consul is not None else []),
            ],
            "exchange_keys": keys.report() if keys is not None else {},
            "consul": consul.report() if consul is not None else None,
            "strategies": engine["strategies"],
            "feeds": engine["feeds"],
        }

    def reload_keys(self) -> None:
        """SIGHUP: a Nomad template saw a new key version; look at the secrets store now."""
        if self.keys is not None:
            self.keys.refresh_now()
        else:
            logger.info("SIGHUP ignored: exchange keys come from the config, not Vault")

    # --- lifecycle ---------------------------------------------------------------------------

    async def restore(self) -> None:
        """Put back the state a restart returns (accounts, plugin state, orders in doubt, the
        session) and start keeping the engine's state from there."""
        engine = self.engine
        engine.restore(await self.persistence.restore(engine.view.strategy_names()))
        await self.persistence.start(engine.view)

    async def run(
        self, stop: asyncio.Event, feeds: Sequence[Feed] | None = None, *, serve_health: bool = True
    ) -> None:
        """Run until ``stop`` is set: feeds, timers, the watchdog and the health server.

        Whatever has started is stopped again however ``run`` ends, a failure while starting
        included (see ``_shut_down``)."""
        engine, settings = self.engine, self.config
        engine.attach(list(feeds) if feeds is not None else engine.websocket_feeds())
        health = (
            HealthServer(
                self.health, engine_registry(self), settings.health.host, settings.health.port
            )
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
            await self.restore()  # state back before strategies see an event
            engine.start()
            if self.keys is not None:
                await self.keys.sync()  # the first keys before the first order (or why not)
                tasks.append(asyncio.create_task(self.keys.run(), name="exchange-keys"))
            if self.db_credentials is not None:  # rows wait in the writer until the first user
                tasks.append(asyncio.create_task(self.db_credentials.run(), name="db-credentials"))
            await engine.executor.start()
            # Orders a killed run sent: ask the venue, never resend.
            await self.persistence.reconcile(engine.executor.recover)
            if self.consul is not None:  # registers with the health server's address
                await self.consul.start(self)
            self.ready.set()
            tasks += engine.launch()
            if self.persistence.look_back_from is not None:
                tasks.append(asyncio.create_task(self._look_back(), name="look-back"))
            await stop.wait()
            deadline = time.monotonic() + settings.shutdown.deadline_s
            await engine.wind_down(settings.shutdown.open_orders, settings.shutdown.deadline_s)
        finally:
            failures = await self._shut_down(tasks, health, persisting, deadline)
        if failures:  # reached only when running and stopping raised nothing else
            raise failures[0]

    async def _look_back(self) -> None:
        """Restored from a snapshot: once no engine before this one can send (the account
        locks held) and a request of one still on its way would be refused (``settle_s``), read
        what it sent after the snapshot from the venues (runtime.persistence.lookback)."""
        if self.consul is not None:
            await self.consul.locks_taken.wait()
        await asyncio.sleep(self.config.journal.settle_s)
        await self.persistence.look_back(self.engine.executor, self.engine.view.markets())

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
        engine = self.engine

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
        for venue, snapshots in engine.snapshots.items():
            await step(f"{venue} depth snapshots", snapshots.close)
        await step("executor", engine.executor.close)
        if self.consul is not None:  # orders in flight have reported: the lock may go
            await step("consul", self.consul.stop)
        if health is not None:
            await step("health server", health.stop)
        await step("loop watchdog", engine.watchdog.stop)
        await step("strategies", engine.stop)
        if persisting:
            until = min(deadline, time.monotonic() + self.config.shutdown.deadline_s)
            await step("persistence", lambda: self.persistence.stop(until))
        logger.info("engine stopped")
        return failures


async def serve(
    node: Node, replay: Path | None, speed: float | None, replay_venue: str | None = None
) -> None:
    """Run ``node`` until SIGINT or SIGTERM (SIGHUP: look for new keys), or until a ``replay``
    file (frames of ``replay_venue``, or recorded by the engine) has played out."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    with contextlib.suppress(NotImplementedError):  # a Nomad template saw a new key version
        loop.add_signal_handler(signal.SIGHUP, node.reload_keys)
    if replay is None:
        await node.run(stop)
        return
    engine = node.engine
    engine.replaying = True
    handlers = {venue: engine.frame_handler(venue) for venue in engine.parsers}
    feed = ReplayFeed(replay, handlers, speed=speed, venue=replay_venue)
    runner = asyncio.create_task(node.run(stop, feeds=[feed]))
    await asyncio.wait(
        [asyncio.create_task(feed.done.wait()), runner], return_when="FIRST_COMPLETED"
    )
    stop.set()
    await runner


async def _finished(task: asyncio.Task[None]) -> None:
    """Wait for a cancelled task to end; its cancellation is not a failure."""
    with contextlib.suppress(asyncio.CancelledError):
        await task


def _consul_link(config: EngineConfig) -> ConsulLink | None:
    """The engine's Consul side when ``[consul] enabled``; None runs without Consul."""
    settings = config.consul
    if not settings.enabled:
        return None
    accounts = dict(settings.accounts or config.vault.accounts)
    return ConsulLink(settings, accounts, config.redis.deployment)


def _vault_database(config: EngineConfig, persistence: Persistence) -> DatabaseCredentials | None:
    """Dynamic PostgreSQL users for the writer when the config names a database mount."""
    settings = config.vault
    if persistence.writer is None or settings.address is None or settings.database_mount is None:
        return None
    return DatabaseCredentials(
        VaultSession(settings.address, token_file=settings.token_file),
        settings.database_mount,
        settings.database_role,
        config.postgres.resolve_dsn(),
        persistence.use_credentials,
    )


def _vault_keys(config: EngineConfig) -> KeyProvider | None:
    """A key provider when the config names a secrets store and live mode needs keys from it."""
    settings = config.vault
    if config.mode != "live" or settings.address is None or not settings.accounts:
        return None
    session = VaultSession(settings.address, token_file=settings.token_file)
    return KeyProvider(
        ExchangeKeys(session, settings.kv_mount),
        settings.accounts,
        poll_interval_s=settings.poll_interval_s,
    )
