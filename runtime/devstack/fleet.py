"""The whole local fleet on the local stack: every job of ``infra/nomad/`` with its local vars, in
one Nomad namespace, and what the jobs need from Vault (``arbfleet dev fleet-up|fleet-check|
fleet-down``).

``up`` applies what ``arbfleet platform apply`` applies in production, for the local stack, in
order:

1. the namespace, and the secrets the platform jobs read (``secret/<namespace>/...``: a generated
   PostgreSQL password, local placeholders for the notification endpoints), each only if absent;
2. the secrets-store layout (policies and every local deployment's role, from the fleet
   description), before any job, since a job's token follows its role whichever way Nomad
   obtains it;
3. the platform jobs (TimescaleDB, Redis, Prometheus, Alertmanager, Grafana, the periodic
   backup and key rotation), submitted together and watched to the end of their deployments;
4. the database secrets engine pointed at the TimescaleDB instance just deployed, found in Consul;
5. the engine deployments, which find TimescaleDB and Redis in Consul and log in to PostgreSQL as
   users of their own from Vault.

``check`` lists what is not yet healthy: an allocation not running, a Consul check of the
namespace's allocations (the engines' own "can trade" checks included) not passing.
``down`` stops the engines, removes the database secrets engine if it serves this fleet
(revoking the engines' users while PostgreSQL still runs), then purges the rest and deletes the
namespace (not Nomad's default). The data in the host volume is kept.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import hvac
import nomad

from runtime.core.errors import DeployError
from runtime.core.logging import register_secret
from runtime.devstack import stack
from runtime.ops import deploy
from runtime.ops import fleet as fleet_description
from runtime.ops.platform import desired
from runtime.ops.platform.applier import HttpApi, apply
from runtime.ops.platform.cli import apply_layout, layout_for
from runtime.platform.vault import Layout

Say = Callable[[str], None]
POLL_S = 1.0
ENGINE_SPEC = "engine.nomad.hcl"
# Local stand-ins for what production keeps in Vault: a discard address for notifications (the
# local Alertmanager routes alerts nowhere), generated passwords.
PLACEHOLDER_WEBHOOK = "http://127.0.0.1:9/local-placeholder"
LOCAL_SIMULATOR = "127.0.0.1:18900"
"""Where the local engine deployments' vars expect the exchange simulator."""


@dataclass(frozen=True)
class Fleet:
    namespace: str
    outcomes: tuple[deploy.Outcome, ...]
    elapsed_s: float
    postgres_admin_dsn: str | None = field(repr=False)
    """The TimescaleDB instance's superuser DSN (password inside: never print it); None without
    the timescaledb job."""


def api_for(namespace: str) -> nomad.Nomad:
    return nomad.Nomad(address=stack.endpoints().nomad, namespace=namespace, timeout=10)


def vault_client() -> hvac.Client:
    ep = stack.endpoints()
    return hvac.Client(url=ep.vault, token=ep.vault_token(), timeout=10)


def local_units(
    workdir: Path,
    data_dir: Path | None = None,
    simulator_port: int | None = None,
    names: set[str] | None = None,
) -> list[deploy.Unit]:
    """The local environment's units (``names`` only, if given); with ``data_dir``, the jobs'
    host volume data goes there instead of the stack's volume directory, and with
    ``simulator_port`` the engines trade on that simulator instead of the one their vars name.
    The override vars files are written to ``workdir``."""
    overrides = []
    if data_dir is not None:
        overrides.append(workdir / "host-volume.json")
        overrides[0].write_text(json.dumps({"host_volume_path": str(data_dir)}))
    units = []
    for u in deploy.units(deploy.LOCAL_ENV):
        if names is not None and u.name not in names:
            continue
        if u.spec.name == ENGINE_SPEC and simulator_port is not None:
            config = str(u.values["engine_config"])
            if LOCAL_SIMULATOR not in config:
                raise DeployError(f"{u.name}'s engine_config does not trade on {LOCAL_SIMULATOR}")
            config = config.replace(LOCAL_SIMULATOR, f"127.0.0.1:{simulator_port}")
            units.append(replace(u, values={**u.values, "engine_config": config}))
        elif "host_volume_path" in deploy.declared_variables(u.spec):
            units.append(replace(u, var_files=(*u.var_files, *overrides)))
        else:
            units.append(u)
    return units


# --- up --------------------------------------------------------------------------------------


def up(namespace: str, units: Iterable[deploy.Unit] | None = None, say: Say = print) -> Fleet:
    """Deploy ``units`` (default: every unit of the local environment) into ``namespace``."""
    started = time.monotonic()
    chosen = list(units) if units is not None else deploy.units(deploy.LOCAL_ENV)
    platform = [u for u in chosen if u.spec.name != ENGINE_SPEC]
    engines = [u for u in chosen if u.spec.name == ENGINE_SPEC]
    nomad_api = HttpApi("nomad", stack.endpoints().nomad)
    apply(lambda _service: nomad_api, [desired.nomad_namespace(namespace, "arbfleet dev fleet")])
    vault = vault_client()
    password = seed_secrets(vault, namespace)
    # The roles first: a job's token follows its role, whichever way Nomad obtains it.
    layout = layout_for(fleet_description.default(), deploy.LOCAL_ENV)
    apply_layout(vault, layout)
    say(f"vault: layout applied ({len(layout.deployments)} deployments)")
    outcomes = deploy_together(namespace, platform, say)
    if any(u.name == "timescaledb" for u in platform):
        admin_dsn = postgres_admin_dsn(namespace, password)
        configure_database(vault, layout, admin_dsn, say)
    else:
        admin_dsn = None
    outcomes += deploy_together(namespace, engines, say)
    return Fleet(namespace, tuple(outcomes), time.monotonic() - started, admin_dsn)


def seed_secrets(vault: hvac.Client, namespace: str) -> str:
    """Write the platform jobs' secrets that are missing; the TimescaleDB superuser password
    (the backup job logs in with the same)."""
    stored = read_secret(vault, f"{namespace}/timescaledb/postgres")
    password = str(stored["password"]) if stored else secrets.token_urlsafe(24)
    register_secret(password)
    wanted = {
        "timescaledb/postgres": {"password": password},
        "backup/postgres": {"username": "postgres", "password": password},
        "grafana/admin": {"password": secrets.token_urlsafe(24)},
        "alertmanager/slack": {"webhook_url": PLACEHOLDER_WEBHOOK},
        "alertmanager/pagerduty": {"routing_key": "local-placeholder"},
    }
    for path, secret in wanted.items():
        if read_secret(vault, f"{namespace}/{path}") is None:
            vault.secrets.kv.v2.create_or_update_secret(
                path=f"{namespace}/{path}", secret=secret, mount_point="secret"
            )
    return password


def read_secret(vault: hvac.Client, path: str) -> dict[str, Any] | None:
    try:
        response = vault.secrets.kv.v2.read_secret_version(
            path=path, mount_point="secret", raise_on_deleted_version=True
        )
    except hvac.exceptions.InvalidPath:
        return None
    return dict(response["data"]["data"])


def deploy_together(namespace: str, units: list[deploy.Unit], say: Say) -> list[deploy.Outcome]:
    """Submit every unit at once and watch each deployment; DeployError names every failure."""
    if not units:
        return []

    def one(u: deploy.Unit) -> deploy.Outcome:
        return deploy.deploy(api_for(namespace), u, say=say)

    with ThreadPoolExecutor(max_workers=len(units)) as pool:
        outcomes = list(pool.map(one, units))
    failed = [f"{o.job_id}: {o.status}: {o.description}" for o in outcomes if not o.ok]
    if failed:
        raise DeployError("; ".join(failed))
    return outcomes


def postgres_admin_dsn(namespace: str, password: str, timeout_s: float = 60.0) -> str:
    """The superuser DSN of the namespace's passing TimescaleDB instance, from Consul."""
    address = wait(
        lambda: passing_instance("timescaledb", namespace), timeout_s, "timescaledb in Consul"
    )
    return f"postgresql://postgres:{password}@{address}/postgres"


def passing_instance(service: str, namespace: str) -> str | None:
    """``host:port`` of a passing instance of ``service`` tagged with ``namespace``."""
    entries = stack.http_json(
        f"{stack.endpoints().consul}/v1/health/service/{service}?passing=true&tag={namespace}"
    )
    for entry in entries or []:
        return f"{entry['Service']['Address']}:{entry['Service']['Port']}"
    return None


def configure_database(vault: hvac.Client, layout: Layout, admin_dsn: str, say: Say) -> None:
    """The database secrets engine on ``admin_dsn``'s server (the engines' PostgreSQL users)."""
    from runtime.platform.dbcreds import apply_database, bootstrap_roles

    password = asyncio.run(bootstrap_roles(admin_dsn))
    apply_database(vault, layout, admin_dsn, password)
    say(f"vault: {layout.db_mount}/ on the fleet's timescaledb")


# --- check -----------------------------------------------------------------------------------


def problems(namespace: str) -> list[str]:
    """What keeps the namespace's fleet from being healthy; empty when it is.

    Every allocation Nomad wants running is running (a periodic job's finished runs do not
    count), and every Consul check registered for one of them passes: Nomad's service checks
    and the engines' own "can trade" TTL checks, whose service ids carry the allocation id too.
    """
    api = api_for(namespace)
    found = []
    allocations = [
        api.allocation.get_allocation(a["ID"])
        for a in api.allocations.get_allocations()
        if a["DesiredStatus"] == "run" and a["ClientStatus"] != "complete"
    ]
    if not allocations:
        return [f"no allocation in {namespace}"]
    checks = stack.http_json(f"{stack.endpoints().consul}/v1/health/state/any") or []
    for alloc in allocations:
        name = f"{alloc['JobID']}/{alloc['TaskGroup']} {alloc['ID'][:8]}"
        if alloc["ClientStatus"] != "running":
            found.append(f"{name}: {alloc['ClientStatus']}")
            continue
        mine = [c for c in checks if alloc["ID"] in c.get("ServiceID", "")]
        registered, expected = len({c["ServiceID"] for c in mine}), len(services_of(alloc))
        if registered < expected:
            found.append(f"{name}: {registered} of {expected} services registered")
        found += [
            f"{name}: {c['ServiceName']} {c['Name']} {c['Status']}: {c['Output'].strip()[:200]}"
            for c in mine
            if c["Status"] != "passing"
        ]
    return found


def services_of(alloc: dict[str, Any]) -> list[str]:
    """Consul services the allocation registers: its job's, plus an engine's own TTL service."""
    group = next(g for g in alloc["Job"]["TaskGroups"] if g["Name"] == alloc["TaskGroup"])
    names = [s["Name"] for s in group.get("Services") or []]
    for task in group["Tasks"]:
        names += [s["Name"] for s in task.get("Services") or []]
        if (task.get("Env") or {}).get("ARBFLEET_CONSUL__ENABLED") == "true":
            names.append("arbfleet-engine-ttl")
    return names


def wait_healthy(namespace: str, timeout_s: float, say: Say = print) -> None:
    """Until ``problems`` finds none; DeployError naming the last ones after ``timeout_s``."""
    last: list[str] = []
    deadline = time.monotonic() + timeout_s
    while found := problems(namespace):
        if found != last:
            say("not yet healthy: " + "; ".join(found))
            last = found
        if time.monotonic() > deadline:
            raise DeployError(
                f"{namespace} not healthy after {timeout_s:.0f} s: {'; '.join(found)}"
            )
        time.sleep(POLL_S)


def wait(condition: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise DeployError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(POLL_S)


# --- down ------------------------------------------------------------------------------------


def down(namespace: str, say: Say = print) -> None:
    """The local environment's jobs in ``namespace``: engines first, then the database secrets
    engine if it serves this fleet's TimescaleDB (its users are dropped while PostgreSQL still
    runs), then the rest; the namespace is deleted unless it is Nomad's default. Data stays."""
    api = api_for(namespace)
    ours = {u.name for u in deploy.units(deploy.LOCAL_ENV)}
    jobs = [j["ID"] for j in api.jobs.get_jobs() if j["ID"] in ours]
    engines = [u.name for u in deploy.units(deploy.LOCAL_ENV) if u.spec.name == ENGINE_SPEC]
    stop(api, [j for j in jobs if j in engines], say)
    layout = Layout.load()
    vault = vault_client()
    timescaledb = passing_instance("timescaledb", namespace)
    if timescaledb is not None and timescaledb in database_target(vault, layout):
        vault.sys.disable_secrets_engine(layout.db_mount)
        say(f"vault: {layout.db_mount}/ removed, its users revoked")
    stop(api, [j for j in jobs if j not in engines], say)
    api.system.initiate_garbage_collection()
    if namespace != "default":
        api.namespace.delete_namespace(namespace)


def database_target(vault: hvac.Client, layout: Layout) -> str:
    """The connection URL of the database secrets engine ("" if there is none): one per Vault,
    pointed at the TimescaleDB of the last fleet brought up."""
    try:
        config = vault.secrets.database.read_connection(
            layout.db_connection, mount_point=layout.db_mount
        )
    except hvac.exceptions.VaultError:
        return ""
    return str(config["data"]["connection_details"].get("connection_url", ""))


def stop(api: nomad.Nomad, job_ids: list[str], say: Say) -> None:
    for job_id in job_ids:
        api.job.deregister_job(job_id, purge=True)
        say(f"{job_id}: stopped")
    wait(
        lambda: (
            not [
                a
                for a in api.allocations.get_allocations()
                if a["JobID"] in job_ids and a["ClientStatus"] in ("running", "pending")
            ]
        ),
        120,
        f"{', '.join(job_ids) or 'nothing'} to stop",
    )
