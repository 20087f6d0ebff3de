"""The multi-node cluster (`arbfleet dev cluster`): up once for the module, the properties the
production bootstrap promises checked against the real agents, then down leaving nothing.

Needs root (namespaces, veths, a bridge), as on CI. Hooks for the failure tests still to come
(leader kill, drain, partition, kill -9): ``cluster.nodes()``, ``cluster.agent_pid(node, agent)``
for the process to kill, ``netns.namespace(node)`` for ``ip -n <ns> link set eth0 down``,
``cluster.token(agent)`` and ``cluster.api(node, agent, path)`` for the APIs.
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess

import pytest

from runtime.devstack import cluster, netns, toolchain


def test_three_nomad_servers_with_a_leader(cluster_up: float) -> None:
    assert len(cluster.nomad_servers()) == 3
    leader = cluster.api(cluster.servers()[0], "nomad", "/v1/status/leader")
    assert leader.split(":")[0] in {n.address for n in cluster.servers()}


def test_two_ready_clients_and_five_consul_members(cluster_up: float) -> None:
    assert sorted(cluster.nomad_ready_clients()) == ["client-1", "client-2"]
    assert sorted(cluster.consul_members()) == sorted(n.name for n in cluster.nodes())


# An anonymous request refused, plain HTTP refused, Consul's plain HTTP on loopback only: on
# every node, from inside it, in test_cluster_profiles.py.
@pytest.mark.parametrize(("agent", "path"), [("consul", "/v1/acl/tokens"), ("nomad", "/v1/jobs")])
def test_acls_take_the_bootstrap_token(cluster_up: float, agent: str, path: str) -> None:
    assert cluster.api(cluster.servers()[1], agent, path, token=cluster.token(agent)) is not None


def _consul_rpc_tls(cert: str | None) -> None:
    """A TLS handshake on Consul's server RPC port (first byte 3: RPCTLS), where its config says
    ``verify_incoming``; TLS 1.2 so that a refused certificate fails the handshake itself."""
    ctx = ssl.create_default_context(cafile=str(cluster.keys_dir() / "ca.pem"))
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    if cert:
        ctx.load_cert_chain(
            cluster.keys_dir() / f"{cert}.pem", cluster.keys_dir() / f"{cert}-key.pem"
        )
    with socket.create_connection((cluster.servers()[0].address, 8300), timeout=5) as sock:
        sock.sendall(b"\x03")
        with ctx.wrap_socket(sock, server_hostname=f"server.{cluster.CONSUL_DC}.consul") as tls:
            tls.sendall(b"\x00")  # the handshake is done; a byte proves the channel works


def test_consul_rpc_needs_a_client_certificate(cluster_up: float) -> None:
    with pytest.raises((ssl.SSLError, ConnectionError)):
        _consul_rpc_tls(None)
    _consul_rpc_tls("client")


def test_gossip_is_encrypted_with_the_pushed_key(cluster_up: float) -> None:
    env = toolchain.tool_env(
        {
            "CONSUL_HTTP_ADDR": cluster.url(cluster.servers()[0], "consul", ""),
            "CONSUL_CACERT": str(cluster.keys_dir() / "ca.pem"),
            "CONSUL_HTTP_TOKEN": cluster.token("consul"),
        }
    )
    proc = subprocess.run(
        ["consul", "keyring", "-list"], env=env, capture_output=True, text=True, check=True
    )
    key = (cluster.keys_dir() / "consul-gossip.key").read_text().strip()
    assert key in proc.stdout
    assert "[5/5]" in proc.stdout  # every LAN member holds it


def test_openbao_initialised_unsealed_on_raft(cluster_up: float) -> None:
    for server in cluster.servers():
        seal = cluster.api(server, "vault", "/v1/sys/seal-status")
        assert seal["initialized"] and not seal["sealed"]
        assert seal.get("storage_type", "raft") == "raft"
    voters = cluster.raft_servers()
    assert sorted(s["node_id"] for s in voters) == ["server-1", "server-2", "server-3"]
    assert sum(s["leader"] for s in voters) == 1


def test_secrets_are_mode_0600_and_no_route_leaves(cluster_up: float) -> None:
    for path in [*cluster.secret_file("").iterdir(), *cluster.keys_dir().glob("*-key.pem")]:
        assert path.stat().st_mode & 0o077 == 0, path
    for node in cluster.nodes():
        routes = subprocess.run(
            ["ip", "-n", netns.namespace(node.name), "-j", "route"],
            capture_output=True,
            text=True,
            check=True,
        )
        assert [r["dst"] for r in json.loads(routes.stdout)] == [str(cluster.SUBNET)]


def test_down_leaves_no_namespace_link_or_process(cluster_up: float) -> None:
    pids = [cluster.agent_pid(n, "consul") for n in cluster.nodes()]
    cluster.down(say=print)
    assert cluster.leftovers() == {"namespaces": [], "links": [], "processes": []}
    assert not [p for p in pids if p and os.path.exists(f"/proc/{p}")]
    assert netns.NS_PREFIX not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout  # fmt: skip
    cluster.down(say=print)  # idempotent
