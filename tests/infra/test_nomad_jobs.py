"""The Nomad job specs of infra/nomad/: formatted, valid with every vars file, placeable on the
local stack, aligned with monitoring/, and the platform jobs really running there.

Checks use the pinned ``nomad`` CLI (what CI in the nomad-pack registry runs); rendering and
planning go through ``runtime.ops.deploy``, the path ``arbfleet deploy`` takes. The real runs happen in
a namespace of their own, with data under a directory of their own in the host volume, so they
never touch jobs or data of someone else using the shared stack.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import subprocess
import tempfile
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncpg
import hcl2
import nomad
import pytest
import redis
import requests
import yaml

import runtime
from runtime.config import load_config
from runtime.devstack import stack, toolchain
from runtime.ops import deploy
from runtime.ops import fleet as fleet_description
from runtime.ops.platform.cli import layout_for
from tests.infra.nomad_runs import (
    LEGACY_NOMAD_VARS,
    cli_var_files,
    for_this_nomad,
    run_job,
    service_address,
)
from tests.stack_plugin import Consul, wait_for

if TYPE_CHECKING:
    from tests.infra.nomad_fixtures import KvWrite, Nomad

pytestmark = pytest.mark.stack
# nomad_cli, namespace, data_dir, job_secrets
pytest_plugins = ["tests.infra.nomad_fixtures"]

ALL_UNITS = [for_this_nomad(u) for env in deploy.environments() for u in deploy.units(env)]
LOCAL_UNITS = deploy.units(deploy.LOCAL_ENV)
ENGINE_UNITS = [u for u in ALL_UNITS if u.spec.name == "engine.nomad.hcl"]
FLEET = fleet_description.default()
NOMAD_DIR = FLEET.nomad_path
HCL_FILES = sorted(NOMAD_DIR.rglob("*.hcl"))
JOBS = sorted(p.name.removesuffix(".nomad.hcl") for p in NOMAD_DIR.glob("*.nomad.hcl"))
ENGINE_IMAGE = "ghcr.io/arbfleet/arbfleet"


def unit_id(u: deploy.Unit) -> str:
    return f"{u.env}-{u.name}"


# --- static checks -------------------------------------------------------------------------


@pytest.mark.parametrize("path", HCL_FILES, ids=lambda p: str(p.relative_to(NOMAD_DIR)))
def test_formatted(nomad_cli: Nomad, path: Path) -> None:
    proc = nomad_cli("fmt", "-check", str(path), check=False)
    assert proc.returncode == 0, f"{path} is not formatted (run `nomad fmt {path}`):\n{proc.stdout}"


def test_every_job_has_vars_files_in_every_environment() -> None:
    for env in deploy.environments():
        for u in deploy.units(env):
            assert all(path.is_file() for path in u.var_files), f"{env}: {u.var_files}"
        covered = {u.spec.name for u in deploy.units(env)}
        assert covered == {f"{job}.nomad.hcl" for job in JOBS}, f"{env} lacks vars for some job"


@pytest.mark.parametrize("u", ALL_UNITS, ids=unit_id)
def test_validates(nomad_cli: Nomad, u: deploy.Unit, tmp_path: Path) -> None:
    # -hcl2-strict (the default): a vars file setting a variable the job lacks is an error.
    proc = nomad_cli("job", "validate", *cli_var_files(u, tmp_path), str(u.spec))
    assert "Job validation successful" in proc.stdout


def current_nomad_schema() -> dict[str, set[str]]:
    """HCL block type -> the attributes current Nomad accepts there: the ``hcl`` tags of its api
    module's structs (Nomad parses job specs into them), at the version infra/toolchain.toml pins."""
    manifest = tomllib.loads(toolchain.MANIFEST.read_text())
    info = subprocess.run(
        ["go", "mod", "download", "-json", manifest["schemas"]["nomad_api"]],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_dir(),
    )
    source = "".join(
        p.read_text() for p in sorted(Path(json.loads(info.stdout)["Dir"]).glob("*.go"))
    )
    schema = {}
    for block, struct in SCHEMA_STRUCTS.items():
        body = re.search(rf"^type {struct} struct \{{\n(.*?)^\}}", source, re.M | re.S)
        assert body, f"no struct {struct} in the nomad api module"
        schema[block] = set(re.findall(r'hcl:"(\w+)(?:,optional)?"', body.group(1)))
    return schema


def tmp_dir() -> str:
    return tempfile.gettempdir()  # outside any Go module: `go mod download` takes a module path


# The blocks whose attributes differ between Nomad generations, and their structs in nomad/api.
SCHEMA_STRUCTS = {
    "vault": "Vault",
    "identity": "WorkloadIdentity",
    "periodic": "PeriodicConfig",
    "update": "UpdateStrategy",
    "template": "Template",
    "check_restart": "CheckRestart",
    "ephemeral_disk": "EphemeralDisk",
    "restart": "RestartPolicy",
}


def blocks_of(node: Any, kind: str) -> Iterator[dict[str, Any]]:
    """The bodies of every ``kind`` block in a python-hcl2 tree, static or a dynamic's content."""
    if isinstance(node, list):
        for item in node:
            yield from blocks_of(item, kind)
    elif isinstance(node, dict):
        for key, value in node.items():
            if key == kind:
                yield from (body for body in value if isinstance(body, dict))
            elif key == "dynamic":
                for label, body in (pair for d in value for pair in d.items()):
                    if label.strip('"') == kind:
                        yield from body["content"]
            yield from blocks_of(value, kind)


def attributes(body: dict[str, Any]) -> set[str]:
    """The attribute names of a block body (not its nested blocks, nor python-hcl2's own keys)."""
    return {
        name
        for name, value in body.items()
        if not name.startswith("__")
        and not (isinstance(value, list) and value and isinstance(value[0], dict))
    }


@pytest.mark.parametrize("job", JOBS)
def test_specs_follow_current_nomads_schema(job: str) -> None:
    """What production parses with current Nomad, which the stack's 1.6.1 cannot check: every
    attribute of these blocks, dynamic ones included, is one current Nomad knows."""
    schema = current_nomad_schema()
    tree = hcl2.loads((NOMAD_DIR / f"{job}.nomad.hcl").read_text())
    for kind, known in schema.items():
        for body in blocks_of(tree["job"], kind):
            unknown = attributes(body) - known
            assert not unknown, f"{job}: current Nomad has no {sorted(unknown)} in a {kind} block"


@pytest.mark.parametrize("job", JOBS)
def test_every_variable_is_typed_and_described(job: str) -> None:
    spec = NOMAD_DIR / f"{job}.nomad.hcl"
    blocks = re.findall(r'^variable "([^"]+)" \{\n(.*?)^\}', spec.read_text(), re.M | re.S)
    assert {name for name, _ in blocks} == deploy.declared_variables(spec)
    for name, body in blocks:
        assert re.search(r"^  type\s+=", body, re.M), f"{job}: {name} has no type"
        assert re.search(r'^  description\s+= ".{10,}"', body, re.M), f"{job}: {name} undescribed"


@pytest.mark.parametrize("u", LOCAL_UNITS, ids=unit_id)
def test_places_on_the_local_stack(nomad_api: nomad.Nomad, u: deploy.Unit) -> None:
    job = deploy.render(nomad_api, u)
    result = deploy.plan(nomad_api, job)
    assert not result.get("FailedTGAllocs"), deploy.placement_failures(result["FailedTGAllocs"])
    drivers = {t["Driver"] for g in job["TaskGroups"] for t in g["Tasks"]}
    assert drivers <= {"raw_exec"} or job["ID"] == "grafana", f"{job['ID']}: {drivers} locally"
    for task in (t for g in job["TaskGroups"] for t in g["Tasks"] if t["Driver"] == "raw_exec"):
        # The docker-only attributes of the task's one config block are null here, and gone.
        assert not {"image", "network_mode"} & set(task["Config"]), f"{job['ID']}/{task['Name']}"


@pytest.mark.parametrize("u", [u for u in ALL_UNITS if u.env != deploy.LOCAL_ENV], ids=unit_id)
def test_production_uses_docker_images(nomad_api: nomad.Nomad, u: deploy.Unit) -> None:
    job = deploy.render(nomad_api, u)
    for group in job["TaskGroups"]:
        for task in group["Tasks"]:
            assert task["Driver"] == "docker", f"{job['ID']}/{task['Name']}"
            image = task["Config"]["image"]
            assert re.fullmatch(r"[\w./-]+:[\w.-]+", image), f"{image} has no pinned tag"
            # Nomad appends a docker task's `command` to the image's ENTRYPOINT (arbfleet,
            # /bin/prometheus...) instead of replacing it: the specs give args only.
            assert "command" not in task["Config"], f"{job['ID']}/{task['Name']}: args only"
            if image.startswith(f"{ENGINE_IMAGE}:"):  # infra/images/engine, built from the wheel
                assert image == f"{ENGINE_IMAGE}:{runtime.__version__}", f"{job['ID']}: {image}"


def test_file_variables_survive_the_templates() -> None:
    # The files are rendered with the delimiters <% %>: content containing them would be mangled.
    for pattern in deploy.FILE_VARIABLES.values():
        paths = list(FLEET.monitoring_path.glob(pattern))
        assert paths, f"no file matches {pattern}"
        for path in paths:
            text = path.read_text()
            assert "<%" not in text and "%>" not in text, f"{path} contains a template delimiter"


def test_json_variables_round_trip_through_nomad(nomad_api: nomad.Nomad, tmp_path: Path) -> None:
    tricky = 'a "quote" \\ back\nline\ttab ${X} $${Y} %{ if } %%{ z } {{ .Labels }} é\x01'
    spec = tmp_path / "echo.nomad.hcl"
    spec.write_text(
        'variable "text" {\n  type = string\n}\njob "echo" {\n  meta {\n'
        '    text = var.text\n  }\n  group "g" {\n    task "t" {\n'
        '      driver = "raw_exec"\n      config {\n        command = "/bin/true"\n'
        "      }\n    }\n  }\n}\n"
    )
    (tmp_path / "vars.json").write_text(json.dumps({"//": "a comment", "text": tricky}))
    u = deploy.Unit("echo", "test", spec, (tmp_path / "vars.json",))
    assert deploy.render(nomad_api, u)["Meta"]["text"] == tricky


# --- alignment with monitoring/ and the engine -----------------------------------------------


def engine_service(job: dict[str, Any]) -> dict[str, Any]:
    (service,) = [s for g in job["TaskGroups"] for t in g["Tasks"] for s in t["Services"] or []]
    return service


@pytest.mark.parametrize("u", ENGINE_UNITS, ids=unit_id)
def test_engine_service_carries_what_prometheus_relabels(
    nomad_api: nomad.Nomad, u: deploy.Unit
) -> None:
    config = yaml.safe_load((FLEET.monitoring_path / "prometheus/prometheus.yml").read_text())
    (engine_job,) = [j for j in config["scrape_configs"] if j["job_name"] == "arbfleet-engine"]
    labels = [label for r in engine_job["relabel_configs"] for label in r.get("source_labels", [])]
    relabelled = {
        m[1] for m in map(re.compile(r"__meta_consul_service_metadata_(\w+)").match, labels) if m
    }
    assert relabelled == {"deployment", "strategy", "mode", "venues"}
    job = deploy.render(nomad_api, u)
    service = engine_service(job)
    assert [sd["services"] for sd in engine_job["consul_sd_configs"]] == [[service["Name"]]]
    assert relabelled <= set(service["Meta"])
    assert service["Meta"]["deployment"] == job["ID"] == u.name
    check = service["Checks"][0]
    assert (check["Type"], check["Path"]) == ("http", "/health")
    assert check["CheckRestart"]["Limit"] > 0


@pytest.mark.parametrize("u", ENGINE_UNITS, ids=unit_id)
def test_engine_update_is_a_reverting_canary(nomad_api: nomad.Nomad, u: deploy.Unit) -> None:
    (group,) = deploy.render(nomad_api, u)["TaskGroups"]
    update = group["Update"]
    assert (update["Canary"], update["AutoPromote"], update["AutoRevert"]) == (1, True, True)
    task = group["Tasks"][0]
    assert task["Resources"]["MemoryMaxMB"] > task["Resources"]["MemoryMB"]
    assert task["KillTimeout"] >= 10 * 10**9


# What Nomad fills in at run time, for checking the engine's environment without running it.
NOMAD_RUNTIME = {
    "${NOMAD_IP_http}": "127.0.0.1",
    "${NOMAD_PORT_http}": "25000",
    "${NOMAD_SECRETS_DIR}": "/secrets",
    "${NOMAD_ALLOC_DIR}": "/alloc",
    "${NOMAD_NAMESPACE}": "default",
}


def task_env(task: dict[str, Any]) -> dict[str, str]:
    env = {}
    for name, value in task["Env"].items():
        for placeholder, runtime_value in NOMAD_RUNTIME.items():
            value = value.replace(placeholder, runtime_value)
        env[name] = value
    return env


@pytest.mark.parametrize("u", ENGINE_UNITS, ids=unit_id)
def test_engine_config_and_environment_load(
    nomad_api: nomad.Nomad, u: deploy.Unit, tmp_path: Path
) -> None:
    job = deploy.render(nomad_api, u)
    task = job["TaskGroups"][0]["Tasks"][0]
    templates = {t["DestPath"]: t for t in task["Templates"]}
    config_file = tmp_path / "arbfleet.toml"
    config_file.write_text(templates["local/arbfleet.toml"]["EmbeddedTmpl"])
    # The config as the engine will load it: the rendered file, overridden by the task's
    # environment (a live deployment validates only if Vault supplies every venue's keys).
    config = load_config(config_file, env=task_env(task))
    meta = engine_service(job)["Meta"]
    assert config.mode == meta["mode"]
    assert meta["strategy"] in {entry.plugin for entry in config.strategies}
    assert set(config.venues) == set(meta["venues"].split(","))
    assert (config.health.host, config.health.port) == ("127.0.0.1", 25000)
    assert config.redis.deployment == job["ID"]
    assert config.redis.environment == "default"  # the namespace
    # The stores come from Consul (local/stores.env); users from Vault's database engine.
    stores = templates["local/stores.env"]
    assert stores["Envvars"] and stores["ChangeMode"] == "restart"
    assert 'printf "%s.timescaledb|any" (env "NOMAD_NAMESPACE")' in stores["EmbeddedTmpl"]
    assert config.vault.database_mount == "database" and config.postgres.migrate_on_start
    assert config.postgres.owner_role == "arbfleet_writer"
    assert task["KillTimeout"] == (config.shutdown.deadline_s + 10) * 10**9
    # One key file pair per account, re-rendered with SIGHUP; the job's own Vault role.
    accounts = config.vault.accounts
    keys = {p for p in templates if p.startswith("secrets/") and p != "secrets/consul_token"}
    assert keys == {f"secrets/{v}/{f}" for v in accounts for f in ("api_key", "api_secret")}
    # Consul ACLs on a Nomad without workload identity: the Consul token from the secrets store.
    if "ARBFLEET_CONSUL__TOKEN_FILE" in task["Env"] and task["Vault"].get("Policies"):
        consul = templates["secrets/consul_token"]
        assert f"/{job['ID']}/consul" in consul["EmbeddedTmpl"]
        assert consul["ChangeMode"] == "restart" and consul["Perms"] == "0600"
    assert {templates[k]["ChangeSignal"] for k in keys} <= {"SIGHUP"}
    # The job's own role, or on a Nomad without workload identity the legacy token's policies.
    if LEGACY_NOMAD_VARS in u.var_files:
        assert task["Vault"]["Policies"] == ["validation-only"]
    elif stack.vault_identity() == "legacy_token":
        assert task["Vault"]["Policies"] == stack.legacy_vault_policies(job["ID"])
    else:
        assert task["Vault"]["Role"] == f"arbfleet-{job['ID']}"


@pytest.mark.parametrize("u", [u for u in ENGINE_UNITS if u.env != deploy.LOCAL_ENV], ids=unit_id)
def test_engine_accounts_match_the_vault_layout(nomad_api: nomad.Nomad, u: deploy.Unit) -> None:
    # `arbfleet platform apply` creates the role arbfleet-<job> from the fleet description: a
    # deployment missing there, or trading other accounts, could not read its keys.
    layout = layout_for(FLEET, u.env)
    job = deploy.render(nomad_api, u)
    env = job["TaskGroups"][0]["Tasks"][0]["Env"]
    prefix = "ARBFLEET_VAULT__ACCOUNTS__"
    accounts = {k.removeprefix(prefix).lower(): v for k, v in env.items() if k.startswith(prefix)}
    assert layout.deployments[job["ID"]] == accounts
    assert env["ARBFLEET_VAULT__KV_MOUNT"] == layout.kv_mount


def test_key_rotation_covers_every_production_account(nomad_api: nomad.Nomad) -> None:
    layout = layout_for(FLEET, "production")
    traded = {(v, a) for accounts in layout.deployments.values() for v, a in accounts.items()}
    job = deploy.render(nomad_api, deploy.unit("key-rotation", "production"))
    rotated = {tuple(t["Config"]["args"][2:4]) for t in job["TaskGroups"][0]["Tasks"]}
    assert rotated == traded


# --- real runs on the local stack ------------------------------------------------------------


def test_redis_runs(
    nomad_cli: Nomad,
    consul: Consul,
    nomad_api: nomad.Nomad,
    namespace: str,
    data_dir: Path,
    tmp_path: Path,
    local_stack: stack.Endpoints,
) -> None:
    allocs, healthy_s = run_job(
        nomad_cli, consul, nomad_api, "redis", namespace, data_dir, tmp_path
    )
    print(f"redis: submit to healthy in {healthy_s:.1f} s")
    host, port = service_address(consul, "redis", allocs[0]["ID"])
    assert port not in (stack.default_ports().redis, stack.default_ports().postgres)
    client = redis.Redis(host=host, port=port)
    assert client.config_get("appendonly") == {"appendonly": "yes"}
    assert client.config_get("maxmemory") == {"maxmemory": str(96 * 1024 * 1024)}  # 75% of 128 MB
    assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
    client.set("arbfleet:test", "persisted")
    wait_for(
        lambda: any((data_dir / "redis").rglob("*.aof")),
        timeout=10,
        what="the AOF in the host volume",
    )
    client.close()


def test_timescaledb_runs(
    nomad_cli: Nomad,
    consul: Consul,
    nomad_api: nomad.Nomad,
    job_secrets: KvWrite,
    namespace: str,
    data_dir: Path,
    tmp_path: Path,
) -> None:
    # The job reads its password from its own Vault path, through workload identity.
    password = secrets.token_urlsafe(18)
    job_secrets("timescaledb/postgres", {"password": password})
    allocs, healthy_s = run_job(
        nomad_cli, consul, nomad_api, "timescaledb", namespace, data_dir, tmp_path
    )
    print(f"timescaledb: submit to healthy in {healthy_s:.1f} s")
    host, port = service_address(consul, "timescaledb", allocs[0]["ID"])
    assert port not in (stack.default_ports().redis, stack.default_ports().postgres)

    async def query() -> tuple[str, str]:
        conn = await asyncpg.connect(
            host=host,
            port=port,
            user="postgres",
            password=password,
            database="postgres",
            timeout=10,
        )
        try:
            return await conn.fetchval("SHOW data_directory"), await conn.fetchval(
                "SHOW shared_buffers"
            )
        finally:
            await conn.close()

    data_directory, shared_buffers = asyncio.run(query())
    assert data_directory == str(data_dir / "timescaledb")
    assert shared_buffers == "64MB"
    assert (data_dir / "timescaledb" / "PG_VERSION").stat().st_uid != 0  # owned by postgres


def test_prometheus_runs(
    nomad_cli: Nomad,
    consul: Consul,
    nomad_api: nomad.Nomad,
    namespace: str,
    data_dir: Path,
    tmp_path: Path,
) -> None:
    binary = toolchain.bin_dir() / "prometheus"
    assert binary.is_file(), (
        f"{binary} is missing: the local prometheus job needs the toolchain's upstream build "
        "(`nox -s toolchain`); Debian's has no Consul service discovery"
    )
    allocs, healthy_s = run_job(
        nomad_cli, consul, nomad_api, "prometheus", namespace, data_dir, tmp_path
    )
    print(f"prometheus: submit to healthy in {healthy_s:.1f} s")
    host, port = service_address(consul, "prometheus", allocs[0]["ID"])
    api = f"http://{host}:{port}/api/v1"
    groups = requests.get(f"{api}/rules", timeout=10).json()["data"]["groups"]
    expected = sum(
        len(re.findall(r"^  - name:", p.read_text(), re.MULTILINE))
        for p in FLEET.monitoring_path.glob(deploy.FILE_VARIABLES["prometheus_rules"])
    )
    assert len(groups) == expected > 0
    # Consul service discovery works: Prometheus found itself through its `prometheus` tag.
    wait_for(
        lambda: any(
            t["labels"].get("job") == "prometheus" and t["health"] == "up"
            for t in requests.get(f"{api}/targets", timeout=10).json()["data"]["activeTargets"]
        ),
        timeout=60,
        what="Prometheus to scrape itself, found through Consul",
    )


def test_alertmanager_runs_with_secrets_from_vault(
    nomad_cli: Nomad,
    consul: Consul,
    nomad_api: nomad.Nomad,
    job_secrets: KvWrite,
    namespace: str,
    data_dir: Path,
    tmp_path: Path,
) -> None:
    webhook = f"https://hooks.slack.invalid/services/{secrets.token_hex(8)}"
    job_secrets("alertmanager/slack", {"webhook_url": webhook})
    job_secrets("alertmanager/pagerduty", {"routing_key": secrets.token_hex(8)})
    allocs, healthy_s = run_job(
        nomad_cli, consul, nomad_api, "alertmanager", namespace, data_dir, tmp_path
    )
    print(f"alertmanager: submit to healthy in {healthy_s:.1f} s")
    host, port = service_address(consul, "alertmanager", allocs[0]["ID"])
    config = requests.get(f"http://{host}:{port}/api/v2/status", timeout=10).json()["config"]
    # The config's /secrets/ paths now point at this allocation's secrets directory...
    (path,) = re.findall(r"slack_api_url_file: (\S+)", config["original"])
    assert path.endswith("/alertmanager/secrets/slack-webhook-url") and allocs[0]["ID"] in path
    # ...where the template rendered the webhook from Vault.
    assert Path(path).read_text().strip() == webhook
