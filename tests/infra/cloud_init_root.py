"""Render a node's cloud-config with the cluster module's cloud-init submodule and apply it to a
scratch directory root, the way cloud-init would on a fresh machine.

PyYAML is not available here, so the submodule's ``bootstrap`` output (the same data its
``write_files``/``runcmd`` are built from, as JSON) is what gets applied: users, then the deferred
``write_files`` (parents created 0755 as cloud-init does), then ``runcmd``'s ``install -d``
directories, which fix owner and mode of directories ``write_files`` already made.

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

from runtime.devstack import toolchain

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


def terraform(workdir: Path, *args: str) -> str:
    """Run the toolchain's Terraform CLI (``toolchain.terraform_program()``: OpenTofu's ``tofu``)."""
    program = toolchain.terraform_program()
    proc = subprocess.run(
        [program, *args, "-no-color"],
        cwd=workdir,
        env=toolchain.tool_env(),
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert proc.returncode == 0, f"{program} {args[0]} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


# The binaries the bootstrap installs in the test, by the names the rendered units run, from
# the toolchain. It has no Vault (BUSL): OpenBao, Vault's open-source fork, which reads the same
# server configuration, stands in for the servers' `vault`.
AGENTS = {"consul": "consul", "nomad": "nomad", "vault": "bao"}


def agent_versions() -> dict[str, str]:
    """The ``versions`` input naming the toolchain's pins, which the installer checks."""
    pins = {t.name: t.version for t in toolchain.load_manifest().tools}
    pins |= {t.name: t.version for t in toolchain.load_manifest().pypi_tools}
    return {agent: pins[tool] for agent, tool in AGENTS.items()}


def render(workdir: Path) -> dict[str, dict[str, Any]]:
    """The ``bootstrap`` output of the submodule for every kind, from a real ``tofu apply`` of a
    configuration with no provider and no resource (outputs only)."""
    workdir.mkdir(parents=True, exist_ok=True)
    blocks = []
    for kind, inputs in KINDS.items():
        args = {
            "role": inputs["role"],
            "node_name": f"test-{kind}",
            "advertise_ip": "10.42.1.10",
            "server_ips": ["10.42.1.10"],
            "region": "global",
            "datacenter": "fsn1",
            "consul_datacenter": "arbtest",
            "versions": agent_versions(),
            "tls": {"ca_pem": PEM, "cert_pem": PEM, "key_pem": KEY},
            "consul_gossip_key": GOSSIP,
            "nomad_gossip_key": GOSSIP,
            "host_volumes": inputs["host_volumes"],
        }
        # JSON is valid HCL expression syntax, so the inputs need no HCL encoder.
        body = "\n".join(f"  {k} = {json.dumps(v)}" for k, v in args.items())
        blocks.append(
            f'module "{kind}" {{\n  source = "{CLOUD_INIT_MODULE}"\n{body}\n}}\n'
            f'output "{kind}" {{\n  value     = module.{kind}.bootstrap\n  sensitive = true\n}}\n'
        )
    (workdir / "main.tf").write_text("\n".join(blocks))
    terraform(workdir, "init", "-input=false")
    terraform(workdir, "apply", "-input=false", "-auto-approve")
    outputs = json.loads(terraform(workdir, "output", "-json"))
    return {kind: outputs[kind]["value"] for kind in KINDS}


def _chown(path: Path, owner: str, group: str, ids: dict[str, int]) -> None:
    os.chown(path, _id(owner, ids), _id(group, ids))


def _id(name: str, ids: dict[str, int]) -> int:
    if name in ids:
        return ids[name]
    assert name.isdigit(), f"no id for user or group {name!r}"
    return int(name)


def apply(bootstrap: dict[str, Any], root: Path, ids: dict[str, int]) -> None:
    """Lay the bootstrap down under ``root``. ``ids`` maps user and group names to the numeric
    ids to use here (this machine has no consul or vault user); numeric names map to themselves."""
    for user in bootstrap["users"]:
        assert user in ids, f"user {user} needs an id"
    for f in bootstrap["files"]:
        target = root / f["path"].lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
        target.write_text(f["content"])
        target.chmod(int(f["mode"], 8))
        _chown(target, f["owner"], f["group"], ids)
    for d in bootstrap["directories"]:
        target = root / d["path"].lstrip("/")
        target.mkdir(parents=True, exist_ok=True)
        target.chmod(int(d["mode"], 8))
        _chown(target, d["owner"], d["group"], ids)


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
