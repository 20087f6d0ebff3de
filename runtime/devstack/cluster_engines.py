"""Engines on the local cluster (runtime/devstack/cluster.py) with Consul ACLs on.

The engines' Consul ACLs are the platform applier's (runtime/ops/platform/desired.py, from
``consul/engine-acl.json`` beside it), which ``arbfleet platform apply`` applies in production
and this module applies to the cluster's real Consul: a policy and a role per deployment (its
services and checks, sessions, the kill switch read-only, write on its own account lock keys
only), the JWT auth method Nomad 1.7+'s ``consul_default`` identities log in to, and the binding
rule that gives an engine task its deployment's role.

Nomad 1.6.1 (the cluster's) has no such identity: the engine job's ``legacy_token`` path reads
the token from OpenBao instead (``secret/<namespace>/<job>/consul``, a Consul token with the
same role that provisioning made), with the task's own OpenBao token, whose policy
``arbfleet-consul-<job>`` allows that one path.

Engines run under raw_exec from this source tree: ``<venv>/bin/python -m runtime.cli.main`` with
``PYTHONPATH`` set to it (the job's ``source_dir``), so the cluster runs the code under test and
not whatever the venv's ``arbfleet`` console script was installed from.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from typing import Any

from runtime.core.errors import StackError
from runtime.devstack import cluster
from runtime.ops import deploy
from runtime.ops import fleet as fleet_description
from runtime.ops.platform import desired
from runtime.ops.platform.applier import apply, refusal
from runtime.platform.vault import Layout, deployment_policy

KV_MOUNT = "secret"
LOCAL_SIMULATOR = "127.0.0.1:18900"
PAPER_DEPLOYMENT = "cross-exchange-paper"
"""The local paper deployment of the fleet description, whose strategy and config the cluster's
engines run."""
SIMULATOR_CREDENTIALS = ("sim-key", "sim-secret")
"""The simulator's own account keys (SimulatorConfig.credentials), not a secret."""


def definitions() -> dict[str, Any]:
    return desired.engine_acl()


def job_id(deployment: str) -> str:
    return f"cross-exchange-{deployment}"


def engine_role(job: str) -> str:
    return str(definitions()["engine_role"]) % job


engine_rules = desired.engine_rules


def lock_key(venue: str, account: str) -> str:
    return str(definitions()["lock_key"]) % (venue, account)


def consul(path: str, method: str = "GET", body: Any = None, token: str | None = None) -> Any:
    """The Consul API of the first server, with the management token unless ``token``."""
    server = cluster.servers()[0]
    return cluster.api(server, "consul", path, method, body, token or cluster.token("consul"))


def register_external(service: str, address: str, port: int, tags: list[str]) -> None:
    """A service that runs outside the cluster (a managed Redis, say) in its catalog, as Consul
    models one: a node of its own marked external, no agent to check it. Jobs find it as they
    find their own (the engine's template: ``<namespace>.<service>``)."""
    node = {"Node": f"external-{service}", "Address": address}
    consul(
        "/v1/catalog/register",
        "PUT",
        {
            **node,
            "NodeMeta": {"external-node": "true"},
            "Service": {"Service": service, "Tags": tags, "Address": address, "Port": port},
        },
    )


def bao(path: str, method: str = "GET", body: Any = None) -> Any:
    return cluster.api(cluster.servers()[0], "vault", path, method, body, cluster._bao_token())


def consul_api(method: str, path: str, body: Any = None) -> Any:
    """The first server's Consul for the platform applier: a missing object is ``Absent``."""
    try:
        return consul(path, method, body)
    except StackError as exc:
        status, _, detail = str(exc).partition(": HTTP ")[2].partition(" ")
        if status.isdigit():
            raise refusal(int(status), detail, f"{method} {path}") from exc
        raise


def apply_engine_acl(job: str, accounts: Mapping[str, str]) -> str:
    """The deployment's Consul policy and role (the platform applier's); the role."""
    apply(lambda _service: consul_api, desired.consul_engine_acl(job, accounts))
    return engine_role(job)


def apply_auth_method(jobs: list[str], key_config: Mapping[str, Any]) -> None:
    """The JWT auth method and the engines' binding rule (the platform applier's), trusting
    ``key_config`` (production: ``JWKSURL``; the tests: ``JWTValidationPubKeys``)."""
    apply(lambda _service: consul_api, desired.consul_auth(jobs, key_config))


def login(bearer: str) -> dict[str, Any]:
    """Consul's answer to a login with ``bearer`` at the engines' auth method (a token)."""
    body = {"AuthMethod": definitions()["auth_method"]["name"], "BearerToken": bearer}
    server = cluster.servers()[0]
    return dict(cluster.api(server, "consul", "/v1/acl/login", "POST", body))


# --- Nomad 1.6.1: the Consul token from OpenBao ---------------------------------------------


def vault_policy(job: str) -> str:
    return f"arbfleet-consul-{job}"


def consul_token_path(job: str, namespace: str = "default") -> str:
    """Where the engine job's legacy path reads its Consul token (KV v2 ``secret/``)."""
    return f"{KV_MOUNT}/data/{namespace}/{job}/consul"


def provision_consul_token(job: str, role: str, namespace: str = "default") -> str:
    """Nomad 1.6.1's way to the engine's Consul token: provisioning makes a Consul token with the
    deployment's role and keeps it in OpenBao, where the job's template reads it with the task's
    own token (policy ``arbfleet-consul-<job>``: that path only). OpenBao has no Consul secrets
    engine (its plugin catalog: kubernetes, kv, pki, rabbitmq, ssh, totp, transit), so the token
    is not leased: rotating it is writing a new one (the engine restarts on the change) and
    deleting the old. Returns the token's AccessorID."""
    if f"{KV_MOUNT}/" not in bao("/v1/sys/mounts")["data"]:
        bao(f"/v1/sys/mounts/{KV_MOUNT}", "POST", {"type": "kv", "options": {"version": "2"}})
    created = consul(
        "/v1/acl/token",
        "PUT",
        {"Roles": [{"Name": role}], "Description": f"arbfleet engine {namespace}/{job}"},
    )
    path = consul_token_path(job, namespace)
    cluster.wait_for(  # a KV v2 mount just made upgrades itself for a moment
        f"OpenBao KV {path}",
        lambda: bao(f"/v1/{path}", "POST", {"data": {"token": created["SecretID"]}}),
        30,
    )
    rules = f'path "{path}" {{\n  capabilities = ["read"]\n}}\n'
    bao(f"/v1/sys/policies/acl/{vault_policy(job)}", "PUT", {"policy": rules})
    return str(created["AccessorID"])


def provision_exchange_keys(job: str, accounts: Mapping[str, str]) -> str:
    """The simulator's keys as the deployment's exchange accounts in OpenBao's KV v2
    ``exchanges/`` (the layout of secrets/vault.toml) and the deployment's own policy, rendered
    by runtime/platform/vault.py as ``arbfleet secrets apply`` does; returns the policy's name."""
    layout = Layout(deployments={job: dict(accounts)})
    mount = layout.kv_mount
    if f"{mount}/" not in bao("/v1/sys/mounts")["data"]:
        bao(f"/v1/sys/mounts/{mount}", "POST", {"type": "kv", "options": {"version": "2"}})
    key, secret = SIMULATOR_CREDENTIALS
    body = {"data": {"api_key": key, "api_secret": secret, "permissions": []}}
    for venue, account in accounts.items():
        path = f"/v1/{mount}/data/{venue}/{account}"
        cluster.wait_for(f"OpenBao KV {path}", lambda p=path: bao(p, "POST", body), 30)  # type: ignore[misc]
    name = layout.deployment_policy_name(job)
    bao(f"/v1/sys/policies/acl/{name}", "PUT", {"policy": deployment_policy(layout, job)})
    return name


# --- the engine job -------------------------------------------------------------------------


def engine_variables(
    deployment: str,
    simulator: str,
    *,
    live: Mapping[str, str] | None = None,
    **extra: str | list[str] | dict[str, str],
) -> str:
    """Var-file content (JSON) of an engine deployment on the cluster: the local paper deployment's
    strategy and config, trading on ``simulator`` (host:port), Consul ACLs on, its Consul token
    through the legacy path, no stores unless ``extra`` names them (``postgres_service``,
    ``redis_service``: what runs in or is registered with the cluster's Consul). ``live``
    (venue -> account, provisioned by ``provision_exchange_keys``): signed orders to the
    simulator with keys the engine reads from OpenBao (the production path: the task's token
    with the deployment's policy, OpenBao's certificate checked against the cluster's CA), so
    the simulator sees every order the engine sends."""
    paper = fleet_description.default().deployment_of("local", PAPER_DEPLOYMENT)
    if paper is None or paper.mode != "paper" or LOCAL_SIMULATOR not in paper.engine_config:
        raise StackError(f"the fleet's {PAPER_DEPLOYMENT} no longer looks as expected")
    own = paper.variables()
    own["engine_config"] = paper.engine_config.replace(LOCAL_SIMULATOR, simulator)
    own["deployment"] = deployment
    policies = [vault_policy(job_id(deployment))]
    keys: dict[str, str | list[str] | dict[str, str]] = {}
    if live is not None:
        own["mode"] = "live"
        policies.append(Layout().deployment_policy_name(job_id(deployment)))
        keys = {
            "accounts": dict(live),
            "vault_address": cluster.url(cluster.servers()[0], "vault", ""),
            "vault_ca_file": str(cluster.keys_dir() / "ca.pem"),
        }
    values: dict[str, str | list[str] | dict[str, str]] = {
        **own,
        "datacenters": [cluster.DATACENTER],
        "driver": "raw_exec",
        "venv": sys.prefix,
        "source_dir": str(fleet_description.default().root),
        "vault_identity": "legacy_token",
        "vault_policies": policies,
        "postgres_service": "",
        "redis_service": "",
        "min_healthy_time": "5s",
        "healthy_deadline": "60s",
        "progress_deadline": "0s",
        **keys,
        **extra,
    }
    return json.dumps({**values, "consul_acl": True, "cpu": 300, "shutdown_deadline_s": 10})


def nomad(path: str, method: str = "GET", body: Any = None) -> Any:
    return cluster.api(cluster.servers()[0], "nomad", path, method, body, cluster.token("nomad"))


def submit_engine(
    deployment: str,
    simulator: str,
    *,
    live: Mapping[str, str] | None = None,
    **extra: str | list[str] | dict[str, str],
) -> str:
    """Parse the engine job with Nomad (the spec of infra/nomad) and register it; the job id."""
    spec = (fleet_description.default().nomad_path / deploy.ENGINE_SPEC).read_text()
    parsed = nomad(
        "/v1/jobs/parse",
        "POST",
        {
            "JobHCL": spec,
            "Variables": engine_variables(deployment, simulator, live=live, **extra),
            "Canonicalize": True,
        },
    )
    nomad("/v1/jobs", "POST", {"Job": parsed})
    return str(parsed["ID"])


def running_allocations(job: str) -> list[dict[str, Any]]:
    allocs = nomad(f"/v1/job/{job}/allocations") or []
    return [a for a in allocs if a["ClientStatus"] == "running" and a["DesiredStatus"] == "run"]


def lock_holder(venue: str, account: str) -> str | None:
    """The session holding an account lock, or None."""
    try:
        entries = consul(f"/v1/kv/{lock_key(venue, account)}")
    except StackError as exc:
        if "HTTP 404" in str(exc):
            return None
        raise
    return entries[0].get("Session") if entries else None
