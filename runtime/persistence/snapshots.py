"""State snapshots in Redis: each strategy's balances, positions, open orders, PnL and the state
its plugin chooses to keep, written periodically and at shutdown, read back at start.

One Redis hash per strategy, ``arbfleet:<environment>:<deployment>:<strategy>:snapshot``, with
one field per part (``meta``, ``balances``, ``positions``, ``fees``, ``open_orders``, ``state``),
so an operator can ``HGET`` the part they want. Every field is ``<crc32 hex>:<JSON>``; a field
that fails its checksum or does not decode is reported by key and field, and the other fields
and strategies are still restored. All strategies are written by one script, so a reader never
sees half of a snapshot.

Fenced by session: a ``session`` field names the engine run that wrote the snapshot, and the
script writes nothing if a later session (sessions only grow) has written any of the keys. An
engine cut off from Consul but not from Redis, replaced meanwhile, cannot overwrite its
replacement's accounts with its own older ones (``superseded`` says by whom).

Redis unreachable: ``save`` raises nothing; it records the failure (``available``,
``last_error``) for the health report, and the next periodic save tries again.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import msgspec
import redis.asyncio as aioredis
from loguru import logger
from redis.exceptions import RedisError

from runtime.core.logging import register_secret
from runtime.core.orders import OrderIntent
from runtime.persistence.settings import describe_url

FORMAT_VERSION: Final = 1
_PARTS: Final = ("meta", "balances", "positions", "fees", "open_orders", "state")


class Meta(msgspec.Struct, frozen=True):
    version: int
    ts_ns: int
    session: str
    fills: int
    pnl: float | None
    last_sent: str = ""


class StrategySnapshot(msgspec.Struct, frozen=True):
    """What a strategy's account looked like at ``ts_ns``."""

    ts_ns: int
    session: str
    balances: list[tuple[str, str, float]] | None
    """(venue, asset, amount), absolute; None when the stored ones were damaged."""
    positions: list[tuple[str, str, float]] = []
    """(venue, asset, amount beyond the initial balance): for people, not read back."""
    fees: dict[str, float] = {}
    fills: int = 0
    open_orders: list[OrderIntent] | None = None
    """None when the stored ones were damaged."""
    pnl: float | None = None
    state: dict[str, Any] | None = None
    last_sent: str = ""
    """The client order id of the last order sent by then ("" if none): every later order of
    this strategy is not in the snapshot (runtime.persistence.lookback)."""


_TYPES: Final[Mapping[str, Any]] = {
    "meta": Meta,
    "balances": list[tuple[str, str, float]],
    "positions": list[tuple[str, str, float]],
    "fees": dict[str, float],
    "open_orders": list[OrderIntent],
    "state": dict[str, Any] | None,
}
# KEYS: the strategies' snapshot keys; ARGV[1]: the writer's session, then per key the number of
# fields and the field/value pairs. Returns nil when written, else the later session found.
# Sessions are base-36 numbers without leading zeros: longer is later, then by character.
_SAVE_FENCED: Final = """
local session = ARGV[1]
for _, key in ipairs(KEYS) do
  local stored = redis.call('HGET', key, 'session')
  if stored and (#stored > #session or (#stored == #session and stored > session)) then
    return stored
  end
end
local i = 2
for _, key in ipairs(KEYS) do
  local n = tonumber(ARGV[i])
  redis.call('DEL', key)
  redis.call('HSET', key, 'session', session, unpack(ARGV, i + 1, i + 2 * n))
  i = i + 1 + 2 * n
end
return nil
"""
_encoder = msgspec.json.Encoder()
_decoders: Final = {part: msgspec.json.Decoder(kind) for part, kind in _TYPES.items()}


def _seal(value: object) -> bytes:
    body = _encoder.encode(value)
    return b"%08x:" % zlib.crc32(body) + body


def _unseal(part: str, raw: bytes) -> Any:
    """The value of one field; ValueError saying what is wrong with it."""
    checksum, sep, body = raw.partition(b":")
    if not sep or len(checksum) != 8:
        raise ValueError("no checksum (truncated or not written by arbfleet)")
    if int(checksum, 16) != zlib.crc32(body):
        raise ValueError("checksum mismatch (corrupted)")
    try:
        return _decoders[part].decode(body)
    except msgspec.DecodeError as exc:
        raise ValueError(f"undecodable: {exc}") from exc


def _fields(snapshot: StrategySnapshot) -> dict[str, bytes]:
    meta = Meta(
        FORMAT_VERSION,
        snapshot.ts_ns,
        snapshot.session,
        snapshot.fills,
        snapshot.pnl,
        snapshot.last_sent,
    )
    return {
        "meta": _seal(meta),
        "balances": _seal(snapshot.balances),
        "positions": _seal(snapshot.positions),
        "fees": _seal(snapshot.fees),
        "open_orders": _seal(snapshot.open_orders or []),
        "state": _seal(snapshot.state),
    }


@dataclass
class Restored:
    """What ``load`` found: snapshots by strategy, and every problem, each naming its field."""

    snapshots: dict[str, StrategySnapshot] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    unreachable: str = ""
    """Why Redis could not be read at all ("" when it could)."""


class SnapshotStore:
    """Reads and writes snapshots; see the module docstring."""

    def __init__(
        self, url: str, environment: str, deployment: str, *, timeout_s: float = 1.0
    ) -> None:
        register_secret(url)
        self._url = url
        self.prefix = f"arbfleet:{environment}:{deployment}"
        self._client = aioredis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )
        self.available = True
        self.last_error = ""
        self.last_saved_ns = 0
        self.saves = 0
        self.superseded = ""
        """The later session whose snapshot this store refused to overwrite ("" if none)."""
        self._save_fenced = self._client.register_script(_SAVE_FENCED)

    def key(self, strategy: str) -> str:
        return f"{self.prefix}:{strategy}:snapshot"

    async def save(self, snapshots: Mapping[str, StrategySnapshot]) -> bool:
        """Write every strategy's snapshot at once, unless a later session has written one;
        False (and health degraded) if Redis is away or the snapshot was refused."""
        if not snapshots:
            return True
        session = next(iter(snapshots.values())).session
        args: list[bytes | str | int] = [session]
        for snapshot in snapshots.values():
            fields = _fields(snapshot)
            args.append(len(fields))
            for name, value in fields.items():
                args += [name, value]
        try:
            later = await self._save_fenced(keys=[self.key(s) for s in snapshots], args=args)
        except (RedisError, OSError) as exc:
            self._failed(exc)
            return False
        if later is not None:
            if not self.superseded:
                logger.error(
                    f"snapshot not saved: session {later.decode()} (a later engine of this "
                    "deployment) has written its own; this engine is not the one trading"
                )
            self.superseded = later.decode()
            return False
        if not self.available:
            logger.info(f"redis at {describe_url(self._url)} reachable again: snapshots resume")
        self.available = True
        self.last_saved_ns = time.time_ns()
        self.saves += 1
        return True

    async def load(self, strategies: Iterable[str]) -> Restored:
        """The latest snapshot of each of ``strategies`` that has one."""
        restored = Restored()
        for strategy in strategies:
            key = self.key(strategy)
            try:
                raw: Mapping[Any, Any] = await self._client.hgetall(key)
            except (RedisError, OSError) as exc:
                self._failed(exc)
                restored.unreachable = self.last_error
                return restored
            if raw:
                snapshot = _decode(key, raw, restored.problems)
                if snapshot is not None:
                    restored.snapshots[strategy] = snapshot
        return restored

    def _failed(self, exc: BaseException) -> None:
        self.last_error = f"{type(exc).__name__}: {exc}"
        if self.available:
            logger.warning(
                f"redis at {describe_url(self._url)} unreachable ({self.last_error}): "
                "trading goes on, snapshots resume when it is back"
            )
        self.available = False

    async def close(self) -> None:
        await self._client.aclose()


def _decode(key: str, raw: Mapping[Any, Any], problems: list[str]) -> StrategySnapshot | None:
    """A snapshot from the fields that check out; a problem line for each one that does not."""
    parts: dict[str, Any] = {}
    for part in _PARTS:
        value = raw.get(part.encode())
        if value is None:
            problems.append(f"{key} field {part!r}: missing")
            continue
        try:
            parts[part] = _unseal(part, value)
        except ValueError as exc:
            problems.append(f"{key} field {part!r}: {exc}; not restored")
    meta = parts.get("meta")
    if not isinstance(meta, Meta):
        problems.append(f"{key}: without its meta field the snapshot is not used")
        return None
    return StrategySnapshot(
        ts_ns=meta.ts_ns,
        session=meta.session,
        balances=parts.get("balances"),
        positions=parts.get("positions", []),
        fees=parts.get("fees", {}),
        fills=meta.fills,
        open_orders=parts.get("open_orders"),
        pnl=meta.pnl,
        state=parts.get("state"),
        last_sent=meta.last_sent,
    )
