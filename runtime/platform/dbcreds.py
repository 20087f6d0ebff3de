"""PostgreSQL credentials from Vault's database secrets engine: dynamic roles.

Why dynamic roles and not a static role with ``rotation_period``: a static role has one
password, and the moment Vault rotates it every engine's old password stops working at once,
whether or not it has fetched the new one yet; the writer's pool can only survive on the
connections it already holds. Dynamic roles give each engine its own user with a lease: the old
user stays valid until the engine has moved its writer to the new one and revokes the old lease
itself, the same dual-credential overlap as the exchange keys. Each user also names one
allocation in ``pg_stat_activity`` and in the server log, and a leaked credential is revoked
alone. The cost, users created and dropped, is paid once per lease (hours) per engine. Users act
as the ``arbfleet_writer`` group (``ALTER ROLE ... SET role``), so no object is ever owned by a
user Vault drops (secrets/database/*.sql).

``DatabaseCredentials`` obtains a lease, renews it at ``renew_fraction`` of its TTL, and when a
renewal can no longer extend it (max TTL) obtains a new user, hands its DSN to the writer
(``on_new``: build a pool, swap it in, drain the old one), and only then revokes the old lease.
Vault unreachable or sealed: it keeps the credentials it has until they expire, reports degraded,
and retries with backoff; it never raises out of ``run`` and never logs a password.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import asyncpg
import hvac

from runtime.core.errors import PersistenceError, VaultUnavailableError
from runtime.core.logging import logger, register_secret
from runtime.core.retry import Backoff
from runtime.platform.vault import Layout, VaultSession, package_text, vault_backoff

VAULT_USER: Final = "arbfleet_vault"
OnNewCredentials = Callable[[str], Awaitable[None]]
"""Called with a DSN carrying the new user; returns once the writer no longer uses the old one
(``runtime.persistence.writer.BatchWriter.replace_pool``)."""


def _statements(name: str) -> list[str]:
    text = package_text("database", name)
    return [line.strip() for line in text.splitlines() if line.strip()]


async def bootstrap_roles(admin_dsn: str) -> str:
    """Create the group and Vault's own PostgreSQL user (roles.sql); a fresh password for it."""
    password = secrets.token_urlsafe(24)  # url-safe: no quoting needed in the statement below
    register_secret(password)
    connection = await asyncpg.connect(admin_dsn)
    try:
        await connection.execute(package_text("database", "roles.sql"))
        await connection.execute(f"ALTER ROLE {VAULT_USER} PASSWORD '{password}'")
    finally:
        await connection.close()
    return password


def apply_database(client: hvac.Client, layout: Layout, admin_dsn: str, password: str) -> None:
    """Mount, connection and dynamic role of ``layout``; then Vault rotates its own password,
    so only Vault knows it. Idempotent (needs a fresh ``bootstrap_roles`` password each time)."""
    mounts = client.sys.list_mounted_secrets_engines()["data"]
    if f"{layout.db_mount}/" not in mounts:
        client.sys.enable_secrets_engine("database", path=layout.db_mount)
    where = urlsplit(admin_dsn)
    hosts = where.netloc.rpartition("@")[2]  # all of a primary's and its standbys' (pgx's too)
    options = {"sslmode": "disable", **dict(parse_qsl(where.query))}
    client.secrets.database.configure(
        name=layout.db_connection,
        plugin_name="postgresql-database-plugin",
        allowed_roles=[layout.db_role],
        connection_url=(
            f"postgresql://{{{{username}}}}:{{{{password}}}}@{hosts}"
            f"{where.path or '/postgres'}?{urlencode(options)}"
        ),
        username=VAULT_USER,
        password=password,
        password_authentication="scram-sha-256",  # noqa: S106 - a method name
        mount_point=layout.db_mount,
    )
    client.secrets.database.rotate_root_credentials(
        name=layout.db_connection, mount_point=layout.db_mount
    )
    client.secrets.database.create_role(
        name=layout.db_role,
        db_name=layout.db_connection,
        creation_statements=_statements("creation.sql"),
        revocation_statements=_statements("revocation.sql"),
        default_ttl=layout.db_default_ttl,
        max_ttl=layout.db_max_ttl,
        mount_point=layout.db_mount,
    )
    logger.info(f"vault database engine applied: {layout.db_mount}/roles/{layout.db_role}")


@dataclass(frozen=True)
class DbLease:
    lease_id: str
    username: str
    password: str = field(repr=False)  # never in a repr, a traceback or a health report
    ttl_s: float
    """The TTL granted when obtained (the renewal increment asked for)."""
    expires_at: float
    """``time.monotonic()`` when it lapses unless renewed."""
    renewable: bool


def with_user(dsn: str, username: str, password: str) -> str:
    """``dsn`` (hosts, ports, database, options) with this user and password; every host of a
    multi-host DSN (a primary and its standbys, infra/nomad/ha) is kept."""
    parts = urlsplit(dsn)
    hosts = parts.netloc.rpartition("@")[2]
    netloc = f"{quote(username, safe='')}:{quote(password, safe='')}@{hosts}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


class DatabaseCredentials:
    """Keeps the engine's PostgreSQL user alive and replaces it before it lapses; module doc."""

    def __init__(
        self,
        session: VaultSession,
        mount: str,
        role: str,
        dsn: str,
        on_new: OnNewCredentials,
        *,
        renew_fraction: float = 2 / 3,
        backoff: Backoff | None = None,
    ) -> None:
        self.session = session
        self.mount = mount
        self.role = role
        self.lease: DbLease | None = None
        self.problem: VaultUnavailableError | None = None
        self.replacements = 0
        self._dsn = dsn
        self._on_new = on_new
        self._renew_fraction = renew_fraction
        self._backoff = backoff if backoff is not None else vault_backoff()

    @property
    def secret_path(self) -> str:
        return f"{self.mount}/creds/{self.role}"

    async def run(self) -> None:
        """Obtain, renew, replace until cancelled; never raises."""
        while True:
            try:
                await self.step()
            except Exception as exc:
                if not isinstance(exc, VaultUnavailableError):
                    logger.opt(exception=exc).error("database credentials: unexpected error")
                    exc = VaultUnavailableError(f"unexpected {type(exc).__name__}", reason="error")
                if self.problem is None or self.problem.reason != exc.reason:
                    logger.bind(reason=exc.reason).warning(
                        f"database credentials: keeping current: {exc}"
                    )
                self.problem = exc
                await asyncio.sleep(self._backoff.next_delay())
                continue
            self.problem = None
            self._backoff.reset()
            await asyncio.sleep(self._next_due_s())

    async def step(self) -> None:
        """Whatever is due now: the first user, a renewal, or a replacement."""
        if self.lease is None:
            await self._replace()
            return
        if self._next_due_s() > 0:
            return
        if not self.lease.renewable:
            await self._replace()
            return
        try:
            granted = await self._renew(self.lease)
        except VaultUnavailableError as exc:
            if exc.reason in ("unreachable", "sealed", "denied", "no_token"):
                raise  # Vault cannot answer: keep the current user, retry later
            # Vault answered that this lease cannot be renewed (past its max TTL, revoked).
            logger.bind(reason=exc.reason).info(f"database lease not renewable: {exc}")
            await self._replace()
            return
        if granted < self.lease.ttl_s * (1 - self._renew_fraction):
            await self._replace()  # the max TTL is near: renewing cannot keep it alive longer

    def _next_due_s(self) -> float:
        if self.lease is None:
            return 0.0
        renew_at = self.lease.expires_at - self.lease.ttl_s * (1 - self._renew_fraction)
        return max(renew_at - time.monotonic(), 0.0)

    async def _renew(self, lease: DbLease) -> float:
        response = await asyncio.to_thread(
            self.session.call,
            "renew database lease",
            lambda c: c.sys.renew_lease(lease.lease_id, increment=int(lease.ttl_s)),
        )
        granted = float(response["lease_duration"])
        self.lease = DbLease(
            lease.lease_id, lease.username, lease.password, lease.ttl_s,
            time.monotonic() + granted, lease.renewable,
        )  # fmt: skip
        return granted

    async def _replace(self) -> None:
        response = await asyncio.to_thread(
            self.session.call,
            f"credentials from {self.secret_path}",
            lambda c: c.secrets.database.generate_credentials(self.role, mount_point=self.mount),
        )
        new = _lease(response)
        old = self.lease
        try:
            await self._on_new(with_user(self._dsn, new.username, new.password))
        except (PersistenceError, OSError, asyncpg.PostgresError) as exc:
            # The writer could not use them: keep the old user, drop the new one, retry later.
            await self._revoke(new)
            # PersistenceError messages are ours (no DSN); others only by type.
            detail = str(exc) if isinstance(exc, PersistenceError) else type(exc).__name__
            raise VaultUnavailableError(
                f"new database user not usable: {detail}", reason="error"
            ) from exc
        self.lease = new
        self.replacements += 1
        logger.bind(user=new.username, ttl_s=new.ttl_s).info("database credentials replaced")
        if old is not None:
            await self._revoke(old)

    async def _revoke(self, lease: DbLease) -> None:
        """Revoke a lease we no longer use (Vault drops the user); a failure is only logged:
        the lease lapses at its TTL anyway."""
        try:
            await asyncio.to_thread(
                self.session.call,
                "revoke old database lease",
                lambda c: c.adapter.put(f"/v1/sys/leases/revoke/{lease.lease_id}"),
            )
        except VaultUnavailableError as exc:
            logger.bind(user=lease.username).warning(f"old database lease kept: {exc}")

    # --- reporting ----------------------------------------------------------------------------

    def lease_ttls(self) -> dict[str, float]:
        if self.lease is None:
            return {}
        return {self.secret_path: max(self.lease.expires_at - time.monotonic(), 0.0)}

    def missing(self) -> list[str]:
        if self.lease is not None and self.lease.expires_at > time.monotonic():
            return []
        reason = f" ({self.problem})" if self.problem is not None else ""
        state = "expired" if self.lease is not None else "not obtained yet"
        return [f"database credentials {state}{reason}"]

    def degraded(self) -> list[str]:
        if self.problem is None or self.lease is None:
            return []
        return [f"database credentials not renewed: {self.problem}"]


def _lease(response: dict[str, Any]) -> DbLease:
    data = response["data"]
    register_secret(data["password"])
    ttl = float(response["lease_duration"])
    return DbLease(
        response["lease_id"], data["username"], data["password"], ttl,
        time.monotonic() + ttl, bool(response["renewable"]),
    )  # fmt: skip
