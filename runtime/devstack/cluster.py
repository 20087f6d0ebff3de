"""A production-shaped cluster on one machine: `arbfleet dev cluster up|down|status`.

Three servers (Consul, OpenBao with raft storage, Nomad) and two clients (Consul, Nomad), each in
a network namespace of its own (runtime/devstack/netns.py), with TLS, gossip encryption and ACLs
on. The agents run from the files the cluster module's cloud-init renders for production (a real
``tofu apply``, runtime/devstack/cloudinit.py) and get their private keys and gossip keys after
boot through ``runtime.ops.node_keys.push``, the production path, with files written into the
node's root directory instead of over SSH. What differs from production is in ``overlays`` and
``AGENT_START``, each with its reason; docs/cluster.md has the drawing and the figures.

State lives in ``$ARBFLEET_CLUSTER_DIR`` (default ``/tmp/arbfleet-cluster-<uid>``): ``keys/``
(CA, certificates, keys, gossip keys), ``secrets/`` (management tokens and OpenBao's unseal key,
mode 0600), ``nodes/<node>/root/`` (each node's /etc and /opt), ``log/`` and ``run/`` (pids).
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import shutil
import signal
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runtime.core.errors import StackError
from runtime.devstack import cloudinit, netns, pki, stack, toolchain
from runtime.ops import node_keys

SUBNET = ipaddress.IPv4Network(os.environ.get("ARBFLEET_CLUSTER_SUBNET", "10.216.16.0/24"))
CONSUL_DC = "arbcluster"
REGION = "global"
DATACENTER = "dc1"
UP_TIMEOUT_S = 150.0
# No consul or vault user on a developer's machine: every agent runs as root here.
IDS = {"root": 0, "consul": 0, "vault": 0}
PORTS = {"consul": 8501, "nomad": 4646, "vault": 8200}  # the HTTPS APIs, as in production
TOKEN_HEADER = {"consul": "X-Consul-Token", "nomad": "X-Nomad-Token", "vault": "X-Vault-Token"}


@dataclass(frozen=True)
class Node:
    name: str
    role: str
    address: str


def nodes() -> list[Node]:
    """Servers at .10, .11, .12 and clients from .100, as the cluster module numbers them."""
    net = SUBNET.network_address
    servers = [Node(f"server-{i + 1}", "server", str(net + 10 + i)) for i in range(3)]
    clients = [Node(f"client-{i + 1}", "client", str(net + 100 + i)) for i in range(2)]
    return servers + clients


def servers() -> list[Node]:
    return [n for n in nodes() if n.role == "server"]


def state_dir() -> Path:
    default = Path(tempfile.gettempdir()) / f"arbfleet-cluster-{os.getuid()}"
    return Path(os.environ.get("ARBFLEET_CLUSTER_DIR", default))


def keys_dir() -> Path:
    return state_dir() / "keys"


def secret_file(name: str) -> Path:
    """``consul-management-token``, ``nomad-management-token``, ``openbao-init.json``, ..."""
    return state_dir() / "secrets" / name


def node_root(node: Node) -> Path:
    return state_dir() / "nodes" / node.name / "root"


def node_path(node: Node, path: str) -> Path:
    """Where the production path ``path`` (``/etc/consul.d/consul.hcl``) is on this node."""
    return cloudinit.under(node_root(node), path)


def rendered(node: Node) -> dict[str, Any]:
    """The node's cloud-init outputs (``cloudinit.OUTPUTS``) of the last ``up``: what production
    would hand the cloud (``user_data``) and push after boot (``key_files``, no secret in it)."""
    return dict(json.loads(_rendered_file().read_text())[node.name])


def _rendered_file() -> Path:
    return state_dir() / "render" / "outputs.json"


Say = Callable[[str], None]


def _say(message: str) -> None:
    print(f"[cluster] {message}", flush=True)


# --- HTTPS to the agents --------------------------------------------------------------------


def _context(node: Node) -> ssl.SSLContext:
    """Verify against the cluster's CA. Servers' certificates name their addresses; the client
    certificate (one per role, production's recipe) names none, so for a client node only the
    chain is checked."""
    ctx = ssl.create_default_context(cafile=str(keys_dir() / "ca.pem"))
    ctx.check_hostname = node.role == "server"
    return ctx


def url(node: Node, agent: str, path: str) -> str:
    return f"https://{node.address}:{PORTS[agent]}{path}"


def api(
    node: Node,
    agent: str,
    path: str,
    method: str = "GET",
    body: Any = None,
    token: str | None = None,
) -> Any:
    """One JSON call to an agent's HTTPS API (no proxy: the nodes are local)."""
    data = None if body is None else json.dumps(body).encode()
    headers = {TOKEN_HEADER[agent]: token} if token else {}
    request = urllib.request.Request(url(node, agent, path), data, headers, method=method)
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=_context(node))
    )
    try:
        with opener.open(request, timeout=30) as response:
            raw = response.read()
    except urllib.error.HTTPError as exc:
        raise StackError(f"{method} {request.full_url}: HTTP {exc.code} {exc.read()!r}") from exc
    return json.loads(raw) if raw.strip() else None


def _answer(call: Callable[[], Any]) -> Any:
    """The call's result, or None while the agent cannot answer yet."""
    try:
        return call()
    except (OSError, StackError):
        return None


def wait_for(what: str, fact: Callable[[], Any], timeout_s: float = UP_TIMEOUT_S) -> Any:
    """Poll ``fact`` until it is truthy; fail naming ``what`` at the deadline."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = _answer(fact)
        if value:
            return value
        time.sleep(0.25)
    raise StackError(f"cluster: {what} not within {timeout_s:.0f} s (logs: {state_dir() / 'log'})")


def token(agent: str) -> str:
    return secret_file(f"{agent}-management-token").read_text().strip()


# --- agents ---------------------------------------------------------------------------------


def _pid_file(node: Node, agent: str) -> Path:
    return state_dir() / "run" / f"{node.name}-{agent}.pid"


def agent_argv(node: Node, agent: str) -> list[str]:
    """The rendered unit's ExecStart, with the toolchain's binary (OpenBao for ``vault``) and
    the node's root under its paths: the installer is not run, nothing is copied."""
    unit = node_path(node, f"/etc/systemd/system/{agent}.service").read_text()
    exec_start = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
    program, *args = exec_start.removeprefix("ExecStart=").split()
    binary = toolchain.bin_dir() / cloudinit.AGENTS[Path(program).name]
    return [str(binary), *(a.replace("=/", f"={node_root(node)}/") for a in args)]


def start_agent(node: Node, agent: str) -> None:
    log = state_dir() / "log" / f"{node.name}-{agent}.log"
    argv = ["ip", "netns", "exec", netns.namespace(node.name), *agent_argv(node, agent)]
    with log.open("ab") as out:
        proc = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=node_root(node),
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(node_root(node))},
            start_new_session=True,  # own process group: `down` signals the whole group
        )
    _pid_file(node, agent).write_text(str(proc.pid))


def agent_pid(node: Node, agent: str) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        pid = int(_pid_file(node, agent).read_text())
        if stack.pid_alive(pid):
            return pid
    return None


# Production's units start in this order once the keys are in place (systemctl start consul
# vault nomad). Here Nomad waits until Consul's ACLs and OpenBao are set up: Nomad 1.6.1 has no
# workload identity, and its legacy integration needs a token from the initialised OpenBao
# before its servers start (on Nomad 1.7+ production starts it right away).
AGENT_START = {"consul": "now", "vault": "now", "nomad": "after secrets store"}


# The one place where the local cluster's agent configs differ from production's: files beside
# the rendered ones (agents merge every file of their config directory).
OVERLAY = "zz-local-cluster.hcl"


def consul_overlay(secrets: dict[str, str]) -> str:
    return (
        "# Local cluster only (production: `consul acl set-agent-token` after bootstrap).\n"
        f'acl {{\n  tokens {{\n    agent = "{secrets["consul-agent"]}"\n  }}\n}}\n'
        "# Nothing may leave the namespaces (there is no route out anyway).\n"
        "disable_update_check = true\n"
    )


def nomad_overlay(node: Node, secrets: dict[str, str]) -> str:
    nomad = (
        "# Local cluster only. Production gives Nomad agents a Consul token the same way.\n"
        f'consul {{\n  token = "{secrets["nomad-consul"]}"\n}}\n'
        "disable_update_check = true\n"
    )
    if node.role == "client":
        # No docker here: raw_exec for the engines on the cluster; no default route in a
        # namespace, so name the interface; a cgroup parent per client, beside other Nomads.
        return nomad + (
            "client {\n"
            '  network_interface = "eth0"\n'
            f'  cgroup_parent     = "arbfleet-cluster-{node.name}"\n'
            '  options = {\n    "fingerprint.denylist" = '
            '"env_aws,env_gce,env_azure,env_digitalocean"\n  }\n}\n'
            'plugin "raw_exec" {\n  config {\n    enabled = true\n  }\n}\n'
        )
    if stack.vault_identity() == "legacy_token":
        return nomad + (
            "# Nomad 1.6.1: the legacy integration (stack.vault_identity()).\n"
            f'vault {{\n  token            = "{secrets["nomad-vault"]}"\n'
            f'  create_from_role = "{stack.LEGACY_TOKEN_ROLE}"\n}}\n'
        )
    return nomad


# --- up -------------------------------------------------------------------------------------


def _render(say: Say) -> dict[str, dict[str, Any]]:
    """Every node's cloud-init outputs from one ``tofu apply``, the certificates from keys/."""
    say("rendering the nodes' cloud-init (tofu apply)")
    ca, ips = (keys_dir() / "ca.pem").read_text(), [n.address for n in servers()]
    inputs = {
        n.name: {
            "role": n.role,
            "node_name": n.name,
            "advertise_ip": n.address,
            "server_ips": ips,
            "region": REGION,
            "datacenter": DATACENTER,
            "consul_datacenter": CONSUL_DC,
            "node_class": "" if n.role == "server" else "engine",
            "versions": cloudinit.agent_versions(),
            "tls": {"ca_pem": ca, "cert_pem": (keys_dir() / f"{n.role}.pem").read_text()},
        }
        for n in nodes()
    }
    outputs = cloudinit.render(state_dir() / "render", inputs)
    # Beside tofu's state, which holds the same (certificates, no private key): mode 0600 anyway.
    _rendered_file().touch(mode=0o600)
    _rendered_file().write_text(json.dumps(outputs))
    return outputs


def _lay_down(node: Node, outputs: dict[str, Any], secrets: dict[str, str]) -> None:
    """The node's bootstrap under its root, agent configs rebased there, then its keys pushed
    by the production path; the push's `start` starts what may start now (``AGENT_START``)."""
    root = node_root(node)
    cloudinit.apply(outputs["bootstrap"], root, IDS)
    for f in outputs["bootstrap"]["files"]:
        if f["path"].endswith(".hcl"):
            path = node_path(node, f["path"])
            path.write_text(cloudinit.rebase(path.read_text(), root))
    node_path(node, f"/etc/consul.d/{OVERLAY}").write_text(consul_overlay(secrets))
    spec = {"files": outputs["key_files"], "services": outputs["services"]}

    def start_now(services: list[str]) -> None:
        for agent in services:
            if AGENT_START[agent] == "now":
                start_agent(node, agent)

    node_keys.push(spec, keys_dir(), cloudinit.RootTransport(root, IDS, start_now))


def _write_secret(name: str, value: str) -> None:
    path = secret_file(name)
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text(value + "\n")


def _acl(**rules: str) -> str:
    return "".join(f'{k}_prefix "" {{\n  policy = "{v}"\n}}\n' for k, v in rules.items())


# The Consul agents register their nodes; Nomad's agents register services (production needs
# the same two tokens: cluster module README, "Limits").
CONSUL_POLICIES = {
    "consul-agent": _acl(node="write", service="read"),
    "nomad-consul": _acl(agent="read", node="read", service="write"),
}


def _bootstrap_consul(secrets: dict[str, str], say: Say) -> None:
    """ACLs: the management token, then the agents' token and the Nomad agents' token with the
    SecretIDs the overlays already name."""
    first = servers()[0]
    wait_for("a Consul leader", lambda: api(first, "consul", "/v1/status/leader"))
    boot = wait_for(
        "Consul's ACL bootstrap", lambda: api(first, "consul", "/v1/acl/bootstrap", "PUT")
    )
    mgmt = boot["SecretID"]
    _write_secret("consul-management-token", mgmt)
    # A leader elected a moment ago may not resolve the new token yet.
    wait_for(
        "Consul's management token", lambda: api(first, "consul", "/v1/acl/token/self", token=mgmt)
    )
    for name, policy in CONSUL_POLICIES.items():
        api(first, "consul", "/v1/acl/policy", "PUT", {"Name": name, "Rules": policy}, mgmt)
        created = {"SecretID": secrets[name], "Policies": [{"Name": name}], "Description": name}
        api(first, "consul", "/v1/acl/token", "PUT", created, mgmt)
    say("Consul: ACLs bootstrapped")


def _bootstrap_openbao(say: Say) -> str:
    """Initialise on the first server (one unseal key: a test cluster), unseal all three (the
    others join its raft through retry_join), then the legacy Nomad integration's token."""
    first = servers()[0]
    wait_for("OpenBao listening", lambda: api(first, "vault", "/v1/sys/seal-status"))
    init = api(first, "vault", "/v1/sys/init", "PUT", {"secret_shares": 1, "secret_threshold": 1})
    _write_secret("openbao-init.json", json.dumps(init))
    _write_secret("openbao-root-token", init["root_token"])
    key = init["keys_base64"][0]
    for node in servers():
        wait_for(
            f"OpenBao on {node.name} unsealed",
            lambda n=node: not api(n, "vault", "/v1/sys/unseal", "PUT", {"key": key})["sealed"],  # type: ignore[misc]
        )
    wait_for("OpenBao's raft with 3 voters", lambda: len(raft_servers()) == 3)
    say("OpenBao: initialised, unsealed, raft with 3 voters")
    return _legacy_nomad_token(init["root_token"])


def raft_servers() -> list[dict[str, Any]]:
    config = api(servers()[0], "vault", "/v1/sys/storage/raft/configuration", token=_bao_token())
    return [s for s in config["data"]["config"]["servers"] if s["voter"]]


def _bao_token() -> str:
    return secret_file("openbao-root-token").read_text().strip()


def _legacy_nomad_token(root_token: str) -> str:
    """Nomad 1.6.1's own token (stack.py's policy and role, as on the dev stack)."""
    first = servers()[0]
    policy = {"policy": stack.legacy_server_policy()}
    api(
        first,
        "vault",
        f"/v1/sys/policies/acl/{stack.LEGACY_SERVER_POLICY}",
        "PUT",
        policy,
        root_token,
    )
    role = {
        "disallowed_policies": [stack.LEGACY_SERVER_POLICY],
        "orphan": True,
        "token_period": "72h",
        "renewable": True,
    }
    api(first, "vault", f"/v1/auth/token/roles/{stack.LEGACY_TOKEN_ROLE}", "POST", role, root_token)
    create = {
        "policies": [stack.LEGACY_SERVER_POLICY],
        "period": "72h",
        "display_name": "nomad-server",
    }
    created = api(first, "vault", "/v1/auth/token/create-orphan", "POST", create, root_token)
    _write_secret("nomad-vault-token", created["auth"]["client_token"])
    return str(created["auth"]["client_token"])


def _bootstrap_nomad(secrets: dict[str, str], say: Say) -> None:
    for node in nodes():
        node_path(node, f"/etc/nomad.d/{OVERLAY}").write_text(nomad_overlay(node, secrets))
        start_agent(node, "nomad")
    first = servers()[0]
    wait_for("a Nomad leader", lambda: api(first, "nomad", "/v1/status/leader"))
    boot = wait_for(
        "Nomad's ACL bootstrap", lambda: api(first, "nomad", "/v1/acl/bootstrap", "POST")
    )
    _write_secret("nomad-management-token", boot["SecretID"])
    wait_for("3 Nomad servers alive", lambda: len(nomad_servers()) == 3)
    wait_for("2 Nomad clients ready", lambda: len(nomad_ready_clients()) == 2)
    wait_for("5 Consul members alive", lambda: len(consul_members()) == 5)
    say("Nomad: ACLs bootstrapped, 3 servers, 2 clients ready")


def nomad_servers() -> list[str]:
    members = api(servers()[0], "nomad", "/v1/agent/members", token=token("nomad"))["Members"]
    return [m["Name"] for m in members if m["Status"] == "alive"]


def nomad_ready_clients() -> list[str]:
    found = api(servers()[0], "nomad", "/v1/nodes", token=token("nomad"))
    return [n["Name"] for n in found if n["Status"] == "ready"]


def consul_members() -> list[str]:
    found = api(servers()[0], "consul", "/v1/agent/members", token=token("consul"))
    return [m["Name"] for m in found if m["Status"] == 1]  # serf: 1 = alive


def up(say: Say = _say) -> float:
    """Bring the cluster up from nothing (whatever an earlier run left is removed first) and
    wait until it is healthy; returns the seconds it took."""
    started = time.monotonic()
    down(say=lambda _: None)
    for sub in ("keys", "secrets", "log", "run", "nodes"):
        (state_dir() / sub).mkdir(parents=True, exist_ok=True, mode=0o700)
    netns.create(SUBNET, {n.name: n.address for n in nodes()})
    pki.make(keys_dir(), CONSUL_DC, REGION, [n.address for n in servers()])
    secrets = {name: str(uuid.uuid4()) for name in ("consul-agent", "nomad-consul")}
    rendered = _render(say)
    for node in nodes():
        _lay_down(node, rendered[node.name], secrets)
    say("keys pushed; Consul and OpenBao starting")
    _bootstrap_consul(secrets, say)
    secrets["nomad-vault"] = _bootstrap_openbao(say)
    _bootstrap_nomad(secrets, say)
    elapsed = time.monotonic() - started
    say(f"up and healthy in {elapsed:.1f} s; tokens in {secret_file('')}")
    return elapsed


# --- down -----------------------------------------------------------------------------------

STOP_TIMEOUT_S = 10.0


def down(say: Say = _say) -> float:
    """Stop every agent (SIGTERM to its process group, then SIGKILL), kill whatever else runs in
    the namespaces, unmount what Nomad mounted under the nodes, remove namespaces, veths and the
    bridge, and the state (keys, tokens, data) but the logs. Idempotent; cleans up after a
    crashed ``up`` too. Returns the seconds it took."""
    started = time.monotonic()
    pids = [
        int(p.read_text()) for p in (state_dir() / "run").glob("*.pid") if p.read_text().strip()
    ]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while any(stack.pid_alive(p) for p in pids) and time.monotonic() < deadline:
        for pid in pids:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
        time.sleep(0.1)
    netns.destroy()
    for pid in pids:  # our own children when this process ran `up` (the tests): no zombies
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
    _unmount_under(state_dir())
    for sub in ("keys", "secrets", "run", "nodes", "render"):
        shutil.rmtree(state_dir() / sub, ignore_errors=True)
    elapsed = time.monotonic() - started
    say(f"down in {elapsed:.1f} s: no agent, namespace or link left")
    return elapsed


def _unmount_under(path: Path) -> None:
    """Nomad clients mount task directories (secrets tmpfs) under their data dir."""
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    for mount in sorted((m for m in mounts if m.startswith(f"{path}/")), reverse=True):
        subprocess.run(["umount", "-l", mount], check=False, capture_output=True)


def leftovers() -> dict[str, list[Any]]:
    """What of the cluster still exists on this machine (empty lists after ``down``)."""
    ours = str(state_dir())
    procs = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                if ours in cmdline:
                    procs.append(int(entry.name))
    return {"namespaces": netns.namespaces(), "links": netns.links(), "processes": procs}


# --- status ---------------------------------------------------------------------------------


def _health(node: Node, agent: str) -> str:
    """What the agent itself says, over its HTTPS API."""
    if agent == "consul":
        leader = _answer(lambda: api(node, "consul", "/v1/status/leader"))
        return "healthy" if leader else "no leader known"
    if agent == "nomad":
        ok = _answer(lambda: api(node, "nomad", "/v1/agent/health", token=token("nomad")))
        return "healthy" if ok else "unhealthy"
    seal = _answer(lambda: api(node, "vault", "/v1/sys/seal-status"))
    if not seal:
        return "not answering"
    return "sealed" if seal["sealed"] else "unsealed"


def status() -> dict[str, Any]:
    """Each node and agent with pid and health, the leaders, OpenBao's seal and raft state."""
    report: dict[str, Any] = {"nodes": {}}
    for node in nodes():
        agents = {}
        for agent in ("consul", "vault", "nomad") if node.role == "server" else ("consul", "nomad"):
            pid = agent_pid(node, agent)
            agents[agent] = f"pid {pid}, {_health(node, agent)}" if pid else "not running"
        report["nodes"][f"{node.name} {node.address}"] = agents
    first = servers()[0]
    report["consul_leader"] = _answer(lambda: api(first, "consul", "/v1/status/leader"))
    report["nomad_leader"] = _answer(lambda: api(first, "nomad", "/v1/status/leader"))
    raft = _answer(raft_servers) or []
    report["openbao_raft"] = {s["node_id"]: "leader" if s["leader"] else "follower" for s in raft}
    return report


def healthy(report: dict[str, Any]) -> bool:
    agents = [s for node in report["nodes"].values() for s in node.values()]
    return (
        all(s.endswith((", healthy", ", unsealed")) for s in agents)
        and bool(report["consul_leader"] and report["nomad_leader"])
        and len(report["openbao_raft"]) == 3
    )
