"""Network namespaces joined by one bridge: several hosts on one machine, reachable from nowhere.

Each node gets a namespace ``arbfleet-c-<node>`` with its own loopback and one ``eth0``: a veth
whose other end is a port of the bridge ``afc-br0`` in the machine's namespace. The bridge holds
the first address of the subnet so that this machine's processes (the CLI, the tests) reach the
nodes' APIs; nothing else: no default route inside a namespace, no NAT, and IPv4 forwarding off
on the bridge, so no packet leaves the subnet either way.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import signal
import subprocess
import time
from pathlib import Path

from runtime.core.errors import StackError

NS_PREFIX = "arbfleet-c-"
LINK_PREFIX = "afc-"  # host ends of the veths and the bridge (link names: 15 characters at most)
BRIDGE = f"{LINK_PREFIX}br0"


def ip(*args: str, check: bool = True) -> str:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise StackError(f"ip {' '.join(args)}: {proc.stderr.strip()}")
    return proc.stdout


def namespace(node: str) -> str:
    return f"{NS_PREFIX}{node}"


def _veth(node: str) -> str:
    return f"{LINK_PREFIX}{node}"[:15]


def check_subnet_free(subnet: ipaddress.IPv4Network) -> None:
    """Refuse a subnet this machine already routes: the nodes would shadow real hosts."""
    for line in ip("-4", "route", "show").splitlines():
        dest = line.split()[0]
        if dest == "default" or BRIDGE in line:
            continue
        if ipaddress.ip_network(dest, strict=False).overlaps(subnet):
            raise StackError(f"{subnet} overlaps this machine's route {line!r}: set another")


def create(subnet: ipaddress.IPv4Network, nodes: dict[str, str]) -> None:
    """The bridge with the subnet's first address, then per node (name -> address) a namespace
    with loopback and eth0 up, and no route but the subnet's own."""
    check_subnet_free(subnet)
    gateway = next(subnet.hosts())
    ip("link", "add", BRIDGE, "type", "bridge")
    ip("addr", "add", f"{gateway}/{subnet.prefixlen}", "dev", BRIDGE)
    Path(f"/proc/sys/net/ipv4/conf/{BRIDGE}/forwarding").write_text("0\n")
    ip("link", "set", BRIDGE, "up")
    for node, address in nodes.items():
        ns, veth, peer = namespace(node), _veth(node), f"afp-{node}"[:15]
        ip("netns", "add", ns)
        ip("link", "add", veth, "type", "veth", "peer", "name", peer, "netns", ns)
        ip("link", "set", veth, "master", BRIDGE, "up")
        ip("-n", ns, "link", "set", peer, "name", "eth0")
        ip("-n", ns, "addr", "add", f"{address}/{subnet.prefixlen}", "dev", "eth0")
        ip("-n", ns, "link", "set", "eth0", "up")
        ip("-n", ns, "link", "set", "lo", "up")


def namespaces() -> list[str]:
    """Ours among the machine's named namespaces."""
    names = [line.split()[0] for line in ip("netns", "list").splitlines() if line.strip()]
    return [n for n in names if n.startswith(NS_PREFIX)]


def links() -> list[str]:
    """Ours among the machine's links (the bridge and host ends of veths)."""
    found = []
    for line in ip("-o", "link", "show").splitlines():
        name = line.split(":")[1].strip().split("@")[0]
        if name.startswith(LINK_PREFIX):
            found.append(name)
    return found


def pids(ns: str) -> list[int]:
    """Every process whose network namespace is ``ns`` (agents, their tasks, anything forked)."""
    return [int(p) for p in ip("netns", "pids", ns, check=False).split()]


def kill_all(deadline_s: float = 10.0) -> None:
    """SIGKILL whatever still runs in our namespaces and wait until it is gone."""
    deadline = time.monotonic() + deadline_s
    while True:
        left = [pid for ns in namespaces() for pid in pids(ns)]
        if not left:
            return
        if time.monotonic() > deadline:
            raise StackError(f"processes {left} survive SIGKILL in the cluster's namespaces")
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
        time.sleep(0.1)


def destroy() -> None:
    """Everything ``create`` made, whatever is left of it (idempotent; after a crash too)."""
    kill_all()
    for ns in namespaces():
        ip("netns", "del", ns)
    for link in links():  # deleting a namespace takes its veth pair; the bridge stays
        ip("link", "del", link, check=False)
