"""Pytest plugin: the local stack, started once per session, and clients for its services.

A stack that is already running and healthy (a developer's ``nox -s stack -- up``) is reused
and left running; otherwise the session starts one and stops it at the end, checking that no
process was left behind. A service that cannot start fails the tests that need it: nothing
here skips.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import hvac
import nomad
import pytest
import requests

from runtime.devstack import stack, toolchain


@pytest.fixture(scope="session")
def local_stack() -> Iterator[stack.Endpoints]:
    already_up = all(s.endswith(", healthy)") for s in stack.status().values())
    endpoints = stack.up(say=lambda _msg: None)
    yield endpoints
    if not already_up:
        stack.down(say=lambda _msg: None)
        leftovers = stack.stray_processes()
        assert leftovers == [], f"stack down left processes behind: {leftovers}"


@pytest.fixture(scope="session")
def vault(local_stack: stack.Endpoints) -> hvac.Client:
    client = hvac.Client(url=local_stack.vault, token=local_stack.vault_token())
    assert client.is_authenticated()
    return client


@pytest.fixture(scope="session")
def nomad_api(local_stack: stack.Endpoints) -> nomad.Nomad:
    host, port = local_stack.nomad.removeprefix("http://").split(":")
    return nomad.Nomad(host=host, port=int(port), timeout=10)


class Consul:
    """The few Consul HTTP API calls tests need, on a requests session."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.http = requests.Session()

    def get(self, path: str, **params: Any) -> Any:
        response = self.http.get(f"{self.address}/v1/{path}", params=params, timeout=10)
        response.raise_for_status()
        return response.json()


@pytest.fixture(scope="session")
def consul(local_stack: stack.Endpoints) -> Consul:
    return Consul(local_stack.consul)


@pytest.fixture(scope="session")
def postgres_dsn(local_stack: stack.Endpoints) -> str:
    return local_stack.postgres_dsn()


@pytest.fixture(scope="session")
def redis_url(local_stack: stack.Endpoints) -> str:
    return local_stack.redis_url


Terraform = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="session")
def terraform(local_stack: stack.Endpoints) -> Terraform:
    """Run the toolchain's Terraform CLI (``toolchain.terraform_program()``: OpenTofu's ``tofu``)
    offline (providers from the mirror) against the stack."""
    program = toolchain.terraform_program()
    env = toolchain.tool_env()
    env.update(local_stack.env())
    env["NOMAD_ADDR"] = local_stack.nomad
    env["VAULT_TOKEN"] = local_stack.vault_token()
    env["TF_IN_AUTOMATION"] = "1"

    def run(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [program, *args],
            cwd=workdir,
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=600,
        )
        if check and proc.returncode != 0:
            pytest.fail(f"{program} {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
        return proc

    return run


def wait_for(condition: Callable[[], Any], timeout: float = 60.0, what: str = "condition") -> Any:
    """Poll until ``condition()`` is truthy and return it; fail the test with ``what`` if not."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.5)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


def vault_stanza(job_id: str, role: str = "") -> str:
    """The body of a task's ``vault`` block on the local Nomad: log in to ``role`` with the
    task's workload identity (Nomad 1.7+; empty: the stack's default role), or, on the legacy
    integration, a token with the policies that role would grant."""
    if stack.vault_identity() == "workload_identity":
        return f'role = "{role}"' if role else ""
    policies = ", ".join(f'"{p}"' for p in stack.legacy_vault_policies(job_id))
    return f"policies = [{policies}]"


def pytest_report_header(config: pytest.Config) -> str:
    return (
        f"arbfleet stack dir: {stack.state_dir()}; toolchain: {toolchain.bin_dir()}; "
        f"CI={os.environ.get('CI', '')}"
    )
