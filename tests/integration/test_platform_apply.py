"""The platform applier (runtime/ops/platform, ``arbfleet platform apply``) for real: against the
local stack's OpenBao and Nomad, and a Consul agent of the test's own with ACLs on (the stack's
dev Consul has them off). A dry run changes nothing and names what an apply then creates; a
second apply finds everything as wanted, the shared workload-identity setup included (so the
applier's comparison holds against what the real APIs answer)."""

from __future__ import annotations

import contextlib
import re
import secrets
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hvac
import hvac.exceptions
import nomad
import pytest

from runtime.cli.main import main
from runtime.devstack import stack, toolchain
from runtime.ops import fleet as fleet_description
from runtime.ops.fleet import Fleet
from runtime.ops.platform.applier import Api, HttpApi, apply
from runtime.ops.platform.cli import layout_for, resources_for, trusted_keys
from runtime.platform.vault import deployment_policy
from tests.stack_plugin import wait_for

pytestmark = pytest.mark.stack
CONSUL_TOKEN = "platform-apply-test-management"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def acl_consul(tmp_path: Path) -> Iterator[str]:
    """A dev Consul with ACLs on (default deny), on free ports; its HTTP address."""
    http = free_port()
    config = tmp_path / "consul.hcl"
    config.write_text(
        f"ports {{\n  http = {http}\n  dns = -1\n  grpc = -1\n  grpc_tls = -1\n"
        f"  server = {free_port()}\n  serf_lan = {free_port()}\n  serf_wan = -1\n}}\n"
        'acl {\n  enabled = true\n  default_policy = "deny"\n'
        f'  tokens {{\n    initial_management = "{CONSUL_TOKEN}"\n  }}\n}}\n'
    )
    log = (tmp_path / "consul.log").open("wb")
    agent = subprocess.Popen(
        [str(toolchain.bin_dir() / "consul"), "agent", "-dev", "-bind=127.0.0.1",
         "-client=127.0.0.1", f"-config-file={config}"],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    address = f"http://127.0.0.1:{http}"
    api = HttpApi("consul", address, CONSUL_TOKEN)
    try:
        wait_for(lambda: _answers(api, "/v1/acl/token/self"), 60, "Consul with ACLs up")
        yield address
    finally:
        agent.terminate()
        agent.wait(timeout=30)
        log.close()


def _answers(api: Api, path: str) -> bool:
    try:
        return bool(api("GET", path))
    except Exception:
        return False


@dataclass(frozen=True)
class Target:
    fleet: Fleet
    env: str
    job: str
    apis: dict[str, HttpApi]


@pytest.fixture
def target(
    local_stack: stack.Endpoints, acl_consul: str, vault: hvac.Client, tmp_path: Path
) -> Iterator[Target]:
    """The repository's description plus an environment and a deployment of the test's own:
    Consul ACLs on, a namespace, a KV mount and policy and role names of its own."""
    tag = secrets.token_hex(3)
    env, job = f"t{tag}", f"cross-exchange-t{tag}"
    source = fleet_description.default().source
    text = source.read_text()
    for key in ("nomad_dir", "monitoring_dir"):
        text = re.sub(rf'^{key} = "(.*)"$', rf'{key} = "{source.parent}/\1"', text, flags=re.M)
    text += (
        f"\n[environments.{env}]\nconsul_acls = true\n"
        f'namespaces = {{ {env} = "platform apply test" }}\n'
        f'secrets = {{ kv_mount = "exchanges-{tag}", prefix = "{env}" }}\n'
        f'\n[[deployment]]\nenv = "{env}"\nstrategy = "cross_exchange"\nname = "t{tag}"\n'
        'mode = "live"\nvenues = ["binance"]\naccounts = { binance = "main" }\n'
        'engine_config = "log_level = \\"INFO\\"\\n"\n'
    )
    copy = tmp_path / "fleet.toml"
    copy.write_text(text)
    fleet = fleet_description.load(copy)
    apis = {
        "vault": HttpApi("vault", local_stack.vault, local_stack.vault_token()),
        "consul": HttpApi("consul", acl_consul, CONSUL_TOKEN),
        "nomad": HttpApi("nomad", local_stack.nomad),
    }
    yield Target(fleet, env, job, apis)
    layout = layout_for(fleet, env)
    with contextlib.suppress(hvac.exceptions.VaultError):
        for name in (layout.deployment_policy_name(job), layout.rotation_policy_name):
            vault.sys.delete_policy(name)
        for name in (layout.jwt_role_name(job), layout.jwt_role_name(layout.rotation_job)):
            vault.auth.jwt.delete_role(name, path=layout.jwt_auth_mount)
        vault.sys.disable_secrets_engine(layout.kv_mount)
    with contextlib.suppress(Exception):  # absent if the test failed before creating it
        nomad.Nomad(address=local_stack.nomad).namespace.delete_namespace(env)


def wanted(t: Target) -> list[Any]:
    jwt_keys, consul_keys = trusted_keys(None)
    return resources_for(t.fleet, t.env, jwt_keys=jwt_keys, consul_keys=consul_keys)


def test_dry_run_then_apply_then_nothing_to_change(
    target: Target, vault: hvac.Client, local_stack: stack.Endpoints
) -> None:
    layout = layout_for(target.fleet, target.env)
    policy = layout.deployment_policy_name(target.job)
    consul_role = f"arbfleet-engine-{target.job}"

    planned = {
        str(c.resource): c.action
        for c in apply(target.apis.__getitem__, wanted(target), dry_run=True)
    }
    assert planned[f"vault secrets engine {layout.kv_mount}"] == "create"
    assert planned[f"vault policy {policy}"] == "create"
    assert planned[f"vault jwt role {layout.jwt_role_name(target.job)}"] == "create"
    assert planned[f"consul acl role {consul_role}"] == "create"
    assert planned[f"nomad namespace {target.env}"] == "create"
    # The stack's own workload-identity setup is what the description asks already.
    assert planned[f"vault auth method {layout.jwt_auth_mount}"] == "ok"
    assert planned[f"vault jwt config {layout.jwt_auth_mount}"] == "ok"
    # ... and the dry run wrote nothing.
    with pytest.raises(hvac.exceptions.InvalidPath):
        vault.sys.read_policy(policy)

    applied = apply(target.apis.__getitem__, wanted(target))
    # What the dry run named is what changed (a new mount's config exists once the mount does:
    # planned as created, applied as updated).
    assert {str(c.resource) for c in applied if c.action != "ok"} == {
        r for r, action in planned.items() if action != "ok"
    }
    assert vault.sys.read_policy(policy)["data"]["rules"] == deployment_policy(layout, target.job)
    role = target.apis["consul"]("GET", f"/v1/acl/role/name/{consul_role}")
    assert [p["Name"] for p in role["Policies"]] == [consul_role]
    rules = target.apis["consul"]("GET", f"/v1/acl/policy/name/{consul_role}")["Rules"]
    assert '"arbfleet/locks/accounts/binance/main"' in rules

    again = apply(target.apis.__getitem__, wanted(target), dry_run=True)
    assert [str(c) for c in again if c.action != "ok"] == []


def test_the_command_reports_what_it_would_change(
    target: Target,
    local_stack: stack.Endpoints,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name, value in {
        "VAULT_ADDR": local_stack.vault,
        "VAULT_TOKEN": local_stack.vault_token(),
        "CONSUL_HTTP_ADDR": target.apis["consul"].address,
        "CONSUL_HTTP_TOKEN": CONSUL_TOKEN,
        "NOMAD_ADDR": local_stack.nomad,
    }.items():
        monkeypatch.setenv(name, value)
    argv = ["platform", "apply", "--fleet", str(target.fleet.source), "--env", target.env]
    assert main([*argv, "--dry-run"]) == 0
    dry = capsys.readouterr().out
    total = len(wanted(target))
    assert f"create nomad namespace {target.env}" in dry
    assert re.search(rf"{target.env}: would change \d+ of {total} platform resources", dry)
    assert main(argv) == 0
    capsys.readouterr()
    assert main([*argv, "--dry-run"]) == 0
    assert f"{target.env}: would change 0 of {total} platform resources" in capsys.readouterr().out
