"""Consul: the engine's "can trade" TTL check, its single-writer account locks and the
cluster-wide kill switch, all through Consul's HTTP API on aiohttp.

Decisions (the why lives here, the what in the classes):

- **Own service, not a check on Nomad's.** The engine registers ``arbfleet-engine-ttl`` (one
  instance per engine, same address and port as ``/health``) carrying a TTL check "can trade".
  A check added to Nomad's ``arbfleet-engine`` service would count in Nomad's deployment health:
  a canary waiting for the account lock (or a kill-switched engine) cannot trade, so the canary
  would never turn healthy and every deployment would auto-revert, and ``check_restart`` would
  restart halted engines. ``deregister_critical_service_after`` on Nomad's service would also
  remove Nomad's own registration. So ``/health`` (Nomad) means "process alive and serving" and
  this check means "can trade"; ask ``/v1/health/service/arbfleet-engine-ttl?passing`` for the
  engines that trade now.
- **Status.** critical: the engine cannot trade (every reason of ``Engine.health()``: a stale
  feed by name, loop lag, kill switch, no account lock, ...; or the writer's spill past its
  bound). warning: it trades but is degraded (a store unreachable and buffering, keys not
  refreshed). passing: otherwise. The TTL is refreshed every ``ttl * refresh_fraction`` and at
  once when the lock or the kill switch changes. A check that stays critical past
  ``deregister_critical_after_s`` is removed by Consul (that is how a killed engine's instance
  goes away); a live engine finds its check gone on the next refresh and registers again.
- **Account locks.** One session per engine (TTL, ``behavior = release``, lock-delay), one KV key
  ``arbfleet/locks/accounts/<venue>/<account>`` per account. Orders go out only while every
  lock is held; a lock lost (the key's session changed, the session is gone) blocks new intents
  at once, and the engine tries to acquire again.
- **Consul unreachable.** While a lock is held, trading continues until the session's TTL has
  run out since its last successful renewal: Consul cannot hand the lock to another engine
  before then (it waits the TTL, a grace of as much again, and the lock-delay). Past that: no
  lock, no trading. The kill switch keeps its last known state; before its first read no order
  goes out.
- **Kill switch.** ``arbfleet/kill-switch`` holds ``{"reason", "who", "when"}``; each engine
  watches it with a blocking query (a change returns at once) and engages the risk guard's kill
  switch, so new orders stop in well under a second. Deleting the key resumes trading.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import json
import os
import secrets
import socket
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal, Protocol, TypeAlias
from urllib.parse import urlsplit

import aiohttp
import pydantic
from loguru import logger
from pydantic import PositiveFloat, PositiveInt

from runtime.core.errors import ArbfleetError, ConfigError
from runtime.core.logging import redact, register_secret
from runtime.core.settings import Frozen

Status: TypeAlias = Literal["passing", "warning", "critical"]
STATES: Final[tuple[Status, ...]] = ("passing", "warning", "critical")
CHECK_NAME: Final = "can-trade"
"""The check's label in ``arbfleet_consul_check_state`` (monitoring/metrics.md)."""
MAX_OUTPUT: Final = 4000
"""Consul keeps at most 4 KiB of a check's output."""
DEFAULT_ADDRESS: Final = "http://127.0.0.1:8500"


class ConsulConfig(Frozen):
    """The "can trade" TTL check, account locks and kill switch in Consul
    (runtime/platform/consul.py). Off unless ``enabled``: the demo and embedded defaults run
    without Consul."""

    enabled: bool = False
    address: str = "http://127.0.0.1:8500"
    token_file: Path | None = None
    """A Consul ACL token (with ACLs on): service, session and key write on the engine's keys."""
    service: str = "arbfleet-engine-ttl"
    """Service the engine registers itself as (not Nomad's ``arbfleet-engine``: see consul.py)."""
    service_id: str | None = None
    """None: ``<service>-<Nomad allocation id>``, else host, pid and a random suffix."""
    check_ttl_s: PositiveFloat = 10.0
    refresh_fraction: float = pydantic.Field(default=1 / 3, gt=0.0, lt=1.0)
    """The TTL is refreshed every ``check_ttl_s * refresh_fraction`` (and on every change)."""
    deregister_critical_after_s: float = pydantic.Field(default=60.0, ge=60.0)
    """Consul removes an instance whose check stays critical this long (a killed engine's)."""
    max_spill_bytes: PositiveInt = 1 << 30
    """The writer's spill past this is critical: buffering beyond its bound."""
    lock: bool = True
    """Hold a lock per exchange account while trading (single writer)."""
    accounts: dict[str, str] = pydantic.Field(default_factory=dict)
    """venue -> account to lock; empty: ``vault.accounts``; both empty: nothing to lock."""
    lock_prefix: str = "arbfleet/locks/accounts"
    session_ttl_s: float = pydantic.Field(default=15.0, ge=10.0, le=86_400.0)
    lock_delay_s: float = pydantic.Field(default=15.0, ge=0.0, le=60.0)
    """After a holder's session is invalidated, nobody may take its locks for this long."""
    retry_s: PositiveFloat = 1.0
    kill_switch_key: str = "arbfleet/kill-switch"


class Switch(Protocol):
    """The engine's kill switch, as the link flips it (runtime.trading.risk.KillSwitch)."""

    reason: str | None

    def engage(self, reason: str) -> None: ...

    def release(self) -> None: ...


class Linked(Protocol):
    """What the link reads of the node it reports for (runtime.node.Node)."""

    @property
    def mode(self) -> str: ...

    @property
    def health_url(self) -> str: ...

    @property
    def kill_switch(self) -> Switch: ...

    def health(self) -> dict[str, Any]: ...

    def spill_bytes(self) -> int: ...


class ConsulError(ArbfleetError):
    """Consul answered with an error status."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(f"consul: HTTP {status}: {text.strip()[:200]}")
        self.status = status


_NETWORK_ERRORS: Final = (aiohttp.ClientError, TimeoutError, ConsulError)


def _seconds(value: float) -> str:
    return f"{value:g}s"


class ConsulApi:
    """The few HTTP calls the engine and the CLI make, on one aiohttp session."""

    def __init__(self, address: str, http: aiohttp.ClientSession, token: str | None = None) -> None:
        self.address = address.rstrip("/")
        self._http = http
        self._headers = {"X-Consul-Token": token} if token else {}

    async def call(
        self, method: str, path: str, *, body: Any = None, timeout_s: float = 5.0, **params: Any
    ) -> tuple[Any, int]:
        """(decoded JSON or text, X-Consul-Index) of ``method /v1/<path>``; 404 -> (None, index)."""
        async with self._http.request(
            method,
            f"{self.address}/v1/{path}",
            params={k: str(v) for k, v in params.items()},
            data=None if body is None else (body if isinstance(body, str) else json.dumps(body)),
            timeout=aiohttp.ClientTimeout(total=timeout_s),
            headers=self._headers,
        ) as response:
            index = int(response.headers.get("X-Consul-Index", "0"))
            text = await response.text()
            if response.status == 404 and method == "GET":
                return None, index
            if response.status >= 400:
                raise ConsulError(response.status, text)
            try:
                return json.loads(text) if text else None, index
            except ValueError:
                return text, index

    async def watch(self, key: str, index: int, wait_s: float) -> tuple[dict[str, Any] | None, int]:
        """A KV entry, waiting up to ``wait_s`` for a change after ``index`` (blocking query)."""
        entries, new_index = await self.call(
            "GET", f"kv/{key}", index=index, wait=_seconds(wait_s), timeout_s=wait_s + 5
        )
        # Consul's rule: an index that went backwards (a snapshot restore) restarts from 0.
        new_index = new_index if new_index >= index else 0
        return (entries[0] if entries else None), new_index

    async def put_kv(self, key: str, value: str, **params: Any) -> bool:
        result, _ = await self.call("PUT", f"kv/{key}", body=value, **params)
        return result is True

    async def delete_kv(self, key: str) -> None:
        await self.call("DELETE", f"kv/{key}")


def kv_value(entry: dict[str, Any] | None) -> str | None:
    if entry is None or entry.get("Value") is None:
        return None
    return base64.b64decode(entry["Value"]).decode(errors="replace")


# --- the account locks ---------------------------------------------------------------------


@dataclass
class AccountLock:
    venue: str
    account: str
    key: str
    session: str | None = None
    """The session holding it as far as this engine knows; ours when we hold it."""
    waiting_for: str = ""
    """Who holds it while we wait (as said in logs and the check output)."""

    @property
    def name(self) -> str:
        return f"{self.venue}/{self.account}"


class SessionLocks:
    """One Consul session and the account locks it holds; see the module docstring."""

    def __init__(
        self,
        api: ConsulApi,
        settings: ConsulConfig,
        owner: dict[str, str],
        accounts: dict[str, str],
        on_change: Callable[[], None],
    ) -> None:
        self._api = api
        self._settings = settings
        self._owner = owner
        self._on_change = on_change
        prefix = settings.lock_prefix.strip("/")
        self.locks = [
            AccountLock(venue, account, f"{prefix}/{venue}/{account}")
            for venue, account in sorted(accounts.items())
        ]
        self.session: str | None = None
        self.valid_until = 0.0
        """Monotonic time until which Consul cannot have given our locks to anyone else."""
        self._creating = asyncio.Lock()

    def held(self) -> bool:
        session = self.session
        if session is None or time.monotonic() >= self.valid_until:
            return False
        return all(lock.session == session for lock in self.locks)

    def state(self, lock: AccountLock) -> str:
        if lock.session is not None and lock.session == self.session and self.held():
            return "held"
        return f"waiting for {lock.waiting_for}" if lock.waiting_for else "acquiring"

    def reasons(self) -> list[str]:
        """Why the locks do not allow trading now; empty when they do."""
        if self.held():
            return []
        out = []
        for lock in self.locks:
            if lock.session is not None and lock.session == self.session:
                continue
            if lock.waiting_for:
                out.append(f"waiting for account lock {lock.name} held by {lock.waiting_for}")
            else:
                out.append(f"account lock {lock.name} not held (acquiring)")
        if not out:
            out.append("account locks not confirmed: Consul unreachable past the session TTL")
        return out

    async def ensure_session(self) -> str:
        async with self._creating:
            if self.session is None:
                settings = self._settings
                body = {
                    "Name": f"arbfleet-engine {self._owner['service_id']}",
                    "TTL": _seconds(settings.session_ttl_s),
                    "Behavior": "release",
                    "LockDelay": _seconds(settings.lock_delay_s),
                }
                asked = time.monotonic()  # Consul's TTL starts before its answer reaches us
                created, _ = await self._api.call("PUT", "session/create", body=body)
                self.session = str(created["ID"])
                self.valid_until = asked + settings.session_ttl_s
                logger.info(f"consul session {self.session} created")
            return self.session

    def _lost_session(self, why: str) -> None:
        if self.session is not None:
            logger.error(f"consul session {self.session} lost ({why}): trading stops")
        self.session = None
        self.valid_until = 0.0
        for lock in self.locks:
            lock.session = None
        self._on_change()

    async def renew(self) -> None:
        """Keep the session alive forever (cancel to stop)."""
        interval = self._settings.session_ttl_s / 3
        while True:
            await asyncio.sleep(interval)
            session = self.session
            if session is None:
                continue
            started = time.monotonic()
            try:
                renewed, _ = await self._api.call("PUT", f"session/renew/{session}")
            except ConsulError as exc:
                if exc.status == 404:
                    self._lost_session("Consul no longer knows it")
                    continue
                logger.warning(f"consul session renewal failed: {exc}")
                continue
            except (aiohttp.ClientError, TimeoutError) as exc:
                logger.warning(f"consul unreachable, session not renewed: {exc!r}")
                continue
            if renewed is None:
                self._lost_session("Consul no longer knows it")
            elif session == self.session:
                self.valid_until = started + self._settings.session_ttl_s

    async def hold(self, lock: AccountLock) -> None:
        """Acquire ``lock``, keep watching it, and acquire it again when lost (cancel to stop)."""
        index = 0
        while True:
            try:
                index = await self._step(lock, index)
            except _NETWORK_ERRORS as exc:
                if isinstance(exc, ConsulError) and "invalid session" in str(exc):
                    self._lost_session("invalid session")
                else:
                    logger.warning(f"account lock {lock.name}: consul error {exc!r}")
                index = 0
                await asyncio.sleep(self._settings.retry_s)

    async def _step(self, lock: AccountLock, index: int) -> int:
        session = await self.ensure_session()
        if lock.session != session:
            await self._acquire(lock, session)
        # Held: wait long for a change (a lost lock returns at once). Waiting: look again soon,
        # since the end of another session's lock-delay changes nothing Consul could report.
        wait_s = self._settings.session_ttl_s if lock.session == session else self._settings.retry_s
        entry, index = await self._api.watch(lock.key, index, wait_s)
        current = entry.get("Session") if entry else None
        if lock.session == session and current != session:
            logger.error(f"account lock {lock.name} lost (now held by {current}): trading stops")
            lock.session = None
            self._on_change()
        return index

    async def _acquire(self, lock: AccountLock, session: str) -> None:
        value = json.dumps({**self._owner, "since": now_iso()})
        if await self._api.put_kv(lock.key, value, acquire=session):
            lock.session = session
            lock.waiting_for = ""
            logger.info(f"account lock {lock.name} acquired (session {session})")
            self._on_change()
            return
        holder = await self._holder(lock.key)
        if holder != lock.waiting_for:
            logger.warning(f"waiting for account lock {lock.name} held by {holder}")
            lock.waiting_for = holder
            self._on_change()

    async def _holder(self, key: str) -> str:
        entry, _ = await self._api.watch(key, 0, 0)
        session = entry.get("Session") if entry else None
        if session is None:
            return "nobody (lock-delay of the last holder)"
        info, _ = await self._api.call("GET", f"session/info/{session}")
        node = info[0]["Node"] if info else "?"
        try:
            owner = json.loads(kv_value(entry) or "{}").get("service_id", "?")
        except ValueError:
            owner = "?"
        return f"session {session} on node {node} ({owner})"

    async def release(self) -> None:
        """Give the locks back (no lock-delay for the next engine) and end the session."""
        session = self.session
        if session is None:
            return
        for lock in self.locks:
            if lock.session == session:
                with contextlib.suppress(*_NETWORK_ERRORS):
                    await self._api.put_kv(lock.key, "", release=session)
                    logger.info(f"account lock {lock.name} released")
            lock.session = None
        with contextlib.suppress(*_NETWORK_ERRORS):
            await self._api.call("PUT", f"session/destroy/{session}")
        self.session = None


def now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


# --- the engine's side ---------------------------------------------------------------------


class ConsulLink:
    """Everything the engine does with Consul; ``start`` after the health server listens,
    ``stop`` once orders in flight have reported."""

    def __init__(self, settings: ConsulConfig, accounts: dict[str, str], deployment: str) -> None:
        self.settings = settings
        alloc = os.environ.get("NOMAD_ALLOC_ID")
        suffix = alloc or f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        self.service_id = settings.service_id or f"{settings.service}-{suffix}"
        self.check_id = f"{self.service_id}:{CHECK_NAME}"
        self.deployment = deployment
        self._accounts = accounts
        self.needs_lock = settings.lock and bool(accounts)
        self._token = read_token(settings)  # a missing token file fails at start, not later
        self._node: Linked | None = None
        self._http: aiohttp.ClientSession | None = None
        self._api: ConsulApi | None = None
        self.locks: SessionLocks | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._poke = asyncio.Event()
        self.locks_taken = asyncio.Event()
        """Set once every account lock has been held: no engine before this one sends any more."""
        self.kill_switch_read = False
        self._kill_reason: str | None = None
        self.status: Status = "critical"
        self.output = "starting"
        self.check_problem: str | None = None
        """The TTL reporter's last Consul error, until its next report goes through."""
        self.kill_switch_problem: str | None = None
        """The kill-switch watcher's last Consul error, until its next read succeeds."""

    # -- the hot path's view --

    def blocked(self) -> str | None:
        """Why no order may go out now (None: they may); cheap, called per batch of intents."""
        if not self.kill_switch_read:
            return "consul: kill switch not read yet"
        if self.needs_lock and (self.locks is None or not self.locks.held()):
            return "consul: account lock not held"
        return None

    def reasons(self) -> list[str]:
        out = [] if self.kill_switch_read else ["kill switch state not read from Consul yet"]
        if self.locks is not None:
            out += self.locks.reasons()
        elif self.needs_lock:
            out.append("account locks not acquired yet")
        return out

    def degraded(self) -> list[str]:
        """Consul errors, each cleared only by the task that met it (the TTL reporter and the
        kill-switch watcher fail and recover independently)."""
        problems = (("check", self.check_problem), ("kill switch", self.kill_switch_problem))
        return [f"consul unreachable ({what}): {problem}" for what, problem in problems if problem]

    def report(self) -> dict[str, Any]:
        locks = self.locks
        return {
            "service_id": self.service_id,
            "check": {"status": self.status, "output": self.output},
            "locks": {lock.name: locks.state(lock) for lock in locks.locks} if locks else {},
        }

    # -- lifecycle --

    async def start(self, node: Linked) -> None:
        self._node = node
        self._http = aiohttp.ClientSession()
        self._api = ConsulApi(self.settings.address, self._http, self._token)
        owner = {
            "service_id": self.service_id,
            "host": socket.gethostname(),
            "deployment": self.deployment,
        }
        if self.needs_lock:
            self.locks = SessionLocks(
                self._api, self.settings, owner, self._accounts, self._locks_changed
            )
        else:
            self.locks_taken.set()
        jobs: list[tuple[str, Coroutine[Any, Any, None]]] = [
            ("consul-check", self._report()),
            ("consul-kill-switch", self._watch_kill_switch()),
        ]
        if self.locks is not None:
            jobs.append(("consul-session", self.locks.renew()))
            jobs += [
                (f"consul-lock-{lock.name}", self.locks.hold(lock)) for lock in self.locks.locks
            ]
        self._tasks = [asyncio.create_task(job, name=name) for name, job in jobs]

    def _locks_changed(self) -> None:
        if self.locks is not None and self.locks.held():
            self.locks_taken.set()
        self._poke.set()

    async def stop(self) -> None:
        """Release the locks and deregister; a no-op if not started or already stopped."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        api, self._api = self._api, None  # the tasks that used them have ended
        http, self._http = self._http, None
        if self.locks is not None:
            await self.locks.release()
        if api is not None:
            with contextlib.suppress(*_NETWORK_ERRORS):
                await api.call("PUT", f"agent/service/deregister/{self.service_id}")
                logger.info(f"consul service {self.service_id} deregistered")
        if http is not None:
            await http.close()

    # -- the TTL check --

    def check_status(self) -> tuple[Status, str]:
        """(status, output) from the engine's own health report; see the module docstring."""
        assert self._node is not None
        report = self._node.health()
        critical = list(report["reasons"]) + self._over_bounds()
        if critical:
            return "critical", redact("cannot trade: " + "; ".join(critical))[:MAX_OUTPUT]
        if report["degraded"]:
            return "warning", redact("trading, degraded: " + "; ".join(report["degraded"]))[
                :MAX_OUTPUT
            ]
        feeds = ", ".join(sorted(report["feeds"])) or "none"
        locks = ", ".join(lock.name for lock in self.locks.locks) if self.locks else "none needed"
        return "passing", f"can trade: feeds fresh ({feeds}), loop lag ok, account locks: {locks}"

    def _over_bounds(self) -> list[str]:
        assert self._node is not None
        spilled = self._node.spill_bytes()
        if spilled > self.settings.max_spill_bytes:
            return [f"writer spill {spilled} bytes over {self.settings.max_spill_bytes}"]
        return []

    async def _register(self) -> None:
        assert self._node is not None and self._api is not None
        where = urlsplit(self._node.health_url or "http://127.0.0.1:0")
        settings = self.settings
        body = {
            "ID": self.service_id,
            "Name": settings.service,
            "Address": where.hostname or "127.0.0.1",
            "Port": where.port or 0,
            "Tags": ["arbfleet", self._node.mode],
            "Meta": {"deployment": self.deployment, "mode": self._node.mode},
            "Check": {
                "CheckID": self.check_id,
                "Name": "can trade",
                "Notes": "feeds fresh, loop lag ok, stores in bounds, risk not halted, locks held",
                "TTL": _seconds(settings.check_ttl_s),
                "DeregisterCriticalServiceAfter": _seconds(settings.deregister_critical_after_s),
                "Status": "critical",
            },
        }
        await self._api.call("PUT", "agent/service/register", body=body)
        logger.info(f"consul service {settings.service} registered as {self.service_id}")

    async def _report(self) -> None:
        interval = self.settings.check_ttl_s * self.settings.refresh_fraction
        registered = False
        while True:
            try:
                self.status, self.output = self.check_status()
                if not registered:
                    await self._register()
                    registered = True
                await self._update_check()
                self.check_problem = None
            except ConsulError as exc:
                registered = exc.status != 404  # the check is gone (deregistered): register again
                self.check_problem = str(exc)
            except (aiohttp.ClientError, TimeoutError) as exc:
                self.check_problem = repr(exc)
            except Exception as exc:
                # Not refreshing lets the TTL lapse to critical: the safe side for "can trade".
                logger.opt(exception=exc).error("consul check report failed")
                self.check_problem = repr(exc)
            self._poke.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._poke.wait(), interval)

    async def _update_check(self) -> None:
        assert self._api is not None
        body = {"Status": self.status, "Output": self.output}
        await self._api.call("PUT", f"agent/check/update/{self.check_id}", body=body)

    # -- the kill switch --

    async def _watch_kill_switch(self) -> None:
        assert self._api is not None
        index = 0
        while True:
            try:
                entry, index = await self._api.watch(self.settings.kill_switch_key, index, 30.0)
            except _NETWORK_ERRORS as exc:
                self.kill_switch_problem = repr(exc)
                index = 0
                await asyncio.sleep(self.settings.retry_s)
                continue
            self.kill_switch_problem = None
            self._apply_kill_switch(kv_value(entry))
            self.kill_switch_read = True

    def _apply_kill_switch(self, value: str | None) -> None:
        assert self._node is not None
        switch = self._node.kill_switch
        if value is None:
            if self._kill_reason is not None and switch.reason == self._kill_reason:
                switch.release()
                logger.warning("cluster kill switch released: trading resumes")
                self._poke.set()
            self._kill_reason = None
            return
        reason = "cluster kill switch: " + describe_kill_switch(value)
        if reason != self._kill_reason:
            switch.engage(reason)
            self._kill_reason = reason
            logger.error(f"{reason}: no new orders")
            self._poke.set()


def describe_kill_switch(value: str) -> str:
    """'<reason> (by <who> at <when>)'; an unreadable value still halts (safety first)."""
    try:
        data = json.loads(value)
        return f"{data['reason']} (by {data.get('who', '?')} at {data.get('when', '?')})"
    except (ValueError, KeyError, TypeError):
        return f"unreadable value {value[:80]!r}"


def read_token(settings: ConsulConfig) -> str | None:
    """The ACL token from ``token_file`` (registered with the log scrubber), or None."""
    if settings.token_file is None:
        return None
    try:
        token = settings.token_file.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"consul.token_file: cannot read {settings.token_file}: {exc}") from exc
    register_secret(token)
    return token or None
