"""infra/terraform through the toolchain's checkov: no failed check, and enough checked.

Checkov has no policy of its own for the hcloud, nomad, consul or vault providers, so it runs
with the project's (infra/terraform/policies) and its secrets scanner; suppressions are inline
``#checkov:skip`` comments, each listed with its reason in infra/terraform/README.md.
``--skip-download`` keeps it offline (it would fetch guidelines from its vendor's platform).
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

from runtime.devstack import toolchain
from tests.infra import cloud_init_root as cir

TF_ROOT = cir.REPO / "infra" / "terraform"
# CKV_ARBFLEET_4 (JWT roles bound to an audience, never root) went with the platform module:
# the roles are the platform applier's now, and tests/unit/test_platform_desired.py holds them to it.
POLICIES = {"CKV_ARBFLEET_1", "CKV_ARBFLEET_2", "CKV_ARBFLEET_3"}


def checkov() -> dict[str, dict[str, Any]]:
    """The JSON reports of one scan, by framework."""
    proc = subprocess.run(
        [
            str(toolchain.bin_dir() / "checkov"),
            "--directory",
            str(TF_ROOT),
            "--framework",
            "terraform",
            "secrets",
            "--external-checks-dir",
            str(TF_ROOT / "policies"),
            "--skip-download",
            "--compact",
            "--output",
            "json",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert proc.returncode in (0, 1), proc.stderr[-3000:]  # 1: failed checks, reported below
    reports = json.loads(proc.stdout)
    return {r["check_type"]: r for r in (reports if isinstance(reports, list) else [reports])}


def test_checkov_finds_nothing_and_checks_every_policy() -> None:
    reports = checkov()
    failed = [
        f"{c['check_id']} {c['resource']} {c['file_path']}:{c['file_line_range'][0]}"
        + (f" (called from {c['caller_file_path']})" if c.get("caller_file_path") else "")
        for r in reports.values()
        for c in r["results"]["failed_checks"]
    ]
    assert failed == [], "checkov findings (fix, or skip inline with a reason):\n" + "\n".join(
        failed
    )
    terraform = reports["terraform"]
    # A scan that found no resource, or never loaded the project's policies, checks nothing.
    # 7 since the platform module went (docs/adr/0005): the cluster module, its example, the root.
    assert terraform["summary"]["resource_count"] >= 7
    assert terraform["summary"]["parsing_errors"] == 0
    results = terraform["results"]
    ran = {c["check_id"] for c in results["passed_checks"] + results["skipped_checks"]}
    assert ran >= POLICIES
