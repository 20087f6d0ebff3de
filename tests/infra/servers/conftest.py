"""Options, facts and fixtures of the server suite (pytest-testinfra).

    pytest tests/infra/servers                                   # this node, the local profile
    pytest tests/infra/servers --hosts=ssh://root@10.0.1.10,ssh://root@10.0.1.11 \
        --arbfleet-profile=production --arbfleet-role=server

One run checks one host group: ``--arbfleet-role`` selects the checks (repeat it for a node in
several roles; the local profile's node has all three). Facts (agents, listeners, users, files
and directories) become one test each; a test marked ``roles(...)`` runs only for those roles
(the others are deselected, not skipped).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import testinfra.host

from tests.infra.servers import profiles
from tests.stack_plugin import wait_for


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("arbfleet servers")
    group.addoption("--arbfleet-profile", choices=("local", "production"), default="local")
    group.addoption(
        "--arbfleet-role",
        action="append",
        choices=profiles.ROLES,
        default=[],
        help="host group to check (repeatable); default: every role the profile's node has",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "roles(*names): run only when checking one of these roles")


def load_profile(config: pytest.Config) -> profiles.Profile:
    if config.getoption("arbfleet_profile") == "local":
        return profiles.local()
    return profiles.production()


def selected_roles(config: pytest.Config, profile: profiles.Profile) -> tuple[str, ...]:
    roles = tuple(config.getoption("arbfleet_role")) or profile.default_roles
    if not roles:
        raise pytest.UsageError(f"the {profile.name} profile needs --arbfleet-role")
    return roles


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    profile = load_profile(metafunc.config)
    agents, users, entries = profile.for_roles(selected_roles(metafunc.config, profile))
    facts: dict[str, tuple[list[Any], list[str]]] = {
        "agent": (agents, [a.process for a in agents]),
        "listener": (
            listeners := [(a.process, addr, port) for a in agents for addr, port in a.listens],
            [f"{p}-{addr}:{port}" for p, addr, port in listeners],
        ),
        "user": (users, users),
        "entry": (entries, [e.path for e in entries]),
    }
    for name, (values, ids) in facts.items():
        if name in metafunc.fixturenames:
            metafunc.parametrize(name, values, ids=ids)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = str(Path(__file__).parent)
    mine = [item for item in items if str(item.path).startswith(here)]
    if not mine:
        return
    roles = set(selected_roles(config, load_profile(config)))
    deselected = [
        item
        for item in mine
        if (marker := item.get_closest_marker("roles")) and not roles & set(marker.args)
    ]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if item not in deselected]


@pytest.fixture(scope="session")
def profile(request: pytest.FixtureRequest) -> profiles.Profile:
    return load_profile(request.config)


@dataclass(frozen=True)
class Http:
    """GET an agent's API from the node itself, with the node's curl (cloud-init installs it)."""

    host: testinfra.host.Host

    def get(self, api: profiles.Api, path: str) -> Any:
        args = ["--max-time", "10", f"{api.url}{path}"]
        if api.ca_file:
            args += ["--cacert", api.ca_file]
        token = os.environ.get(api.token_env or "")
        if token:
            args += ["--header", f"{api.token_header}: {token}"]
        return json.loads(self.host.check_output("curl -sS " + " ".join(["%s"] * len(args)), *args))

    def status(self, url: str) -> int:
        return int(
            self.host.check_output("curl -s -o /dev/null -w '%%{http_code}' --max-time 10 %s", url)
        )


@pytest.fixture(scope="module")
def http(host: testinfra.host.Host) -> Http:
    return Http(host)


@dataclass(frozen=True)
class Fleet:
    """The engines and Prometheus to check, and the scrape targets that must be up (None: all)."""

    engines: list[str]
    prometheus: str
    must_be_up: set[str] | None


@pytest.fixture(scope="module")
def fleet(request: pytest.FixtureRequest, profile: profiles.Profile, http: Http) -> Fleet:
    if profile.name == "local":
        # The local stack runs no job of its own: deploy the monitored workload (tests/infra/
        # conftest.py). Other tests' jobs share the stack, so only its own targets must be up.
        workload = request.getfixturevalue("local_workload")
        own = {url.removeprefix("http://") for url in (workload.engine, workload.prometheus)}

        def scraped() -> bool:
            # Settle, not check: every own target scraped once (up or down), as on a live fleet.
            targets = http.get(profiles.Api(workload.prometheus), "/api/v1/targets")
            seen = {t["labels"]["instance"]: t["health"] for t in targets["data"]["activeTargets"]}
            return all(seen.get(instance, "unknown") != "unknown" for instance in own)

        wait_for(scraped, 60, "Prometheus to scrape the workload once")
        return Fleet([workload.engine], workload.prometheus, own)

    def urls(service: str) -> list[str]:
        entries = http.get(profile.consul, f"/v1/catalog/service/{service}")
        return [f"http://{e['ServiceAddress']}:{e['ServicePort']}" for e in entries]

    return Fleet(urls("arbfleet-engine"), urls("prometheus")[0], None)
