"""Running the platform jobs of infra/nomad/ on the local stack as the tests do: the pinned CLI
with the local vars files and what ``runtime.ops.deploy`` fills in, then waiting for Consul's checks.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import nomad

from runtime.devstack import stack
from runtime.ops import deploy
from tests.stack_plugin import Consul, wait_for

if TYPE_CHECKING:
    from tests.infra.nomad_fixtures import Nomad

LEGACY_NOMAD_VARS = Path(__file__).parent / "fixtures" / "legacy-nomad.vars.json"


def for_this_nomad(u: deploy.Unit) -> deploy.Unit:
    """``u`` as the stack's Nomad can parse it: a spec that takes workload identity where the
    stack runs a Nomad without it gets the legacy token instead (LEGACY_NOMAD_VARS)."""
    takes_identity = "vault_identity" in deploy.declared_variables(u.spec) and not any(
        "vault_identity" in deploy.assigned_variables(f) for f in u.var_files
    )
    if u.env == deploy.LOCAL_ENV or not takes_identity:
        return u  # the local env's generation is filled in by runtime.ops.deploy
    if stack.vault_identity() == "workload_identity":
        return u
    return replace(u, var_files=(*u.var_files, LEGACY_NOMAD_VARS))


def cli_var_files(u: deploy.Unit, tmp_path: Path) -> list[str]:
    """-var-file flags: the unit's vars files as they are, and what ``runtime.ops.deploy`` fills in
    (the fleet description's values and the generated ones)."""
    generated = tmp_path / f"{u.env}-{u.name}.generated.json"
    generated.write_text(json.dumps({**u.values, **deploy.generated_variables(u)}))
    return [f"-var-file={path}" for path in (*u.var_files, generated)]


def run_job(
    nomad_cli: Nomad,
    consul: Consul,
    nomad_api: nomad.Nomad,
    job: str,
    namespace: str,
    data_dir: Path,
    tmp_path: Path,
) -> tuple[list[dict[str, Any]], float]:
    """`nomad job run` with the local vars; wait until every Consul check of the job passes.

    Returns the running allocations and the seconds from submit to healthy.
    """
    u = deploy.unit(job, deploy.LOCAL_ENV)
    own_data = [f"-var=host_volume_path={data_dir}"]
    if "host_volume_path" not in deploy.declared_variables(u.spec):
        own_data = []
    started = time.monotonic()
    # The CLI waits for the deployment and exits non-zero unless it succeeds.
    nomad_cli(
        "job",
        "run",
        "-namespace",
        namespace,
        *cli_var_files(u, tmp_path),
        *own_data,
        str(u.spec),
        timeout=300,
    )
    allocs = [
        a
        for a in nomad_api.job.get_allocations(job, namespace=namespace)
        if a["ClientStatus"] == "running"
    ]
    assert len(allocs) == 1, [(a["ID"], a["ClientStatus"]) for a in allocs]
    alloc_id = allocs[0]["ID"]

    def checks_passing() -> list[dict[str, Any]] | None:
        checks = [c for c in consul.get(f"health/checks/{job}") if alloc_id in c["ServiceID"]]
        return checks if checks and all(c["Status"] == "passing" for c in checks) else None

    checks = wait_for(checks_passing, timeout=60, what=f"{job}'s Consul checks to pass")
    assert checks
    return allocs, time.monotonic() - started


def service_address(consul: Consul, service: str, alloc_id: str) -> tuple[str, int]:
    (entry,) = [s for s in consul.get(f"catalog/service/{service}") if alloc_id in s["ServiceID"]]
    return entry["ServiceAddress"], entry["ServicePort"]
