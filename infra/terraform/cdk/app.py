"""The CDK app: reads the fleet file and composes the per-environment stacks.

Everything here is plain Python (fleet parsing and validation, naming, what each stack holds);
cdk.py, the only module importing cdktn, turns the `Stack` descriptions into Terraform JSON.

    python infra/terraform/cdk/app.py [--fleet FILE] [--outdir DIR]
    python infra/terraform/cdk/app.py --write-vars

writes DIR/stacks/<stack>/cdk.tf.json (default DIR: infra/terraform/cdk/cdktf.out); with
--write-vars, the engine deployments' vars files of infra/nomad/ (which `arbfleet deploy` and
`nomad job run -var-file` read): fleet.toml is the one description of the deployments.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
MODULES = REPO / "infra" / "terraform" / "modules"
NOMAD = REPO / "infra" / "nomad"
ENVS = ("local", "production")

# The engine job spec's own rules (infra/nomad/engine.nomad.hcl), checked here so a bad fleet
# fails at synth, naming the field, not at `nomad job run`.
STRATEGY_RE = re.compile(r"[a-z][a-z0-9_]{0,15}")
NAME_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,14}")
FIELDS = {
    "env",
    "strategy",
    "name",
    "mode",
    "venues",
    "accounts",
    "exchange_datacenter",
    "engine_config",
}


class FleetError(ValueError):
    """A fleet file that cannot be deployed; the message names the field."""


@dataclass(frozen=True)
class Deployment:
    env: str
    strategy: str
    name: str
    mode: str
    venues: tuple[str, ...]
    accounts: dict[str, str]
    engine_config: str
    exchange_datacenter: str | None = None

    @property
    def job(self) -> str:
        """The Nomad job id, as engine.nomad.hcl names it."""
        return f"{self.strategy.replace('_', '-')}-{self.name}"

    @property
    def vault_policy(self) -> str:
        """The deployment's own Vault policy (platform module): its database role, and its
        accounts' keys if it has any."""
        return f"arbfleet-deployment-{self.job}"

    @property
    def vault_role(self) -> str:
        """The JWT auth role the engine job logs in with (engine.nomad.hcl)."""
        return f"arbfleet-{self.job}"

    @property
    def vars_path(self) -> Path:
        return NOMAD / "vars" / self.env / "engine" / f"{self.job}.hcl"

    def vars_hcl(self) -> str:
        """The deployment's vars file, vars/<env>/engine/<job>.hcl, as `nomad fmt` lays it out:
        single-line values aligned, then accounts (a map) and the config (a heredoc)."""
        single: dict[str, Any] = {
            "strategy": self.strategy,
            "deployment": self.name,
            "mode": self.mode,
            "venues": list(self.venues),
        }
        if self.exchange_datacenter is not None:
            single["exchange_datacenter"] = self.exchange_datacenter
        blocks = [VARS_HEADER, _aligned(single)]
        if self.accounts:  # the job spec's default is none
            blocks.append(f"accounts = {{\n{_aligned(self.accounts, indent='  ')}}}\n")
        config = "".join(f"  {line}".rstrip() + "\n" for line in self.engine_config.splitlines())
        # parse_deployment refuses template sequences and a line EOT in the config.
        blocks.append(f"engine_config = <<-EOT\n{config}EOT\n")
        return "\n".join(blocks)


VARS_HEADER = (
    "# Generated from infra/terraform/cdk/fleet.toml by `python infra/terraform/cdk/app.py\n"
    "# --write-vars`: edit the deployment there, then regenerate.\n"
)


def _aligned(values: dict[str, Any], indent: str = "") -> str:
    width = max(map(len, values))
    return "".join(f"{indent}{k:<{width}} = {json.dumps(v)}\n" for k, v in values.items())


def _str(where: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise FleetError(f"{where}: must be a non-empty string")
    return value


def parse_deployment(where: str, entry: Any) -> Deployment:
    if not isinstance(entry, dict):
        raise FleetError(f"{where}: must be a table")
    unknown = sorted(set(entry) - FIELDS)
    if unknown:
        raise FleetError(
            f"{where}.{unknown[0]}: unknown field (known: {', '.join(sorted(FIELDS))})"
        )
    for key in ("env", "strategy", "name", "mode", "venues", "engine_config"):
        if key not in entry:
            raise FleetError(f"{where}.{key}: missing")
    env = _str(f"{where}.env", entry["env"])
    if env not in ENVS:
        raise FleetError(f"{where}.env: {env!r} is not one of {', '.join(ENVS)}")
    strategy = _str(f"{where}.strategy", entry["strategy"])
    if not STRATEGY_RE.fullmatch(strategy):
        raise FleetError(f"{where}.strategy: {strategy!r} must match {STRATEGY_RE.pattern}")
    name = _str(f"{where}.name", entry["name"])
    if not NAME_RE.fullmatch(name):
        raise FleetError(f"{where}.name: {name!r} must match {NAME_RE.pattern}")
    mode = _str(f"{where}.mode", entry["mode"])
    if mode not in ("paper", "live"):
        raise FleetError(f"{where}.mode: {mode!r} is not paper or live")
    venues = entry["venues"]
    if not isinstance(venues, list) or not venues:
        raise FleetError(f"{where}.venues: must be a non-empty list of venue names")
    for i, venue in enumerate(venues):
        _str(f"{where}.venues[{i}]", venue)
    if len(set(venues)) != len(venues):
        raise FleetError(f"{where}.venues: lists a venue twice")
    accounts = entry.get("accounts", {})
    if not isinstance(accounts, dict):
        raise FleetError(f"{where}.accounts: must be a table venue = account")
    for venue, account in accounts.items():
        _str(f"{where}.accounts.{venue}", account)
        if venue not in venues:
            raise FleetError(f"{where}.accounts.{venue}: not one of the deployment's venues")
        if account.startswith("_"):
            raise FleetError(f"{where}.accounts.{venue}: account names must not start with '_'")
    if mode == "live" and not accounts:
        raise FleetError(f"{where}.accounts: a live deployment needs an account per venue")
    config = _str(f"{where}.engine_config", entry["engine_config"])
    # The vars file passes through Terraform's JSON templates and then HCL: keep both literal.
    if "${" in config or "%{" in config:
        raise FleetError(f"{where}.engine_config: must not contain '${{' or '%{{'")
    if any(line.strip() == "EOT" for line in config.splitlines()):
        raise FleetError(f"{where}.engine_config: a line 'EOT' would end the vars file's heredoc")
    datacenter = entry.get("exchange_datacenter")
    if datacenter is not None:
        _str(f"{where}.exchange_datacenter", datacenter)
    return Deployment(env, strategy, name, mode, tuple(venues), dict(accounts), config, datacenter)


def parse_fleet(text: str, source: str = "fleet") -> list[Deployment]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise FleetError(f"{source}: not TOML: {exc}") from None
    unknown = sorted(set(data) - {"deployment"})
    if unknown:
        raise FleetError(f"{source}: {unknown[0]}: unknown top-level key (only [[deployment]])")
    entries = data.get("deployment", [])
    if not isinstance(entries, list):
        raise FleetError(f"{source}: deployment: must be an array of tables [[deployment]]")
    fleet = [parse_deployment(f"{source}: deployment[{i}]", e) for i, e in enumerate(entries)]
    seen: set[tuple[str, str]] = set()
    for i, d in enumerate(fleet):
        if (d.env, d.job) in seen:
            raise FleetError(f"{source}: deployment[{i}].name: job {d.job} twice in {d.env}")
        seen.add((d.env, d.job))
    return fleet


def load_fleet(path: Path) -> list[Deployment]:
    return parse_fleet(path.read_text(), str(path))


# --- stacks --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Module:
    source: Path  # a local module directory; cdk.py makes it relative to the stack's output
    inputs: dict[str, Any]


# The CLIs the roots are tested with and written for: Terraform 1.10+ and OpenTofu 1.10+.
REQUIRED_VERSION = ">= 1.10"


@dataclass(frozen=True)
class Stack:
    """What one Terraform root holds, in Terraform JSON values: `${...}` strings are expressions
    and `${local.repo}` is the repository, as seen from the stack's output directory."""

    name: str
    required_providers: dict[str, dict[str, str]]
    providers: dict[str, dict[str, Any]]
    variables: dict[str, dict[str, Any]]
    modules: dict[str, Module]
    outputs: dict[str, str]
    locals: dict[str, str] = field(default_factory=dict)
    required_version: str = REQUIRED_VERSION


PINS = {
    "hcloud": {"source": "hetznercloud/hcloud", "version": "1.57.0"},
    "vault": {"source": "hashicorp/vault", "version": "5.0.0"},
    "consul": {"source": "hashicorp/consul", "version": "2.21.0"},
    "nomad": {"source": "hashicorp/nomad", "version": "2.5.2"},
    # Built into Terraform and OpenTofu: encode_tfvars for the values runtime/ops/deploy.py
    # generates.
    "terraform": {"source": "terraform.io/builtin/terraform"},
}
TLS_TYPE = "object({ca_pem = string, server_cert_pem = string, client_cert_pem = string})"


def repo_file(relpath: str) -> str:
    return f'${{file("${{local.repo}}/{relpath}")}}'


def platform_jobs(env: str, deployments: list[Deployment]) -> dict[str, dict[str, Any]]:
    """Every platform job of infra/nomad, and one engine job per deployment of `env`."""
    jobs = {
        spec.name.removesuffix(".nomad.hcl"): {
            "jobspec": repo_file(f"infra/nomad/{spec.name}"),
            "var_files": [
                repo_file(f"infra/nomad/vars/{env}/{spec.name.removesuffix('.nomad.hcl')}.hcl")
            ],
        }
        for spec in sorted(NOMAD.glob("*.nomad.hcl"))
        if spec.name != "engine.nomad.hcl"
    }
    for d in deployments:
        jobs[d.job] = {
            "jobspec": repo_file("infra/nomad/engine.nomad.hcl"),
            "var_files": [repo_file(f"infra/nomad/vars/{env}/engine.hcl"), d.vars_hcl()],
        }
    return jobs


def generated_vars(**machine: str) -> str:
    """What runtime/ops/deploy.py fills in: repository files (+ this machine's paths, locally)."""

    def file(path: str) -> str:
        return f'file("${{local.repo}}/monitoring/{path}")'

    def files(directory: str, pattern: str) -> str:
        found = f'fileset("${{local.repo}}/monitoring/{directory}", "{pattern}")'
        return f"{{ for f in {found} : f => {file(directory + '/${f}')} }}"

    values = {
        **machine,
        "prometheus_config": file("prometheus/prometheus.yml"),
        "prometheus_rules": files("prometheus/rules", "*.yml"),
        "alertmanager_config": file("alertmanager/alertmanager.yml"),
        "grafana_datasources": file("grafana/provisioning/datasources/arbfleet.yml"),
        "grafana_dashboard_providers": file("grafana/provisioning/dashboards/arbfleet.yml"),
        "grafana_dashboards": files("grafana/dashboards", "*.json"),
    }
    items = ", ".join(f"{k} = {v}" for k, v in values.items())
    return f"${{provider::terraform::encode_tfvars({{ {items} }})}}"


def vault_deployments(deployments: list[Deployment]) -> dict[str, dict[str, Any]]:
    """The platform module's `deployments`: a policy and JWT role per deployment."""
    return {d.job: {"accounts": d.accounts} for d in deployments}


def production_cluster() -> Stack:
    """envs/production/cluster, as a stack."""
    return Stack(
        name="production-cluster",
        required_providers={"hcloud": PINS["hcloud"]},
        providers={"hcloud": {"token": "${var.hcloud_token}"}},
        variables={
            "hcloud_token": {"type": "string", "sensitive": True},
            "admin_cidrs": {"type": "list(string)"},
            "ssh_keys": {"type": "list(string)"},
            "tls": {"type": TLS_TYPE, "sensitive": True},
        },
        modules={
            "cluster": Module(
                MODULES / "cluster",
                {
                    "name": "arbfleet-prod",
                    "ssh_allowed_cidrs": "${var.admin_cidrs}",
                    "api_allowed_cidrs": "${var.admin_cidrs}",
                    "ssh_keys": "${var.ssh_keys}",
                    "servers": {"count": 3, "location": "fsn1", "datacenter": "fsn1"},
                    "client_groups": {
                        "data": {
                            "count": 2,
                            "location": "fsn1",
                            "datacenter": "fsn1",
                            "server_type": "cpx31",
                            "volume_size": 100,
                        },
                        "engine": {
                            "count": 2,
                            "location": "fsn1",
                            "datacenter": "fsn1",
                            "server_type": "cpx21",
                        },
                    },
                    "tls": "${var.tls}",
                },
            )
        },
        outputs={
            "nodes": "${module.cluster.nodes}",
            "nomad_addr": "${module.cluster.nomad_addr}",
            "vault_addr": "${module.cluster.vault_addr}",
        },
    )


def production_platform(fleet: list[Deployment]) -> Stack:
    """envs/production/platform, with the fleet's production deployments."""
    deployments = [d for d in fleet if d.env == "production"]
    return Stack(
        name="production-platform",
        required_providers={p: PINS[p] for p in ("terraform", "vault", "consul", "nomad")},
        providers={
            "vault": {"address": "${var.vault_addr}", "ca_cert_file": "${var.ca_file}"},
            "consul": {
                "address": "${var.consul_addr}",
                "scheme": "https",
                "ca_file": "${var.ca_file}",
            },
            "nomad": {"address": "${var.nomad_addr}", "ca_file": "${var.ca_file}"},
        },
        variables={
            "nomad_addr": {"type": "string"},
            "vault_addr": {"type": "string"},
            "consul_addr": {"type": "string"},
            "ca_file": {"type": "string"},
            "database_connection_url": {"type": "string"},
            "database_password": {"type": "string", "sensitive": True},
        },
        modules={
            "platform": Module(
                MODULES / "platform",
                {
                    "secrets_dir": "${local.repo}/secrets",
                    "jwt": {
                        "jwks_url": "${var.nomad_addr}/.well-known/jwks.json",
                        "jwks_ca_pem": "${file(var.ca_file)}",
                    },
                    "deployments": vault_deployments(deployments),
                    "database": {"connection_url": "${var.database_connection_url}"},
                    "database_password": "${var.database_password}",
                    "jobs": platform_jobs("production", deployments),
                    "generated_vars": generated_vars(),
                },
            )
        },
        outputs={
            "vault_jwt_roles": "${module.platform.vault_jwt_roles}",
            "nomad_jobs": "${module.platform.nomad_jobs}",
        },
    )


def local_platform(fleet: list[Deployment]) -> Stack:
    """envs/local, with the fleet's local deployments (the local stack's dev agents)."""
    deployments = [d for d in fleet if d.env == "local"]
    return Stack(
        name="local-platform",
        locals={"nomad_addr": "http://127.0.0.1:${4646 + var.ports_offset}"},
        required_providers={p: PINS[p] for p in ("terraform", "vault", "consul", "nomad")},
        providers={
            "vault": {
                "address": "http://127.0.0.1:${8200 + var.ports_offset}",
                "token": '${trimspace(file("${var.stack_dir}/secrets/vault-root-token"))}',
            },
            "consul": {"address": "127.0.0.1:${8500 + var.ports_offset}", "scheme": "http"},
            "nomad": {"address": "${local.nomad_addr}"},
        },
        variables={
            "stack_dir": {"type": "string"},
            "venv": {"type": "string"},
            "toolchain_bin": {"type": "string"},
            "ports_offset": {"type": "number", "default": 0},
        },
        modules={
            "platform": Module(
                MODULES / "platform",
                {
                    "secrets_dir": "${local.repo}/secrets",
                    "jwt": {"jwks_url": "${local.nomad_addr}/.well-known/jwks.json"},
                    # Dev agents, as envs/local: `arbfleet secrets apply` makes the rest.
                    "create_workload_secret_mount": False,
                    "consul_acls": False,
                    "nomad_acls": False,
                    "deployments": vault_deployments(deployments),
                    "jobs": platform_jobs("local", deployments),
                    "generated_vars": generated_vars(
                        host_volume_path='"${var.stack_dir}/volumes"',
                        toolchain_bin="var.toolchain_bin",
                        venv="var.venv",
                    ),
                },
            )
        },
        outputs={
            "vault_jwt_roles": "${module.platform.vault_jwt_roles}",
            "nomad_jobs": "${module.platform.nomad_jobs}",
        },
    )


def stacks(fleet: list[Deployment]) -> list[Stack]:
    return [production_cluster(), production_platform(fleet), local_platform(fleet)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fleet", type=Path, default=HERE / "fleet.toml")
    parser.add_argument("--outdir", type=Path, default=HERE / "cdktf.out")
    parser.add_argument(
        "--write-vars",
        action="store_true",
        help="write each deployment's infra/nomad/vars/<env>/engine/<job>.hcl instead",
    )
    args = parser.parse_args(argv)
    try:
        fleet = load_fleet(args.fleet)
    except FleetError as exc:
        sys.exit(f"error: {exc}")
    if args.write_vars:
        for d in fleet:
            d.vars_path.write_text(d.vars_hcl())
            print(f"wrote {os.path.relpath(d.vars_path)}")
        return
    from infra.terraform.cdk import cdk  # cdktn starts node: only to synth

    cdk.synth(stacks(fleet), args.outdir.resolve(), REPO)
    print(f"synthesized {len(fleet)} deployments into {os.path.relpath(args.outdir)}/stacks/")


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main()
