"""Command-line entry points for the toolchain and the local stack."""

from __future__ import annotations

import argparse
import json

from runtime.core.errors import ArbfleetError, DeployError
from runtime.devstack import stack, toolchain


def add_toolchain(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "toolchain", help="the pinned OpenTofu, OpenBao, Nomad, Consul, Prometheus and providers"
    )
    parser.add_argument("action", choices=["install", "status", "env"])
    parser.set_defaults(handler=_toolchain)


FLEET_ACTIONS = ("fleet-up", "fleet-check", "fleet-down")


def add_dev(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "dev",
        help="the local Nomad/Consul/OpenBao/PostgreSQL/Redis, and the whole fleet on it",
        description="fleet-up deploys every job of infra/nomad with its local vars into "
        "--namespace (runtime/devstack/fleet.py); its engines trade on `arbfleet simulator`. "
        "fleet-check lists what is not healthy; fleet-down removes it all (data stays).",
    )
    parser.add_argument(
        "action",
        choices=["up", "down", "status", "env", "packages", "cluster", *FLEET_ACTIONS],
    )
    parser.add_argument(
        "cluster_action",
        nargs="?",
        choices=["up", "down", "status"],
        help="with `cluster`: the multi-node cluster in network namespaces "
        "(runtime/devstack/cluster.py, docs/cluster.md)",
    )
    parser.add_argument("--namespace", default="default", help="Nomad namespace of the fleet")
    parser.set_defaults(handler=_dev)


def _toolchain(args: argparse.Namespace) -> int:
    if args.action == "install":
        toolchain.install()
    elif args.action == "status":
        present, needed = toolchain.status(), toolchain.required()
        for name, ok in present.items():
            state = "present" if ok else "missing" if name in needed else "missing (download only)"
            print(f"{name:24} {state}")
        return 0 if all(present[name] for name in needed) else 1
    else:
        env = toolchain.tool_env({"PATH": "$PATH"})
        print(f'export PATH="{env["PATH"]}"')
        print(f'export TF_CLI_CONFIG_FILE="{env["TF_CLI_CONFIG_FILE"]}"')
    return 0


def _dev(args: argparse.Namespace) -> int:
    if args.action == "cluster":
        return _cluster(args.cluster_action)
    if args.action == "up":
        stack.up()
    elif args.action == "down":
        stack.down()
    elif args.action in FLEET_ACTIONS:
        return _fleet(args.action.removeprefix("fleet-"), args.namespace)
    elif args.action == "packages":
        stack.ensure_packages(print)
    elif args.action == "status":
        states = stack.status()
        print(json.dumps(states, indent=2))
        return 0 if all(s.endswith(", healthy)") for s in states.values()) else 3
    else:
        ep = stack.endpoints()
        for key, value in ep.env().items():
            print(f'export {key}="{value}"')
        print(f'export VAULT_TOKEN="$(cat {ep.vault_token_file})"')
    return 0


def _cluster(action: str | None) -> int:
    from runtime.devstack import cluster

    if action == "up":
        cluster.up()
    elif action == "down":
        cluster.down()
    elif action == "status":
        report = cluster.status()
        print(json.dumps(report, indent=2))
        return 0 if cluster.healthy(report) else 3
    else:
        raise ArbfleetError("arbfleet dev cluster up|down|status")
    return 0


def _fleet(action: str, namespace: str) -> int:
    from runtime.devstack import fleet

    if action == "up":
        data_dir = stack.state_dir() / "volumes" / namespace
        if (
            data_dir.exists()
            and fleet.read_secret(fleet.vault_client(), f"{namespace}/timescaledb/postgres") is None
        ):
            raise DeployError(
                f"{data_dir} holds a database whose password this Vault never had (the local "
                f"stack's Vault keeps nothing across restarts): remove the directory, or write "
                f"the password to secret/{namespace}/timescaledb/postgres"
            )
        workdir = stack.state_dir() / "fleet" / namespace
        workdir.mkdir(parents=True, exist_ok=True)
        up = fleet.up(namespace, fleet.local_units(workdir, data_dir))
        fleet.wait_healthy(namespace, timeout_s=300)
        print(f"fleet in {namespace}: healthy {up.elapsed_s:.1f} s after the first submission")
    elif action == "down":
        fleet.down(namespace)
    else:
        problems = fleet.problems(namespace)
        print("\n".join(problems) or f"fleet in {namespace}: healthy")
        return 3 if problems else 0
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="arbfleet")
    subparsers = parser.add_subparsers(required=True)
    add_toolchain(subparsers)
    add_dev(subparsers)
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args))
    except ArbfleetError as exc:
        parser.exit(2, f"arbfleet: {exc}\n")
