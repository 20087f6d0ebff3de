"""The production server profile (servers/profiles.py) run with testinfra against every node of
the local cluster (runtime/devstack/cluster.py), each node a testinfra host that is its network
namespace (servers/namespace_host.py): its listeners, its processes, ``curl`` from inside it.

The cluster is production's bootstrap on one machine, so the profile's facts split in two.

Facts that hold on every node, checked here one test each:

- each agent of the node's role runs in the node, from the rendered unit's ExecStart;
- the rendered agent configs are on the node as rendered (paths rebased under its root) and the
  agents parse them (``consul validate``, ``nomad config validate``, the name they register);
- every path of expected_files.json but the binaries exists under the node's root with the
  production mode, and the owner and group production names, mapped by ``cluster.IDS``;
- the key files arrive after boot (not in the cloud-config) with what ``key_files`` declares;
- every listener of the profile is there, on the node's own address where production binds the
  private address; Consul's plain HTTP on loopback only;
- the HTTPS APIs answer with certificates the node's own CA file verifies, refuse plain HTTP, and
  refuse an anonymous request (ACLs default deny);
- gossip is encrypted (Consul everywhere, Nomad on the servers);
- the node's user_data holds no private key and no gossip key.

Facts that cannot hold on one machine by design (docs/cluster.md, "What differs from
production") are in ``BY_DESIGN``, at the end, each with the evidence checked instead.
"""

from __future__ import annotations

import hashlib
import shlex
from collections.abc import Callable
from typing import Any, NamedTuple

import pytest
import testinfra.host

from runtime.devstack import cloudinit, cluster, netns, toolchain
from runtime.ops import node_keys
from tests.infra.servers import namespace_host, profiles

NODES = cluster.nodes()
PRODUCTION = profiles.production()
# The installer's download in production, the toolchain's binaries here (BY_DESIGN).
BINARIES = "/usr/local/bin/"


class HttpsApi(NamedTuple):
    ca_file: str
    """The node's CA file for this agent (the cloud-init's tls_dir)."""
    open_path: str
    """A path anyone may GET."""
    acl_path: str
    """A path that needs a token."""


APIS = {
    "consul": HttpsApi("/etc/consul.d/tls/ca.pem", "/v1/status/leader", "/v1/acl/tokens"),
    "nomad": HttpsApi("/etc/nomad.d/tls/ca.pem", "/v1/status/leader", "/v1/jobs"),
    "vault": HttpsApi(
        "/etc/vault.d/tls/ca.pem", "/v1/sys/seal-status", "/v1/sys/policies/acl?list=true"
    ),
}


def agents_of(node: cluster.Node) -> list[profiles.Agent]:
    return PRODUCTION.for_roles((node.role,))[0]


def entries_of(node: cluster.Node) -> list[profiles.Entry]:
    return [e for e in PRODUCTION.for_roles((node.role,))[2] if not e.path.startswith(BINARIES)]


def listeners_of(node: cluster.Node) -> list[tuple[str, str, int]]:
    """The profile's listeners, ``ANY`` (production's private address) the node's address."""
    return [
        (a.process, node.address if address == profiles.ANY else address, port)
        for a in agents_of(node)
        for address, port in a.listens
    ]


def gossiping(node: cluster.Node) -> list[str]:
    """Consul gossips on every node, Nomad between servers only."""
    return ["consul", "nomad"] if node.role == "server" else ["consul"]


# Per node, the (value, id) of each fact's parameter; a test's id is the node's, then the value's.
FACTS: dict[str, Callable[[cluster.Node], list[tuple[Any, str]]]] = {
    "agent": lambda n: [(a.process, a.process) for a in agents_of(n)],
    "consul_or_nomad": lambda n: [(a, a) for a in ("consul", "nomad")],
    "gossip_agent": lambda n: [(a, a) for a in gossiping(n)],
    "entry": lambda n: [(e, e.path) for e in entries_of(n)],
    "listener": lambda n: [(x, f"{x[0]}-{x[1]}:{x[2]}") for x in listeners_of(n)],
}
pytestmark = pytest.mark.usefixtures("cluster_up")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "node" not in metafunc.fixturenames:
        return
    fact = next((f for f in FACTS if f in metafunc.fixturenames), None)
    if fact is None:
        metafunc.parametrize("node", NODES, ids=[n.name for n in NODES])
        return
    cases = [(n, value, f"{n.name}-{i}") for n in NODES for value, i in FACTS[fact](n)]
    metafunc.parametrize(("node", fact), [c[:2] for c in cases], ids=[c[2] for c in cases])


@pytest.fixture(scope="module")
def hosts() -> dict[str, testinfra.host.Host]:
    return {n.name: namespace_host.host(netns.namespace(n.name)) for n in NODES}


@pytest.fixture
def host(hosts: dict[str, testinfra.host.Host], node: cluster.Node) -> testinfra.host.Host:
    return hosts[node.name]


def file(host: testinfra.host.Host, node: cluster.Node, path: str) -> Any:
    return host.file(str(cluster.node_path(node, path)))


# --- agents ----------------------------------------------------------------------------------


def node_processes(host: testinfra.host.Host, agent: str) -> list[Any]:
    """The agent's processes in the node (the binary is the toolchain's: ``bao`` for vault)."""
    pids = host.backend.pids()
    return [p for p in host.process.filter(comm=cloudinit.AGENTS[agent]) if p.pid in pids]


def test_agent_runs_in_the_node(host: testinfra.host.Host, agent: str) -> None:
    assert len(node_processes(host, agent)) == 1


def test_agent_runs_the_rendered_unit(
    host: testinfra.host.Host, node: cluster.Node, agent: str
) -> None:
    assert [p.args for p in node_processes(host, agent)] == [
        " ".join(cluster.agent_argv(node, agent))
    ]


def test_unit_names_the_production_user(
    host: testinfra.host.Host, node: cluster.Node, agent: str
) -> None:
    unit = file(host, node, f"/etc/systemd/system/{agent}.service").content_string
    users = [line.removeprefix("User=") for line in unit.splitlines() if line.startswith("User=")]
    wanted = next(a.user for a in agents_of(node) if a.process == agent)
    assert (users or ["root"]) == [wanted]


def test_agent_runs_the_pinned_version(node: cluster.Node, agent: str) -> None:
    assert agent_version(node, agent) == cloudinit.agent_versions()[agent]


def agent_version(node: cluster.Node, agent: str) -> str:
    if agent == "vault":
        return str(
            cluster.api(node, agent, "/v1/sys/health?standbyok=true&perfstandbyok=true")["version"]
        )
    me = cluster.api(node, agent, "/v1/agent/self", token=cluster.token(agent))
    return str(me["Config"]["Version"] if agent == "consul" else me["config"]["Version"]["Version"])


def test_agent_registers_under_the_rendered_name(node: cluster.Node, consul_or_nomad: str) -> None:
    me = cluster.api(node, consul_or_nomad, "/v1/agent/self", token=cluster.token(consul_or_nomad))
    name = me["Config"]["NodeName"] if consul_or_nomad == "consul" else me["config"]["NodeName"]
    assert name == node.name


def test_agent_config_is_valid(
    host: testinfra.host.Host, node: cluster.Node, consul_or_nomad: str
) -> None:
    command = {"consul": "validate", "nomad": "config validate"}[consul_or_nomad]
    binary = toolchain.bin_dir() / consul_or_nomad
    config_dir = cluster.node_path(node, f"/etc/{consul_or_nomad}.d")
    assert host.run(f"{binary} {command} {shlex.quote(str(config_dir))}").rc == 0


def test_agent_configs_are_the_rendered_ones(host: testinfra.host.Host, node: cluster.Node) -> None:
    rendered = {
        f["path"]: cloudinit.rebase(f["content"], cluster.node_root(node))
        for f in cluster.rendered(node)["bootstrap"]["files"]
        if f["path"].endswith(".hcl")
    }
    on_node = {path: file(host, node, path).content_string for path in rendered}
    assert rendered and on_node == rendered


# --- files and directories ---------------------------------------------------------------


def test_entry_exists(host: testinfra.host.Host, node: cluster.Node, entry: profiles.Entry) -> None:
    f = file(host, node, entry.path)
    assert f.is_directory if entry.directory else f.is_file


def test_entry_mode(host: testinfra.host.Host, node: cluster.Node, entry: profiles.Entry) -> None:
    assert file(host, node, entry.path).mode == entry.mode


def test_entry_owner_and_group(
    host: testinfra.host.Host, node: cluster.Node, entry: profiles.Entry
) -> None:
    f = file(host, node, entry.path)
    ids = (cloudinit.user_id(entry.owner, cluster.IDS), cloudinit.user_id(entry.group, cluster.IDS))
    assert (f.uid, f.gid) == ids


# --- listeners and the HTTPS APIs ---------------------------------------------------------


def test_listens(host: testinfra.host.Host, listener: tuple[str, str, int]) -> None:
    _agent, address, port = listener
    assert host.socket(f"tcp://{address}:{port}").is_listening


def test_consul_plain_http_on_loopback_only(host: testinfra.host.Host, node: cluster.Node) -> None:
    bound = [s for s in host.socket.get_listening_sockets() if s.startswith("tcp://")]
    assert [s for s in bound if s.endswith(":8500")] == ["tcp://127.0.0.1:8500"]


def curl(host: testinfra.host.Host, node: cluster.Node, agent: str, path: str, tls: bool) -> str:
    """The HTTP status of GET ``path`` on the node's agent, from inside the node; with TLS,
    verified against the node's own CA file. Every certificate names localhost (the clients'
    name no address), so the name asked is localhost at the node's address."""
    port = cluster.PORTS[agent]
    args = ["--noproxy", "*", "--max-time", "10", "-o", "/dev/null", "-w", "%{http_code}"]
    if tls:
        ca = cluster.node_path(node, APIS[agent].ca_file)
        args += ["--cacert", str(ca), "--resolve", f"localhost:{port}:{node.address}"]
        args.append(f"https://localhost:{port}{path}")
    else:
        args.append(f"http://{node.address}:{port}{path}")
    return str(host.check_output("curl -sS " + " ".join(["%s"] * len(args)), *args))


def test_api_answers_over_tls_verified_by_the_nodes_ca(
    host: testinfra.host.Host, node: cluster.Node, agent: str
) -> None:
    assert curl(host, node, agent, APIS[agent].open_path, tls=True) == "200"


def test_api_refuses_plain_http(host: testinfra.host.Host, node: cluster.Node, agent: str) -> None:
    # Go's TLS servers answer a plain request with 400 "client sent an HTTP request to an
    # HTTPS server".
    assert curl(host, node, agent, APIS[agent].open_path, tls=False) == "400"


def test_api_refuses_an_anonymous_request(
    host: testinfra.host.Host, node: cluster.Node, agent: str
) -> None:
    assert curl(host, node, agent, APIS[agent].acl_path, tls=True) == "403"


def test_gossip_is_encrypted(node: cluster.Node, gossip_agent: str) -> None:
    me = cluster.api(node, gossip_agent, "/v1/agent/self", token=cluster.token(gossip_agent))
    serf = me["Stats"]["serf_lan"] if gossip_agent == "consul" else me["stats"]["serf"]
    assert serf["encrypted"] == "true"


# --- key files, after boot -----------------------------------------------------------------


def key_files(node: cluster.Node) -> list[tuple[dict[str, str], node_keys.KeyFile]]:
    """What ``key_files`` declares for the node, with the files ``push`` made of the keys."""
    spec = cluster.rendered(node)["key_files"]
    return list(zip(spec, node_keys.key_files(spec, cluster.keys_dir()), strict=True))


def test_key_files_are_not_in_the_cloud_config(node: cluster.Node) -> None:
    declared = {spec["path"] for spec, _ in key_files(node)}
    cloud_config = {f["path"] for f in cluster.rendered(node)["bootstrap"]["files"]}
    assert declared and not declared & cloud_config


def test_key_files_have_the_declared_modes(host: testinfra.host.Host, node: cluster.Node) -> None:
    declared = {spec["path"]: int(spec["mode"], 8) for spec, _ in key_files(node)}
    assert {path: file(host, node, path).mode for path in declared} == declared


def test_key_files_have_the_declared_owners(host: testinfra.host.Host, node: cluster.Node) -> None:
    declared = {
        spec["path"]: tuple(cloudinit.user_id(spec[k], cluster.IDS) for k in ("owner", "group"))
        for spec, _ in key_files(node)
    }
    on_node = {path: (file(host, node, path).uid, file(host, node, path).gid) for path in declared}
    assert on_node == declared


def test_key_files_hold_the_pushed_keys(host: testinfra.host.Host, node: cluster.Node) -> None:
    # Digests, not contents: a failure must not print a key.
    pushed = {f.path: hashlib.sha256(f.content.encode()).hexdigest() for _, f in key_files(node)}
    assert {path: file(host, node, path).sha256sum for path in pushed} == pushed


def test_user_data_holds_no_private_key_and_no_gossip_key(node: cluster.Node) -> None:
    user_data = cluster.rendered(node)["user_data"]
    # Each line of a key's text (user_data quotes what it carries, so not the text as a whole).
    lines = {
        spec["secret"]: [
            line
            for line in node_keys.secret_value(cluster.keys_dir(), spec["secret"]).splitlines()
            if "-----" not in line
        ]
        for spec, _ in key_files(node)
    }
    found = [name for name, text in lines.items() if any(line in user_data for line in text)]
    assert "PRIVATE KEY" not in user_data and found == []


# --- what cannot hold on one machine, and the evidence instead -----------------------------

# The tests named are the evidence; naming them as objects keeps this list from going stale.
BY_DESIGN: dict[str, tuple[str, tuple[Callable[..., None], ...]]] = {
    "agents run as their service users (consul, vault), which exist": (
        "every agent runs as root (cluster.IDS: no such users on a developer machine); the "
        "node's rendered unit names production's user; tests/infra/test_terraform.py applies "
        "the cloud-config, users included",
        (test_unit_names_the_production_user,),
    ),
    "files owned by those users": (
        "owners and groups mapped by cluster.IDS; production's modes hold unchanged",
        (test_entry_owner_and_group, test_entry_mode, test_key_files_have_the_declared_owners),
    ),
    "the hostname is the node's name": (
        "one hostname (a network namespace has no hostname of its own); the agents register "
        "under the rendered node name",
        (test_agent_registers_under_the_rendered_name,),
    ),
    "the systemd units are active": (
        "no systemd per node; the unit files are there with production's modes and each agent "
        "runs its unit's ExecStart, started by node_keys.push once the key files are in place",
        (test_agent_runs_the_rendered_unit, test_entry_exists),
    ),
    "the installer's binaries in /usr/local/bin": (
        "the toolchain's (OpenBao for vault); each agent reports the version the installer "
        "pins, and the installer script is on the node",
        (test_agent_runs_the_pinned_version,),
    ),
    "the data role's host volumes, the fleet's engines and Prometheus": (
        "no data client and no job of its own on the cluster; engines on it: "
        "test_cluster_engines.py, test_cluster_failures.py",
        (),
    ),
}
