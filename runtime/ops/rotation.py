"""Exchange key rotation with dual-key overlap: ``arbfleet secrets rotate VENUE ACCOUNT``.

Steps (secrets/rotation.md is the operator's version), each written to the audit log with the
keys named by fingerprint only:

1. ``read``: the account's KV entry (current version N and the versions before it), where the
   venue can list keys the account's keys at the venue, and the engines to confirm with.
2. Clean up after an earlier run first. A key at the venue that is still active, is not version
   N and *is* an earlier KV version means that run stopped after writing: resume it (confirm,
   then revoke) instead of starting another (roll forward). An active key with the account's
   label that is in *no* KV version was created by a run that stopped before writing: no engine
   can have it, so it is revoked (roll back) once older than ``orphan_grace_s``.
3. ``create``: a new key at the venue (or the key an operator created by hand, rotation.md).
4. ``write``: KV version N+1 with check-and-set N. On a conflict (someone else wrote) or a
   Vault failure the new key is revoked again and nothing changed.
5. ``confirm``: every engine that uses the account (Consul's ``arbfleet-engine`` instances, or
   the health URLs given) reports version N+1 on ``/health``. On timeout both keys stay valid,
   so nothing fails; a re-run resumes here.
6. ``revoke``: the old key at the venue (an operator does it by hand where the venue has no API).

The rotation's state is also kept in the entry's custom_metadata (``rotation_state``,
``rotation_failed_step``, ``rotated_at``), which ``arbfleet secrets status`` shows.
"""

from __future__ import annotations

import asyncio
import datetime
import functools
import os
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import aiohttp

from runtime.core.errors import (
    CasConflictError,
    ExchangeError,
    RotationError,
    SecretsError,
    VaultUnavailableError,
)
from runtime.core.logging import logger, register_secret
from runtime.core.venue import Credentials
from runtime.platform.vault import ExchangeKey, ExchangeKeys, KeyMetadata, key_fingerprint

T = TypeVar("T")
ENGINE_SERVICE = "arbfleet-engine"


# --- the venue's side -----------------------------------------------------------------------------


@dataclass(frozen=True)
class VenueKey:
    """A key as the venue lists it (no secret)."""

    api_key: str
    label: str
    created_ms: int
    revoked: bool


class VenueKeyManager(Protocol):
    """Create, list and revoke API keys at a venue."""

    async def create(self, label: str, permissions: Sequence[str]) -> Credentials: ...

    async def list(self, label: str) -> list[VenueKey] | None:
        """The label's keys, revoked ones included; None if the venue cannot list keys."""
        ...

    async def revoke(self, api_key: str) -> bool:
        """Revoke the key; False if it cannot be done by API (an operator must)."""
        ...


class KeyManagementApi:
    """The simulator's key management API (devstack/simulator/keys.py), with a bearer token."""

    def __init__(self, url: str, token: str, *, timeout_s: float = 10.0) -> None:
        self._url = url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}"}
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        register_secret(token)

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        async with (
            aiohttp.ClientSession(timeout=self._timeout, headers=self._headers) as http,
            http.request(method, f"{self._url}{path}", **kwargs) as response,
        ):
            body = await response.json(content_type=None)
            if response.status >= 400:
                detail = body.get("msg") if isinstance(body, dict) else body
                raise ExchangeError(
                    f"key API answered {response.status}: {detail}", status=response.status
                )
            return body

    async def create(self, label: str, permissions: Sequence[str]) -> Credentials:
        body = await self._call(
            "POST", "/admin/keys", json={"label": label, "permissions": list(permissions)}
        )
        register_secret(body["secret"])
        register_secret(body["api_key"])
        return Credentials(body["api_key"], body["secret"])

    async def list(self, label: str) -> list[VenueKey] | None:
        body = await self._call("GET", "/admin/keys", params={"label": label})
        return [VenueKey(k["api_key"], k["label"], int(k["created"]), k["revoked"]) for k in body]

    async def revoke(self, api_key: str) -> bool:
        await self._call("DELETE", f"/admin/keys/{api_key}")
        return True


class OperatorKeys:
    """A venue whose keys only a person can create and revoke (rotation.md): the new key is the
    one the operator supplies; revoking the old one is left to them."""

    def __init__(self, new_key: Credentials) -> None:
        register_secret(new_key.api_key)
        register_secret(new_key.secret)
        self._new_key = new_key

    async def create(self, label: str, permissions: Sequence[str]) -> Credentials:
        return self._new_key

    async def list(self, label: str) -> list[VenueKey] | None:
        return None

    async def revoke(self, api_key: str) -> bool:
        return False


# --- the engines' side ----------------------------------------------------------------------------


class EngineFinder(Protocol):
    async def health_urls(self) -> list[str]: ...


@dataclass(frozen=True)
class StaticEngines:
    """Engines given by their health URLs (``--engine``)."""

    urls: tuple[str, ...]

    async def health_urls(self) -> list[str]:
        return list(self.urls)


@dataclass(frozen=True)
class ConsulEngines:
    """Every registered instance of the engine service, passing or not: an engine that cannot
    answer has not confirmed, and the old key stays."""

    consul_url: str
    service: str = ENGINE_SERVICE

    async def health_urls(self) -> list[str]:
        url = f"{self.consul_url.rstrip('/')}/v1/catalog/service/{self.service}"
        # With ACLs on, an anonymous catalog read is an empty list, not an error: without the
        # token, rotation would see no engine and revoke a key still in use.
        token = os.environ.get("CONSUL_HTTP_TOKEN")
        headers = {"X-Consul-Token": token} if token else {}
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http,
            http.get(url, headers=headers) as response,
        ):
            response.raise_for_status()
            instances = await response.json()
        return [
            f"http://{i['ServiceAddress'] or i['Address']}:{i['ServicePort']}/health"
            for i in instances
        ]


async def engine_versions(urls: Sequence[str], venue: str, account: str) -> dict[str, int | str]:
    """Health URL -> KV version it reports for ``venue``/``account`` (or why it reported none),
    for the engines that use that account."""
    found: dict[str, int | str] = {}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
        for url in urls:
            try:
                async with http.get(url) as response:
                    report = await response.json(content_type=None)
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                found[url] = f"unreachable ({type(exc).__name__})"
                continue
            held = report.get("exchange_keys") if isinstance(report, dict) else None
            keys = (held or {}).get(venue)
            if keys is not None and keys.get("account") == account:
                found[url] = keys["version"] if keys["version"] is not None else "no key loaded"
    return found


# --- the procedure ------------------------------------------------------------------------------


@dataclass
class RotationReport:
    venue: str
    account: str
    old_version: int
    new_version: int
    resumed: bool = False
    operator_action: str = ""
    """What a person must still do (revoke the old key by hand); empty when done."""
    steps: list[str] = field(default_factory=list)


@dataclass
class RotationSettings:
    confirm_timeout_s: float = 60.0
    confirm_poll_s: float = 0.2
    orphan_grace_s: float = 600.0
    permissions: tuple[str, ...] = ("trade",)
    max_age_days: float = 30.0


def venue_label(venue: str, account: str) -> str:
    """The label of the account's keys at the venue: keys with it are managed by rotation."""
    return f"arbfleet/{venue}/{account}"


class Rotation:
    """Rotate one account's key; ``await rotate()``. Safe to re-run after any failure."""

    def __init__(
        self,
        keys: ExchangeKeys,
        venue_keys: VenueKeyManager,
        engines: EngineFinder,
        venue: str,
        account: str,
        settings: RotationSettings | None = None,
    ) -> None:
        self.kv = keys
        self.venue_keys = venue_keys
        self.engines = engines
        self.venue = venue
        self.account = account
        self.settings = settings if settings is not None else RotationSettings()
        self.label = venue_label(venue, account)

    # --- plumbing ---------------------------------------------------------------------------

    def _audit(self, step: str, outcome: str, message: str, **fields: Any) -> None:
        logger.bind(
            audit="key-rotation",
            venue=self.venue,
            account=self.account,
            step=step,
            outcome=outcome,
            **fields,
        ).info(f"key rotation {self.venue}/{self.account}: {step} {outcome}: {message}")

    async def _step(self, step: str, call: Callable[[], Awaitable[T]], state: str) -> T:
        """Run one step; a failure becomes a ``RotationError`` naming the step and ``state``."""
        try:
            return await call()
        except (SecretsError, ExchangeError, aiohttp.ClientError, TimeoutError) as exc:
            if isinstance(exc, RotationError):
                raise
            self._audit(step, "failed", f"{exc}; {state}")
            await self._record_failure(step)
            raise RotationError(step, f"{exc}; {state}") from exc

    async def _vault(self, operation: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await asyncio.to_thread(operation, *args, **kwargs)

    async def _record(self, **fields: str) -> None:
        fields["rotation_updated"] = _now()
        await self._vault(self.kv.record, self.venue, self.account, **fields)

    async def _record_failure(self, step: str) -> None:
        try:
            await self._record(rotation_failed_step=step)
        except SecretsError as exc:  # Vault itself may be what failed: the error says enough
            self._audit(step, "unrecorded", f"could not record the failure in Vault: {exc}")

    # --- the procedure ------------------------------------------------------------------------

    async def rotate(self) -> RotationReport:
        nothing = "nothing was changed"
        metadata = await self._step("read", self._metadata, nothing)
        if metadata is None:
            return await self.provision()
        current = await self._step(
            "read",
            lambda: self._vault(self.kv.read, self.venue, self.account, metadata.current_version),
            nothing,
        )
        history = await self._step("read", lambda: self._history(metadata.live_versions), nothing)
        listed = await self._step("read", lambda: self.venue_keys.list(self.label), nothing)
        # The engines must be findable before anything changes, not only at the confirmation.
        await self._step("read", self.engines.health_urls, nothing)
        self._audit("read", "ok", f"version {current.version} in KV", key=current.fingerprint)
        return await self._continue(metadata, current, history, listed)

    async def _metadata(self) -> KeyMetadata | None:
        """The entry's metadata; None if the account has no entry yet."""
        try:
            return await self._vault(self.kv.metadata, self.venue, self.account)
        except VaultUnavailableError as exc:
            if exc.reason == "missing":
                return None
            raise

    async def _continue(
        self,
        metadata: KeyMetadata,
        current: ExchangeKey,
        history: dict[str, int],
        listed: list[VenueKey] | None,
    ) -> RotationReport:
        """Finish what an earlier run left, or rotate from ``current``."""
        if metadata.custom.get("rotation_state") == "awaiting_operator_revoke":
            return self._operator_still_to_revoke(current, metadata.custom)
        if listed is not None:
            in_use = current.credentials.api_key
            stale = [k for k in listed if not k.revoked and k.api_key != in_use]
            await self._roll_back_orphans([k for k in stale if k.api_key not in history])
            distributed = [k for k in stale if k.api_key in history]
            if distributed:
                return await self._resume(current, distributed, history)
        return await self._rotate_from(current, history)

    async def provision(self) -> RotationReport:
        """The account's first key: create it at the venue and write KV version 1 (cas 0)."""
        new = await self._step(
            "create",
            lambda: self.venue_keys.create(self.label, self.settings.permissions),
            "nothing was changed",
        )
        version = await self._write(new, cas=0)
        await self._record(rotation_state="idle", rotated_at=_now())
        return RotationReport(self.venue, self.account, 0, version, steps=["create", "write"])

    async def _history(self, versions: Sequence[int]) -> dict[str, int]:
        """api key -> the KV version that holds it, for every readable version."""
        found = {}
        for version in versions:
            key = await self._vault(self.kv.read, self.venue, self.account, version)
            found[key.credentials.api_key] = version
        return found

    async def _roll_back_orphans(self, orphans: Sequence[VenueKey]) -> None:
        cutoff_ms = (time.time() - self.settings.orphan_grace_s) * 1000
        for orphan in orphans:
            fingerprint = key_fingerprint(orphan.api_key)
            if orphan.created_ms > cutoff_ms:
                self._audit(
                    "cleanup", "skipped", "key not in KV is recent: another run's?", key=fingerprint
                )
                continue
            await self._step(
                "cleanup",
                functools.partial(self.venue_keys.revoke, orphan.api_key),
                f"key {fingerprint} is in no KV version, no engine has it; re-run to revoke it",
            )
            self._audit(
                "cleanup", "ok", "revoked a key an earlier run never wrote to KV", key=fingerprint
            )

    async def _rotate_from(self, current: ExchangeKey, history: dict[str, int]) -> RotationReport:
        new = await self._step(
            "create",
            lambda: self.venue_keys.create(self.label, self.settings.permissions),
            "nothing was changed",
        )
        if new.api_key == current.credentials.api_key:
            # An operator re-running with the key already written: resume at the confirmation.
            older = [key for key, version in history.items() if version < current.version]
            previous = max((history[key] for key in older), default=current.version)
            self._audit("resume", "ok", f"version {current.version} already holds this key")
            return await self._finish(previous, current.version, older[-1:], [], resumed=True)
        self._audit("create", "ok", "new key at the venue", key=key_fingerprint(new.api_key))
        version = await self._write(new, cas=current.version)
        await self._record(
            rotation_state="overlap",
            rotation_old_version=str(current.version),
            rotation_failed_step="",
        )
        return await self._finish(
            current.version, version, [current.credentials.api_key], ["create", "write"]
        )

    async def _write(self, new: Credentials, *, cas: int) -> int:
        try:
            version = await self._vault(
                self.kv.write,
                self.venue,
                self.account,
                new,
                cas=cas,
                permissions=self.settings.permissions,
                max_age_days=self.settings.max_age_days,
            )
        except (CasConflictError, VaultUnavailableError) as exc:
            undone = await self._undo_create(new)
            self._audit("write", "failed", f"{exc}; {undone}")
            await self._record_failure("write")
            raise RotationError("write", f"{exc}; {undone}") from exc
        self._audit(
            "write",
            "ok",
            f"KV version {version} (check-and-set {cas})",
            key=key_fingerprint(new.api_key),
            version=version,
        )
        return version

    async def _undo_create(self, new: Credentials) -> str:
        fingerprint = key_fingerprint(new.api_key)
        try:
            revoked = await self.venue_keys.revoke(new.api_key)
        except (ExchangeError, aiohttp.ClientError, TimeoutError) as exc:
            return (
                f"rolled back: KV unchanged, but the new key {fingerprint} could not be "
                f"revoked ({exc}); the next run revokes it"
            )
        if not revoked:
            return f"KV unchanged; the new key {fingerprint} was never used: revoke it by hand"
        return f"rolled back: KV unchanged, new key {fingerprint} revoked at the venue"

    async def _resume(
        self, current: ExchangeKey, old: Sequence[VenueKey], history: dict[str, int]
    ) -> RotationReport:
        versions = sorted(history[k.api_key] for k in old)
        self._audit("resume", "ok", f"versions {versions} still valid at the venue: finishing")
        return await self._finish(
            versions[-1], current.version, [k.api_key for k in old], [], resumed=True
        )

    async def _finish(
        self,
        old_version: int,
        new_version: int,
        to_revoke: Sequence[str],
        steps: list[str],
        *,
        resumed: bool = False,
    ) -> RotationReport:
        """Confirm every engine uses ``new_version``, then revoke the keys it replaces."""
        report = RotationReport(
            self.venue, self.account, old_version, new_version, resumed, steps=steps
        )
        await self._confirm(new_version)
        report.steps.append("confirm")
        for api_key in to_revoke:
            fingerprint = key_fingerprint(api_key)
            revoked = await self._step(
                "revoke",
                functools.partial(self.venue_keys.revoke, api_key),
                f"every engine uses version {new_version}; the old key {fingerprint} is still "
                "valid at the venue: re-run to revoke it",
            )
            if not revoked:
                return await self._ask_operator(report, fingerprint)
            self._audit("revoke", "ok", "old key revoked at the venue", key=fingerprint)
        report.steps.append("revoke")
        await self._record(rotation_state="idle", rotated_at=_now(), rotation_failed_step="")
        self._audit("done", "ok", f"version {new_version} in use everywhere", version=new_version)
        return report

    async def _confirm(self, version: int) -> None:
        deadline = time.monotonic() + self.settings.confirm_timeout_s
        state = (
            f"KV has version {version}; the old key stays valid at the venue so nothing "
            "fails; re-run to resume at this step"
        )
        while True:
            urls = await self._step("confirm", self.engines.health_urls, state)
            reported = await engine_versions(urls, self.venue, self.account)
            behind = {
                url: seen
                for url, seen in reported.items()
                if not isinstance(seen, int) or seen < version
            }
            if not behind:
                self._audit(
                    "confirm",
                    "ok",
                    f"{len(reported)} engine(s) on version {version}",
                    engines=len(reported),
                )
                return
            if time.monotonic() >= deadline:
                detail = ", ".join(f"{url}: {seen}" for url, seen in sorted(behind.items()))
                message = (
                    f"{len(behind)} engine(s) not on version {version} after "
                    f"{self.settings.confirm_timeout_s:.0f} s ({detail}); {state}"
                )
                self._audit("confirm", "failed", message)
                await self._record_failure("confirm")
                raise RotationError("confirm", message)
            await asyncio.sleep(self.settings.confirm_poll_s)

    async def _ask_operator(self, report: RotationReport, fingerprint: str) -> RotationReport:
        await self._record(rotation_state="awaiting_operator_revoke", rotation_old_key=fingerprint)
        report.operator_action = (
            f"every engine uses version {report.new_version}: revoke the old key {fingerprint} "
            f"at {self.venue} by hand, then run `arbfleet secrets rotate {self.venue} "
            f"{self.account} --old-key-revoked`"
        )
        self._audit("revoke", "operator", report.operator_action, key=fingerprint)
        return report

    def _operator_still_to_revoke(
        self, current: ExchangeKey, custom: Mapping[str, str]
    ) -> RotationReport:
        report = RotationReport(self.venue, self.account, current.version, current.version)
        report.operator_action = (
            f"the previous rotation waits for the old key {custom.get('rotation_old_key')} to "
            f"be revoked at {self.venue} by hand; then run `arbfleet secrets rotate "
            f"{self.venue} {self.account} --old-key-revoked`"
        )
        return report

    async def operator_revoked(self) -> None:
        """The operator revoked the old key by hand: the rotation is complete."""
        await self._record(rotation_state="idle", rotated_at=_now(), rotation_old_key="")
        self._audit("revoke", "ok", "old key revoked by the operator")


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
