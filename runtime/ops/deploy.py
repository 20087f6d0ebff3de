"""Submit the jobs of the fleet and watch them: ``arbfleet deploy`` and ``arbfleet status``.

A unit to deploy is a job spec and its variables for one environment; the specs and their vars
files are where the fleet description (``fleet.toml``, runtime/ops/fleet.py) says:

    platform job   <job>.nomad.hcl      vars/<env>/<job>.json
    engine         engine.nomad.hcl     vars/<env>/engine.json + the deployment's own values,
                                        derived from its [[deployment]] entry at deploy time

Vars files are JSON (HCL's JSON syntax, which ``nomad job run -var-file`` reads too: values are
literal, no escaping, and ``"//"`` keys are comments), so this module merges them with what it
derives and hands Nomad one JSON document: no HCL is written here. Nomad itself parses the job
spec (``POST /v1/jobs/parse`` with the variables as var-file content), the job is registered
together with its source and variables (so ``nomad job inspect`` and the UI show what was
submitted), and the deployment is watched until it is successful, failed or auto-reverted.

The vars files hold what differs between environments. Two kinds of value are left to this module,
because a vars file cannot hold them: the content of the monitoring configs (Prometheus,
Alertmanager and Grafana: the parse API refuses ``file()``), and, in the local environment, paths
on this machine (the stack's host volume, the toolchain, the Python environment, the checkout the
description is in) for raw_exec tasks. A vars file that sets one of them wins.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeAlias

import nomad
from nomad.api.exceptions import BaseNomadException
from requests import RequestException

from runtime.core.errors import DeployError, developer_tooling
from runtime.ops import fleet as fleet_description
from runtime.ops.fleet import Fleet

Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
Say = Callable[[str], None]
Value: TypeAlias = "str | list[Any] | dict[str, Any]"

LOCAL_ENV = "local"
ENGINE_SPEC = "engine.nomad.hcl"
ROTATION_JOB = "key-rotation"
POLL_S = 1.0

# Variables whose value is the content of monitoring configs (paths relative to the fleet's
# monitoring_dir); a glob gives a map (name -> content).
FILE_VARIABLES = {
    "prometheus_config": "prometheus/prometheus.yml",
    "prometheus_rules": "prometheus/rules/*.yml",
    "alertmanager_config": "alertmanager/alertmanager.yml",
    "grafana_datasources": "grafana/provisioning/datasources/arbfleet.yml",
    "grafana_dashboard_providers": "grafana/provisioning/dashboards/arbfleet.yml",
    "grafana_dashboards": "grafana/dashboards/*.json",
}


# --- what to deploy --------------------------------------------------------------------------


@dataclass(frozen=True)
class Unit:
    """A job spec and what configures it for one environment: its vars files, and an engine
    deployment's own values (from the fleet description)."""

    name: str
    env: str
    spec: Path
    var_files: tuple[Path, ...]
    values: Mapping[str, Value] = field(default_factory=dict)
    fleet_root: Path = field(default_factory=lambda: fleet_description.default().root)
    """The directory of the fleet description: the monitoring configs and, locally, the source
    the engine runs from."""
    monitoring: Path = field(default_factory=lambda: fleet_description.default().monitoring_path)


def environments(fleet: Fleet | None = None) -> list[str]:
    return sorted((fleet or fleet_description.default()).environments)


def unit(name: str, env: str, fleet: Fleet | None = None) -> Unit:
    """The unit ``name`` names in ``env``: a platform job, or an engine deployment."""
    fleet = fleet or fleet_description.default()
    nomad_dir = fleet.nomad_path
    vars_dir = nomad_dir / "vars" / env
    if env not in fleet.environments:
        raise DeployError(f"unknown environment {env!r}: one of {', '.join(environments(fleet))}")
    root, monitoring = fleet.root, fleet.monitoring_path
    spec = nomad_dir / f"{name}.nomad.hcl"
    if spec.name != ENGINE_SPEC and spec.is_file():
        var_files = (vars_dir / f"{name}.json",)
        values = fleet_variables(fleet, env, name, var_files)
        return Unit(name, env, spec, var_files, values, root, monitoring)
    deployment = fleet.deployment_of(env, name)
    if deployment is not None:
        engine, values = (vars_dir / "engine.json",), deployment.variables()
        return Unit(name, env, nomad_dir / ENGINE_SPEC, engine, values, root, monitoring)
    raise DeployError(
        f"{name!r} is neither a job ({nomad_dir}/{name}.nomad.hcl) nor an engine deployment "
        f"of {env} in {fleet.source}"
    )


def units(env: str, fleet: Fleet | None = None) -> list[Unit]:
    """Every platform job and every engine deployment of ``env``."""
    fleet = fleet or fleet_description.default()
    specs = sorted(p.name.removesuffix(".nomad.hcl") for p in fleet.nomad_path.glob("*.nomad.hcl"))
    jobs = [unit(name, env, fleet) for name in specs if f"{name}.nomad.hcl" != ENGINE_SPEC]
    return jobs + [unit(d.job, env, fleet) for d in fleet.deployments(env)]


# --- variables -------------------------------------------------------------------------------


def fleet_variables(
    fleet: Fleet, env: str, job: str, var_files: tuple[Path, ...]
) -> dict[str, Value]:
    """A platform job's variables that the fleet description decides: the key rotation job
    rotates the accounts of the environment's deployments (unless its vars file names others,
    as the local one names a simulator account)."""
    if job != ROTATION_JOB or any("accounts" in assigned_variables(f) for f in var_files):
        return {}
    accounts = sorted({(v, a) for d in fleet.deployments(env) for v, a in d.accounts.items()})
    return {"accounts": [{"venue": v, "account": a} for v, a in accounts]}


def host_variables(u: Unit) -> dict[str, str]:
    """Paths on this machine that the local environment's raw_exec tasks use."""
    with developer_tooling():  # the local environment is the checkout's stack
        from runtime.devstack import stack, toolchain
    return {
        "host_volume_path": str(stack.state_dir() / "volumes"),
        "toolchain_bin": str(toolchain.bin_dir()),
        "venv": sys.prefix,
        "source_dir": str(u.fleet_root),
    }


def _local_vault_variables(job_id: str, wanted: set[str]) -> dict[str, str | list[str]]:
    """How the local Nomad's tasks get their secrets-store token (its generation decides)."""
    with developer_tooling():
        from runtime.devstack import stack
    values: dict[str, str | list[str]] = {}
    if "vault_identity" in wanted:
        values["vault_identity"] = stack.vault_identity()
    if "vault_policies" in wanted and stack.vault_identity() == "legacy_token":
        values["vault_policies"] = stack.legacy_vault_policies(job_id)
    return values


def file_variable(directory: Path, pattern: str) -> str | dict[str, str]:
    if "*" not in pattern:
        return (directory / pattern).read_text()
    return {path.name: path.read_text() for path in sorted(directory.glob(pattern))}


def declared_variables(spec: Path) -> set[str]:
    return set(re.findall(r'^variable\s+"([^"]+)"', spec.read_text(), re.MULTILINE))


def var_file_values(var_file: Path) -> dict[str, Any]:
    """A JSON vars file's values (its ``"//"`` comments left out, as Nomad leaves them)."""
    try:
        document = json.loads(var_file.read_text())
    except json.JSONDecodeError as exc:
        raise DeployError(f"{var_file}: not JSON: {exc}") from None
    return {name: value for name, value in document.items() if name != "//"}


def assigned_variables(var_file: Path) -> set[str]:
    return set(var_file_values(var_file))


def generated_variables(u: Unit) -> dict[str, Value]:
    """What the unit's job declares and its vars files and the fleet's values leave to us."""
    assigned = set(u.values).union(*map(assigned_variables, u.var_files))
    wanted = declared_variables(u.spec) - assigned
    values: dict[str, Value] = {
        name: file_variable(u.monitoring, pattern)
        for name, pattern in FILE_VARIABLES.items()
        if name in wanted
    }
    if u.env == LOCAL_ENV:
        values.update({k: v for k, v in host_variables(u).items() if k in wanted})
        values.update(_local_vault_variables(u.name, wanted))
    return values


def variable_values(u: Unit) -> dict[str, Any]:
    """Every variable Nomad gets besides the job spec: the vars files in order (a later one
    wins, as with the CLI's -var-file), the fleet's values, what is generated."""
    values: dict[str, Any] = {}
    for path in u.var_files:
        values.update(var_file_values(path))
    return {**values, **u.values, **generated_variables(u)}


def variables(u: Unit) -> str:
    """``variable_values`` as one var-file content (JSON: Nomad takes a document that starts
    with ``{`` as JSON)."""
    return json.dumps(variable_values(u), indent=2, ensure_ascii=False)


# --- Nomad -----------------------------------------------------------------------------------


def client() -> nomad.Nomad:
    """A client for ``$NOMAD_ADDR`` (python-nomad also reads ``$NOMAD_TOKEN`` and
    ``$NOMAD_NAMESPACE``), else the local stack's Nomad."""
    address = os.environ.get("NOMAD_ADDR")
    if not address:
        with developer_tooling():
            from runtime.devstack import stack
        address = stack.endpoints().nomad
    return nomad.Nomad(address=address, timeout=10)


def _call(what: str, request: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``request(*args, **kwargs)``, with Nomad's own error message in a DeployError."""
    try:
        return request(*args, **kwargs)
    except BaseNomadException as exc:
        detail = getattr(exc.nomad_resp, "text", exc.nomad_resp)
        raise DeployError(f"{what}: {str(detail).strip()}") from exc
    except RequestException as exc:
        raise DeployError(f"{what}: Nomad unreachable: {exc}") from exc


def render(api: nomad.Nomad, u: Unit) -> dict[str, Any]:
    """The job as Nomad parses it from the spec and the unit's variables (JSON API form)."""
    # Not canonicalized: that would pin the namespace to "default" instead of the client's.
    body = {"JobHCL": u.spec.read_text(), "Variables": variables(u), "Canonicalize": False}
    what = f"parsing {u.spec.name} with the {u.env} vars of {u.name}"
    return dict(_call(what, api.jobs.request, "parse", json=body, method="post").json())


def plan(api: nomad.Nomad, job: dict[str, Any]) -> dict[str, Any]:
    """What submitting ``job`` would change, with placement failures (``FailedTGAllocs``)."""
    return dict(_call(f"planning {job['ID']}", api.job.plan_job, job["ID"], {"Job": job}, True))


def submit(api: nomad.Nomad, u: Unit, job: dict[str, Any]) -> dict[str, Any]:
    """Register ``job`` with its source and variables, which Nomad keeps for each version."""
    submission = {"Source": u.spec.read_text(), "Format": "hcl2", "Variables": variables(u)}
    body = {"Job": job, "Submission": submission}
    return dict(_call(f"submitting {job['ID']}", api.jobs.register_job, body))


@dataclass(frozen=True)
class Outcome:
    """How a submission ended: ``successful``, ``failed``, ``reverted`` (failed, and Nomad rolled
    back to the last stable version), ``unchanged`` (the scheduler started no deployment, e.g.
    for a group of count 0) or ``registered`` (a periodic job: nothing runs before its schedule).
    Resubmitting an unchanged job reports the deployment of its current version."""

    job_id: str
    version: int
    status: str
    description: str
    elapsed_s: float

    @property
    def ok(self) -> bool:
        return self.status in ("successful", "unchanged", "registered")


def deploy(
    api: nomad.Nomad, u: Unit, timeout_s: float = 300.0, say: Say = lambda _msg: None
) -> Outcome:
    """Render, submit and watch ``u`` until its deployment ends; DeployError after ``timeout_s``."""
    started = time.monotonic()
    deadline = started + timeout_s
    job = render(api, u)
    job_id = job["ID"]
    registered = submit(api, u, job)
    version = int(_call(f"reading {job_id}", api.job.get_job, job_id)["Version"])
    say(f"{job_id}: submitted version {version}")

    def outcome(status: str, description: str) -> Outcome:
        return Outcome(job_id, version, status, description, time.monotonic() - started)

    if not registered.get("EvalID"):  # periodic jobs are only evaluated at launch time
        return outcome("registered", "periodic: runs on its schedule")
    # As `nomad job run` does: the evaluation names the deployment it started, if any.
    evaluation = _finished_evaluation(api, registered["EvalID"], deadline)
    if evaluation.get("FailedTGAllocs"):
        say(f"{job_id}: cannot place yet: {placement_failures(evaluation['FailedTGAllocs'])}")
    if not evaluation.get("DeploymentID"):
        return outcome("unchanged", "no deployment: nothing to roll out")
    deployment = _watch(api, evaluation["DeploymentID"], deadline, say)
    description = deployment.get("StatusDescription", "")
    if deployment["Status"] == "failed" and "rolling back to job version" in description:
        return outcome("reverted", description)
    return outcome(deployment["Status"], description)


def _finished_evaluation(api: nomad.Nomad, eval_id: str, deadline: float) -> dict[str, Any]:
    while True:
        evaluation = _call(f"reading evaluation {eval_id}", api.evaluation.get_evaluation, eval_id)
        if evaluation["Status"] == "complete":
            return dict(evaluation)
        if evaluation["Status"] not in ("pending", "blocked"):
            raise DeployError(
                f"{evaluation['JobID']}: evaluation {evaluation['Status']}: "
                f"{evaluation.get('StatusDescription', '')}"
            )
        if time.monotonic() > deadline:
            raise DeployError(
                f"{evaluation['JobID']}: evaluation {eval_id[:8]} still "
                f"{evaluation['Status']} at the timeout"
            )
        time.sleep(POLL_S)


def _watch(api: nomad.Nomad, deployment_id: str, deadline: float, say: Say) -> dict[str, Any]:
    """Poll the deployment until it ends, saying each change of its progress."""
    last = ""
    while True:
        deployment = _call(
            f"reading deployment {deployment_id}", api.deployment.get_deployment, deployment_id
        )
        progress = _progress(deployment)
        if progress != last:
            say(f"{deployment['JobID']}: {progress}")
            last = progress
        if deployment["Status"] not in ("running", "pending", "paused", "blocked", "unblocking"):
            return dict(deployment)
        if time.monotonic() > deadline:
            raise DeployError(
                f"{deployment['JobID']}: deployment {deployment_id[:8]} still "
                f"{deployment['Status']} at the timeout: {progress}"
            )
        time.sleep(POLL_S)


def _progress(deployment: dict[str, Any]) -> str:
    groups = []
    for name, group in sorted((deployment.get("TaskGroups") or {}).items()):
        text = f"{name} {group['HealthyAllocs']}/{group['DesiredTotal']} healthy"
        if group.get("DesiredCanaries"):
            placed = len(group.get("PlacedCanaries") or [])
            text += f" (canary {placed}/{group['DesiredCanaries']})"
        if group.get("UnhealthyAllocs"):
            text += f", {group['UnhealthyAllocs']} unhealthy"
        groups.append(text)
    status = f"deployment {deployment['Status']}: {', '.join(groups)}"
    return f"{status}; {deployment.get('StatusDescription', '')}"


def placement_failures(failed: dict[str, Any]) -> str:
    """Why task groups could not be placed, from a plan's or evaluation's ``FailedTGAllocs``."""
    reasons = []
    for group, metrics in sorted(failed.items()):
        counts = {
            **(metrics.get("ConstraintFiltered") or {}),
            **(metrics.get("DimensionExhausted") or {}),
        }
        details = ", ".join(f"{reason} ({count})" for reason, count in counts.items())
        reasons.append(f"{group}: {details or 'no node fits'}")
    return "; ".join(reasons)


# --- status ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class AllocationStatus:
    id: str
    group: str
    status: str
    health: str
    """``healthy`` or ``unhealthy`` as the deployment judged it; ``-`` outside a deployment."""
    version: int


@dataclass(frozen=True)
class JobStatus:
    id: str
    type: str
    status: str
    version: int
    deployment: str
    """Status of the latest deployment; ``-`` for jobs without one (batch, periodic)."""
    allocations: list[AllocationStatus]


def status(api: nomad.Nomad) -> list[JobStatus]:
    """Every job with its latest deployment and its allocations that run or should run."""
    result = []
    for stub in _call("listing jobs", api.jobs.get_jobs):
        if stub.get("ParentID"):
            continue  # a periodic run: its allocations are listed under its parent
        job_id = stub["ID"]
        job = _call(f"reading {job_id}", api.job.get_job, job_id)
        deployment = _call(f"reading {job_id}", api.job.get_deployment, job_id) or {}
        allocations = [
            AllocationStatus(
                a["ID"][:8], a["TaskGroup"], a["ClientStatus"], _health(a), int(a["JobVersion"])
            )
            for a in _allocations(api, job_id, bool(stub.get("Periodic")))
            if a["DesiredStatus"] == "run" or a["ClientStatus"] == "running"
        ]
        result.append(
            JobStatus(
                job_id,
                stub["Type"],
                stub["Status"],
                int(job["Version"]),
                deployment.get("Status", "-"),
                allocations,
            )
        )
    return result


def _allocations(api: nomad.Nomad, job_id: str, periodic: bool) -> Iterator[dict[str, Any]]:
    yield from _call(f"reading {job_id} allocations", api.job.get_allocations, job_id)
    if periodic:
        for child in _call("listing jobs", api.jobs.get_jobs, prefix=f"{job_id}/periodic-"):
            yield from _call(f"reading {child['ID']}", api.job.get_allocations, child["ID"])


def _health(allocation: dict[str, Any]) -> str:
    healthy = (allocation.get("DeploymentStatus") or {}).get("Healthy")
    return "-" if healthy is None else "healthy" if healthy else "unhealthy"


def format_status(jobs: list[JobStatus]) -> str:
    lines = [f"{'JOB':28} {'TYPE':8} {'STATUS':8} {'VERSION':>7}  DEPLOYMENT"]
    for job in jobs:
        lines.append(f"{job.id:28} {job.type:8} {job.status:8} {job.version:>7}  {job.deployment}")
        lines += [
            f"  {a.id}  {a.group:22} {a.status:9} {a.health:9} v{a.version}"
            for a in job.allocations
        ]
    return "\n".join(lines)


# --- command line ----------------------------------------------------------------------------


def add_deploy(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "deploy", help="submit a Nomad job of infra/nomad/ and watch its deployment"
    )
    parser.add_argument(
        "name",
        help="a job (redis, timescaledb, ...) or an engine deployment (its job id, "
        "<strategy>-<name>, in the fleet description)",
    )
    parser.add_argument("--env", default=LOCAL_ENV, help="which vars files (default: local)")
    add_fleet_argument(parser)
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds (default: 300)")
    parser.add_argument(
        "--plan", action="store_true", help="show what would change; submit nothing"
    )
    parser.set_defaults(handler=_deploy)


def add_fleet_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--fleet",
        type=Path,
        help=f"the fleet description (default: ${fleet_description.FLEET_ENV} or ./fleet.toml)",
    )


def add_status(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser("status", help="Nomad jobs, their allocations and health")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(handler=_status)


def _deploy(args: argparse.Namespace) -> int:
    api = client()
    u = unit(args.name, args.env, fleet_description.load(args.fleet))
    if args.plan:
        planned = plan(api, render(api, u))
        updates = (planned.get("Annotations") or {}).get("DesiredTGUpdates") or {}
        for group, update in sorted(updates.items()):
            changes = ", ".join(f"{kind.lower()} {n}" for kind, n in update.items() if n)
            print(f"{group}: {changes or 'no change'}")
        if planned.get("FailedTGAllocs"):
            print(f"cannot place: {placement_failures(planned['FailedTGAllocs'])}")
            return 1
        return 0
    result = deploy(api, u, args.timeout, say=lambda msg: print(msg, flush=True))
    print(
        f"{result.job_id} version {result.version}: {result.status} in "
        f"{result.elapsed_s:.1f} s ({result.description})"
    )
    return 0 if result.ok else 1


def _status(args: argparse.Namespace) -> int:
    jobs = status(client())
    if args.json:
        print(
            json.dumps(
                [{**vars(j), "allocations": [vars(a) for a in j.allocations]} for j in jobs],
                indent=2,
            )
        )
    else:
        print(format_status(jobs))
    return 0
