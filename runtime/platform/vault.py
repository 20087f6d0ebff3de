"""Vault: the layout of ``secrets/`` applied by code, exchange keys in KV v2, and the engine's
key provider that swaps keys without a restart.

Layout (``secrets/README.md``): a KV v2 mount (``exchanges/``) with one entry per exchange
account, ``<venue>/<account>``, whose versions are the account's keys; one policy and one JWT
auth role per strategy deployment of the fleet description (``fleet.toml``), reading only its
own accounts; one policy for key rotation. The policies' templates are package data
(``runtime/platform/policies/``); ``arbfleet platform apply`` (runtime/ops/platform) makes the
secrets store match the layout.

The key provider (``KeyProvider``) reads the key versions of an engine's accounts and polls
their KV *metadata* (no secret on the wire) every ``poll_interval_s``; SIGHUP (a Nomad template
re-render with ``change_mode = "signal"``) makes it look at once. A new version is read and
swapped in on the event loop, between requests: every request signs with one snapshot of a key
pair, so requests in flight finish on the old key and the next ones use the new key (the venue
accepts both during the rotation's overlap). Vault unreachable, sealed or denying: the provider
keeps the keys it has, reports itself degraded, and retries with capped exponential backoff. It
never raises out of its loop, and no key or secret reaches a log line (each is registered with
the log scrubber the moment it is read; logs name keys by ``key_fingerprint``).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import hashlib
import string
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Final, TypeVar

import hvac
import hvac.exceptions

from runtime.core.errors import AuthenticationError, CasConflictError, VaultUnavailableError
from runtime.core.logging import logger, register_secret
from runtime.core.retry import Backoff
from runtime.core.venue import Credentials

ROTATION_POLICY: Final = "key-rotation"
MANAGEMENT_ENTRY: Final = "_management"
"""``<mount>/<venue>/_management``: the venue's key management API (url, token); rotation only."""
T = TypeVar("T")


# --- the layout -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Layout:
    """What the secrets store holds for Arbfleet (secrets/README.md says why each setting);
    ``deployments`` come from the fleet description, ``prefix`` namespaces policy and role
    names."""

    kv_mount: str = "exchanges"
    # Rotation needs the previous version (to revoke its key at the venue) and a few for audit.
    max_versions: int = 10
    # Every write must say which version it replaces: two rotations can never both "win".
    cas_required: bool = True
    # Nomad workload identity: the JWT auth mount and the audience Nomad signs identities for.
    jwt_auth_mount: str = "jwt-nomad"
    jwt_audience: str = "vault.io"
    # The periodic key rotation job (infra/nomad/key-rotation.nomad.hcl): its role gets the
    # rotation policy.
    rotation_job: str = "key-rotation"
    # PostgreSQL credentials for the engines' writers: dynamic roles (secrets/README.md).
    db_mount: str = "database"
    db_connection: str = "arbfleet-postgres"
    db_role: str = "arbfleet-engine"
    db_default_ttl: str = "1h"
    db_max_ttl: str = "24h"
    deployments: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    """Deployment (Nomad job) -> {venue: account}."""
    prefix: str = "arbfleet"

    @classmethod
    def load(cls, **overrides: Any) -> Layout:
        """The layout with ``overrides`` (``deployments``: the fleet's, ``Fleet.accounts``)."""
        return cls(**overrides)

    def deployment_policy_name(self, deployment: str) -> str:
        return f"{self.prefix}-deployment-{deployment}"

    @property
    def rotation_policy_name(self) -> str:
        return f"{self.prefix}-{ROTATION_POLICY}"

    def jwt_role_name(self, deployment: str) -> str:
        return f"{self.prefix}-{deployment}"


def package_text(*parts: str) -> str:
    """A file shipped with this package (policies/, database/): the engine's image has no
    checkout."""
    return resources.files(__package__).joinpath(*parts).read_text()


def _template(name: str) -> string.Template:
    return string.Template(package_text("policies", name))


def deployment_policy(layout: Layout, deployment: str) -> str:
    """The HCL policy of one deployment: its database role and read on its own accounts only."""
    accounts = layout.deployments[deployment]
    text = _template("deployment.hcl.tmpl").substitute(
        db_mount=layout.db_mount, db_role=layout.db_role
    )
    account_stanza = _template("deployment-account.hcl.tmpl")
    for venue, account in sorted(accounts.items()):
        text += account_stanza.substitute(kv_mount=layout.kv_mount, venue=venue, account=account)
    return text


def rotation_policy(layout: Layout) -> str:
    return _template("key-rotation.hcl.tmpl").substitute(kv_mount=layout.kv_mount)


# --- talking to Vault --------------------------------------------------------------------------


class VaultSession:
    """An hvac client whose failures become ``VaultUnavailableError`` with a reason class.

    With ``token_file`` (Nomad writes the workload's token to ``secrets/vault_token`` and
    replaces it when it re-issues one) the token is read again after a denial.
    """

    def __init__(
        self,
        address: str,
        *,
        token: str | None = None,
        token_file: Path | None = None,
        timeout_s: float = 2.0,
    ) -> None:
        if (token is None) == (token_file is None):
            raise ValueError("give exactly one of token and token_file")
        self.address = address
        self._token = token
        self._token_file = token_file
        self._timeout_s = timeout_s
        self._client: hvac.Client | None = None

    def _current_client(self, what: str) -> hvac.Client:
        if self._client is None:
            token = self._token
            if self._token_file is not None:
                try:
                    token = self._token_file.read_text().strip()
                except OSError as exc:  # not Vault's fault: say so, not "unreachable"
                    state = "no" if isinstance(exc, FileNotFoundError) else "unreadable"
                    raise VaultUnavailableError(
                        f"{what}: {state} token file {self._token_file} "
                        f"({exc.strerror or type(exc).__name__})",
                        reason="no_token",
                    ) from exc
            assert token is not None
            register_secret(token)
            self._client = hvac.Client(url=self.address, token=token, timeout=self._timeout_s)
        return self._client

    def call(self, what: str, operation: Callable[[hvac.Client], T]) -> T:
        """``operation(client)``; any failure is a ``VaultUnavailableError`` naming ``what``."""
        # Outside the try: VaultUnavailableError is a ConnectionError, so ``except OSError``
        # below would turn a missing token file into "unreachable".
        client = self._current_client(what)
        try:
            return operation(client)
        except hvac.exceptions.VaultDown as exc:
            raise VaultUnavailableError(f"{what}: Vault is sealed", reason="sealed") from exc
        except hvac.exceptions.Forbidden as exc:
            self._client = None  # a re-issued token may be in the file by the next attempt
            raise VaultUnavailableError(f"{what}: permission denied", reason="denied") from exc
        except hvac.exceptions.InvalidPath as exc:
            raise VaultUnavailableError(f"{what}: no such entry", reason="missing") from exc
        except hvac.exceptions.InvalidRequest as exc:
            if "check-and-set" in str(exc):
                raise CasConflictError(f"{what}: {_first_line(exc)}") from exc
            raise VaultUnavailableError(f"{what}: {_first_line(exc)}", reason="error") from exc
        except hvac.exceptions.VaultError as exc:
            raise VaultUnavailableError(f"{what}: {_first_line(exc)}", reason="error") from exc
        except OSError as exc:  # requests' errors are OSErrors: refused, reset, timed out
            raise VaultUnavailableError(
                f"{what}: Vault at {self.address} unreachable ({type(exc).__name__})",
                reason="unreachable",
            ) from exc

    def token_ttl_s(self) -> float | None:
        """Seconds left on the session's token; None for a token that never expires."""
        data = self.call("token lookup", lambda c: c.auth.token.lookup_self())["data"]
        return float(data["ttl"]) if data.get("expire_time") else None


def _first_line(exc: BaseException) -> str:
    """Vault's error text, without hvac's "1 error occurred:" wrapping."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    details = [line.removeprefix("* ") for line in lines if line.startswith("* ")]
    return "; ".join(details or lines[:1])[:300] or type(exc).__name__


def parse_time(text: str) -> float:
    """Epoch seconds of Vault's RFC 3339 timestamps (nanosecond fractions, ``Z``)."""
    head, _, tail = text.rstrip("Z").partition(".")
    fraction = float(f"0.{tail}") if tail else 0.0
    moment = datetime.datetime.fromisoformat(head).replace(tzinfo=datetime.UTC)
    return moment.timestamp() + fraction


def key_fingerprint(api_key: str) -> str:
    """How logs and audit lines name a key: a hash prefix, never the key."""
    return "k-" + hashlib.sha256(api_key.encode()).hexdigest()[:12]


# --- exchange keys in KV v2 ----------------------------------------------------------------------


@dataclass(frozen=True)
class ExchangeKey:
    """One KV version of an account: the key pair and what the entry says about it."""

    venue: str
    account: str
    version: int
    created_s: float
    credentials: Credentials
    permissions: tuple[str, ...] = ()
    expires: str = ""

    @property
    def fingerprint(self) -> str:
        return key_fingerprint(self.credentials.api_key)


@dataclass(frozen=True)
class KeyMetadata:
    """The KV metadata of an account entry (no secret in it)."""

    current_version: int
    live_versions: tuple[int, ...]
    """Versions neither deleted nor destroyed, oldest first."""
    created_s: Mapping[int, float]
    custom: Mapping[str, str]


class ExchangeKeys:
    """The ``<mount>/<venue>/<account>`` entries, through a ``VaultSession`` (blocking calls)."""

    def __init__(self, session: VaultSession, mount: str) -> None:
        self.session = session
        self.mount = mount

    def metadata(self, venue: str, account: str) -> KeyMetadata:
        path = f"{venue}/{account}"
        data = self.session.call(
            f"metadata of {self.mount}/{path}",
            lambda c: c.secrets.kv.v2.read_secret_metadata(path, mount_point=self.mount),
        )["data"]
        versions = {int(n): v for n, v in data["versions"].items()}
        live = tuple(
            sorted(n for n, v in versions.items() if not v["deletion_time"] and not v["destroyed"])
        )
        return KeyMetadata(
            current_version=int(data["current_version"]),
            live_versions=live,
            created_s={n: parse_time(v["created_time"]) for n, v in versions.items()},
            custom=dict(data.get("custom_metadata") or {}),
        )

    def read(self, venue: str, account: str, version: int | None = None) -> ExchangeKey:
        path = f"{venue}/{account}"
        response = self.session.call(
            f"key {self.mount}/{path} version {version or 'latest'}",
            lambda c: c.secrets.kv.v2.read_secret_version(
                path, version=version, mount_point=self.mount, raise_on_deleted_version=True
            ),
        )["data"]
        data, meta = response["data"], response["metadata"]
        for value in (data["api_key"], data["api_secret"]):
            register_secret(value)
        return ExchangeKey(
            venue=venue,
            account=account,
            version=int(meta["version"]),
            created_s=parse_time(meta["created_time"]),
            credentials=Credentials(data["api_key"], data["api_secret"]),
            permissions=tuple(data.get("permissions") or ()),
            expires=str(data.get("expires", "")),
        )

    def write(
        self,
        venue: str,
        account: str,
        credentials: Credentials,
        *,
        cas: int,
        permissions: tuple[str, ...] = (),
        max_age_days: float = 30.0,
    ) -> int:
        """Write a new version if the entry is still at version ``cas`` (0: does not exist yet);
        ``CasConflictError`` if not. Returns the new version."""
        now = datetime.datetime.now(datetime.UTC)
        secret = {
            "api_key": credentials.api_key,
            "api_secret": credentials.secret,
            "created": now.isoformat(timespec="seconds"),
            "expires": (now + datetime.timedelta(days=max_age_days)).isoformat(timespec="seconds"),
            "permissions": list(permissions),
        }
        path = f"{venue}/{account}"
        response = self.session.call(
            f"write {self.mount}/{path} (cas {cas})",
            lambda c: c.secrets.kv.v2.create_or_update_secret(
                path, secret=secret, cas=cas, mount_point=self.mount
            ),
        )
        return int(response["data"]["version"])

    def record(self, venue: str, account: str, **fields: str) -> None:
        """Merge ``fields`` into the entry's custom_metadata (the rotation's progress); an empty
        value removes the field (Vault refuses empty values)."""
        path = f"{venue}/{account}"
        custom = dict(self.metadata(venue, account).custom)
        custom.update(fields)
        custom = {name: value for name, value in custom.items() if value}
        self.session.call(
            f"record state of {self.mount}/{path}",
            lambda c: c.adapter.post(
                f"/v1/{self.mount}/metadata/{path}", json={"custom_metadata": custom}
            ),
        )


# --- the engine's key provider -------------------------------------------------------------------


def vault_backoff() -> Backoff:
    """Vault retries: 0.5 s doubling to 30 s, never under half the step, so a fleet does not
    retry Vault in lockstep and never hammers it either."""
    return Backoff(base_s=0.5, cap_s=30.0, min_fraction=0.5)


class VenueKeys:
    """The current key of one venue, as the REST client's key source (``credentials()``)."""

    def __init__(self, provider: KeyProvider, venue: str) -> None:
        self._provider = provider
        self._venue = venue

    def credentials(self) -> Credentials:
        key = self._provider.current.get(self._venue)
        if key is None:
            raise AuthenticationError(f"no API key for {self._venue} loaded from Vault yet")
        return key.credentials


class KeyProvider:
    """Keeps the current key version of each (venue, account) of an engine; see module doc."""

    def __init__(
        self,
        keys: ExchangeKeys,
        accounts: Mapping[str, str],
        *,
        poll_interval_s: float = 0.5,
        token_check_s: float = 30.0,
        backoff: Backoff | None = None,
    ) -> None:
        self.keys = keys
        self.accounts = dict(accounts)
        """venue -> account"""
        self.current: dict[str, ExchangeKey] = {}
        self.problem: VaultUnavailableError | None = None
        """Why the last attempt to reach Vault failed; None once it succeeds again."""
        self.token_ttl_s: float | None = None
        self.swaps = 0
        self._poll_interval_s = poll_interval_s
        self._token_check_s = token_check_s
        self._next_token_check = 0.0
        self._backoff = backoff if backoff is not None else vault_backoff()
        self._wake = asyncio.Event()

    def source(self, venue: str) -> VenueKeys:
        return VenueKeys(self, venue)

    def refresh_now(self) -> None:
        """Look at Vault now rather than at the next poll (SIGHUP from a template re-render)."""
        self._wake.set()

    async def run(self) -> None:
        """Poll until cancelled; never raises (a failure is kept in ``problem`` and retried)."""
        while True:
            delay = await self.sync()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)
            self._wake.clear()

    async def sync(self) -> float:
        """One round: fetch what changed (in a thread), swap it in here; the next delay."""
        try:
            fresh = await asyncio.to_thread(self._fetch_changes)
        except VaultUnavailableError as exc:
            if self.problem is None or self.problem.reason != exc.reason:
                logger.bind(reason=exc.reason).warning(f"exchange keys: keeping current: {exc}")
            self.problem = exc
            return self._backoff.next_delay()
        except Exception as exc:  # never let a surprise stop key updates for good
            logger.exception(f"exchange keys: unexpected {type(exc).__name__}")
            self.problem = VaultUnavailableError(str(type(exc).__name__), reason="error")
            return self._backoff.next_delay()
        if self.problem is not None:
            logger.info("exchange keys: Vault reachable again")
        self.problem = None
        self._backoff.reset()
        for key in fresh:
            self._swap(key)
        return self._poll_interval_s

    def _fetch_changes(self) -> list[ExchangeKey]:
        """The key versions newer than those in use (blocking; runs in a worker thread)."""
        fresh = []
        for venue, account in self.accounts.items():
            latest = self.keys.metadata(venue, account).current_version
            in_use = self.current.get(venue)
            if in_use is None or in_use.version != latest:
                fresh.append(self.keys.read(venue, account, latest))
        if time.monotonic() >= self._next_token_check:
            self.token_ttl_s = self.keys.session.token_ttl_s()
            self._next_token_check = time.monotonic() + self._token_check_s
        return fresh

    def _swap(self, key: ExchangeKey) -> None:
        previous = self.current.get(key.venue)
        self.current[key.venue] = key
        self.swaps += 1
        logger.bind(
            venue=key.venue,
            account=key.account,
            version=key.version,
            key=key.fingerprint,
            previous_version=previous.version if previous else None,
        ).info(f"exchange key for {key.venue}/{key.account}: version {key.version} in use")

    # --- reporting ------------------------------------------------------------------------------

    def report(self, now_s: float | None = None) -> dict[str, dict[str, Any]]:
        """Per venue: account, KV version in use and its age; never the key."""
        now = time.time() if now_s is None else now_s
        return {
            venue: {
                "account": account,
                "version": key.version if key else None,
                "age_s": round(now - key.created_s, 3) if key else None,
            }
            for venue, account in self.accounts.items()
            for key in [self.current.get(venue)]
        }

    def missing(self) -> list[str]:
        """Reasons the engine cannot trade: venues without any key yet."""
        reason = f" ({self.problem})" if self.problem is not None else ""
        return [
            f"no API key for {venue} from Vault yet{reason}"
            for venue in self.accounts
            if venue not in self.current
        ]

    def degraded(self) -> list[str]:
        """Why the keys may be going stale while trading goes on."""
        if self.problem is None or not self.current:
            return []
        return [f"exchange keys not refreshed: {self.problem}"]

    def lease_ttls(self) -> dict[str, float]:
        return {"auth/token": self.token_ttl_s} if self.token_ttl_s is not None else {}
