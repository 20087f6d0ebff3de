"""What the platform must hold for a fleet: the resources of the secrets store (OpenBao or
Vault), Consul's ACLs and Nomad's namespaces and ACL policies, in the order they are applied.

Names and rules come from the fleet description (``runtime/ops/fleet.py``), the secrets-store
``Layout`` (runtime/platform/vault.py) and the files beside this module (Consul's engine ACL
definitions and operator policy, Nomad's ACL policies).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import cache
from importlib import resources
from typing import Any

from runtime.ops.platform.applier import Absent, Api, PlatformError, Resource, document
from runtime.platform.vault import Layout, deployment_policy, rotation_policy

WORKLOAD_ROLE = "nomad-workloads"
"""The generic JWT role of the platform jobs: a templated policy, secret/<namespace>/<job>/*."""
CLAIM_MAPPINGS = {
    "nomad_namespace": "nomad_namespace",
    "nomad_job_id": "nomad_job_id",
    "nomad_task": "nomad_task",
}
TOKEN_PERIOD_S = 1800  # periodic tokens Nomad renews for as long as the task runs


def package_text(*parts: str) -> str:
    return resources.files(__package__).joinpath(*parts).read_text()


# --- the secrets store ---------------------------------------------------------------------------


def _mount(kind: str, listing: str, path: str, body: dict[str, Any]) -> Resource:
    """A secrets engine or auth method at ``path``: created if absent; one of another type is
    refused rather than replaced (it holds data)."""

    def read(api: Api) -> Any:
        mounts = api("GET", f"/v1/sys/{listing}")
        return (mounts.get("data") or mounts).get(f"{path}/")

    def write(api: Api, live: Any, want: dict[str, Any]) -> None:
        if live is not None:
            raise PlatformError(f"{kind} {path}/ exists and is not {json.dumps(want)}")
        api("POST", f"/v1/sys/{listing}/{path}", want)

    def view(live: Any) -> dict[str, Any]:
        return {"type": live["type"], "options": live.get("options") or {}}

    return Resource("vault", kind, path, read, lambda _api: body, write, view)


def vault_policy(name: str, text: str) -> Resource:
    return document(
        "vault",
        "policy",
        name,
        f"/v1/sys/policies/acl/{name}",
        {"policy": text},
        method="PUT",
        view=lambda live: {"policy": live["data"]["policy"]},
    )


def jwt_role(layout: Layout, name: str, policy: str, job: str | None) -> Resource:
    """A JWT role: a task of ``job`` (any job with None) logs in and gets exactly ``policy``."""
    body = {
        "role_type": "jwt",
        "bound_audiences": [layout.jwt_audience],
        "bound_claims": {"nomad_job_id": job} if job else {},
        "user_claim": "/nomad_job_id",
        "user_claim_json_pointer": True,
        "claim_mappings": CLAIM_MAPPINGS,
        "token_type": "service",
        "token_policies": [policy],
        "token_period": TOKEN_PERIOD_S,
        "token_explicit_max_ttl": 0,
    }
    path = f"/v1/auth/{layout.jwt_auth_mount}/role/{name}"
    return document("vault", "jwt role", name, path, body)


def secrets_layout(layout: Layout) -> list[Resource]:
    """The KV v2 mount of the exchange keys and its settings, the rotation policy and one
    policy per deployment."""
    kv_config = {"max_versions": layout.max_versions, "cas_required": layout.cas_required}
    kv_v2 = {"type": "kv", "options": {"version": "2"}}
    return [
        _mount("secrets engine", "mounts", layout.kv_mount, kv_v2),
        document("vault", "kv config", layout.kv_mount, f"/v1/{layout.kv_mount}/config", kv_config),
        vault_policy(layout.rotation_policy_name, rotation_policy(layout)),
        *(
            vault_policy(layout.deployment_policy_name(d), deployment_policy(layout, d))
            for d in layout.deployments
        ),
    ]


def deployment_roles(layout: Layout) -> list[Resource]:
    """One JWT role per deployment (its own policy) and the rotation job's."""
    return [
        *(
            jwt_role(layout, layout.jwt_role_name(d), layout.deployment_policy_name(d), d)
            for d in layout.deployments
        ),
        jwt_role(
            layout,
            layout.jwt_role_name(layout.rotation_job),
            layout.rotation_policy_name,
            layout.rotation_job,
        ),
    ]


def workload_policy_for(namespace: str, job_id: str) -> str:
    """Read on ``secret/<namespace>/<job>/*`` only."""
    return "".join(
        f'path "secret/data/{namespace}/{job_id}{suffix}" {{\n  capabilities = ["read"]\n}}\n'
        for suffix in ("/*", "")
    )


def workload_policy(accessor: str) -> str:
    """Each platform job may read only its own secrets (templated on its identity's claims)."""
    meta = f"identity.entity.aliases.{accessor}.metadata"
    return workload_policy_for(
        namespace=f"{{{{{meta}.nomad_namespace}}}}", job_id=f"{{{{{meta}.nomad_job_id}}}}"
    )


def workload_identity(layout: Layout, keys: Mapping[str, Any]) -> list[Resource]:
    """The JWT auth method Nomad's workload identities log in to, trusting ``keys``
    (``jwks_url`` [+ ``jwks_ca_pem``] for Nomad 1.7+, or ``jwt_validation_pubkeys``), and the
    generic role with its templated policy."""
    mount = layout.jwt_auth_mount

    def templated(api: Api) -> dict[str, Any]:
        method = (api("GET", "/v1/sys/auth").get("data") or {}).get(f"{mount}/")
        if method is None:
            raise Absent(f"auth method {mount}/")
        return {"policy": workload_policy(method["accessor"])}

    config = {**keys, "jwt_supported_algs": ["RS256", "EdDSA"], "default_role": WORKLOAD_ROLE}
    return [
        _mount("auth method", "auth", mount, {"type": "jwt", "options": {}}),
        document("vault", "jwt config", mount, f"/v1/auth/{mount}/config", config),
        document(
            "vault",
            "policy",
            WORKLOAD_ROLE,
            f"/v1/sys/policies/acl/{WORKLOAD_ROLE}",
            templated,
            method="PUT",
            view=lambda live: {"policy": live["data"]["policy"]},
        ),
        jwt_role(layout, WORKLOAD_ROLE, WORKLOAD_ROLE, None),
    ]


def token_role(name: str, body: dict[str, Any]) -> Resource:
    return document("vault", "token role", name, f"/v1/auth/token/roles/{name}", body)


# --- Consul ACLs ---------------------------------------------------------------------------------


@cache
def engine_acl() -> dict[str, Any]:
    """The engines' Consul ACL definitions (consul/engine-acl.json)."""
    return dict(json.loads(package_text("consul", "engine-acl.json")))


def engine_rules(accounts: Mapping[str, str]) -> str:
    """A deployment's Consul policy (JSON rules): the shared rules and its lock keys."""
    d = engine_acl()
    keys = {d["lock_key"] % (v, a): {"policy": "write"} for v, a in sorted(accounts.items())}
    return json.dumps({**d["engine_rules"], "key": keys}, sort_keys=True)


def _consul_named(kind: str, collection: str, name: str, body: dict[str, Any]) -> Resource:
    """A Consul ACL policy or role: found by name, updated by id."""

    def read(api: Api) -> Any:
        try:
            return api("GET", f"/v1/acl/{collection}/name/{name}")
        except Absent:
            return None

    def write(api: Api, live: Any, want: dict[str, Any]) -> None:
        path = f"/v1/acl/{collection}" + (f"/{live['ID']}" if live else "")
        api("PUT", path, {**want, "Name": name})

    def view(live: Any) -> dict[str, Any]:
        found = {k: live.get(k) for k in body}
        if "Policies" in found:  # Consul answers with ids too
            found["Policies"] = [{"Name": p["Name"]} for p in live.get("Policies") or []]
        return found

    return Resource("consul", kind, name, read, lambda _api: body, write, view)


def consul_engine_acl(job: str, accounts: Mapping[str, str]) -> list[Resource]:
    """A deployment's Consul policy and role: its services and checks, sessions, the kill switch
    read-only, write on its own account lock keys only."""
    d = engine_acl()
    policy = d["engine_policy"] % job
    return [
        _consul_named(
            "acl policy", "policy", policy, {"Rules": engine_rules(accounts), "Description": job}
        ),
        _consul_named(
            "acl role",
            "role",
            d["engine_role"] % job,
            {"Policies": [{"Name": policy}], "Description": job},
        ),
    ]


def consul_patroni_acl(scope: str) -> list[Resource]:
    """Patroni's Consul policy and role for the members of ``scope`` (consul/patroni-acl.json):
    its service, its keys under ``service/<scope>/``, sessions, read on nodes and agents."""
    d = json.loads(package_text("consul", "patroni-acl.json"))
    policy = d["policy"] % scope
    rules = json.dumps(d["rules"]).replace("%s", scope)
    return [
        _consul_named("acl policy", "policy", policy, {"Rules": rules, "Description": scope}),
        _consul_named(
            "acl role",
            "role",
            d["role"] % scope,
            {"Policies": [{"Name": policy}], "Description": scope},
        ),
    ]


def consul_auth(jobs: list[str], key_config: Mapping[str, Any]) -> list[Resource]:
    """The JWT auth method engines log in to with their Nomad identity (trusting
    ``key_config``: ``JWKSURL`` [+ ``JWKSCACert``], or ``JWTValidationPubKeys``) and the
    binding rule giving each deployment's engine task its deployment's role."""
    d = engine_acl()
    method, rule = d["auth_method"], d["binding_rule"]
    name = method["name"]
    body = {
        "Type": method["type"],
        "DisplayName": method["display_name"],
        "Config": {**method["config"], **key_config},
    }

    def read_method(api: Api) -> Any:
        try:
            return api("GET", f"/v1/acl/auth-method/{name}")
        except Absent:
            return None

    def write_method(api: Api, live: Any, want: dict[str, Any]) -> None:
        api("PUT", "/v1/acl/auth-method" + (f"/{name}" if live else ""), {**want, "Name": name})

    binding = {
        "AuthMethod": name,
        "Description": rule["description"],
        "Selector": rule["selector"] % "|".join(sorted(jobs)),
        "BindType": rule["bind_type"],
        "BindName": rule["bind_name"],
    }

    def read_rules(api: Api) -> Any:
        if read_method(api) is None:
            return None
        return api("GET", f"/v1/acl/binding-rules?authmethod={name}") or None

    def write_rules(api: Api, live: Any, want: dict[str, Any]) -> None:
        for found in live or []:  # one rule: replace whatever is there
            api("DELETE", f"/v1/acl/binding-rule/{found['ID']}")
        api("PUT", "/v1/acl/binding-rule", want["rule"])

    def view_rules(live: Any) -> dict[str, Any]:
        rules = [{k: r.get(k) for k in binding} for r in live]
        return {"rule": rules[0] if len(rules) == 1 else rules}

    return [
        Resource("consul", "auth method", name, read_method, lambda _a: body, write_method),
        Resource(
            "consul",
            "binding rule",
            name,
            read_rules,
            lambda _a: {"rule": binding},
            write_rules,
            view_rules,
        ),
    ]


def consul_operator() -> list[Resource]:
    rules = package_text("consul", "operator.hcl")
    return [_consul_named("acl policy", "policy", "arbfleet-operator", {"Rules": rules})]


# --- Nomad ---------------------------------------------------------------------------------------


def nomad_namespace(name: str, description: str) -> Resource:
    body = {"Name": name, "Description": description}
    return document(
        "nomad",
        "namespace",
        name,
        f"/v1/namespace/{name}",
        body,
        view=lambda live: {"Name": live["Name"], "Description": live.get("Description", "")},
    )
