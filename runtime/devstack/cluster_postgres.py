"""PostgreSQL with a standby that takes over, on the local cluster (runtime/devstack/cluster.py).

Patroni (Debian's package) runs one member per client from ``infra/nomad/ha/postgres-ha.nomad.hcl``
under raw_exec; its leader key lives in the cluster's Consul. Its Consul ACL is defined once, as
data, in ``runtime/ops/platform/consul/patroni-acl.json`` and applied here (a policy
and a role; a token with the role is kept in OpenBao with the PostgreSQL passwords, at
``secret/<namespace>/<scope>/patroni``, read by the job's template with the task's own token).

Writers find the members through Consul's catalog (the service Patroni registers, tagged with its
role) and connect with every member in the DSN and ``target_session_attrs=read-write``: after a
failover a new connection lands on the new primary, with nothing to restart.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import shutil
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import quote

import hvac

from runtime.core.errors import StackError
from runtime.devstack import cluster, stack
from runtime.devstack import cluster_engines as ce
from runtime.ops.platform import desired
from runtime.ops.platform.applier import apply
from runtime.platform.dbcreds import apply_database, bootstrap_roles
from runtime.platform.vault import Layout

REPO = Path(__file__).resolve().parents[2]
JOB_FILE = REPO / "infra/nomad/ha/postgres-ha.nomad.hcl"
SCOPE = "postgres-ha"
NAMESPACE = "default"
PRIMARY_TAGS = frozenset({"primary", "master"})  # Patroni 3 tags its leader with both


def data_root() -> Path:
    """Where the members keep their data: beside the cluster's state directory (whose 0700
    parents the postgres user could not enter), one directory per node."""
    state = cluster.state_dir()
    return state.parent / f"{state.name}-patroni"


def secret_path(scope: str = SCOPE) -> str:
    return f"{ce.KV_MOUNT}/data/{NAMESPACE}/{scope}/patroni"


def vault_policy(scope: str = SCOPE) -> str:
    """The OpenBao policy reading Patroni's secrets: named as its Consul policy."""
    return desired.consul_patroni_acl(scope)[0].name


def provision(scope: str = SCOPE) -> dict[str, str]:
    """Patroni's Consul policy, role and token, its PostgreSQL passwords in OpenBao and the
    OpenBao policy that reads them; the secrets (the tests connect as the superuser)."""
    acl = desired.consul_patroni_acl(scope)
    apply(lambda _service: ce.consul_api, acl)
    role = acl[-1].name
    token = ce.consul(
        "/v1/acl/token", "PUT", {"Roles": [{"Name": role}], "Description": f"patroni {scope}"}
    )
    values = {
        "consul_token": token["SecretID"],
        "superuser_password": secrets.token_urlsafe(24),
        "replication_password": secrets.token_urlsafe(24),
    }
    if f"{ce.KV_MOUNT}/" not in ce.bao("/v1/sys/mounts")["data"]:
        ce.bao(f"/v1/sys/mounts/{ce.KV_MOUNT}", "POST", {"type": "kv", "options": {"version": "2"}})
    path = secret_path(scope)
    cluster.wait_for(  # a KV v2 mount just made upgrades itself for a moment
        f"OpenBao KV {path}", lambda: ce.bao(f"/v1/{path}", "POST", {"data": values}), 30
    )
    read = f'path "{path}" {{\n  capabilities = ["read"]\n}}\n'
    ce.bao(f"/v1/sys/policies/acl/{vault_policy(scope)}", "PUT", {"policy": read})
    return values


def patroni() -> str:
    """Debian's Patroni with its Consul client (``stack.APT_PACKAGES``), or a clear error."""
    found = shutil.which("patroni")
    if found is None or not stack._have("python3-consul"):
        raise StackError("Patroni is not installed: python -m runtime.devstack dev packages")
    return found


def variables(**extra: str | int | list[str]) -> str:
    """Var-file content (JSON) of the job on the cluster: raw_exec, Debian's PostgreSQL and Patroni,
    Nomad 1.6.1's legacy OpenBao token, the cluster's subnet allowed."""
    values: dict[str, Any] = {
        "datacenters": [cluster.DATACENTER],
        "driver": "raw_exec",
        "postgres_bin_dir": str(stack._pg_bin()),
        "patroni": patroni(),
        "data_root": str(data_root()),
        "allowed_cidr": str(cluster.SUBNET),
        "vault_identity": "legacy_token",
        "vault_policies": [vault_policy()],
        "postgres_settings": {"shared_buffers": "32MB", "max_connections": "40"},
        "cpu": 300,
        "memory": 256,
        **extra,
    }
    return json.dumps(values)  # HCL's JSON syntax, as runtime.ops.deploy sends it


def parse(variables_hcl: str) -> dict[str, Any]:
    """The job as Nomad parses it with these variables (the cluster's Nomad: a real check)."""
    body = {"JobHCL": JOB_FILE.read_text(), "Variables": variables_hcl, "Canonicalize": True}
    return dict(ce.nomad("/v1/jobs/parse", "POST", body))


def submit() -> str:
    """Register the job on the cluster with its data root made; the job id."""
    root = data_root()
    root.mkdir(mode=0o755, exist_ok=True)
    root.chmod(0o755)  # the postgres user enters it to reach its member's directory
    job = parse(variables())
    ce.nomad("/v1/jobs", "POST", {"Job": job})
    return str(job["ID"])


def remove_data() -> None:
    """The members' data (cluster.down leaves it: it is not under the state directory)."""
    shutil.rmtree(data_root(), ignore_errors=True)


def members(scope: str = SCOPE) -> list[dict[str, Any]]:
    """Every member Consul's catalog knows, whatever its health: node, address, port, tags,
    and whether all its checks pass (Patroni's check passes for the member's own role)."""
    entries = ce.consul(f"/v1/health/service/{scope}") or []
    return [
        {
            "node": e["Node"]["Node"],
            "address": e["Service"]["Address"] or e["Node"]["Address"],
            "port": e["Service"]["Port"],
            "tags": set(e["Service"]["Tags"]),
            "passing": all(c["Status"] == "passing" for c in e["Checks"]),
        }
        for e in entries
    ]


def primary(scope: str = SCOPE) -> dict[str, Any] | None:
    """The member tagged primary whose checks pass (there is at most one), or None."""
    found = [m for m in members(scope) if m["tags"] & PRIMARY_TAGS and m["passing"]]
    return found[0] if len(found) == 1 else None


def dsn(user: str, password: str, database: str = "postgres", scope: str = SCOPE) -> str:
    """A DSN naming every member, the primary chosen when connecting (libpq's and asyncpg's
    ``target_session_attrs=read-write``): a writer reconnecting after a failover finds the new
    primary by itself."""
    hosts = ",".join(f"{m['address']}:{m['port']}" for m in members(scope))
    if not hosts:
        raise StackError(f"no member of {scope} in Consul's catalog")
    auth = f"{quote(user, safe='')}:{quote(password, safe='')}"
    return f"postgresql://{auth}@{hosts}/{database}?target_session_attrs=read-write"


def configure_database(layout: Layout, admin_dsn: str) -> None:
    """The engines' PostgreSQL users from the cluster's OpenBao (its database secrets engine,
    as ``arbfleet secrets apply`` makes it), its connection naming every member, and the
    tables owned by their group, migrated here before any engine starts."""
    password = asyncio.run(bootstrap_roles(admin_dsn))
    client = hvac.Client(
        url=cluster.url(cluster.servers()[0], "vault", ""),
        token=cluster._bao_token(),
        verify=str(cluster.keys_dir() / "ca.pem"),
    )
    apply_database(client, layout, admin_dsn, password)


def member_api(node: str, scope: str = SCOPE) -> str:
    """The REST API of the member on ``node`` (Patroni keeps it in its member key)."""
    (entry,) = ce.consul(f"/v1/kv/service/{scope}/members/{node}")
    return str(json.loads(base64.b64decode(entry["Value"]))["api_url"]).rsplit("/", 1)[0]


def sync_standby(scope: str = SCOPE) -> str | None:
    """The member Patroni has made the synchronous standby (its sync key): the only one it will
    promote when the primary goes, the one that has every acknowledged commit."""
    try:
        (entry,) = ce.consul(f"/v1/kv/service/{scope}/sync")
    except StackError as exc:
        if "HTTP 404" in str(exc):
            return None
        raise
    value = json.loads(base64.b64decode(entry["Value"]) or b"{}")
    return value.get("sync_standby") or None


def switchover(candidate: str, scope: str = SCOPE) -> None:
    """Make the member on ``candidate`` the primary, as ``patronictl switchover`` does (the
    primary's REST API), and wait until Consul's catalog says so."""
    leader = primary(scope)
    if leader is None or leader["node"] == candidate:
        return
    # In synchronous mode Patroni switches over only to the member its sync key names, and
    # answers 412 to any other: a standby streaming in sync is not yet named there.
    cluster.wait_for(
        f"{candidate} the synchronous standby", lambda: sync_standby(scope) == candidate, 120
    )
    body = json.dumps({"leader": leader["node"], "candidate": candidate}).encode()
    url = f"{member_api(leader['node'])}/switchover"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    refusals: list[str] = []

    def accepted() -> bool:
        try:
            with opener.open(urllib.request.Request(url, body), timeout=60) as response:
                response.read()
            return True
        except urllib.error.HTTPError as exc:  # 412/503: not possible yet (e.g. replica lag)
            refusals.append(f"{exc.code} {exc.read().decode(errors='replace')}")
            return False

    try:
        cluster.wait_for(f"Patroni to accept a switchover to {candidate}", accepted, 60)
    except StackError as exc:
        raise StackError(f"{exc}; Patroni answered: {refusals[-3:]}") from exc
    cluster.wait_for(
        f"{candidate} primary", lambda: (primary(scope) or {}).get("node") == candidate, 120
    )
    cluster.wait_for(
        f"{leader['node']} the synchronous standby again",
        lambda: sync_standby(scope) == leader["node"],
        120,
    )
