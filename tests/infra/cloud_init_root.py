"""Render a node's cloud-config with the cluster module's cloud-init submodule and apply it to a
scratch directory root, the way cloud-init would on a fresh machine.

Rendering and applying are runtime/devstack/cloudinit.py's (the local cluster starts from the
same files); the private keys and gossip keys are not in the cloud-config and arrive after boot
through ``runtime.ops.node_keys.push`` (``push_keys``).

``EXPECTED_FILES`` (``infra/terraform/modules/cluster/expected_files.json``) is the list of paths,
owners and modes that the bootstrap must produce and a testinfra suite checks on real nodes:
``File(path).mode == int(entry["mode"], 8)``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from runtime.devstack import cloudinit, toolchain
from runtime.ops import node_keys

REPO = Path(__file__).resolve().parents[2]
CLUSTER_MODULE = REPO / "infra" / "terraform" / "modules" / "cluster"
CLOUD_INIT_MODULE = CLUSTER_MODULE / "modules" / "cloud-init"
EXPECTED_FILES = CLUSTER_MODULE / "expected_files.json"

# Fake PEM and gossip values: the bootstrap check is about paths, owners and modes.
PEM = "-----BEGIN CERTIFICATE-----\nTEST\n-----END CERTIFICATE-----\n"
KEY = "-----BEGIN PRIVATE KEY-----\nTEST-KEY\n-----END PRIVATE KEY-----\n"
GOSSIP = "Y29uc3VsLWdvc3NpcC1rZXktMzItYnl0ZXMtbG9uZyE="
# What a data node's host volumes look like with the cluster module's defaults.
HOST_VOLUMES = {
    "backups": {"owner": "70", "group": "70", "mode": "0700"},
    "prometheus-data": {"owner": "65534", "group": "65534", "mode": "0700"},
    "redis-data": {"owner": "999", "group": "999", "mode": "0700"},
    "timescaledb-data": {"owner": "70", "group": "70", "mode": "0700"},
}
# Node kinds of expected_files.json and the submodule inputs that make them.
KINDS: dict[str, dict[str, Any]] = {
    "server": {"role": "server", "host_volumes": {}},
    "client": {"role": "client", "host_volumes": {}},
    "data_client": {"role": "client", "host_volumes": HOST_VOLUMES},
}


def expected() -> dict[str, Any]:
    return json.loads(EXPECTED_FILES.read_text())


# The key files the nodes get after boot (runtime.ops.node_keys.push), from a keys directory of
# these fake values.
KEYS = {
    "server-key.pem": KEY,
    "client-key.pem": KEY,
    "consul-gossip.key": GOSSIP,
    "nomad-gossip.key": GOSSIP,
}
terraform = cloudinit.terraform
AGENTS = cloudinit.AGENTS
apply = cloudinit.apply


def render(workdir: Path) -> dict[str, dict[str, Any]]:
    """The submodule's outputs (``bootstrap``, ``key_files``, ``services``) for every kind, from
    a real ``tofu apply`` of a configuration with no provider and no resource (outputs only)."""
    nodes = {
        kind: {
            "role": inputs["role"],
            "node_name": f"test-{kind}",
            "advertise_ip": "10.42.1.10",
            "server_ips": ["10.42.1.10"],
            "region": "global",
            "datacenter": "fsn1",
            "consul_datacenter": "arbtest",
            "versions": cloudinit.agent_versions(),
            "tls": {"ca_pem": PEM, "cert_pem": PEM},
            "host_volumes": inputs["host_volumes"],
        }
        for kind, inputs in KINDS.items()
    }
    return cloudinit.render(workdir, nodes)


def push_keys(rendered: dict[str, Any], root: Path, ids: dict[str, int]) -> None:
    """The after-boot key push (the same ``push`` as on real nodes) into ``root``."""
    keys = root.parent / f"{root.name}-keys"
    keys.mkdir(mode=0o700)
    for name, value in KEYS.items():
        (keys / name).write_text(value)
    node = {"files": rendered["key_files"], "services": rendered["services"]}
    node_keys.push(node, keys, cloudinit.RootTransport(root, ids))


def install_agents(bootstrap: dict[str, Any], root: Path) -> None:
    """Run the rendered installer against ``root`` with the toolchain's binaries (no download),
    staged under the names the installer copies (``AGENTS``)."""
    script = root / "usr/local/sbin/arbfleet-install-hashicorp"
    assert script.exists(), "the installer is not among the rendered files"
    staged = root.parent / f"{root.name}-agents"
    staged.mkdir()
    for name, tool in AGENTS.items():
        (staged / name).symlink_to((toolchain.bin_dir() / tool).resolve())
    try:
        subprocess.run(
            [str(script)],
            env={
                "PATH": os.environ["PATH"],
                "ROOT": str(root),
                "ARBFLEET_HASHICORP_BIN_DIR": str(staged),
            },
            check=True,
            capture_output=True,
            timeout=300,
        )
    finally:
        shutil.rmtree(staged)


def tree(root: Path, ids: dict[str, int]) -> dict[str, dict[str, str]]:
    """Every path under ``root`` with owner, group (names through ``ids``) and octal mode."""
    names = {v: k for k, v in ids.items()}
    found = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        found["/" + str(path.relative_to(root))] = {
            "owner": names.get(st.st_uid, str(st.st_uid)),
            "group": names.get(st.st_gid, str(st.st_gid)),
            "mode": f"{st.st_mode & 0o7777:04o}",
            "type": "directory" if path.is_dir() else "file",
        }
    return found
