"""``arbfleet platform apply [--dry-run]``: make an environment's platform what the fleet
description asks, in order: the secrets store (KV mount, policies, JWT auth and roles), Consul's
ACLs (where the environment has them on), Nomad's namespaces, then the jobs (with ``--jobs``).

The same resources are applied to the local stack by runtime/devstack (and so by the tests) and
to production by operators, pointed at its agents with the variables their own CLIs read:
``VAULT_ADDR``/``VAULT_TOKEN``/``VAULT_CACERT``, ``CONSUL_HTTP_ADDR``/``CONSUL_HTTP_TOKEN``/
``CONSUL_CACERT``, ``NOMAD_ADDR``/``NOMAD_TOKEN``/``NOMAD_CACERT`` (default: the local stack).
"""

from __future__ import annotations

import argparse
import os
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeAlias

import hvac

from runtime.ops import deploy
from runtime.ops import fleet as fleet_description
from runtime.ops.fleet import Deployment, Fleet
from runtime.ops.platform import desired
from runtime.ops.platform.applier import Api, Change, HttpApi, Resource, apply
from runtime.platform.vault import Layout

Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def locks(deployment: Deployment) -> dict[str, str]:
    """The account locks a deployment's engine takes: its accounts, or in paper mode the
    simulator accounts its engine config names (``[consul.accounts]``)."""
    config = tomllib.loads(deployment.engine_config)
    return {**config.get("consul", {}).get("accounts", {}), **deployment.accounts}


def layout_for(fleet: Fleet, env: str, **overrides: Any) -> Layout:
    """The secrets-store layout of ``env``: its deployments, and its settings where the
    description changes them."""
    settings = fleet.environment(env).secrets.model_dump(exclude_none=True)
    return Layout.load(**{**settings, "deployments": fleet.accounts(env), **overrides})


def resources_for(
    fleet: Fleet,
    env: str,
    *,
    jwt_keys: Mapping[str, Any],
    consul_keys: Mapping[str, Any] | None = None,
    layout: Layout | None = None,
) -> list[Resource]:
    """Everything ``env`` needs, in the order to apply it. ``jwt_keys`` is what the secrets
    store's JWT auth trusts, ``consul_keys`` Consul's (needed where ACLs are on)."""
    layout = layout or layout_for(fleet, env)
    environment = fleet.environment(env)
    wanted = [
        *desired.secrets_layout(layout),
        *desired.workload_identity(layout, jwt_keys),
        *desired.deployment_roles(layout),
    ]
    if environment.consul_acls:
        deployments = fleet.deployments(env)
        wanted += desired.consul_operator()
        for d in deployments:
            wanted += desired.consul_engine_acl(d.job, locks(d))
        wanted += desired.consul_auth([d.job for d in deployments], consul_keys or {})
    wanted += [desired.nomad_namespace(n, text) for n, text in environment.namespaces.items()]
    return wanted


def apply_layout(client: hvac.Client, layout: Layout, dry_run: bool = False) -> list[Change]:
    """The secrets-store layout alone (mount, policies, and the roles if the JWT auth method is
    there), through an hvac client's address and token: for tools and tests holding one."""
    api = HttpApi("vault", client.url, client.token)
    wanted = desired.secrets_layout(layout)
    if f"{layout.jwt_auth_mount}/" in (api("GET", "/v1/sys/auth").get("data") or {}):
        wanted += desired.deployment_roles(layout)
    return apply(lambda _service: api, wanted, dry_run=dry_run)


def production_apis() -> Callable[[str], Api]:
    """The agents named by the standard variables of their CLIs (default: the local stack)."""
    from runtime.devstack import stack

    ep = stack.endpoints()
    local_token = ep.vault_token() if ep.vault_token_file.is_file() else None
    apis = {
        "vault": HttpApi(
            "vault",
            os.environ.get("VAULT_ADDR", ep.vault),
            os.environ.get("VAULT_TOKEN", local_token),
            os.environ.get("VAULT_CACERT"),
        ),
        "consul": HttpApi(
            "consul",
            _url(os.environ.get("CONSUL_HTTP_ADDR", ep.consul)),
            os.environ.get("CONSUL_HTTP_TOKEN"),
            os.environ.get("CONSUL_CACERT"),
        ),
        "nomad": HttpApi(
            "nomad",
            os.environ.get("NOMAD_ADDR", ep.nomad),
            os.environ.get("NOMAD_TOKEN"),
            os.environ.get("NOMAD_CACERT"),
        ),
    }
    return apis.__getitem__


def _url(address: str) -> str:
    """Consul's CLI takes ``host:port`` as well as a URL."""
    return address if "://" in address else f"http://{address}"


def add_platform(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser("platform", help="apply the fleet's platform state")
    commands = parser.add_subparsers(dest="platform_command", required=True)
    apply_parser = commands.add_parser(
        "apply", help="secrets store, Consul ACLs, Nomad namespaces (and jobs) of an environment"
    )
    apply_parser.add_argument("--env", default=deploy.LOCAL_ENV, help="default: local")
    deploy.add_fleet_argument(apply_parser)
    apply_parser.add_argument(
        "--dry-run", action="store_true", help="compare with the live state; change nothing"
    )
    apply_parser.add_argument("--jobs", action="store_true", help="also deploy every job")
    apply_parser.add_argument(
        "--jwks-url", help="JWKS of Nomad's workload identities (default: $NOMAD_ADDR's)"
    )
    apply_parser.set_defaults(handler=_apply)


def _apply(args: argparse.Namespace) -> int:
    fleet = fleet_description.load(args.fleet)
    apis = production_apis()
    jwt_keys, consul_keys = trusted_keys(args.jwks_url)
    wanted = resources_for(fleet, args.env, jwt_keys=jwt_keys, consul_keys=consul_keys)
    verb = "would" if args.dry_run else "did"
    changes = apply(apis, wanted, dry_run=args.dry_run, say=lambda msg: print(msg, flush=True))
    changed = sum(c.action != "ok" for c in changes)
    print(f"{args.env}: {verb} change {changed} of {len(changes)} platform resources")
    if args.jobs:
        return _jobs(fleet, args.env, args.dry_run)
    return 0


def trusted_keys(jwks_url: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """What the secrets store's and Consul's JWT auth trust: Nomad's JWKS (``$NOMAD_ADDR``'s
    unless given, checked against ``$NOMAD_CACERT``); pointed at the local stack's Nomad, the
    keys the stack set up (its Nomad may sign no identities: docs/adr/0003)."""
    from runtime.devstack import stack

    ep = stack.endpoints()
    nomad = os.environ.get("NOMAD_ADDR", ep.nomad)
    if jwks_url is None and nomad == ep.nomad:
        keys = stack.workload_identity_keys(ep)
        consul = {"JWTValidationPubKeys": keys.get("jwt_validation_pubkeys", [])}
        return keys, consul if "jwt_validation_pubkeys" in keys else {"JWKSURL": keys["jwks_url"]}
    url = jwks_url or f"{nomad}/.well-known/jwks.json"
    ca_file = os.environ.get("NOMAD_CACERT")
    ca = Path(ca_file).read_text() if ca_file else None
    return (
        {"jwks_url": url, **({"jwks_ca_pem": ca} if ca else {})},
        {"JWKSURL": url, **({"JWKSCACert": ca} if ca else {})},
    )


def _jobs(fleet: Fleet, env: str, dry_run: bool) -> int:
    api = deploy.client()
    failed = 0
    for u in deploy.units(env, fleet):
        job = deploy.render(api, u)
        if dry_run:
            planned = deploy.plan(api, job)
            print(f"job {job['ID']}: {(planned.get('Diff') or {}).get('Type', 'None').lower()}")
            continue
        outcome = deploy.deploy(api, u, say=lambda msg: print(msg, flush=True))
        print(f"job {outcome.job_id}: {outcome.status}")
        failed += not outcome.ok
    return 1 if failed else 0
