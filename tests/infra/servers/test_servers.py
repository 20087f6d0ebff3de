"""A node of the fleet, checked from the outside with pytest-testinfra: agents and their ports,
users, files and directories (owner, group, integer mode), and what the agents' APIs say about the
node. The expectations are the profile's data (profiles.py); see conftest.py for how to run it
against servers. One assertion per fact."""

from __future__ import annotations

from typing import Any

import pytest
import testinfra.host

from tests.infra.servers import profiles
from tests.infra.servers.conftest import Fleet, Http

# --- agents ----------------------------------------------------------------------------------


def test_agent_runs(host: testinfra.host.Host, agent: profiles.Agent) -> None:
    assert host.process.filter(comm=agent.process)


def test_agent_runs_as_its_user(host: testinfra.host.Host, agent: profiles.Agent) -> None:
    assert {p.user for p in host.process.filter(comm=agent.process)} == {agent.user}


def test_listens(host: testinfra.host.Host, listener: tuple[str, str, int]) -> None:
    _process, address, port = listener
    bound = {
        tuple(s.removeprefix("tcp://").rsplit(":", 1))
        for s in host.socket.get_listening_sockets()
        if s.startswith("tcp://")
    }
    wanted = {a for a, p in bound if p == str(port)}
    assert address in wanted or (address == profiles.ANY and wanted)


# --- users, files and directories ------------------------------------------------------------


def test_user_exists(host: testinfra.host.Host, user: str) -> None:
    assert host.user(user).exists


def test_entry_exists(host: testinfra.host.Host, entry: profiles.Entry) -> None:
    f = host.file(entry.path)
    assert f.is_directory if entry.directory else f.is_file


def test_entry_owner(host: testinfra.host.Host, entry: profiles.Entry) -> None:
    # Host volumes may be owned by an image's numeric uid that has no user on the node.
    f = host.file(entry.path)
    assert (str(f.uid) if entry.owner.isdigit() else f.user) == entry.owner


def test_entry_group(host: testinfra.host.Host, entry: profiles.Entry) -> None:
    f = host.file(entry.path)
    assert (str(f.gid) if entry.group.isdigit() else f.group) == entry.group


def test_entry_mode(host: testinfra.host.Host, entry: profiles.Entry) -> None:
    assert host.file(entry.path).mode == entry.mode


# --- what the agents say ---------------------------------------------------------------------


def node_name(host: testinfra.host.Host) -> str:
    # The agents register under the hostname (the cluster module's node_name; dev agents' default).
    return host.check_output("hostname")


def test_consul_members_alive(http: Http, profile: profiles.Profile) -> None:
    members = http.get(profile.consul, "/v1/agent/members")
    assert {m["Name"]: m["Status"] for m in members if m["Status"] != 1} == {}  # 1: alive


def test_consul_member_is_this_node(
    host: testinfra.host.Host, http: Http, profile: profiles.Profile
) -> None:
    assert http.get(profile.consul, "/v1/agent/self")["Config"]["NodeName"] == node_name(host)


@pytest.mark.roles("server")
def test_nomad_server_alive(
    host: testinfra.host.Host, http: Http, profile: profiles.Profile
) -> None:
    members = http.get(profile.nomad, "/v1/agent/members")["Members"]
    name = node_name(host)
    assert [m["Status"] for m in members if m["Name"].split(".")[0] == name] == ["alive"]


@pytest.mark.roles("server")
def test_nomad_has_a_leader(http: Http, profile: profiles.Profile) -> None:
    assert http.get(profile.nomad, "/v1/status/leader")


@pytest.mark.roles("client", "data")
def test_nomad_node_ready(host: testinfra.host.Host, http: Http, profile: profiles.Profile) -> None:
    nodes = http.get(profile.nomad, "/v1/nodes")
    name = node_name(host)
    assert [n["Status"] for n in nodes if n["Name"] == name] == ["ready"]


@pytest.mark.roles("client", "data")
def test_nomad_node_eligible(
    host: testinfra.host.Host, http: Http, profile: profiles.Profile
) -> None:
    nodes = http.get(profile.nomad, "/v1/nodes")
    name = node_name(host)
    assert [n["SchedulingEligibility"] for n in nodes if n["Name"] == name] == ["eligible"]


@pytest.mark.roles("server")
def test_vault_initialized(http: Http, profile: profiles.Profile) -> None:
    assert http.get(profile.vault, "/v1/sys/health?standbyok=true")["initialized"] is True


@pytest.mark.roles("server")
def test_vault_unsealed(http: Http, profile: profiles.Profile) -> None:
    assert http.get(profile.vault, "/v1/sys/health?standbyok=true")["sealed"] is False


# --- the fleet, from a client ----------------------------------------------------------------


@pytest.mark.roles("client")
def test_engines_registered(fleet: Fleet) -> None:
    assert fleet.engines


@pytest.mark.roles("client")
def test_engine_health_endpoint_passing(http: Http, fleet: Fleet) -> None:
    assert {url: http.status(f"{url}/health") for url in fleet.engines} == dict.fromkeys(
        fleet.engines, 200
    )


@pytest.mark.roles("client")
def test_engine_consul_checks_passing(http: Http, profile: profiles.Profile, fleet: Fleet) -> None:
    entries = http.get(profile.consul, "/v1/health/service/arbfleet-engine")
    ours = [e for e in entries if service_url(e) in fleet.engines]
    assert {c["Status"] for e in ours for c in e["Checks"]} == {"passing"}


@pytest.mark.roles("client")
def test_prometheus_targets_up(http: Http, profile: profiles.Profile, fleet: Fleet) -> None:
    api = profiles.Api(fleet.prometheus)
    targets = http.get(api, "/api/v1/targets?state=active")["data"]["activeTargets"]
    scope = [t for t in targets if fleet.must_be_up is None or instance(t) in fleet.must_be_up]
    assert {instance(t): t["health"] for t in scope} == dict.fromkeys(
        fleet.must_be_up or map(instance, targets), "up"
    )


def service_url(entry: dict[str, Any]) -> str:
    return f"http://{entry['Service']['Address']}:{entry['Service']['Port']}"


def instance(target: dict[str, Any]) -> str:
    return str(target["labels"]["instance"])
