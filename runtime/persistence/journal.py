"""The order journal: every order written down before it is sent, so kill -9 loses none.

Why a local fsync'd append-only file, and not a Redis stream or a PostgreSQL table:

- It is the only choice that does not depend on another service being up. The issue asks the
  engine to keep trading through Redis and PostgreSQL outages; a journal kept in either would
  stop trading with them (no write-ahead, no order) or silently stop protecting it.
- It is durable when the call returns: ``fdatasync`` on local disk, well under a millisecond on
  SSD, once per batch of intents (an arbitrage's legs share one). Redis' AOF is fsync'd once a
  second by default (``appendfsync everysec``, as the local stack runs it): a kill of the host
  could lose the last second of orders. PostgreSQL is durable but costs a network round trip and
  a commit on the order path, and the writer deliberately batches.
- It is the simplest: one file, records framed and checksummed (``recordlog``), read back in
  full at start. Nothing to configure but a directory.

Its limit: it lives on the node. A rescheduled allocation finds it only on the same host volume
(the engine job mounts one); on a new node the engine starts from the Redis snapshot and reads
the orders sent after it from the venues' order lists (runtime/persistence/lookback.py). Client
order ids stay unique either way: the session part moves past every session the journal (or
snapshot) has seen.

Records: ``session`` (a run started), ``sent`` (an intent, fsync'd before it leaves), ``done`` (its
outcome and fill, not fsync'd: a record lost to a power cut is recovered by asking the venue), and
``checkpoint`` (every account and the orders still open). The journal is a series of segments
``journal-<n>.log``, each starting with a checkpoint; ``rotate`` starts a new one and returns the
older segments, which the caller removes once the database rows of their ``done`` records are
durable (``BatchWriter.persist``). At start, ``replay`` rebuilds the accounts from the newest
checkpoint and the fills after it, lists the orders sent and never done (the ones to reconcile
with the venue; never to send again), and hands back every ``done`` record still in the journal
so their rows can be written again (the tables' keys make that harmless).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import msgspec

from runtime.core.orders import Fill, OrderIntent, OrderResult
from runtime.persistence.recordlog import Appender, Damage, frame, scan, sync_directory

_SEGMENT = re.compile(r"^journal-(\d{12})\.log$")


class AccountState(msgspec.Struct, frozen=True):
    balances: list[tuple[str, str, float]]
    fees: dict[str, float]
    fills: int
    last_sent: str = ""
    """The client order id of the strategy's last order sent by then ("" if none)."""


class SessionStarted(msgspec.Struct, frozen=True, tag="session"):
    session: str
    ts_ns: int


class OrderSent(msgspec.Struct, frozen=True, tag="sent"):
    intent: OrderIntent
    opportunity_ns: int | None = None


class OrderDone(msgspec.Struct, frozen=True, tag="done"):
    result: OrderResult
    fills: list[Fill]
    finished_ns: int
    opportunity_ns: int | None = None


class Checkpoint(msgspec.Struct, frozen=True, tag="checkpoint"):
    ts_ns: int
    accounts: dict[str, AccountState]
    open_orders: list[OrderSent]
    session: str
    """The newest session seen so far."""


Entry = SessionStarted | OrderSent | OrderDone | Checkpoint
_encoder: Final = msgspec.msgpack.Encoder()
_decoder: Final = msgspec.msgpack.Decoder(Entry)


@dataclass
class Replay:
    """What the journal says, as ``OrderJournal.replay`` found it."""

    checkpoint: Checkpoint | None = None
    fills: list[Fill] = field(default_factory=list)
    """Fills recorded after the newest checkpoint: apply them on top of its accounts."""
    open_orders: dict[str, OrderSent] = field(default_factory=dict)
    """Sent and never done, by client order id, oldest first."""
    done: list[OrderDone] = field(default_factory=list)
    """Every outcome still in the journal, for writing their rows again."""
    last_session: str | None = None
    damage: list[Damage] = field(default_factory=list)


def _session_number(session: str) -> int:
    return int(session, 36)


def later_session(candidate: str, last: str | None) -> str:
    """``candidate`` if it sorts after ``last``, else the session right after ``last``."""
    if last is None or _session_number(candidate) > _session_number(last):
        return candidate
    number = _session_number(last) + 1
    digits = []
    while number:
        number, remainder = divmod(number, 36)
        digits.append("0123456789abcdefghijklmnopqrstuvwxyz"[remainder])
    return "".join(reversed(digits))


class OrderJournal:
    """See the module docstring: ``replay()`` once, then ``start_session``, ``sent``, ``done``."""

    def __init__(self, directory: Path, *, fsync: bool = True) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self._fsync = fsync
        self._appender: Appender | None = None
        self.records = 0

    def _segments(self) -> list[Path]:
        found = [(int(m[1]), p) for p in self.directory.iterdir() if (m := _SEGMENT.match(p.name))]
        return [path for _, path in sorted(found)]

    # --- reading -----------------------------------------------------------------------------

    def replay(self) -> Replay:
        """Everything the journal holds; damage is reported in ``Replay.damage``, not raised."""
        replay = Replay()
        for path in self._segments():
            for item in scan(path):
                if isinstance(item, Damage):
                    replay.damage.append(item)
                    continue
                try:
                    entry = _decoder.decode(item.payload)
                except msgspec.DecodeError as exc:
                    replay.damage.append(
                        Damage(path, item.offset, item.end - item.offset, f"undecodable: {exc}")
                    )
                    continue
                _apply(replay, entry)
        return replay

    # --- writing -----------------------------------------------------------------------------

    def start_session(self, session: str, now_ns: int) -> None:
        self._append(SessionStarted(session, now_ns), sync=True)

    def sent(self, orders: list[OrderSent]) -> None:
        """Write intents ahead of sending them; returns once they are on disk."""
        if self._appender is None:
            raise RuntimeError("journal not started: rotate() first")
        self._appender.append_all([_encoder.encode(order) for order in orders])
        self.records += len(orders)
        if self._fsync:
            self._appender.sync()

    def done(self, done: OrderDone) -> None:
        self._append(done, sync=False)

    def rotate(self, checkpoint: Checkpoint) -> list[Path]:
        """Start a new segment with ``checkpoint``; the older segments, for ``remove``."""
        older = self._segments()
        number = int(_SEGMENT.match(older[-1].name)[1]) + 1 if older else 1  # type: ignore[index]
        path = self.directory / f"journal-{number:012d}.log"
        temporary = path.with_suffix(".tmp")
        with temporary.open("wb") as handle:
            handle.write(frame(_encoder.encode(checkpoint)))
            handle.flush()
            os.fsync(handle.fileno())
        temporary.replace(path)
        sync_directory(self.directory)
        if self._appender is not None:
            self._appender.close()
        self._appender = Appender(path)
        return older

    def remove(self, segments: list[Path]) -> None:
        for segment in segments:
            segment.unlink(missing_ok=True)
        sync_directory(self.directory)

    def _append(self, entry: Entry, *, sync: bool) -> None:
        if self._appender is None:
            raise RuntimeError("journal not started: rotate() first")
        self._appender.append(_encoder.encode(entry))
        self.records += 1
        if sync and self._fsync:
            self._appender.sync()

    def close(self) -> None:
        if self._appender is not None:
            self._appender.close()
            self._appender = None


def _apply(replay: Replay, entry: Entry) -> None:
    if isinstance(entry, Checkpoint):
        replay.checkpoint = entry
        replay.fills.clear()
        replay.open_orders = {o.intent.client_order_id: o for o in entry.open_orders}
        replay.last_session = _latest(replay.last_session, entry.session)
    elif isinstance(entry, SessionStarted):
        replay.last_session = _latest(replay.last_session, entry.session)
    elif isinstance(entry, OrderSent):
        replay.open_orders[entry.intent.client_order_id] = entry
    else:
        replay.open_orders.pop(entry.result.intent.client_order_id, None)
        replay.done.append(entry)
        replay.fills.extend(entry.fills)


def _latest(current: str | None, session: str) -> str:
    if current is None or _session_number(session) > _session_number(current):
        return session
    return current
