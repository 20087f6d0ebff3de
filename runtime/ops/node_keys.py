"""Put a node's private keys and gossip keys on it after boot, never in its user_data.

A cloud's metadata service hands user_data to anything on the machine that asks (and the cloud's
API keeps it), so the cluster module's cloud-config carries certificates only. What each node
still needs is the module's ``key_files`` output (``tofu output -json key_files``): per node its
private address, the secret files (path, owner, group, mode, which file of the operator's keys
directory fills it, and a ``template`` in which ``${secret}`` stands for that file's text) and
the systemd units to start once they are in place. No secret value passes through Terraform.

``push`` is the one path that writes them; a ``Transport`` says how: ``SshTransport`` for real
nodes (``arbfleet cluster push-keys``), the local cluster's own for nodes that are directories
on this machine (runtime/devstack/cluster.py).

The keys directory holds ``server-key.pem``, ``client-key.pem``, ``consul-gossip.key``
(``consul keygen``) and ``nomad-gossip.key`` (``nomad operator gossip keyring generate``).
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from runtime.core.errors import ArbfleetError

PLACEHOLDER = "${secret}"
GOSSIP_KEY = re.compile(r"^[A-Za-z0-9+/]{43}=$")  # 32 random bytes in base64


class KeyMaterialError(ArbfleetError):
    """A key file is missing or malformed."""


@dataclass(frozen=True)
class KeyFile:
    path: str
    owner: str
    group: str
    mode: str
    content: str


class Transport(Protocol):
    def put(self, f: KeyFile) -> None: ...

    def start(self, services: list[str]) -> None: ...


def secret_value(keys_dir: Path, name: str) -> str:
    """The text of one key file, checked: a PEM private key, or a 32-byte gossip key."""
    path = keys_dir / name
    try:
        text = path.read_text()
    except OSError as exc:
        raise KeyMaterialError(f"{path}: {exc.strerror}") from exc
    if name.endswith(".pem"):
        if "PRIVATE KEY-----" not in text:
            raise KeyMaterialError(f"{path} is not a PEM private key")
        return text
    if not GOSSIP_KEY.match(text.strip()):
        raise KeyMaterialError(f"{path} is not a gossip key (32 bytes in base64: `consul keygen`)")
    return text.strip()


def key_files(spec: list[dict[str, str]], keys_dir: Path) -> list[KeyFile]:
    """The files of one node's ``key_files`` entry, filled from ``keys_dir``."""
    return [
        KeyFile(
            path=f["path"],
            owner=f["owner"],
            group=f["group"],
            mode=f["mode"],
            content=f["template"].replace(PLACEHOLDER, secret_value(keys_dir, f["secret"])),
        )
        for f in spec
    ]


def push(node: dict[str, Any], keys_dir: Path, transport: Transport) -> None:
    """Write a node's secret files through ``transport``, then start its agents."""
    for f in key_files(node["files"], keys_dir):
        transport.put(f)
    transport.start(list(node["services"]))


@dataclass(frozen=True)
class SshTransport:
    """A real node, as root over SSH: each file written through a temporary name with its
    owner and mode set before it appears (no moment where it is readable by others)."""

    host: str
    ssh_args: tuple[str, ...] = ()

    def _run(self, command: str, stdin: str = "") -> None:
        argv = ["ssh", *self.ssh_args, f"root@{self.host}", command]
        proc = subprocess.run(argv, input=stdin, text=True, capture_output=True, check=False)
        if proc.returncode != 0:
            raise ArbfleetError(f"{self.host}: {command}: {proc.stderr.strip()}")

    def put(self, f: KeyFile) -> None:
        tmp = shlex.quote(f"{f.path}.tmp")
        self._run(
            f"umask 077 && cat > {tmp} && chown {f.owner}:{f.group} {tmp} && "
            f"chmod {f.mode} {tmp} && mv {tmp} {shlex.quote(f.path)}",
            stdin=f.content,
        )

    def start(self, services: list[str]) -> None:
        self._run("systemctl start " + " ".join(shlex.quote(s) for s in services))


def add_cluster(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "cluster",
        help="operator steps on the production cluster",
        description="push-keys: write every node's private keys and gossip keys over SSH "
        "after boot and start its agents (they are not in user_data).",
    )
    parser.add_argument("action", choices=["push-keys"])
    parser.add_argument("--keys-dir", type=Path, required=True)
    parser.add_argument(
        "--key-files",
        type=Path,
        required=True,
        help="`tofu output -json key_files` of envs/production/cluster, saved to a file",
    )
    parser.add_argument("--node", action="append", help="only these nodes (repeatable)")
    parser.add_argument("--ssh-option", action="append", default=[], help="e.g. -J bastion")
    parser.set_defaults(handler=_push_keys)


def _push_keys(args: argparse.Namespace) -> int:
    nodes = json.loads(args.key_files.read_text())
    for name in args.node or sorted(nodes):
        ssh_args = tuple(word for opt in args.ssh_option for word in shlex.split(opt))
        push(nodes[name], args.keys_dir, SshTransport(nodes[name]["private_ip"], ssh_args))
        print(f"{name}: keys in place, {' '.join(nodes[name]['services'])} started")
    return 0
