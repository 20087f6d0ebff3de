"""The layout of secrets/ applied to the local stack's (real) Vault: mount, policies, roles."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import hvac
import hvac.exceptions
import nomad
import pytest
import requests

from runtime.cli.main import main
from runtime.core.errors import VaultUnavailableError
from runtime.core.venue import Credentials
from runtime.ops import fleet as fleet_description
from runtime.ops.platform.cli import apply_layout, layout_for
from runtime.platform.dbcreds import with_user
from runtime.platform.vault import (
    ExchangeKeys,
    Layout,
    VaultSession,
    deployment_policy,
)
from tests.integration.vault_kit import deployment, remove_layout, token_file, unique_layout
from tests.stack_plugin import vault_stanza, wait_for

pytestmark = pytest.mark.stack
pytest_plugins = ["tests.integration.vault_fixtures"]


@pytest.fixture
def layout(vault: hvac.Client) -> Iterator[Layout]:
    layout = unique_layout({"alpha": {"binance": "acct-a"}, "beta": {"binance": "acct-b"}})
    apply_layout(vault, layout)
    yield layout
    remove_layout(vault, layout)


def write_key(vault: hvac.Client, layout: Layout, account: str, secret: str) -> None:
    session = VaultSession(vault.url, token=vault.token)
    ExchangeKeys(session, layout.kv_mount).write(
        "binance", account, Credentials(f"key-{account}", secret), cas=0
    )


def test_applying_twice_leaves_the_configured_mount_and_policies(
    vault: hvac.Client, layout: Layout
) -> None:
    apply_layout(vault, layout)  # idempotent: a second run changes nothing and does not fail
    config = vault.secrets.kv.v2.read_configuration(mount_point=layout.kv_mount)["data"]
    assert config["max_versions"] == 10
    assert config["cas_required"] is True
    alpha = deployment(layout, "alpha")
    stored = vault.sys.read_policy(layout.deployment_policy_name(alpha))["data"]["rules"]
    assert stored == deployment_policy(layout, alpha)


def test_a_write_without_check_and_set_is_refused(vault: hvac.Client, layout: Layout) -> None:
    with pytest.raises(hvac.exceptions.InvalidRequest, match="check-and-set"):
        vault.secrets.kv.v2.create_or_update_secret(
            "binance/acct-a", secret={"api_key": "k"}, mount_point=layout.kv_mount
        )


def test_a_deployment_reads_its_own_key_and_vault_answers_403_for_another(
    vault: hvac.Client, layout: Layout, tmp_path: Path
) -> None:
    write_key(vault, layout, "acct-a", "alpha-secret-canary")
    write_key(vault, layout, "acct-b", "beta-secret-canary")
    alpha_policy = layout.deployment_policy_name(deployment(layout, "alpha"))
    token = token_file(vault, [alpha_policy], tmp_path, "alpha").read_text()
    mine = ExchangeKeys(VaultSession(vault.url, token=token), layout.kv_mount)
    assert mine.read("binance", "acct-a").credentials.secret == "alpha-secret-canary"
    assert mine.metadata("binance", "acct-a").current_version == 1
    with pytest.raises(VaultUnavailableError) as denied:
        mine.read("binance", "acct-b")
    assert denied.value.reason == "denied"
    answer = requests.get(
        f"{vault.url}/v1/{layout.kv_mount}/data/binance/acct-b",
        headers={"X-Vault-Token": token},
        timeout=5,
    )
    assert answer.status_code == 403
    assert "beta-secret-canary" not in answer.text
    writing = requests.post(
        f"{vault.url}/v1/{layout.kv_mount}/data/binance/acct-a",
        headers={"X-Vault-Token": token},
        json={"data": {"api_key": "x"}, "options": {"cas": 1}},
        timeout=5,
    )
    assert writing.status_code == 403


def test_the_rotation_policy_writes_versions_but_cannot_destroy_or_reconfigure(
    vault: hvac.Client, layout: Layout, tmp_path: Path
) -> None:
    write_key(vault, layout, "acct-a", "first-secret")
    token = token_file(vault, [layout.rotation_policy_name], tmp_path, "rotation").read_text()
    rotation = ExchangeKeys(VaultSession(vault.url, token=token), layout.kv_mount)
    assert rotation.write("binance", "acct-a", Credentials("k2", "second-secret"), cas=1) == 2
    rotation.record("binance", "acct-a", rotation_state="idle")
    assert rotation.metadata("binance", "acct-a").custom["rotation_state"] == "idle"
    client = hvac.Client(url=vault.url, token=token)
    kv = client.secrets.kv.v2
    with pytest.raises(hvac.exceptions.Forbidden):
        kv.destroy_secret_versions("binance/acct-a", versions=[1], mount_point=layout.kv_mount)
    with pytest.raises(hvac.exceptions.Forbidden):
        kv.delete_metadata_and_all_versions("binance/acct-a", mount_point=layout.kv_mount)
    with pytest.raises(hvac.exceptions.Forbidden):
        client.adapter.post(
            f"/v1/{layout.kv_mount}/metadata/binance/acct-a", json={"max_versions": 1}
        )
    with pytest.raises(hvac.exceptions.Forbidden):
        client.sys.tune_mount_configuration(layout.kv_mount, max_lease_ttl="1h")


def test_each_deployment_gets_a_jwt_role_bound_to_its_own_job(
    vault: hvac.Client, layout: Layout
) -> None:
    for name in layout.deployments:
        role = vault.auth.jwt.read_role(layout.jwt_role_name(name), path=layout.jwt_auth_mount)
        data = role["data"]
        assert data["bound_claims"] == {"nomad_job_id": name}
        assert data["bound_audiences"] == [layout.jwt_audience]
        assert data["token_policies"] == [layout.deployment_policy_name(name)]
    rotation = vault.auth.jwt.read_role(
        layout.jwt_role_name(layout.rotation_job), path=layout.jwt_auth_mount
    )["data"]
    assert rotation["bound_claims"] == {"nomad_job_id": "key-rotation"}
    assert rotation["token_policies"] == [layout.rotation_policy_name]


async def test_the_apply_command_sets_up_kv_policies_and_database_credentials(
    vault: hvac.Client, vault_database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tag = secrets.token_hex(4)
    # The fleet description with a deployment of its own, in an environment whose secrets store
    # has mounts of its own (the description names the layout's settings where they differ).
    fleet_file = tmp_path / "fleet.toml"
    text = fleet_description.load().source.read_text()
    for old, new in (
        ('name = "btc"', f'name = "cli-{tag}"'),
        (
            "[environments.production]\n",
            "[environments.production]\n"
            f'secrets = {{ kv_mount = "exchanges-{tag}", db_mount = "database-{tag}" }}\n',
        ),
    ):
        assert old in text
        text = text.replace(old, new)
    fleet_file.write_text(text)
    dsn_file = tmp_path / "admin.dsn"
    dsn_file.write_text(vault_database)
    monkeypatch.setenv("VAULT_ADDR", vault.url)
    monkeypatch.setenv("VAULT_TOKEN", vault.token)
    argv = ["secrets", "apply", "--fleet", str(fleet_file), "--env", "production",
            "--database-admin-dsn-file", str(dsn_file)]  # fmt: skip
    layout = layout_for(fleet_description.load(fleet_file), "production")
    try:
        assert await asyncio.to_thread(main, argv) == 0
        assert await asyncio.to_thread(main, argv) == 0  # and again: idempotent
        assert vault.sys.read_policy(layout.deployment_policy_name(f"cross-exchange-cli-{tag}"))
        lease = vault.secrets.database.generate_credentials(
            layout.db_role, mount_point=layout.db_mount
        )
        user = lease["data"]["username"]
        connection = await asyncpg.connect(
            with_user(vault_database, user, lease["data"]["password"])
        )
        assert await connection.fetchval("SELECT current_user") == "arbfleet_writer"
        await connection.close()
    finally:
        vault.sys.disable_secrets_engine(layout.db_mount)
        remove_layout(vault, layout)


KEY_READER_JOB = """
job "{job}" {{
  datacenters = ["*"]
  type        = "service"
  group "engine" {{
    task "engine" {{
      driver = "raw_exec"
      config {{
        command = "/bin/sleep"
        args    = ["3600"]
      }}
      vault {{
        {vault}
      }}
      template {{
        data          = <<-EOT
        {{{{ with secret "{mount}/data/binance/acct-a" -}}}}
        {{{{ .Data.data.api_key }}}} v{{{{ .Data.metadata.version }}}}
        {{{{- end }}}}
        EOT
        destination   = "local/binance/key"
        change_mode   = "signal"
        change_signal = "SIGHUP"
      }}
      resources {{
        memory = 32
      }}
    }}
  }}
}}
"""


def key_reader_job(layout: Layout, job: str) -> str:
    vault = vault_stanza(job, role=layout.jwt_role_name(job))
    return KEY_READER_JOB.format(job=job, vault=vault, mount=layout.kv_mount)


def test_a_nomad_job_reads_its_own_key_through_its_role(
    vault: hvac.Client, layout: Layout, nomad_api: nomad.Nomad
) -> None:
    """Nomad obtains the task's token for the job's role (workload identity on Nomad 1.7+, the
    role's policies through the legacy integration on 1.6), the template renders the key."""
    write_key(vault, layout, "acct-a", "alpha-secret-canary")
    job = deployment(layout, "alpha")
    spec = key_reader_job(layout, job)
    nomad_api.jobs.register_job({"Job": nomad_api.jobs.parse(spec)})
    try:
        alloc = wait_for(lambda: _running(nomad_api, job), what=f"{job} running")
        path = "engine/local/binance/key"  # secrets/ in production; the API cannot read it
        assert nomad_api.client.cat.read_file(alloc["ID"], path=path).strip() == "key-acct-a v1"
    finally:
        nomad_api.job.deregister_job(job, purge=True)


def _running(nomad_api: nomad.Nomad, job: str) -> dict[str, Any] | None:
    allocs = nomad_api.job.get_allocations(job)
    return next((a for a in allocs if a["ClientStatus"] == "running"), None)


def test_a_nomad_job_cannot_read_another_deployments_key(
    vault: hvac.Client, layout: Layout, nomad_api: nomad.Nomad
) -> None:
    write_key(vault, layout, "acct-a", "alpha-secret-canary")
    job = deployment(layout, "beta")  # beta's role, alpha's account
    spec = key_reader_job(layout, job)
    nomad_api.jobs.register_job({"Job": nomad_api.jobs.parse(spec)})
    try:
        events = wait_for(lambda: _template_problems(nomad_api, job), what=f"{job} refused")
        # consul-template reports a secret its token may not read as missing, and keeps the task
        # from starting: the key never reaches the other deployment's allocation.
        assert f"Missing: vault.read({layout.kv_mount}/data/binance/acct-a)" in events
        assert _running(nomad_api, job) is None
    finally:
        nomad_api.job.deregister_job(job, purge=True)


def _template_problems(nomad_api: nomad.Nomad, job: str) -> list[str]:
    messages = []
    for alloc in nomad_api.job.get_allocations(job):
        states = nomad_api.allocation.get_allocation(alloc["ID"]).get("TaskStates") or {}
        for state in states.values():
            messages += [e.get("DisplayMessage", "") for e in state.get("Events") or []]
    return [m for m in messages if "vault" in m.lower() or "permission denied" in m]
