"""`dev up`, a second `up`, `status` and `down` of a second stack beside the session's one,
through the command line as a person runs it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime.devstack import stack

pytestmark = pytest.mark.stack

OFFSET = "3000"  # every port shifted by 3000: clear of the session stack, of Nomad's dynamic
# port range (20000-32000) and of the ports developers pick for ad-hoc servers


def _dev(state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, ARBFLEET_STACK_DIR=str(state), ARBFLEET_STACK_PORT_OFFSET=OFFSET)
    return subprocess.run(
        [sys.executable, "-m", "runtime.devstack", "dev", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def _pids(state: Path) -> dict[str, str]:
    return {p.stem: p.read_text() for p in sorted((state / "run").glob("*.pid"))}


@pytest.fixture
def state() -> Iterator[Path]:
    # Not under pytest's tmp_path: that is mode 0700, and PostgreSQL runs as its own user.
    path = Path(tempfile.mkdtemp(prefix="arbfleet-lifecycle-"))
    yield path
    _dev(path, "down")
    shutil.rmtree(path, ignore_errors=True)


def test_up_twice_then_down_leaves_nothing(state: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = _dev(state, "up")
    assert first.returncode == 0, first.stdout + first.stderr
    pids = _pids(state)
    assert set(pids) == {"consul", "openbao", "nomad", "postgres", "redis"}

    second = _dev(state, "up")
    assert second.returncode == 0, second.stdout + second.stderr
    assert second.stdout.count("already running") == 5
    assert _pids(state) == pids

    status = _dev(state, "status")
    assert status.returncode == 0
    assert all(s.endswith(", healthy)") for s in json.loads(status.stdout).values()), status.stdout

    down = _dev(state, "down")
    assert down.returncode == 0, down.stdout + down.stderr
    monkeypatch.setenv("ARBFLEET_STACK_DIR", str(state))
    assert stack.stray_processes() == []
    assert [pid for pid in pids.values() if stack.pid_alive(int(pid))] == []
    assert json.loads(_dev(state, "status").stdout) == dict.fromkeys(pids, "stopped")


def test_unreachable_state_dir_is_refused_with_the_reason(tmp_path: Path) -> None:
    result = _dev(tmp_path / "stack", "up")
    assert result.returncode == 2
    assert "not reachable by the postgres user" in result.stderr
    assert not (tmp_path / "stack" / "run").exists()


def test_vault_root_token_file_is_private(local_stack: stack.Endpoints) -> None:
    assert local_stack.vault_token_file.stat().st_mode & 0o777 == 0o600
    assert local_stack.postgres_dsn_file.stat().st_mode & 0o777 == 0o600
