"""`dev up`, a second `up`, `status` and `down` of a second stack beside the session's one,
through the command line as a person runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from runtime.devstack import stack

pytestmark = pytest.mark.stack

OFFSET = "1000"  # every port shifted by 1000, clear of the session stack and Nomad's dynamic range


def _dev(state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, ARBFLEET_STACK_DIR=str(state), ARBFLEET_STACK_PORT_OFFSET=OFFSET)
    return subprocess.run(
        [sys.executable, "-m", "runtime.devstack", "dev", *args],
        env=env, capture_output=True, text=True, timeout=600, check=False,
    )


def _pids(state: Path) -> dict[str, str]:
    return {p.stem: p.read_text() for p in sorted((state / "run").glob("*.pid"))}


def test_up_twice_then_down_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state = tmp_path / "stack"

    first = _dev(state, "up")
    assert first.returncode == 0, first.stdout + first.stderr
    pids = _pids(state)
    assert set(pids) == {"consul", "vault", "nomad", "postgres", "redis"}

    second = _dev(state, "up")
    assert second.returncode == 0, second.stdout + second.stderr
    assert second.stdout.count("already running") == 5
    assert _pids(state) == pids

    status = _dev(state, "status")
    assert status.returncode == 0
    assert all(s.endswith(", healthy)") for s in json.loads(status.stdout).values())

    down = _dev(state, "down")
    assert down.returncode == 0, down.stdout + down.stderr
    monkeypatch.setenv("ARBFLEET_STACK_DIR", str(state))
    assert stack.stray_processes() == []
    assert all(not Path(f"/proc/{pid}").exists() for pid in pids.values())
    assert json.loads(_dev(state, "status").stdout) == dict.fromkeys(pids, "stopped")


def test_vault_root_token_file_is_private(local_stack: stack.Endpoints) -> None:
    assert local_stack.vault_token_file.stat().st_mode & 0o777 == 0o600
    assert local_stack.postgres_dsn_file.stat().st_mode & 0o777 == 0o600
