"""The engine image (infra/images/engine/Dockerfile) without a Docker engine: the same artifact,
proved another way.

The Dockerfile builds the package's wheel from the files it copies and installs only that wheel
and its dependencies. Here the same files are copied to a directory of their own, the wheel is
built from them the same way, checked (the engine's modules in it, developer tooling not), and
installed into a fresh virtual environment outside the checkout, from which the engine trades
against the exchange simulator (the one stand-in: an exchange cannot run here) with its working
directory outside the checkout too: nothing it does reads the repository. The Dockerfile itself
and the postgres image's go through the toolchain's checkov, as infra/terraform does.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from runtime.devstack import toolchain
from runtime.devstack.simulator import ExchangeSimulator, SimulatorConfig
from tests.integration.polling import until

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "infra" / "images" / "engine" / "Dockerfile"
NO_DEVSTACK = "developer tooling is not in this install; use a checkout"


@dataclass(frozen=True)
class Install:
    wheel: Path
    venv: Path
    workdir: Path
    """An empty directory outside the checkout: the processes' working directory."""

    def env(self) -> dict[str, str]:
        """A clean environment: no ARBFLEET_*, no PYTHONPATH, no virtualenv of the checkout."""
        keep = ("HOME", "LANG", "TMPDIR")
        return {k: os.environ[k] for k in keep if k in os.environ} | {
            "PATH": f"{self.venv / 'bin'}:/usr/bin:/bin"
        }

    def run(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        """``args[0]`` of the install's bin/, in the working directory, with ``env`` added."""
        return subprocess.run(
            [str(self.venv / "bin" / args[0]), *args[1:]],
            cwd=self.workdir,
            env=self.env() | env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )


def build_context_files() -> list[str]:
    """What the Dockerfile's build stage copies from the repository (its COPY sources)."""
    stage = DOCKERFILE.read_text().split("\nFROM ")[1]
    sources = []
    for line in stage.splitlines():
        if line.startswith("COPY ") and "--from" not in line:
            sources += line.split()[1:-1]
    return sources


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Install:
    root = tmp_path_factory.mktemp("engine-image")
    assert not root.resolve().is_relative_to(REPO)
    context = root / "context"
    context.mkdir()
    for name in build_context_files():
        source = REPO / name
        if source.is_dir():
            # Without what a checkout builds in place (an editable install's compiled modules).
            ignore = shutil.ignore_patterns("__pycache__", "*.so")
            shutil.copytree(source, context / name, ignore=ignore)
        else:
            shutil.copy2(source, context / name)
    wheels = root / "wheels"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "-w", str(wheels), str(context)], check=True)
    (wheel,) = wheels.glob("arbfleet-*.whl")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [str(venv / "bin" / "python"), *pip[1:], "install", str(wheel)], check=True, timeout=600
    )
    workdir = root / "work"
    workdir.mkdir()
    return Install(wheel, venv, workdir)


def test_the_build_stage_copies_only_the_package() -> None:
    assert sorted(build_context_files()) == ["README.md", "pyproject.toml", "runtime", "strategies"]


def test_wheel_holds_the_engine_and_no_developer_tooling(installed: Install) -> None:
    names = zipfile.ZipFile(installed.wheel).namelist()
    packages = {name.rsplit("/", 1)[0] for name in names if name.endswith(".py")}
    runtime_parts = ("core", "venues", "trading", "engine", "persistence", "platform")
    assert {f"runtime/{part}" for part in runtime_parts} <= packages
    assert {"runtime/observability", "runtime/ops", "runtime/cli", "strategies"} <= packages
    assert "runtime/persistence/migrations/0001_records.sql" in names
    compiled = {name.split(".")[0] for name in names if name.endswith(".so")}
    assert compiled == {"runtime/venues/binance/_wire", "runtime/trading/_sides"}, names
    assert not [n for n in names if n.startswith(("runtime/devstack", "tests/", "bench/"))]
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert (
        "arbfleet = runtime.cli.main:main"
        in zipfile.ZipFile(installed.wheel).read(entry_points).decode()
    )


def test_the_install_imports_from_itself(installed: Install) -> None:
    proc = installed.run(
        "python",
        "-c",
        "import json, runtime, strategies, importlib.util as u;"
        "from runtime.venues.binance.feed import COMPILED;"
        "from runtime.trading import book; print(json.dumps("
        "[runtime.__file__, strategies.__file__, u.find_spec('runtime.devstack') is None,"
        " COMPILED and book.COMPILED]))",
    )
    assert proc.returncode == 0, proc.stderr
    runtime_file, strategies_file, no_devstack, compiled = json.loads(proc.stdout)
    assert compiled, "the install runs the Python path: its compiled modules did not load"
    site = installed.venv.resolve()
    assert Path(runtime_file).resolve().is_relative_to(site)
    assert Path(strategies_file).resolve().is_relative_to(site)
    assert no_devstack


@pytest.mark.parametrize("command", [["dev", "up"], ["toolchain", "status"], ["demo"]])
def test_developer_commands_say_they_need_a_checkout(
    installed: Install, command: list[str]
) -> None:
    proc = installed.run("arbfleet", *command)
    assert proc.returncode == 2, proc.stderr
    assert NO_DEVSTACK in proc.stderr
    assert "Traceback" not in proc.stderr


def test_plugins_load_from_the_install(installed: Install) -> None:
    proc = installed.run("arbfleet", "strategies", "list", "--json")
    assert proc.returncode == 0, proc.stderr
    plugins = json.loads(proc.stdout)["plugins"]
    assert set(plugins) >= {"cross_exchange", "triangular", "pairs_kalman"}


def test_key_rotation_runs_from_the_install(installed: Install) -> None:
    """The key-rotation job's command, on the image's install: it reaches for the Vault Nomad
    names (unreachable here), not for the checkout's local stack."""
    vault = f"http://127.0.0.1:{free_port()}"
    # --mount: without it the command takes the mount from secrets/vault.toml, which an install
    # does not have yet (runtime/platform/vault.py SECRETS_DIR points into the checkout).
    proc = installed.run(
        "arbfleet",
        "secrets",
        "rotate",
        "binance",
        "main",
        "--mount",
        "exchanges",
        VAULT_ADDR=vault,
        VAULT_TOKEN="x",
    )
    assert proc.returncode == 2, proc.stderr
    assert "unreachable" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def frames_by_venue(metrics_url: str) -> dict[str, float]:
    try:
        text = requests.get(metrics_url, timeout=2).text
    except requests.RequestException:
        return {}
    counts: dict[str, float] = {}
    for venue, value in re.findall(
        r'^arbfleet_feed_frames_total\{.*?venue="(\w+)".*?\} (\S+)$', text, re.M
    ):
        counts[venue] = counts.get(venue, 0.0) + float(value)
    return counts


async def test_the_installed_engine_trades_on_the_simulator(installed: Install) -> None:
    """``arbfleet run`` as the image's entrypoint runs it: embedded defaults and the shipped
    strategies, a config file that only points the venues at the simulator, until SIGTERM."""
    simulator = ExchangeSimulator(SimulatorConfig(tick_interval_ms=20.0))
    await simulator.start()
    port = free_port()
    config = installed.workdir / "arbfleet.toml"
    config.write_text(
        f'[venues.binance]\nws_url = "{simulator.binance_ws_url}"\n'
        f'rest_url = "{simulator.http_url}"\n'
        f'[venues.upbit]\nws_url = "{simulator.upbit_ws_url}"\n'
        f'rest_url = "{simulator.upbit_rest_url}"\n'
        f'[health]\nhost = "127.0.0.1"\nport = {port}\n'
    )
    log = installed.workdir / "engine.log"
    engine = await asyncio.create_subprocess_exec(
        str(installed.venv / "bin" / "arbfleet"),
        "run",
        "--config",
        str(config),
        cwd=installed.workdir,
        env=installed.env(),
        stdout=subprocess.DEVNULL,
        stderr=log.open("w"),
    )
    try:
        metrics = f"http://127.0.0.1:{port}/metrics"
        await until(
            lambda: (
                engine.returncode is not None
                or set(frames_by_venue(metrics)) >= {"binance", "upbit"}
            ),
            60,
            "the installed engine's metrics counting frames from both venues",
        )
        assert engine.returncode is None, log.read_text()[-3000:]
        engine.send_signal(signal.SIGTERM)
        await asyncio.wait_for(engine.wait(), 60)
        assert engine.returncode == 0, log.read_text()[-3000:]
    finally:
        if engine.returncode is None:
            engine.kill()
            await engine.wait()
        await simulator.stop()


def test_checkov_passes_the_images() -> None:
    """Every Dockerfile of infra/images (the engine's and PostgreSQL's), offline; suppressions
    are inline ``# checkov:skip=ID:reason`` comments in the Dockerfile."""
    proc = subprocess.run(
        [
            str(toolchain.bin_dir() / "checkov"),
            "--directory",
            str(DOCKERFILE.parents[1]),
            "--framework",
            "dockerfile",
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
    report = json.loads(proc.stdout)
    assert report["summary"]["resource_count"] == len(
        list(DOCKERFILE.parents[1].glob("*/Dockerfile"))
    )
    assert report["summary"]["parsing_errors"] == 0
    results = report["results"]
    failed = [
        f"{c['check_id']} {c['file_path']}: {c['check_name']}" for c in results["failed_checks"]
    ]
    assert failed == [], "checkov findings:\n" + "\n".join(failed)
    # The engine's image runs as a user of its own and says where its health check is.
    engine = {
        c["check_id"] for c in results["passed_checks"] if c["file_path"] == "/engine/Dockerfile"
    }
    assert {"CKV_DOCKER_2", "CKV_DOCKER_3"} <= engine
