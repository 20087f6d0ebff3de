"""The monitoring files against the real tools: promtool, amtool and a real Alertmanager.

promtool comes from the toolchain (upstream: Debian builds Prometheus without Consul service
discovery, which prometheus.yml uses); amtool and Alertmanager from Debian's
`prometheus-alertmanager`, installed by `arbfleet dev packages`. A missing binary fails these
tests: nothing here skips.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from monitoring.alerting import alert_rules
from monitoring.settings import load_settings, minutes
from runtime.devstack import toolchain

MONITORING = Path(__file__).resolve().parents[2] / "monitoring"
PROMETHEUS = MONITORING / "prometheus"
ALERTMANAGER_CONFIG = MONITORING / "alertmanager" / "alertmanager.yml"
PACKAGES = {
    "promtool": "the toolchain (nox -s toolchain)",
    "amtool": "prometheus-alertmanager",
    "prometheus-alertmanager": "prometheus-alertmanager",
}


def binary(name: str) -> str:
    found = shutil.which(name, path=toolchain.tool_env()["PATH"])
    assert found, f"{name} not found: install {PACKAGES[name]}"
    return found


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=120)


def test_promtool_check_config() -> None:
    result = run(binary("promtool"), "check", "config", PROMETHEUS / "prometheus.yml")
    assert "consul_sd_configs not found" not in result.stdout + result.stderr, (
        "this promtool has no Consul service discovery (Debian disables it); build it from "
        "github.com/prometheus/prometheus/cmd/promtool into the toolchain's bin directory"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 2 rule files found" in result.stdout


def test_promtool_check_rules() -> None:
    files = sorted((PROMETHEUS / "rules").glob("*.yml"))
    result = run(binary("promtool"), "check", "rules", *files)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(files) == 2


def test_promtool_test_rules() -> None:
    files = sorted((PROMETHEUS / "tests").glob("*.yml"))
    result = run(binary("promtool"), "test", "rules", *files)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(files) == 2


def test_promtool_tests_catch_a_for_that_is_one_minute_longer(tmp_path: Path) -> None:
    # Proves the generated cases are exact: every alert must fail once its `for:` moves.
    shutil.copytree(PROMETHEUS, tmp_path / "prometheus")
    rules = tmp_path / "prometheus" / "rules" / "alerts.yml"
    text = rules.read_text()
    for line in sorted({ln for ln in text.splitlines() if ln.strip().startswith("for: ")}):
        longer = minutes(line.split(": ")[1]) + 1
        text = text.replace(line + "\n", line.split("for: ")[0] + f"for: {longer}m\n")
    rules.write_text(text)

    result = run(binary("promtool"), "test", "rules", tmp_path / "prometheus/tests/alerts_test.yml")
    assert result.returncode != 0
    names = {r["alert"] for g in alert_rules(load_settings())["groups"] for r in g["rules"]}
    assert {n for n in names if f"alertname: {n}," in result.stderr} == names


def test_amtool_check_config() -> None:
    result = run(binary("amtool"), "check-config", ALERTMANAGER_CONFIG)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 inhibit rules" in result.stdout


@pytest.mark.parametrize(
    ("labels", "receivers"),
    [
        (["severity=critical", "mode=live", "alertname=ArbfleetFeedStale"], "pager,slack"),
        (["severity=critical", "alertname=ArbfleetDiskUsageHigh"], "pager,slack"),
        (["severity=critical", "mode=paper", "alertname=ArbfleetDailyLossNearLimit"], "slack"),
        (["severity=warning", "mode=live", "alertname=ArbfleetLoopLagHigh"], "slack"),
        (["severity=critical", "mode=live", "alertname=ArbfleetEngineCannotTrade"], "pager,slack"),
        (["severity=critical", "mode=paper", "alertname=ArbfleetEngineCannotTrade"], "slack"),
        (["severity=warning", "mode=live", "alertname=ArbfleetEngineDegraded"], "slack"),
        # Cluster-wide, so without mode or deployment; an operator's halt never pages.
        (["severity=warning", "alertname=ArbfleetKillSwitchEngaged"], "slack"),
    ],
)
def test_alerts_route_by_severity_and_mode(labels: list[str], receivers: str) -> None:
    result = run(
        binary("amtool"),
        "config",
        "routes",
        "test",
        f"--config.file={ALERTMANAGER_CONFIG}",
        f"--verify.receivers={receivers}",
        *labels,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[str]:
    """A real Alertmanager with our config on a loopback port; no cluster, nothing sent yet."""
    port = free_port()
    proc = subprocess.Popen(
        [
            binary("prometheus-alertmanager"),
            f"--config.file={ALERTMANAGER_CONFIG}",
            f"--storage.path={tmp_path}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ],
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "alertmanager.log").open("w"),
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, (tmp_path / "alertmanager.log").read_text()
            try:
                if requests.get(f"{url}/-/ready", timeout=1).ok:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, "Alertmanager did not become ready"
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def alert(name: str, deployment: str, severity: str = "critical") -> dict[str, object]:
    labels = {"alertname": name, "deployment": deployment, "severity": severity, "mode": "live"}
    return {"labels": labels, "annotations": {"summary": name}}


def inhibited(alertmanager: str, alerts: list[dict[str, object]]) -> dict[tuple[str, str], bool]:
    """Post `alerts`, then whether Alertmanager inhibits each, by (alertname, deployment)."""
    posted = requests.post(f"{alertmanager}/api/v2/alerts", timeout=5, json=alerts)
    assert posted.ok, posted.text
    deadline = time.monotonic() + 10
    while True:
        got = requests.get(f"{alertmanager}/api/v2/alerts", timeout=5).json()
        out = {
            (a["labels"]["alertname"], a["labels"]["deployment"]): bool(a["status"]["inhibitedBy"])
            for a in got
        }
        if len(out) == len(alerts) or time.monotonic() > deadline:
            return out
        time.sleep(0.2)


def test_engine_down_inhibits_feed_stale_of_the_same_deployment_only(alertmanager: str) -> None:
    alerts = [
        alert("ArbfleetEngineDown", "a"),
        alert("ArbfleetFeedStale", "a"),
        alert("ArbfleetFeedStale", "b"),
    ]
    assert inhibited(alertmanager, alerts) == {
        ("ArbfleetEngineDown", "a"): False,
        ("ArbfleetFeedStale", "a"): True,
        ("ArbfleetFeedStale", "b"): False,
    }


def test_a_stale_feed_or_spill_inhibits_the_can_trade_alerts_of_its_deployment(
    alertmanager: str,
) -> None:
    alerts = [
        alert("ArbfleetFeedStale", "a"),
        alert("ArbfleetEngineCannotTrade", "a"),
        alert("ArbfleetEngineCannotTrade", "b"),
        alert("ArbfleetWriterSpilling", "c", "warning"),
        alert("ArbfleetEngineDegraded", "c", "warning"),
        alert("ArbfleetEngineCannotTrade", "c"),  # a warning never hides a page
    ]
    assert inhibited(alertmanager, alerts) == {
        ("ArbfleetFeedStale", "a"): False,
        ("ArbfleetEngineCannotTrade", "a"): True,
        ("ArbfleetEngineCannotTrade", "b"): False,
        ("ArbfleetWriterSpilling", "c"): False,
        ("ArbfleetEngineDegraded", "c"): True,
        ("ArbfleetEngineCannotTrade", "c"): False,
    }
