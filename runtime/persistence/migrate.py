"""Versioned schema migrations: ``migrations/NNNN_name.sql``, applied in order, each once.

A step is one SQL file, or one file per storage (``NNNN_name.native.sql`` and
``NNNN_name.timescaledb.sql``) where time series are created differently (see ``schema``).
``arbfleet_schema_version`` records each applied step with the storage it was applied for and a
checksum of its text; a step changed after it was applied is refused rather than silently
skipped. Every step runs in its own transaction together with its version row: a failing step is
rolled back whole, the steps before it stay applied, and ``MigrationError`` names it. A session
advisory lock lets only one migrator run at a time, so engines starting together with
``migrate_on_start`` apply each step once.

Objects are owned by whoever runs the migration, or by ``owner_role`` (``SET ROLE``): with Vault's
dynamic users that is the group they act as, so the writer may create partitions of its tables.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

import asyncpg
from loguru import logger

from runtime.core.errors import MigrationError
from runtime.persistence.schema import Connection, Storage, choose_storage

MIGRATIONS: Final = Path(__file__).with_name("migrations")
VERSION_TABLE: Final = "arbfleet_schema_version"
_LOCK_KEY: Final = 0x41524246_4D49  # "ARBFMI": one migrator at a time
_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)(?:\.(native|timescaledb))?\.sql$")
_STORAGES: Final = ("native", "timescaledb")


@dataclass(frozen=True)
class Step:
    version: int
    name: str
    files: dict[str, Path]
    """Storage -> file; the key ``"any"`` for a step that is the same on every storage."""

    @property
    def label(self) -> str:
        return f"{self.version:04d}_{self.name}"

    def sql(self, storage: Storage) -> str:
        return self.files.get("any", self.files.get(storage, Path())).read_text()

    def checksum(self, storage: Storage) -> str:
        return hashlib.sha256(self.sql(storage).encode()).hexdigest()


@dataclass(frozen=True)
class MigrationReport:
    storage: Storage
    applied: list[str]
    version: int

    def __str__(self) -> str:
        if not self.applied:
            return f"schema up to date at version {self.version} ({self.storage} storage)"
        steps = ", ".join(self.applied)
        return f"applied {steps}: schema at version {self.version} ({self.storage} storage)"


def load_steps(directory: Path = MIGRATIONS) -> list[Step]:
    """Every step in ``directory``, in order; MigrationError for a malformed set of files."""
    found: dict[int, Step] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _FILE.match(path.name)
        if match is None:
            raise MigrationError(f"{path.name}: not NNNN_name[.storage].sql", step=path.name)
        version, name, storage = int(match[1]), match[2], match[3] or "any"
        step = found.setdefault(version, Step(version, name, {}))
        if step.name != name or storage in step.files:
            raise MigrationError(f"{path.name}: two files for step {version:04d}", step=path.name)
        step.files[storage] = path
    for step in found.values():
        variants = set(step.files) - {"any"}
        if variants and ("any" in step.files or variants != set(_STORAGES)):
            raise MigrationError(
                f"step {step.label} needs either one file or one per storage ({_STORAGES})",
                step=step.label,
            )
    return [found[version] for version in sorted(found)]


async def _ensure_version_table(conn: Connection) -> None:
    await conn.execute(
        f"CREATE TABLE IF NOT EXISTS {VERSION_TABLE} ("
        " version integer PRIMARY KEY,"
        " name text NOT NULL,"
        " storage text NOT NULL,"
        " checksum text NOT NULL,"
        " applied_at timestamptz NOT NULL DEFAULT now())"
    )


async def _applied(conn: Connection) -> dict[int, tuple[str, str]]:
    query = f"SELECT version, storage, checksum FROM {VERSION_TABLE}"  # noqa: S608 - a constant
    rows = await conn.fetch(query)
    return {row["version"]: (row["storage"], row["checksum"]) for row in rows}


def _check_unchanged(steps: list[Step], applied: dict[int, tuple[str, str]]) -> None:
    for step in steps:
        if step.version not in applied:
            continue
        storage, checksum = applied[step.version]
        if step.checksum("timescaledb" if storage == "timescaledb" else "native") != checksum:
            raise MigrationError(
                f"migration {step.label} was changed after it was applied; "
                "add a new step instead of editing an applied one",
                step=step.label,
            )


async def _apply(conn: Connection, step: Step, storage: Storage) -> None:
    try:
        async with conn.transaction():
            await conn.execute(step.sql(storage))
            await conn.execute(
                f"INSERT INTO {VERSION_TABLE} (version, name, storage, checksum) "  # noqa: S608
                "VALUES ($1, $2, $3, $4)",
                step.version,
                step.name,
                storage,
                step.checksum(storage),
            )
    except asyncpg.PostgresError as exc:
        raise MigrationError(
            f"migration {step.label} failed and was rolled back: {type(exc).__name__}: {exc}",
            step=step.label,
        ) from exc


async def migrate(
    conn: Connection,
    *,
    timescaledb: Literal["auto", "require", "off"] = "auto",
    owner_role: str | None = None,
    directory: Path = MIGRATIONS,
) -> MigrationReport:
    """Apply every pending step; see the module docstring."""
    steps = load_steps(directory)
    await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
    try:
        if owner_role is not None:
            await conn.execute(f'SET ROLE "{owner_role}"')
        await _ensure_version_table(conn)
        applied = await _applied(conn)
        _check_unchanged(steps, applied)
        recorded = next(iter(applied.values()))[0] if applied else None
        storage = await choose_storage(conn, timescaledb, recorded)
        done = []
        for step in steps:
            if step.version in applied:
                continue
            await _apply(conn, step, storage)
            logger.info(f"migration {step.label} applied ({storage})")
            done.append(step.label)
        version = max([*applied, *(s.version for s in steps if s.label in done)], default=0)
        return MigrationReport(storage, done, version)
    finally:
        if owner_role is not None:
            await conn.execute("RESET ROLE")
        await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)
