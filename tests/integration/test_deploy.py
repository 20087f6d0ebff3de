"""``runtime.ops.deploy`` against the real local stack: render through Nomad's parse API, submit, watch
the deployment, report status; with the redis job in a namespace and data directory of its own."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import nomad
import pytest

from runtime.devstack import stack, toolchain
from runtime.ops import deploy

pytestmark = pytest.mark.stack
# nomad_cli, namespace, data_dir, job_secrets
pytest_plugins = ["tests.infra.nomad_fixtures"]


@pytest.fixture
def api(local_stack: stack.Endpoints, namespace: str) -> nomad.Nomad:
    return nomad.Nomad(address=local_stack.nomad, namespace=namespace, timeout=10)


def redis_unit(tmp_path: Path, data_dir: Path, **overrides: str) -> deploy.Unit:
    """The local redis unit, with its data in ``data_dir`` and any other variable overridden."""
    base = deploy.unit("redis", deploy.LOCAL_ENV)
    extra = tmp_path / "overrides.json"
    extra.write_text(json.dumps({"host_volume_path": str(data_dir), **overrides}))
    return deploy.Unit(base.name, base.env, base.spec, (*base.var_files, extra))


def test_variables_fill_in_files_and_host_paths_but_never_override_a_vars_file(
    tmp_path: Path, data_dir: Path
) -> None:
    prometheus = deploy.generated_variables(deploy.unit("prometheus", deploy.LOCAL_ENV))
    assert prometheus["host_volume_path"]
    assert isinstance(prometheus["prometheus_rules"], dict)
    assert "alerts.yml" in prometheus["prometheus_rules"]
    assert prometheus["toolchain_bin"] == str(toolchain.bin_dir())
    # production: repository files only, no path of this machine
    production = deploy.generated_variables(deploy.unit("prometheus", "production"))
    assert "toolchain_bin" not in production and "prometheus_config" in production
    assert "host_volume_path" not in deploy.generated_variables(redis_unit(tmp_path, data_dir))


def test_unknown_names_and_environments_are_errors() -> None:
    with pytest.raises(deploy.DeployError, match=r"neither a job .* nor an engine deployment"):
        deploy.unit("no-such-job", deploy.LOCAL_ENV)
    with pytest.raises(deploy.DeployError, match="unknown environment 'staging'"):
        deploy.unit("redis", "staging")


def test_invalid_variables_are_reported_with_nomads_message(
    api: nomad.Nomad, tmp_path: Path
) -> None:
    base = deploy.unit("redis", deploy.LOCAL_ENV)
    podman = tmp_path / "redis.json"
    podman.write_text(base.var_files[0].read_text().replace('"raw_exec"', '"podman"'))
    with pytest.raises(deploy.DeployError, match="The driver must be docker or raw_exec"):
        deploy.render(api, deploy.Unit(base.name, base.env, base.spec, (podman,)))


def test_deploy_redis_until_healthy_then_status(
    api: nomad.Nomad, namespace: str, tmp_path: Path, data_dir: Path
) -> None:
    u = redis_unit(tmp_path, data_dir)
    messages: list[str] = []
    outcome = deploy.deploy(api, u, timeout_s=180, say=messages.append)
    print(f"redis via runtime.ops.deploy: {outcome.status} in {outcome.elapsed_s:.1f} s")
    assert (outcome.job_id, outcome.version, outcome.status) == ("redis", 0, "successful")
    assert outcome.ok
    assert any("1/1 healthy" in m for m in messages), messages

    # Nomad keeps what was submitted: the source and the variables, host path included.
    submission = api.job.request("redis", "submission", params={"version": 0}, method="get").json()
    assert submission["Source"] == u.spec.read_text()
    assert json.loads(submission["Variables"])["host_volume_path"] == str(data_dir)

    (job,) = deploy.status(api)
    assert (job.id, job.status, job.version, job.deployment) == (
        "redis",
        "running",
        0,
        "successful",
    )
    (alloc,) = job.allocations
    assert (alloc.group, alloc.status, alloc.health) == ("redis", "running", "healthy")
    assert "redis" in deploy.format_status([job]) and alloc.id in deploy.format_status([job])

    # The same job again: no new version; the evaluation points at the finished deployment, and
    # the allocation is left alone.
    again = deploy.deploy(api, u, timeout_s=60)
    assert (again.status, again.version) == ("successful", 0)
    assert [a.id for a in deploy.status(api)[0].allocations] == [alloc.id]

    # A version that cannot start never gets healthy: the watch gives up at its timeout.
    broken = redis_unit(tmp_path, data_dir, redis_bin_dir="/nonexistent")
    with pytest.raises(
        deploy.DeployError, match=r"redis: deployment \w+ still running at the timeout"
    ):
        deploy.deploy(api, broken, timeout_s=8)


def test_command_line_plan_and_status(
    local_stack: stack.Endpoints,
    namespace: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("NOMAD_ADDR", local_stack.nomad)
    monkeypatch.setenv("NOMAD_NAMESPACE", namespace)
    parser = argparse.ArgumentParser(prog="arbfleet")
    subparsers = parser.add_subparsers(required=True)
    deploy.add_deploy(subparsers)
    deploy.add_status(subparsers)

    args = parser.parse_args(["deploy", "timescaledb", "--env", "local", "--plan"])
    assert args.handler(args) == 0
    assert "timescaledb: place 1" in capsys.readouterr().out

    args = parser.parse_args(["status", "--json"])
    assert args.handler(args) == 0
    assert json.loads(capsys.readouterr().out) == []  # the plan submitted nothing
