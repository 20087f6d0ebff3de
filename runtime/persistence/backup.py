"""Backups of the fleet's stores: what exists, what a restore would bring back, and the restore.

PostgreSQL is backed up by pgBackRest (the backup job, infra/nomad/backup.nomad.hcl): full backups
in a repository under ``<backups>/pgbackrest``, stanza ``arbfleet``, and every WAL segment the
server archives there, so any moment since the oldest backup kept can be restored. Redis is backed
up as RDB snapshots under ``<backups>/redis``. Each backup task records its last run in
``<backups>/status/<task>.last-run`` (epoch seconds and exit code).

A restore needs the store stopped: pgBackRest refuses a data directory whose server runs. It
writes ``restore_command`` into the data directory, so the server, started again by its job,
replays the archived WAL up to the target and opens for writes. A Redis restore puts the snapshot
where Redis with ``appendonly yes`` loads it: as the base of a new AOF (Redis ignores a
``dump.rdb`` when AOF is on); the AOF it replaces is kept beside it.
"""

from __future__ import annotations

import configparser
import datetime
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from runtime.core.errors import PersistenceError

STANZA: Final = "arbfleet"
REPO_DIR: Final = "pgbackrest"
REDIS_DIR: Final = "redis"
STATUS_DIR: Final = "status"
RETENTION_DAYS: Final = 7
"""Days a backup is kept, as the users' documents promise (also backup.nomad.hcl's default)."""
_AOF_DIR: Final = "appendonlydir"
_AOF_BASE: Final = "appendonly.aof.1.base.rdb"
_AOF_MANIFEST: Final = "appendonly.aof.manifest"


@dataclass(frozen=True)
class BackupSet:
    label: str
    kind: str
    start: int
    stop: int
    size_bytes: int
    """What the backup takes in the repository (compressed)."""


@dataclass(frozen=True)
class Snapshot:
    path: Path
    taken: int
    size_bytes: int


def pgbackrest_env(backups: Path, pgdata: Path | None = None) -> dict[str, str]:
    """The options pgBackRest takes from the environment, as the jobs set them (but the lock
    directory, which ``pgbackrest`` gives each run)."""
    env = {
        "PGBACKREST_STANZA": STANZA,
        "PGBACKREST_REPO1_PATH": str(backups / REPO_DIR),
        "PGBACKREST_LOG_LEVEL_FILE": "off",
        "PGBACKREST_LOG_LEVEL_CONSOLE": "warn",
    }
    if pgdata is not None:
        env["PGBACKREST_PG1_PATH"] = str(pgdata)
    return env


def pgbackrest(
    args: list[str],
    env: Mapping[str, str],
    user: str | None = None,
) -> str:
    """Run ``pgbackrest ARGS`` (as ``user``, when root); its output, or PersistenceError with
    what it said.

    Each run has a lock directory of its own: this process may be root, and a lock directory
    root created in the jobs' place would stop the postgres user's backups.
    """
    if shutil.which("pgbackrest") is None:
        raise PersistenceError("pgbackrest is not installed (apt-get install pgbackrest)")
    argv = ["pgbackrest", *args]
    with tempfile.TemporaryDirectory(prefix="arbfleet-pgbackrest-") as lock:
        if user is not None and os.getuid() == 0:
            shutil.chown(lock, user)
            argv = ["runuser", "-u", user, "--", *argv]
        full = {**os.environ, **env, "PGBACKREST_LOCK_PATH": lock}
        proc = subprocess.run(argv, env=full, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        said = (proc.stderr or proc.stdout).strip()
        raise PersistenceError(f"pgbackrest {args[0]} failed ({proc.returncode}): {said}")
    return proc.stdout


def backup_sets(backups: Path) -> list[BackupSet]:
    """The PostgreSQL backups in the repository, oldest first, from pgBackRest's own
    ``backup.info`` (what ``pgbackrest info`` reads; this way the exporter needs no pgBackRest)."""
    path = backups / REPO_DIR / "backup" / STANZA / "backup.info"
    if not path.exists():
        return []
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # labels keep their case
    parser.read_string(path.read_text())
    found = []
    for label, text in (
        parser.items("backup:current") if parser.has_section("backup:current") else []
    ):
        info = json.loads(text)
        found.append(
            BackupSet(
                label=label,
                kind=info["backup-type"],
                start=int(info["backup-timestamp-start"]),
                stop=int(info["backup-timestamp-stop"]),
                size_bytes=int(info["backup-info-repo-size-delta"]),
            )
        )
    return sorted(found, key=lambda b: b.stop)


def redis_snapshots(backups: Path) -> list[Snapshot]:
    """The Redis snapshots, oldest first (by the time in their names, which the job writes)."""
    found = []
    for path in (backups / REDIS_DIR).glob("redis-*.rdb"):
        stamp = path.stem.removeprefix("redis-")
        moment = datetime.datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.UTC)
        found.append(Snapshot(path, int(moment.timestamp()), path.stat().st_size))
    return sorted(found, key=lambda s: s.taken)


def _last_before(moments: list[int], target: datetime.datetime | None) -> int:
    """Index of the last of ``moments`` (ascending) at or before ``target`` (else the last)."""
    limit = None if target is None else target.timestamp()
    chosen = [i for i, at in enumerate(moments) if limit is None or at <= limit]
    if not chosen:
        raise PersistenceError(
            "no backup " + ("exists" if target is None else f"ended before {target.isoformat()}")
        )
    return chosen[-1]


def _iso(epoch: int | float) -> str:
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC).isoformat(timespec="seconds")


# --- PostgreSQL ------------------------------------------------------------------------------


@dataclass(frozen=True)
class PostgresRestore:
    backups: Path
    pgdata: Path
    backup: BackupSet
    target: datetime.datetime | None

    def __str__(self) -> str:
        until = (
            f"then replay the WAL archive up to {self.target.isoformat()}"
            if self.target
            else "then replay the whole WAL archive (up to the last archived change)"
        )
        return (
            f"postgres: restore backup {self.backup.label} ({self.backup.kind}, ended "
            f"{_iso(self.backup.stop)}, {self.backup.size_bytes} bytes) from "
            f"{self.backups / REPO_DIR} into {self.pgdata}, {until}"
        )


def plan_postgres(
    backups: Path, pgdata: Path, target: datetime.datetime | None = None
) -> PostgresRestore:
    """What ``restore_postgres`` would do: the backup pgBackRest takes (the last one that ended
    before ``target``, else the last one) and how far the WAL is replayed."""
    sets = backup_sets(backups)
    chosen = sets[_last_before([b.stop for b in sets], target)]
    return PostgresRestore(backups, pgdata, chosen, target)


def restore_postgres(plan: PostgresRestore) -> None:
    """Restore ``plan`` into its data directory (created if destroyed; overwritten otherwise).

    Run as root, pgBackRest gives the files the owner recorded in the backup (postgres).
    """
    if (plan.pgdata / "postmaster.pid").exists():
        raise PersistenceError(f"a server runs on {plan.pgdata}: stop its job first")
    plan.pgdata.mkdir(mode=0o700, parents=True, exist_ok=True)
    args = ["restore", f"--set={plan.backup.label}", "--delta"]
    if plan.target is not None:
        args += [
            "--type=time",
            f"--target={plan.target.isoformat(sep=' ')}",
            "--target-action=promote",
        ]
    pgbackrest(args, pgbackrest_env(plan.backups, plan.pgdata))


def expire(backups: Path, days: int = RETENTION_DAYS) -> None:
    """Expire backups older than ``days`` and the WAL before the oldest one kept (what the backup
    job does after every backup). pgBackRest keeps the newest backup older than that, so any
    moment of the last ``days`` days stays restorable."""
    options = ["--repo1-retention-full-type=time", f"--repo1-retention-full={days}"]
    pgbackrest(["expire", *options], pgbackrest_env(backups))


# --- Redis -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RedisRestore:
    snapshot: Snapshot
    redis_dir: Path

    def __str__(self) -> str:
        return (
            f"redis: restore snapshot {self.snapshot.path} (taken {_iso(self.snapshot.taken)}, "
            f"{self.snapshot.size_bytes} bytes) into {self.redis_dir / _AOF_DIR} as the base of "
            "a new AOF; the AOF there now is kept beside it"
        )


def plan_redis(
    backups: Path, redis_dir: Path, target: datetime.datetime | None = None
) -> RedisRestore:
    """The last snapshot taken before ``target`` (else the last one)."""
    snapshots = redis_snapshots(backups)
    return RedisRestore(snapshots[_last_before([s.taken for s in snapshots], target)], redis_dir)


def restore_redis(plan: RedisRestore) -> Path | None:
    """Install the snapshot as a one-file AOF; returns where the replaced AOF went, if any."""
    aof = plan.redis_dir / _AOF_DIR
    kept = None
    if aof.exists():
        stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
        kept = aof.with_name(f"{_AOF_DIR}.before-restore-{stamp}")
        aof.rename(kept)
    aof.mkdir(parents=True)
    shutil.copyfile(plan.snapshot.path, aof / _AOF_BASE)
    (aof / _AOF_MANIFEST).write_text(f"file {_AOF_BASE} seq 1 type b\n")
    owner = plan.redis_dir.stat()
    for path in (aof, aof / _AOF_BASE, aof / _AOF_MANIFEST):
        os.chown(path, owner.st_uid, owner.st_gid)  # Redis' user, whoever restores
    return kept


# --- what the metrics say ----------------------------------------------------------------------


@dataclass(frozen=True)
class StoreStatus:
    store: str
    last_success: int | None
    """When the newest backup there is ended (epoch seconds)."""
    size_bytes: int | None
    last_run_failed: bool
    """The last run the backup job recorded exited non-zero."""


def status(backups: Path) -> list[StoreStatus]:
    """The state of each store's backups, for ``arbfleet_backup_*``."""
    sets = backup_sets(backups)
    snapshots = redis_snapshots(backups)
    newest = {
        "postgres": (sets[-1].stop, sets[-1].size_bytes) if sets else (None, None),
        "redis": (snapshots[-1].taken, snapshots[-1].size_bytes) if snapshots else (None, None),
    }
    return [
        StoreStatus(store, at, size, _last_run_failed(backups, store))
        for store, (at, size) in newest.items()
    ]


def _last_run_failed(backups: Path, store: str) -> bool:
    """The backup job's record of its last run (``<epoch> <exit code>``); none yet is no failure."""
    try:
        words = (backups / STATUS_DIR / f"{store}.last-run").read_text().split()
    except FileNotFoundError:
        return False
    return words[1:] != ["0"]  # a record the job could not finish writing counts as a failure
