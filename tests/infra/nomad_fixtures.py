"""Fixtures for tests that run Nomad jobs on the shared local stack without touching anyone else's:
a namespace of their own (purged afterwards), a data directory of their own in the host volume,
and Vault secrets under the namespace's path (deleted afterwards).

Import them into a test module by name (pytest registers imported fixtures).
"""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import hvac
import nomad
import pytest

from runtime.devstack import stack, toolchain
from tests.stack_plugin import wait_for

Nomad = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="session")
def nomad_cli(local_stack: stack.Endpoints) -> Nomad:
    """Run the pinned ``nomad`` against the local stack; fail on a non-zero exit unless told."""
    env = toolchain.tool_env()
    env["NOMAD_ADDR"] = local_stack.nomad
    assert shutil.which("nomad", path=env["PATH"]) == str(toolchain.bin_dir() / "nomad")

    def run(
        *args: str, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            ["nomad", *args], env=env, capture_output=True, text=True, check=False, timeout=timeout
        )
        if check and proc.returncode != 0:
            pytest.fail(
                f"nomad {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
            )
        return proc

    return run


@pytest.fixture
def namespace(nomad_api: nomad.Nomad, nomad_cli: Nomad) -> Iterator[str]:
    """A Nomad namespace of the test's own; its jobs are purged and it is deleted afterwards."""
    name = f"arbfleet-test-{uuid.uuid4().hex[:8]}"
    nomad_cli("namespace", "apply", "-description", "a test's own, deleted afterwards", name)
    yield name
    for job in nomad_api.jobs.get_jobs(namespace=name):
        nomad_cli("job", "stop", "-purge", "-yes", "-namespace", name, job["ID"], check=False)
    wait_for(
        lambda: (
            not [
                a
                for a in nomad_api.allocations.get_allocations(namespace=name)
                if a["ClientStatus"] in ("running", "pending")
            ]
        ),
        timeout=60,
        what=f"the allocations of {name} to stop",
    )
    nomad_cli("system", "gc")
    nomad_cli("namespace", "delete", name)


@pytest.fixture
def data_dir(local_stack: stack.Endpoints) -> Iterator[Path]:
    """A directory of the test's own inside the arbfleet-data host volume."""
    path = stack.state_dir() / "volumes" / f"test-{uuid.uuid4().hex[:8]}"
    yield path
    shutil.rmtree(path, ignore_errors=True)


KvWrite = Callable[[str, dict[str, str]], None]


@pytest.fixture
def job_secrets(vault: hvac.Client, namespace: str) -> Iterator[KvWrite]:
    """Write ``secret/<namespace>/<path>`` (where a job of ``namespace`` reads it through workload
    identity); every path written is deleted with all its versions afterwards."""
    written: list[str] = []

    def write(path: str, secret: dict[str, str]) -> None:
        full = f"{namespace}/{path}"
        vault.secrets.kv.v2.create_or_update_secret(path=full, secret=secret, mount_point="secret")
        written.append(full)

    yield write
    for full in written:
        vault.secrets.kv.v2.delete_metadata_and_all_versions(path=full, mount_point="secret")
