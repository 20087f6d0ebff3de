"""Backups that restore: the backup job forced to run on the local stack, the database and Redis
destroyed and brought back by ``arbfleet db restore``, a point-in-time restore between two writes,
and retention on a clock the test sets.

Each test runs TimescaleDB, Redis and the backup job in a namespace and data directory of its own
(tests/infra/nomad_fixtures.py); the restore runs the CLI as an operator would on the node.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import os
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncpg
import nomad
import pytest
import redis
import requests
from prometheus_client.parser import text_string_to_metric_families

from runtime.ops import deploy
from runtime.persistence import backup
from tests.infra.nomad_runs import cli_var_files, for_this_nomad, run_job, service_address
from tests.stack_plugin import Consul, wait_for

if TYPE_CHECKING:
    from tests.infra.nomad_fixtures import KvWrite, Nomad

pytestmark = pytest.mark.stack
pytest_plugins = ["tests.infra.nomad_fixtures"]

LIBFAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")


@dataclass
class Fleet:
    """The stores and the backup job of one test, and how to reach them."""

    nomad_cli: Nomad
    consul: Consul
    nomad_api: nomad.Nomad
    namespace: str
    data_dir: Path
    tmp_path: Path
    password: str

    @property
    def backups(self) -> Path:
        return self.data_dir / "backups"

    def run(self, job: str) -> tuple[str, int]:
        allocs, _ = run_job(
            self.nomad_cli,
            self.consul,
            self.nomad_api,
            job,
            self.namespace,
            self.data_dir,
            self.tmp_path,
        )
        return service_address(self.consul, job, allocs[0]["ID"])

    def stop(self, job: str) -> None:
        self.nomad_cli("job", "stop", "-purge", "-yes", "-namespace", self.namespace, job)
        wait_for(
            lambda: (
                not [
                    a
                    for a in self.nomad_api.job.get_allocations(job, namespace=self.namespace)
                    if a["ClientStatus"] in ("running", "pending")
                ]
                if self.nomad_api.jobs.get_jobs(namespace=self.namespace, prefix=job)
                else True
            ),
            timeout=60,
            what=f"{job} to stop",
        )

    def register_backup_job(self) -> None:
        u = deploy.unit("backup", deploy.LOCAL_ENV)
        self.nomad_cli(
            "job",
            "run",
            "-namespace",
            self.namespace,
            *cli_var_files(u, self.tmp_path),
            f"-var=host_volume_path={self.data_dir}",
            str(u.spec),
        )

    def runs(self) -> list[str]:
        """The backup job's runs (child jobs)."""
        jobs = self.nomad_api.jobs.get_jobs(namespace=self.namespace, prefix="backup/periodic-")
        return [j["ID"] for j in jobs]

    def force_backup(self, expect: str = "dead") -> float:
        """One forced run of the periodic job, to its end (each task's state ``expect``, except
        a redis task told to fail with ``expect="redis failed"``); returns its seconds."""
        started = time.monotonic()
        before = set(self.runs())
        self.nomad_cli(
            "job", "periodic", "force", "-detach", "-namespace", self.namespace, "backup"
        )
        (child,) = wait_for(lambda: set(self.runs()) - before, timeout=30, what="the forced run")

        def finished() -> list[dict[str, Any]] | None:
            allocs = self.nomad_api.job.get_allocations(child, namespace=self.namespace)
            done = [a for a in allocs if a["ClientStatus"] in ("complete", "failed")]
            return done if allocs and len(done) == len(allocs) else None

        allocs = wait_for(finished, timeout=180, what=f"the backup run {child} to finish")
        assert allocs
        states = {
            name: state["State"] + ("/failed" if state["Failed"] else "")
            for a in allocs
            for name, state in a["TaskStates"].items()
        }
        wanted = {"postgres": "dead", "redis": "dead"}
        if expect == "redis failed":
            wanted["redis"] = "dead/failed"
        assert states == wanted, states
        return time.monotonic() - started

    def backup_metrics(self) -> dict[tuple[str, str], float]:
        """What the TimescaleDB job's exporter serves, as Prometheus finds it through Consul."""
        (entry,) = [
            s
            for s in self.consul.get("catalog/service/arbfleet-backup")
            if self.namespace in s["ServiceTags"]
        ]
        assert "prometheus" in entry["ServiceTags"]
        url = f"http://{entry['ServiceAddress']}:{entry['ServicePort']}/metrics"
        found = {}
        for family in text_string_to_metric_families(requests.get(url, timeout=5).text):
            for sample in family.samples:
                found[(sample.name, sample.labels["store"])] = sample.value
        return found


@pytest.fixture
def fleet(
    nomad_cli: Nomad,
    consul: Consul,
    nomad_api: nomad.Nomad,
    job_secrets: KvWrite,
    namespace: str,
    data_dir: Path,
    tmp_path: Path,
) -> Fleet:
    password = secrets.token_urlsafe(18)
    job_secrets("timescaledb/postgres", {"password": password})
    job_secrets("backup/postgres", {"username": "postgres", "password": password})
    return Fleet(nomad_cli, consul, nomad_api, namespace, data_dir, tmp_path, password)


def sql(fleet: Fleet, address: tuple[str, int], *statements: str) -> list[Any]:
    """Run ``statements`` in order; the rows (or status) of each."""

    async def run() -> list[Any]:
        conn = await asyncpg.connect(
            host=address[0], port=address[1], user="postgres", password=fleet.password, timeout=10
        )
        try:
            return [await conn.fetch(statement) for statement in statements]
        finally:
            await conn.close()

    return asyncio.run(run())


def write_rows(fleet: Fleet, db: tuple[str, int], first: int, last: int) -> datetime.datetime:
    """Rows ``first``..``last`` committed; returns the server's clock just after the commit."""
    (_, (row,)) = sql(
        fleet,
        db,
        "INSERT INTO restore_check SELECT i, md5(i::text) "
        f"FROM generate_series({first}, {last}) AS i",
        "SELECT clock_timestamp() AS now",
    )
    moment: datetime.datetime = row["now"]
    return moment


def ids(fleet: Fleet, db: tuple[str, int]) -> list[int]:
    (rows,) = sql(fleet, db, "SELECT id FROM restore_check ORDER BY id")
    return [r["id"] for r in rows]


def archive_everything(fleet: Fleet, db: tuple[str, int]) -> None:
    """Close the current WAL segment and wait until the server has archived it (the segment
    switched is the one named by the position pg_switch_wal returns, the start of the next)."""
    ((row,),) = sql(fleet, db, "SELECT pg_walfile_name(pg_switch_wal()) AS closed")

    def archived() -> bool:
        ((stat,),) = sql(fleet, db, "SELECT last_archived_wal AS wal FROM pg_stat_archiver")
        return stat["wal"] is not None and stat["wal"] >= row["closed"]

    wait_for(archived, timeout=60, what=f"the WAL up to {row['closed']} to be archived")


def arbfleet_db(*args: str, env: dict[str, str] | None = None) -> str:
    """``arbfleet db ARGS`` as an operator runs it (this checkout's code), with ``env`` added."""
    proc = subprocess.run(
        [sys.executable, "-m", "runtime.cli.main", "db", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
        env={**os.environ, **(env or {})},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def destroy_database(fleet: Fleet) -> Path:
    fleet.stop("timescaledb")
    pgdata = fleet.data_dir / "timescaledb"
    # The stopped allocation's PostgreSQL may still be writing its last files: remove again
    # until nothing is left (a bounded wait on the fact, not a sleep).
    deadline = time.monotonic() + 60
    while subprocess.run(["rm", "-rf", str(pgdata)], check=False).returncode != 0:
        assert time.monotonic() < deadline, f"{pgdata} could not be removed within 60 s"
    return pgdata


def test_a_destroyed_database_and_redis_come_back_from_a_forced_backup_run(fleet: Fleet) -> None:
    db = fleet.run("timescaledb")
    sql(fleet, db, "CREATE TABLE restore_check (id int PRIMARY KEY, payload text NOT NULL)")
    write_rows(fleet, db, 1, 5000)
    fleet.register_backup_job()
    # No Redis yet: that half of the run fails, and the metrics say so.
    fleet.force_backup(expect="redis failed")
    failed = wait_for(
        lambda: fleet.backup_metrics().get(("arbfleet_backup_last_run_failed", "redis")) == 1,
        timeout=30,
        what="the exporter to report the failed run",
    )
    assert failed
    cache = fleet.run("redis")
    client = redis.Redis(host=cache[0], port=cache[1])
    client.set("arbfleet:test:snapshot", "before the backup")
    client.close()
    print(f"backup run: {fleet.force_backup():.1f} s")
    metrics = fleet.backup_metrics()
    newest = backup.backup_sets(fleet.backups)[-1]
    assert metrics[("arbfleet_backup_last_success_timestamp_seconds", "postgres")] == newest.stop
    assert metrics[("arbfleet_backup_last_size_bytes", "postgres")] == newest.size_bytes > 0
    assert metrics[("arbfleet_backup_last_size_bytes", "redis")] > 0
    assert metrics[("arbfleet_backup_last_run_failed", "redis")] == 0
    assert metrics[("arbfleet_backup_last_run_failed", "postgres")] == 0

    pgdata = destroy_database(fleet)
    fleet.stop("redis")
    redis_dir = fleet.data_dir / "redis"
    subprocess.run(["rm", "-rf", str(redis_dir / "appendonlydir")], check=True)

    where = [
        "--backups",
        str(fleet.backups),
        "--pgdata",
        str(pgdata),
        "--redis-dir",
        str(redis_dir),
    ]
    listed = arbfleet_db("backups", "--backups", str(fleet.backups))
    assert f"postgres {newest.label} full" in listed
    said = arbfleet_db("restore", *where, "--dry-run")
    assert f"would postgres: restore backup {newest.label}" in said
    assert "would redis: restore snapshot" in said
    assert not pgdata.exists()  # a dry run touches nothing
    started = time.monotonic()
    arbfleet_db("restore", *where)
    db = fleet.run("timescaledb")
    print(f"restore to healthy: {time.monotonic() - started:.1f} s")
    assert ids(fleet, db) == list(range(1, 5001))
    cache = fleet.run("redis")
    client = redis.Redis(host=cache[0], port=cache[1])
    assert client.get("arbfleet:test:snapshot") == b"before the backup"
    client.close()


def test_a_restore_to_a_point_in_time_keeps_the_rows_before_it(fleet: Fleet) -> None:
    db = fleet.run("timescaledb")
    fleet.run("redis")
    sql(fleet, db, "CREATE TABLE restore_check (id int PRIMARY KEY, payload text NOT NULL)")
    fleet.register_backup_job()
    fleet.force_backup()
    between = write_rows(fleet, db, 1, 100)
    write_rows(fleet, db, 101, 200)
    archive_everything(fleet, db)
    pgdata = destroy_database(fleet)

    at = between.astimezone(datetime.UTC).isoformat()
    said = arbfleet_db(
        "restore",
        "--backups",
        str(fleet.backups),
        "--pgdata",
        str(pgdata),
        "--time",
        at,
        "--dry-run",
    )
    assert f"replay the WAL archive up to {at}" in said
    arbfleet_db("restore", "--backups", str(fleet.backups), "--pgdata", str(pgdata), "--time", at)
    db = fleet.run("timescaledb")
    assert ids(fleet, db) == list(range(1, 101))


def test_backups_older_than_the_retention_go_with_their_wal(fleet: Fleet) -> None:
    fleet.run("timescaledb")
    fleet.run("redis")
    fleet.register_backup_job()
    fleet.force_backup()
    fleet.force_backup()
    first, second = backup.backup_sets(fleet.backups)
    wal_before = wal_segments(fleet.backups)
    day = 86400

    def expire_at(epoch: int) -> None:
        stamp = datetime.datetime.fromtimestamp(epoch, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S")
        # libfaketime gives pgBackRest the clock the test sets; TZ makes the stamp UTC.
        clock = {"LD_PRELOAD": str(LIBFAKETIME), "FAKETIME": f"@{stamp}", "TZ": "UTC"}
        said = arbfleet_db("expire", "--backups", str(fleet.backups), env=clock)
        assert f"older than {backup.RETENTION_DAYS} days" in said  # the default: 7

    # Just inside seven days of the first backup's end: nothing goes.
    expire_at(first.stop + backup.RETENTION_DAYS * day - 60)
    assert backup.backup_sets(fleet.backups) == [first, second]
    # Past seven days after both: the newest one older than the retention stays (any moment of
    # the last seven days can still be restored), the first goes, and the WAL before the second.
    expire_at(second.stop + backup.RETENTION_DAYS * day + 60)
    assert backup.backup_sets(fleet.backups) == [second]
    wal_after = wal_segments(fleet.backups)
    assert wal_after and min(wal_after) > min(wal_before)
    assert all(segment >= second_wal_start(fleet) for segment in wal_after)


def wal_segments(backups: Path) -> list[str]:
    archive = backups / backup.REPO_DIR / "archive"
    return sorted(p.name[:24] for p in archive.rglob("0000*") if p.is_file())


def second_wal_start(fleet: Fleet) -> str:
    out = backup.pgbackrest(["info", "--output=json"], backup.pgbackrest_env(fleet.backups))
    (stanza,) = json.loads(out)
    start: str = stanza["backup"][-1]["archive"]["start"]
    return start


@pytest.mark.parametrize("env", [deploy.LOCAL_ENV, "production"])
def test_the_server_the_backup_job_and_the_restore_share_one_repository(
    nomad_api: nomad.Nomad, env: str
) -> None:
    """HCL has no shared includes: the pgBackRest options are written in both jobs, so this
    holds them to each other and to runtime/persistence/backup.py (which the restore uses)."""

    def pgbackrest_env(job: str, task: str) -> dict[str, str]:
        spec = deploy.render(nomad_api, for_this_nomad(deploy.unit(job, env)))
        tasks = {t["Name"]: t for g in spec["TaskGroups"] for t in g["Tasks"]}
        return {k: v for k, v in tasks[task]["Env"].items() if k.startswith("PGBACKREST_")}

    server = pgbackrest_env("timescaledb", "postgres")
    backup_job = pgbackrest_env("backup", "postgres")
    shared = set(server) & set(backup_job)
    assert {k: server[k] for k in shared} == {k: backup_job[k] for k in shared}
    assert shared >= {"PGBACKREST_STANZA", "PGBACKREST_REPO1_PATH", "PGBACKREST_PG1_PATH"}
    assert server["PGBACKREST_STANZA"] == backup.STANZA
    assert server["PGBACKREST_REPO1_PATH"].endswith(f"/backups/{backup.REPO_DIR}")
    assert backup_job["PGBACKREST_REPO1_RETENTION_FULL"] == str(backup.RETENTION_DAYS)
