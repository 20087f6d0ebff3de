"""The batched writer: rows in from the engine's loop, binary COPY out to PostgreSQL, nothing lost.

``put(table, row)`` never blocks and never does I/O in the normal case: it appends to the table's
open batch. A batch is sealed when it reaches ``batch_rows`` or has waited ``flush_interval_s``;
one background task writes sealed batches in order, each with asyncpg's binary
``copy_records_to_table`` (one COPY, one transaction). Behind (batches waiting), the batches of
one table waiting next to each other go in one COPY, up to ``merge_rows``: one transaction and
one commit instead of several. A merge the database refuses for its content is written again
part by part, so only the batch at fault is set aside. A batch that meets rows already in the
table (a retry after a connection died mid-commit, a spill file replayed twice, an order a
restarted engine reconciles again) fails atomically on the table's key and is written again
through a temporary table with ``INSERT ... ON CONFLICT DO NOTHING``: every row lands once, and the
fast path pays nothing for that guarantee. A batch that meets a time no partition covers creates
the partitions and is retried.

Rows waiting in memory are bounded by ``memory_rows``. When PostgreSQL is unreachable (or slower
than the engine) and the bound is reached, the waiting batches move to the spill file and every
later batch follows them there until the spill is drained, so the order rows were put in is the
order they are written in. Unreachable means connection-level failures, authentication
failures, server shutdown, missing schema: the writer backs off (0.1 s doubling to 5 s), keeps
accepting, and reports itself unavailable; once a write succeeds it drains memory, then the
spill. A batch PostgreSQL refuses for its content (which retrying cannot fix) is moved to a
``rejected-*.log`` file next to the spill, in the same format, and logged: never dropped
silently, and it does not block the batches behind it. If that file cannot be written either
(disk full, permissions), the batch is dropped, counted in ``stats.rejected_unkept`` and logged:
the writer goes on with the rows it can still write.

``persist()`` makes every row put so far durable at once (the rows in memory go to the front of
the spill, fsync'd); the order journal calls it before it forgets the orders those rows record.
``replace_pool(dsn)`` swaps the connection pool between two batches, for rotated credentials.

The DSN may name a primary and its standbys (``h1:5432,h2:5432/db?target_session_attrs=read-write``,
infra/nomad/ha): after a failover the writer's next connection lands on the new primary
(``connect_any`` tries the hosts at once), and ``TCP_USER_TIMEOUT`` makes a connection to a
vanished host fail in seconds, so nothing has to restart the writer.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from loguru import logger

from runtime.core.errors import PersistenceError
from runtime.core.logging import register_secret
from runtime.persistence.recordlog import Appender, Damage
from runtime.persistence.schema import TimeseriesTable, ensure_partitions, timeseries_tables
from runtime.persistence.settings import describe_url
from runtime.persistence.spill import Batch, SpillLog, encode_batch
from runtime.persistence.tables import TABLES, Row, event_row

PG_EPOCH_US: Final = 946_684_800_000_000
"""2000-01-01 UTC, where PostgreSQL counts timestamps from, in microseconds since 1970."""
BACKOFF_S: Final = (0.1, 5.0)
TCP_USER_TIMEOUT_MS: Final = 10_000
_UNAVAILABLE: Final = (
    OSError,
    TimeoutError,
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InsufficientResourcesError,
    asyncpg.exceptions.InvalidAuthorizationSpecificationError,
    asyncpg.exceptions.InsufficientPrivilegeError,
    asyncpg.exceptions.InvalidCatalogNameError,
    asyncpg.exceptions.UndefinedTableError,
    # A primary and its standbys (target_session_attrs=read-write): during a failover no member
    # is the primary yet, or a connection still reaches the old primary now a standby.
    asyncpg.exceptions.TargetServerAttributeNotMatched,
    asyncpg.exceptions.ReadOnlySQLTransactionError,
)
"""Failures a later attempt may not meet: the database (down, credentials, privileges, schema
not migrated, not the primary), not the rows, is the problem."""
_NOT_THIS_HOST: Final = (
    OSError,
    TimeoutError,
    asyncpg.PostgresError,
    asyncpg.exceptions.InternalClientError,
)
"""Why one host of a multi-host DSN did not take a connection (down, not the primary, refused)."""


def _encode_ns(ns: int) -> tuple[int]:
    return (ns // 1000 - PG_EPOCH_US,)


def _decode_ns(value: tuple[int]) -> int:
    return (value[0] + PG_EPOCH_US) * 1000


def _fail_on_silent_peer(conn: Any) -> None:
    """A server whose host is gone sends no reset: without this, a COPY to it waits for the
    command timeout (60 s) before the writer tries again, and after a failover finds the new
    primary (infra/nomad/ha). TCP_USER_TIMEOUT (libpq's ``tcp_user_timeout``) fails the
    connection once data stays unacknowledged this long; a live server acknowledges at once,
    busy or not."""
    sock = conn._transport.get_extra_info("socket")  # asyncpg keeps its transport private
    if sock is not None and hasattr(socket, "TCP_USER_TIMEOUT"):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, TCP_USER_TIMEOUT_MS)


async def init_connection(conn: Any) -> None:
    """Timestamps as integer nanoseconds since the epoch, as the engine keeps them; a dead
    server noticed in seconds."""
    _fail_on_silent_peer(conn)
    await conn.set_type_codec(
        "timestamptz",
        schema="pg_catalog",
        encoder=_encode_ns,
        decoder=_decode_ns,
        format="tuple",
    )


async def connect_any(dsn: str, **kwargs: Any) -> Any:
    """``asyncpg.connect``, except that the hosts of a multi-host DSN (a primary and its
    standbys, ``target_session_attrs=read-write``) are tried at once, not in turn: asyncpg's one
    timeout covers all of them, so a dead member listed first (after a failover, the old primary)
    would use it all up and the new primary would never be tried. The first host that takes the
    connection wins; the other attempts are cancelled or closed."""
    parts = urlsplit(dsn)
    auth, at, hosts = parts.netloc.rpartition("@")
    members = hosts.split(",")
    if len(members) < 2:
        return await asyncpg.connect(dsn, **kwargs)
    tries = [
        asyncio.create_task(
            asyncpg.connect(urlunsplit(parts._replace(netloc=f"{auth}{at}{m}")), **kwargs)
        )
        for m in members
    ]
    chosen, errors = None, []
    try:
        for attempt in asyncio.as_completed(tries):
            try:
                chosen = await attempt
                return chosen
            except _NOT_THIS_HOST as exc:
                errors.append(exc)
        raise errors[-1]  # every host failed: the last one's reason
    finally:
        for task in tries:
            task.cancel()
            finished = task.done() and not task.cancelled() and task.exception() is None
            if finished and task.result() is not chosen:
                task.result().terminate()


async def create_pool(dsn: str, *, connect_timeout_s: float = 5.0, size: int = 2) -> Any:
    """A pool that connects lazily (it is created even while the database is down)."""
    register_secret(dsn)
    return await asyncpg.create_pool(
        dsn,
        connect=connect_any,
        min_size=0,
        max_size=size,
        init=init_connection,
        timeout=connect_timeout_s,
        command_timeout=60.0,
        server_settings={"application_name": "arbfleet-writer", "timezone": "UTC"},
    )


@dataclass
class WriterStats:
    rows: collections.Counter[str] = field(default_factory=collections.Counter)
    """Rows written, per table (a row skipped because it was already there is not counted)."""
    skipped: collections.Counter[str] = field(default_factory=collections.Counter)
    """Rows not written because the table already had them."""
    rejected: collections.Counter[str] = field(default_factory=collections.Counter)
    """Rows PostgreSQL refused for their content, per table."""
    rejected_unkept: collections.Counter[str] = field(default_factory=collections.Counter)
    """Of those, rows that could not be kept in the rejected-rows file either: lost."""
    spilled_rows: int = 0
    batches: int = 0
    retries: int = 0
    partitions_created: int = 0
    spill_damage: list[str] = field(default_factory=list)


class BatchWriter:
    """See the module docstring. ``start()``, then ``put`` from the loop, ``close()`` at the end."""

    def __init__(
        self,
        dsn: str,
        spill_dir: Path,
        *,
        batch_rows: int = 10_000,
        flush_interval_s: float = 0.2,
        memory_rows: int = 200_000,
        merge_rows: int = 100_000,
        connect_timeout_s: float = 5.0,
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self._dsn = dsn
        self._batch_rows = batch_rows
        self._merge_rows = merge_rows
        self._alone = 0
        """Batches to write unmerged: the parts of a merge the database refused."""
        self._flush_interval_s = flush_interval_s
        self._memory_rows_bound = memory_rows
        self._connect_timeout_s = connect_timeout_s
        self._clock_ns = clock_ns
        self.stats = WriterStats()
        self.spill = SpillLog(spill_dir, on_damage=self._on_damage)
        self._rejected_dir = spill_dir
        self._open: dict[str, list[Row]] = {}
        self._opened_at: dict[str, float] = {}
        self._head: collections.deque[Batch] = collections.deque()
        self._inflight: Batch | None = None
        self._memory: collections.Counter[str] = collections.Counter()
        self._pool: Any = None
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._timeseries: dict[str, TimeseriesTable] = {}
        self._closed = False
        self.available = True
        self.unavailable_since: float | None = None
        self.last_error = ""

    # --- the engine's side ---------------------------------------------------------------------

    def put(self, table: str, row: Row) -> None:
        """Queue ``row`` (a tuple in ``TABLES[table].columns`` order) for writing."""
        if self._closed:
            raise PersistenceError(f"writer is closed: a {table} row came too late")
        rows = self._open.get(table)
        if rows is None:
            if table not in TABLES:
                raise PersistenceError(f"no table {table!r} (tables: {', '.join(TABLES)})")
            rows = self._open[table] = []
            self._opened_at[table] = time.monotonic()
        rows.append(row)
        self._memory[table] += 1
        if len(rows) >= self._batch_rows:
            self._seal(table)

    def queue_depth(self) -> dict[str, int]:
        """Rows held in memory per table, not yet written (spilled rows are in ``spill.bytes``)."""
        return {table: count for table, count in self._memory.items() if count}

    @property
    def dsn(self) -> str:
        """The DSN in use (the latest ``replace_pool`` one): for maintenance sessions."""
        return self._dsn

    @property
    def memory_rows(self) -> int:
        return sum(self._memory.values())

    # --- batches -----------------------------------------------------------------------------

    def _seal(self, table: str) -> None:
        rows = self._open.pop(table)
        del self._opened_at[table]
        batch = Batch(table, rows)
        if not self.spill.empty:
            self._to_spill(batch)  # behind what is on disk: rows are written in the order put
        else:
            self._head.append(batch)
            if self.memory_rows > self._memory_rows_bound:
                self._spill_head()
        self._wake.set()

    def _seal_due(self, everything: bool = False) -> None:
        due = time.monotonic() - self._flush_interval_s
        for table in [t for t, at in self._opened_at.items() if everything or at <= due]:
            self._seal(table)

    def _to_spill(self, batch: Batch) -> None:
        self.spill.append(batch)
        self.stats.spilled_rows += len(batch.rows)
        self._memory[batch.table] -= len(batch.rows)

    def _spill_head(self) -> None:
        """Memory is full: every waiting batch goes to disk, oldest first."""
        moved = len(self._head)
        while self._head:
            self._to_spill(self._head.popleft())
        logger.bind(spill_bytes=self.spill.bytes).warning(
            f"writer memory bound reached ({self._memory_rows_bound} rows): "
            f"{moved} batches spilled to {self.spill.directory}"
        )

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        self._pool = await create_pool(self._dsn, connect_timeout_s=self._connect_timeout_s)
        self._task = asyncio.create_task(self._run(), name="db-writer")
        logger.info(f"writer started: postgres at {describe_url(self._dsn)}")

    async def drain(self, timeout_s: float) -> bool:
        """Wait until every row put so far is in the database; False if ``timeout_s`` passed."""
        self._seal_due(everything=True)
        self._wake.set()
        deadline = time.monotonic() + timeout_s
        # Polling is simpler than an event per batch, and only shutdown and tests wait here.
        while not self._drained():
            if time.monotonic() >= deadline or self._task is None or self._task.done():
                return False
            await asyncio.sleep(0.01)
        return True

    def _drained(self) -> bool:
        return not (self._open or self._head or self._inflight) and self.spill.empty

    async def persist(self) -> None:
        """Make every row put so far durable now: in the database or fsync'd in the spill."""
        async with self._lock:  # not while a batch is being written: it is not on disk yet
            self._persist_now()
        self._wake.set()

    def _persist_now(self) -> None:
        self._seal_due(everything=True)
        batches = list(self._head)
        self._head.clear()
        for batch in batches:
            self._memory[batch.table] -= len(batch.rows)
            self.stats.spilled_rows += len(batch.rows)
        self.spill.push_front(batches)
        self.spill.sync()

    async def close(self, timeout_s: float = 5.0) -> None:
        """Write what can be written within ``timeout_s``, keep the rest in the spill, stop."""
        await self.drain(timeout_s)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._inflight is not None:  # cancelled mid-write: it was not acknowledged
            self._requeue(self._inflight, from_spill=False)
        self._persist_now()
        self._closed = True
        self.spill.close()
        if self._pool is not None:
            await _close_pool(self._pool)

    async def replace_pool(self, dsn: str) -> None:
        """Write with new credentials from now on; returns once the old pool is closed.

        The new pool is tried first (PersistenceError if it cannot connect: the old one stays).
        The swap waits for the batch being written; rows put meanwhile wait in memory.
        """
        pool = await create_pool(dsn, connect_timeout_s=self._connect_timeout_s)
        try:
            async with pool.acquire() as conn:
                await conn.fetchval("SELECT 1")
        except (*_UNAVAILABLE, asyncpg.PostgresError) as exc:
            await _close_pool(pool)
            raise PersistenceError(
                f"new database credentials do not work ({type(exc).__name__}); keeping the old"
            ) from exc
        async with self._lock:
            old, self._pool, self._dsn = self._pool, pool, dsn
        if old is not None:
            await _close_pool(old)
        logger.info(f"writer now uses new credentials for {describe_url(dsn)}")
        self._wake.set()

    # --- the background task -----------------------------------------------------------------

    async def _run(self) -> None:
        delay = BACKOFF_S[0]
        while True:
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._flush_interval_s):
                    await self._wake.wait()
            self._wake.clear()
            self._seal_due()
            if await self._write_pending():
                delay = BACKOFF_S[0]
                continue
            await asyncio.sleep(delay)
            delay = min(delay * 2, BACKOFF_S[1])

    async def _write_pending(self) -> bool:
        """Write batches oldest first until none is left; False if the database is away."""
        while True:
            async with self._lock:
                batch, from_spill = self._next_batch()
                if batch is None:
                    return True
                if not await self._write_one(batch, from_spill):
                    return False

    async def _write_one(self, batch: Batch, from_spill: bool) -> bool:
        try:
            await self._write(batch)
        except _UNAVAILABLE as exc:
            self._requeue(batch, from_spill)
            self._mark_unavailable(exc)
            return False
        except asyncpg.PostgresError as exc:
            parts = batch.split()
            if len(parts) > 1:  # one of the merged batches is at fault: each goes alone
                self._requeue(batch, from_spill)
                self._alone = len(parts)
                return True
            self._reject(batch, exc)
        except Exception as exc:  # a surprise must neither lose the batch nor stop the writer
            self._requeue(batch, from_spill)
            self.last_error = f"{type(exc).__name__}: {exc}"
            logger.opt(exception=exc).error("writer failed unexpectedly; it will retry")
            return False
        self._acknowledge(batch, from_spill)
        return True

    def _next_batch(self) -> tuple[Batch | None, bool]:
        if self._head:
            self._inflight = self._merged()
            return self._inflight, False
        return self.spill.peek(), True

    def _merged(self) -> Batch:
        """The head batch, with the batches of its table right behind it (see the module
        docstring); the order rows were put in is kept."""
        head = self._head
        first = head.popleft()
        if self._alone:
            self._alone -= 1
            return first
        parts = [first]
        rows = len(first.rows)
        while (
            head and head[0].table == first.table and rows + len(head[0].rows) <= self._merge_rows
        ):
            rows += len(head[0].rows)
            parts.append(head.popleft())
        if len(parts) == 1:
            return first
        merged = [row for part in parts for row in part.rows]
        return Batch(first.table, merged, tuple(len(part.rows) for part in parts))

    def _requeue(self, batch: Batch, from_spill: bool) -> None:
        self._inflight = None
        if not from_spill:  # still before everything else, in memory or spilled; unmerged
            self._head.extendleft(reversed(batch.split()))

    def _acknowledge(self, batch: Batch, from_spill: bool) -> None:
        self.stats.batches += 1
        if from_spill:
            self.spill.ack()
        else:
            self._inflight = None
            self._memory[batch.table] -= len(batch.rows)
        if not self.available:
            self._mark_available()

    # --- one batch ---------------------------------------------------------------------------

    async def _write(self, batch: Batch) -> None:
        async with self._pool.acquire(timeout=self._connect_timeout_s) as conn:
            try:
                inserted = await self._copy(conn, batch)
            except asyncpg.CheckViolationError as exc:
                if "no partition" not in str(exc):
                    raise
                await self._create_partitions(conn, batch)
                inserted = await self._copy(conn, batch)
        self.stats.rows[batch.table] += inserted
        self.stats.skipped[batch.table] += len(batch.rows) - inserted

    async def _copy(self, conn: Any, batch: Batch) -> int:
        """Rows inserted: all of them, or fewer when some were already there."""
        table = TABLES[batch.table]
        try:
            await conn.copy_records_to_table(table.name, records=batch.rows, columns=table.columns)
        except asyncpg.UniqueViolationError:
            return await self._copy_skipping_existing(conn, batch)
        return len(batch.rows)

    async def _copy_skipping_existing(self, conn: Any, batch: Batch) -> int:
        table = TABLES[batch.table]
        stage = f"arbfleet_stage_{table.name}"
        columns = ", ".join(table.columns)
        async with conn.transaction():
            await conn.execute(
                f"CREATE TEMP TABLE IF NOT EXISTS {stage} "
                f"(LIKE {table.name} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
            )
            await conn.copy_records_to_table(stage, records=batch.rows, columns=table.columns)
            status = await conn.execute(  # names from TABLES, never from data
                f"INSERT INTO {table.name} ({columns}) SELECT {columns} FROM {stage} "  # noqa: S608
                "ON CONFLICT DO NOTHING"
            )
        self.stats.retries += 1
        return int(status.rsplit(" ", 1)[-1])

    async def _create_partitions(self, conn: Any, batch: Batch) -> None:
        if batch.table not in self._timeseries:
            self._timeseries = {t.name: t for t in await timeseries_tables(conn)}
        table = self._timeseries[batch.table]
        column = TABLES[batch.table].columns.index("ts")
        times = [row[column] for row in batch.rows]
        created = await ensure_partitions(conn, table, times)
        self.stats.partitions_created += len(created)
        logger.info(f"writer created partitions on demand: {', '.join(created) or 'none'}")

    # --- bad news ----------------------------------------------------------------------------

    def _mark_unavailable(self, exc: BaseException) -> None:
        self.last_error = f"{type(exc).__name__}: {exc}"
        if self.available:
            self.available = False
            self.unavailable_since = time.monotonic()
            logger.bind(error=self.last_error).error(
                f"postgres at {describe_url(self._dsn)} unreachable: rows are kept "
                f"(up to {self._memory_rows_bound} in memory, then in {self.spill.directory})"
            )

    def _mark_available(self) -> None:
        since = self.unavailable_since or time.monotonic()
        outage_s = time.monotonic() - since
        self.available = True
        self.unavailable_since = None
        logger.info(f"postgres reachable again after {outage_s:.1f} s; replaying held rows")
        self.put("system_events", event_row(
            self._clock_ns(), "writer", "database_unreachable",
            f"{outage_s:.1f} s; last error: {self.last_error}",
        ))  # fmt: skip

    def _reject(self, batch: Batch, exc: asyncpg.PostgresError) -> None:
        """Keep a batch PostgreSQL refuses for its content aside, so the rest can go on."""
        path = self._rejected_dir / f"rejected-{batch.table}.log"
        refused = f"postgres refused a batch of {batch.table} ({type(exc).__name__}: {exc})"
        self.stats.rejected[batch.table] += len(batch.rows)
        log = logger.bind(table=batch.table, rows=len(batch.rows))
        try:
            appender = Appender(path)
            try:
                appender.append(encode_batch(batch))
                appender.sync()
            finally:
                appender.close()
        except OSError as error:  # the writer must go on: the rows behind it are good
            self.stats.rejected_unkept[batch.table] += len(batch.rows)
            self.last_error = f"{type(error).__name__}: {error}"
            log.error(f"{refused}; it could not be kept in {path} ({error}): its rows are lost")
            return
        log.error(f"{refused}; kept in {path}")

    def _on_damage(self, damage: Damage) -> None:
        self.stats.spill_damage.append(str(damage))
        logger.error(f"spill file damaged: {damage}")
        self.put(
            "system_events",
            event_row(self._clock_ns(), "writer", "spill_damaged", str(damage)),
        )


async def _close_pool(pool: Any, timeout_s: float = 5.0) -> None:
    try:
        async with asyncio.timeout(timeout_s):
            await pool.close()
    except (TimeoutError, *_UNAVAILABLE):
        pool.terminate()
