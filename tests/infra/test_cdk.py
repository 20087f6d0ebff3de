"""infra/terraform/cdk: fleet parsing and validation (plain Python), the app's synthesized
Terraform JSON, and the toolchain's OpenTofu (``toolchain.terraform_program()``) on that output
where this machine has the providers.

Only hcloud and the built-in provider are available offline (docs/toolchain.md), so
`tofu validate` runs on the stacks needing nothing else (VALIDATED); the platform stacks
need vault, consul and nomad and are checked here by their JSON structure, and their engine jobs'
vars by a real apply through the provider-free nomad-job-vars module they feed.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from infra.terraform.cdk import app
from runtime.devstack import toolchain

OFFLINE_PROVIDERS = {"hetznercloud/hcloud", "terraform.io/builtin/terraform"}
VALIDATED = ["production-cluster"]
NOT_VALIDATED = ["local-platform", "production-platform"]  # vault, consul, nomad: download-only

ENTRY = {
    "env": "production",
    "strategy": "cross_exchange",
    "name": "btc",
    "mode": "live",
    "venues": ["binance", "upbit"],
    "accounts": {"binance": "main", "upbit": "main"},
    "engine_config": 'log_level = "INFO"\n',
}
# Three production deployments (two with keys, one paper) and one local, so "one per entry"
# and "a policy only with accounts" are both visible.
TEST_FLEET = [
    ENTRY,
    {
        **ENTRY,
        "strategy": "triangular",
        "name": "eth",
        "venues": ["okx"],
        "accounts": {"okx": "arb"},
    },
    {**ENTRY, "name": "shadow", "mode": "paper", "accounts": {}},
    {**ENTRY, "env": "local", "name": "paper", "mode": "paper", "accounts": {}},
]
# decode_tfvars is a function of the built-in provider (Terraform's and OpenTofu's), which a
# root must declare.
BUILTIN = {
    "terraform": {"required_providers": {"terraform": {"source": "terraform.io/builtin/terraform"}}}
}
PRODUCTION_JOBS = {"cross-exchange-btc", "triangular-eth", "cross-exchange-shadow"}
PLATFORM_JOBS = {p.name.removesuffix(".nomad.hcl") for p in app.NOMAD.glob("*.nomad.hcl")} - {
    "engine"
}


def toml_fleet(entries: list[dict[str, Any]]) -> str:
    def value(v: Any) -> str:
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{k} = {json.dumps(x)}" for k, x in v.items()) + " }"
        return json.dumps(v)

    return "".join(
        "[[deployment]]\n" + "".join(f"{k} = {value(v)}\n" for k, v in e.items()) for e in entries
    )


def terraform(cwd: Path, *args: str) -> str:
    program = toolchain.terraform_program()
    proc = subprocess.run(
        [program, *args, "-no-color"],
        cwd=cwd,
        env=toolchain.tool_env(),
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert proc.returncode == 0, f"{program} {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def run_app(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(app.HERE / "app.py"), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


# --- the fleet file ------------------------------------------------------------------------


def test_fleet_file_production_accounts_are_the_vault_layout() -> None:
    fleet = app.load_fleet(app.HERE / "fleet.toml")
    layout = tomllib.loads((app.REPO / "secrets" / "vault.toml").read_text())
    production = [d for d in fleet if d.env == "production"]
    jobs = {d.job for d in production}
    # vault.toml also holds the local stack's deployments, which the fleet file lists as local.
    assert app.vault_deployments(production) == {
        name: d for name, d in layout["deployments"].items() if name in jobs
    }
    assert set(layout["deployments"]) <= {d.job for d in fleet}
    assert {d.env for d in fleet} == {"local", "production"}


def test_parse_names_jobs_policies_and_roles() -> None:
    fleet = app.parse_fleet(toml_fleet(TEST_FLEET))
    assert [d.job for d in fleet] == [
        "cross-exchange-btc",
        "triangular-eth",
        "cross-exchange-shadow",
        "cross-exchange-paper",
    ]
    assert fleet[1].vault_policy == "arbfleet-deployment-triangular-eth"
    assert fleet[1].vault_role == "arbfleet-triangular-eth"
    # Paper without keys still has its own role: its PostgreSQL user comes from Vault.
    assert fleet[2].vault_role == "arbfleet-cross-exchange-shadow"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"env": "staging"}, "deployment[0].env: 'staging' is not one of local, production"),
        ({"strategy": "Cross"}, "deployment[0].strategy: 'Cross' must match"),
        ({"name": "a" * 16}, "deployment[0].name: "),
        ({"name": 7}, "deployment[0].name: must be a non-empty string"),
        ({"mode": "sim"}, "deployment[0].mode: 'sim' is not paper or live"),
        ({"venues": []}, "deployment[0].venues: must be a non-empty list"),
        ({"venues": ["binance", "binance"]}, "deployment[0].venues: lists a venue twice"),
        ({"accounts": {"kraken": "main"}}, "deployment[0].accounts.kraken: not one of"),
        ({"accounts": {"binance": "_management"}}, "deployment[0].accounts.binance: account"),
        ({"accounts": {}}, "deployment[0].accounts: a live deployment needs"),
        ({"engine_config": "x = '${oops}'"}, "deployment[0].engine_config: must not contain"),
        ({"engine_config": "a = 1\nEOT\n"}, "deployment[0].engine_config: a line 'EOT'"),
        ({"exchange_datacenter": ""}, "deployment[0].exchange_datacenter: must be a non-empty"),
        ({"venue": ["okx"]}, "deployment[0].venue: unknown field"),
        ({"mode": None}, "deployment[0].mode: missing"),
    ],
)
def test_bad_entry_names_the_field(change: dict[str, Any], message: str) -> None:
    entry = {k: v for k, v in {**ENTRY, **change}.items() if v is not None}
    with pytest.raises(app.FleetError, match="^" + re.escape("fleet: " + message)):
        app.parse_fleet(toml_fleet([entry]))


def test_bad_fleet_structure_names_the_key() -> None:
    with pytest.raises(
        app.FleetError, match=r"^fleet: deployment\[1\]\.name: job cross-exchange-btc twice"
    ):
        app.parse_fleet(toml_fleet([ENTRY, ENTRY]))
    with pytest.raises(app.FleetError, match=r"^fleet: deployments: unknown top-level key"):
        app.parse_fleet("[[deployments]]\nenv = 'local'\n")
    with pytest.raises(app.FleetError, match=r"^fleet: not TOML"):
        app.parse_fleet("[[deployment]\n")


def test_app_refuses_a_bad_fleet_naming_the_field(tmp_path: Path) -> None:
    fleet = tmp_path / "fleet.toml"
    fleet.write_text(toml_fleet([{**ENTRY, "mode": "yolo"}]))
    proc = run_app("--fleet", str(fleet), "--outdir", str(tmp_path / "out"))
    assert proc.returncode == 1
    assert f"error: {fleet}: deployment[0].mode: 'yolo'" in proc.stderr
    assert not (tmp_path / "out").exists()


# --- synthesis -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stacks_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("cdk")
    (tmp / "fleet.toml").write_text(toml_fleet(TEST_FLEET))
    proc = run_app("--fleet", str(tmp / "fleet.toml"), "--outdir", str(tmp / "out"))
    assert proc.returncode == 0, proc.stderr
    return tmp / "out" / "stacks"


@pytest.fixture(scope="module")
def synthesized(stacks_dir: Path) -> dict[str, dict[str, Any]]:
    return {p.parent.name: json.loads(p.read_text()) for p in stacks_dir.glob("*/cdk.tf.json")}


def engine_jobs(stack: dict[str, Any]) -> dict[str, Any]:
    jobs = stack["module"]["platform"]["jobs"]
    return {k: v for k, v in jobs.items() if k not in PLATFORM_JOBS}


def test_one_engine_deployment_per_fleet_entry(synthesized: dict[str, dict[str, Any]]) -> None:
    production = synthesized["production-platform"]["module"]["platform"]
    local = synthesized["local-platform"]["module"]["platform"]
    assert set(engine_jobs(synthesized["production-platform"])) == PRODUCTION_JOBS
    assert set(engine_jobs(synthesized["local-platform"])) == {"cross-exchange-paper"}
    # Every platform job goes along, in both environments.
    assert set(production["jobs"]) - PRODUCTION_JOBS == PLATFORM_JOBS
    assert set(local["jobs"]) - {"cross-exchange-paper"} == PLATFORM_JOBS
    # Vault policy + JWT role (the module names them arbfleet-deployment-<job>, arbfleet-<job>):
    # one per deployment, with exactly its accounts (none in paper: the database role only).
    assert production["deployments"] == {
        "cross-exchange-btc": {"accounts": {"binance": "main", "upbit": "main"}},
        "triangular-eth": {"accounts": {"okx": "arb"}},
        "cross-exchange-shadow": {"accounts": {}},
    }
    assert local["deployments"] == {"cross-exchange-paper": {"accounts": {}}}
    job = engine_jobs(synthesized["production-platform"])["triangular-eth"]
    assert job["jobspec"] == '${file("${local.repo}/infra/nomad/engine.nomad.hcl")}'
    assert job["var_files"][0] == '${file("${local.repo}/infra/nomad/vars/production/engine.hcl")}'
    assert re.search(
        r'^strategy +\= "triangular"\ndeployment +\= "eth"\n', job["var_files"][1], re.M
    )


def test_stacks_use_the_modules_in_place(
    stacks_dir: Path, synthesized: dict[str, dict[str, Any]]
) -> None:
    sources = {
        (name, module): block["source"]
        for name, stack in synthesized.items()
        for module, block in stack["module"].items()
    }
    assert all(s.startswith("../") for s in sources.values())  # a local path to Terraform
    assert {k: (stacks_dir / k[0] / s).resolve() for k, s in sources.items()} == {
        ("production-cluster", "cluster"): app.MODULES / "cluster",
        ("production-platform", "platform"): app.MODULES / "platform",
        ("local-platform", "platform"): app.MODULES / "platform",
    }
    for name, stack in synthesized.items():
        state = stacks_dir / name / stack["terraform"]["backend"]["local"]["path"]
        assert state.resolve() == stacks_dir.parent.parent / f"terraform.{name}.tfstate"
        repo = stack["locals"]["repo"].removeprefix('${abspath("${path.root}/')
        assert (stacks_dir / name / repo.removesuffix('")}')).resolve() == app.REPO


def test_validated_stacks_are_exactly_those_with_offline_providers(
    synthesized: dict[str, dict[str, Any]],
) -> None:
    offline = sorted(
        name
        for name, stack in synthesized.items()
        if {p["source"] for p in stack["terraform"]["required_providers"].values()}
        <= OFFLINE_PROVIDERS
    )
    assert offline == VALIDATED
    assert sorted(set(synthesized) - set(offline)) == NOT_VALIDATED


def test_every_stack_requires_terraform_or_opentofu_1_10(
    synthesized: dict[str, dict[str, Any]],
) -> None:
    assert {name: s["terraform"]["required_version"] for name, s in synthesized.items()} == {
        name: ">= 1.10" for name in VALIDATED + NOT_VALIDATED
    }


@pytest.mark.parametrize("stack", VALIDATED)
def test_terraform_validates(stacks_dir: Path, stack: str) -> None:
    workdir = stacks_dir / stack
    terraform(workdir, "init", "-input=false", "-backend=false")
    assert "The configuration is valid." in terraform(workdir, "validate")


def test_engine_vars_pass_through_the_platform_modules_job_vars(
    synthesized: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    """A real apply on the synthesized engine jobs of both platform stacks: their files load,
    the generated vars decode to the fleet's values, and every one is a variable the engine job
    spec declares (the platform module's provider-free nomad-job-vars, as it runs them)."""
    jobs = {
        f"{env}/{job}": spec
        for env in ("production", "local")
        for job, spec in engine_jobs(synthesized[f"{env}-platform"]).items()
    }
    root = {
        **BUILTIN,
        "locals": {"repo": str(app.REPO), "jobs": jobs},
        "module": {
            "job_vars": {
                "source": str(app.MODULES / "platform/modules/nomad-job-vars"),
                "for_each": "${local.jobs}",
                "jobspec": "${each.value.jobspec}",
                "var_files": "${each.value.var_files}",
            }
        },
        "output": {
            "declared": {"value": "${{ for k, m in module.job_vars : k => m.declared }}"},
            "decoded": {
                "value": "${{ for k, j in local.jobs : k => merge("
                "[for c in j.var_files : provider::terraform::decode_tfvars(c)]...) }}"
            },
        },
    }
    (tmp_path / "main.tf.json").write_text(json.dumps(root))
    terraform(tmp_path, "init", "-input=false")
    terraform(tmp_path, "apply", "-input=false", "-auto-approve")
    out = json.loads(terraform(tmp_path, "output", "-json"))
    decoded, declared = out["decoded"]["value"], out["declared"]["value"]
    assert set(decoded) == {f"production/{j}" for j in PRODUCTION_JOBS} | {
        "local/cross-exchange-paper"
    }
    eth = decoded["production/triangular-eth"]
    assert (eth["strategy"], eth["deployment"], eth["mode"]) == ("triangular", "eth", "live")
    assert (eth["venues"], eth["accounts"]) == (["okx"], {"okx": "arb"})
    assert eth["engine_config"] == 'log_level = "INFO"\n'
    assert eth["driver"] == "docker"  # vars/production/engine.hcl came first
    assert decoded["local/cross-exchange-paper"]["driver"] == "raw_exec"
    for name, values in decoded.items():
        assert set(values) <= set(declared[name]), name


def test_the_vars_files_of_infra_nomad_are_generated_from_the_fleet_file() -> None:
    """fleet.toml is the one description of the deployments: every engine vars file of
    infra/nomad is what `app.py --write-vars` writes from it, and nothing else is there."""
    fleet = app.load_fleet(app.HERE / "fleet.toml")
    assert {d.vars_path for d in fleet} == set((app.NOMAD / "vars").glob("*/engine/*.hcl"))
    for d in fleet:
        assert d.vars_path.read_text() == d.vars_hcl(), f"regenerate {d.vars_path}"
    assert {d.env for d in fleet} == {"local", "production"}
