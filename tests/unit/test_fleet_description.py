"""The fleet description (fleet.toml, runtime/ops/fleet.py) and what is derived from it: the
engine jobs `arbfleet deploy` submits, the secrets-store policies and roles and the Consul ACLs
`arbfleet platform apply` applies. No service needed: everything here is derived in Python."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from runtime.ops import deploy
from runtime.ops import fleet as fleet_description
from runtime.ops.fleet import FleetError
from runtime.ops.platform import desired
from runtime.ops.platform.cli import layout_for, locks, resources_for
from runtime.platform.vault import deployment_policy

ENVIRONMENTS = "[environments.local]\n[environments.production]\nconsul_acls = true\n"
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
JWT_KEYS = {"jwks_url": "https://nomad.example:4646/.well-known/jwks.json"}
CONSUL_KEYS = {"JWKSURL": JWT_KEYS["jwks_url"]}


def toml_fleet(entries: list[dict[str, Any]], environments: str = ENVIRONMENTS) -> str:
    def value(v: Any) -> str:
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{k} = {json.dumps(x)}" for k, x in v.items()) + " }"
        return json.dumps(v)

    return environments + "".join(
        "[[deployment]]\n" + "".join(f"{k} = {value(v)}\n" for k, v in e.items()) for e in entries
    )


def names(resources: list[Any], service: str, kind: str) -> set[str]:
    return {r.name for r in resources if (r.service, r.kind) == (service, kind)}


# --- the description ----------------------------------------------------------------------------


def test_the_repositorys_fleet_loads_with_both_environments() -> None:
    fleet = fleet_description.default()
    assert {d.env for d in fleet.deployments()} == {"local", "production"}
    assert fleet.nomad_path.joinpath(deploy.ENGINE_SPEC).is_file()
    assert fleet.monitoring_path.is_dir()


def test_parse_names_jobs() -> None:
    fleet = fleet_description.parse(toml_fleet(TEST_FLEET))
    assert [d.job for d in fleet.deployments()] == [
        "cross-exchange-btc",
        "triangular-eth",
        "cross-exchange-shadow",
        "cross-exchange-paper",
    ]
    layout = layout_for(fleet, "production")
    assert layout.deployment_policy_name("triangular-eth") == "arbfleet-deployment-triangular-eth"
    # Paper without keys still has its own role: its PostgreSQL user comes from Vault.
    assert layout.jwt_role_name("cross-exchange-shadow") == "arbfleet-cross-exchange-shadow"
    assert layout.deployments["cross-exchange-shadow"] == {}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"env": "staging"}, "deployment[0].env: 'staging' is not one of local, production"),
        ({"strategy": "Cross"}, "deployment[0].strategy: 'Cross' must match"),
        ({"name": "a" * 16}, "deployment[0].name: "),
        ({"name": 7}, "deployment[0].name: Input should be a valid string"),
        ({"mode": "sim"}, "deployment[0].mode: Input should be 'paper' or 'live'"),
        ({"venues": []}, "deployment[0].venues: List should have at least 1 item"),
        ({"venues": ["binance", "binance"]}, "deployment[0].venues: lists a venue twice"),
        ({"accounts": {"kraken": "main"}}, "deployment[0].accounts.kraken: not one of"),
        ({"accounts": {"binance": "_management"}}, "deployment[0].accounts.binance: '_manage"),
        ({"accounts": {}}, "deployment[0].accounts: a live deployment needs"),
        ({"exchange_datacenter": ""}, "deployment[0].exchange_datacenter: String should have"),
        ({"venue": ["okx"]}, "deployment[0].venue: unknown field"),
        ({"mode": None}, "deployment[0].mode: missing"),
    ],
)
def test_bad_entry_names_the_field(change: dict[str, Any], message: str) -> None:
    entry = {k: v for k, v in {**ENTRY, **change}.items() if v is not None}
    with pytest.raises(FleetError, match="^" + re.escape("fleet: " + message)):
        fleet_description.parse(toml_fleet([entry]))


def test_bad_fleet_structure_names_the_key() -> None:
    with pytest.raises(FleetError, match=r"^fleet: deployment\[1\]\.name: job cross-exchange-btc"):
        fleet_description.parse(toml_fleet([ENTRY, ENTRY]))
    with pytest.raises(FleetError, match=r"^fleet: deployments: unknown field"):
        fleet_description.parse(ENVIRONMENTS + "[[deployments]]\nenv = 'local'\n")
    with pytest.raises(FleetError, match=r"^fleet: environments: missing"):
        fleet_description.parse(toml_fleet([ENTRY], environments=""))
    with pytest.raises(FleetError, match=r"^fleet: environments\.local\.secrets\.kv_mont: unknown"):
        fleet_description.parse("[environments.local]\nsecrets = { kv_mont = 'x' }\n")
    with pytest.raises(FleetError, match=r"^fleet: not TOML"):
        fleet_description.parse("[[deployment]\n")


def test_the_commands_refuse_a_bad_fleet_naming_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from runtime.cli.main import main

    fleet = tmp_path / "fleet.toml"
    fleet.write_text(toml_fleet([{**ENTRY, "mode": "yolo"}]))
    with pytest.raises(SystemExit) as exited:
        main(["platform", "apply", "--fleet", str(fleet), "--dry-run"])
    assert exited.value.code == 2
    assert f"arbfleet: {fleet}: deployment[0].mode: " in capsys.readouterr().err


# --- one edit: a new deployment reaches every place -------------------------------------------


NEW_DEPLOYMENT = """
[[deployment]]
env = "production"
strategy = "triangular"
name = "eth"
mode = "live"
venues = ["okx"]
accounts = { okx = "arb" }
engine_config = \"\"\"
[[strategies]]
plugin = "triangular"
id = "tri-eth"
\"\"\"
"""


def test_adding_a_deployment_is_one_edit_of_the_description(tmp_path: Path) -> None:
    """A copy of the repository's description with one entry appended: deploy, the secrets
    store's policy and role and Consul's ACL policy and role all include it, and nothing else
    had to change."""
    source = fleet_description.default().source
    copy = tmp_path / "fleet.toml"
    # Its paths are relative to it: the copy names the checkout's.
    text = source.read_text()
    for key in ("nomad_dir", "monitoring_dir"):
        text = re.sub(rf'^{key} = "(.*)"$', rf'{key} = "{source.parent}/\1"', text, flags=re.M)
    copy.write_text(text + NEW_DEPLOYMENT)
    fleet = fleet_description.load(copy)
    job = "triangular-eth"

    # deploy: the engine job, with the deployment's own values.
    u = deploy.unit(job, "production", fleet)
    assert u in deploy.units("production", fleet) and u.spec.name == deploy.ENGINE_SPEC
    assert (u.values["strategy"], u.values["deployment"], u.values["accounts"]) == (
        "triangular",
        "eth",
        {"okx": "arb"},
    )
    submitted = json.loads(deploy.variables(u))
    assert (submitted["strategy"], submitted["deployment"]) == ("triangular", "eth")
    assert submitted["driver"] == "docker"  # vars/production/engine.json came first
    # ... and the key rotation job rotates its account.
    rotation = deploy.unit(deploy.ROTATION_JOB, "production", fleet)
    assert {"venue": "okx", "account": "arb"} in rotation.values["accounts"]

    # The secrets store: its policy (its account only) and its JWT role.
    resources = resources_for(fleet, "production", jwt_keys=JWT_KEYS, consul_keys=CONSUL_KEYS)
    layout = layout_for(fleet, "production")
    assert layout.deployment_policy_name(job) in names(resources, "vault", "policy")
    assert layout.jwt_role_name(job) in names(resources, "vault", "jwt role")
    policy = deployment_policy(layout, job)
    assert 'path "exchanges/data/okx/arb"' in policy and "binance" not in policy

    # Consul: its ACL policy and role, and the binding rule selects its engine task.
    assert f"arbfleet-engine-{job}" in names(resources, "consul", "acl role")
    assert f"arbfleet-engine-{job}" in names(resources, "consul", "acl policy")
    rule = next(r for r in resources if r.kind == "binding rule").want(lambda *_: None)
    assert job in rule["rule"]["Selector"]


# --- what the applier is given -------------------------------------------------------------------


def test_every_jwt_role_is_bound_to_an_audience_and_never_root() -> None:
    """What checkov's CKV_ARBFLEET_4 held the Terraform roles to, now that the applier makes them."""
    fleet = fleet_description.parse(toml_fleet(TEST_FLEET))
    for env in ("local", "production"):
        roles = [r for r in resources_for(fleet, env, jwt_keys=JWT_KEYS) if r.kind == "jwt role"]
        assert roles
        for role in roles:
            body = role.want(lambda *_: None)
            assert body["bound_audiences"] == ["vault.io"], role
            assert "root" not in body["token_policies"], role


def test_consul_acls_only_where_the_environment_has_them() -> None:
    fleet = fleet_description.parse(toml_fleet(TEST_FLEET))
    local = resources_for(fleet, "local", jwt_keys=JWT_KEYS)
    production = resources_for(fleet, "production", jwt_keys=JWT_KEYS, consul_keys=CONSUL_KEYS)
    assert not [r for r in local if r.service == "consul"]
    assert names(production, "consul", "acl role") == {
        "arbfleet-engine-cross-exchange-btc",
        "arbfleet-engine-triangular-eth",
        "arbfleet-engine-cross-exchange-shadow",
    }


def test_a_paper_deployment_locks_the_simulator_accounts_of_its_config() -> None:
    paper = fleet_description.default().deployment_of("local", "cross-exchange-paper")
    assert paper is not None
    assert locks(paper) == {"binance": "paper", "upbit": "paper"}
    rules = json.loads(desired.engine_rules(locks(paper)))
    assert set(rules["key"]) == {
        "arbfleet/locks/accounts/binance/paper",
        "arbfleet/locks/accounts/upbit/paper",
    }
