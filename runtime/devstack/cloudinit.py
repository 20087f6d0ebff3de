"""The cluster module's cloud-init submodule, rendered with a real ``tofu apply`` and laid down
under a directory as cloud-init would on a fresh machine.

Used by the bootstrap tests (tests/infra/cloud_init_root.py) and by the local cluster
(runtime/devstack/cluster.py), so both start from the files production gets. PyYAML is not
available here, so the submodule's ``bootstrap`` output (the data its ``write_files`` and
``runcmd`` are built from, as JSON) is what gets applied.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runtime.core.errors import StackError
from runtime.devstack import toolchain
from runtime.ops.node_keys import KeyFile

CLOUD_INIT_MODULE = (
    toolchain.REPO_ROOT / "infra" / "terraform" / "modules" / "cluster" / "modules" / "cloud-init"
)
# The binaries the rendered units run, by those names, from the toolchain. It has no Vault
# (BUSL): OpenBao, Vault's open-source fork, reads the same server configuration.
AGENTS = {"consul": "consul", "nomad": "nomad", "vault": "bao"}
OUTPUTS = ("bootstrap", "key_files", "services", "user_data")


def terraform(workdir: Path, *args: str) -> str:
    """Run the toolchain's Terraform CLI (``toolchain.terraform_program()``: ``tofu``)."""
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
    if proc.returncode != 0:
        raise StackError(f"{program} {args[0]} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


def agent_versions() -> dict[str, str]:
    """The ``versions`` input naming the toolchain's pins, which the installer checks."""
    pins = {t.name: t.version for t in toolchain.load_manifest().tools}
    pins |= {t.name: t.version for t in toolchain.load_manifest().pypi_tools}
    return {agent: pins[tool] for agent, tool in AGENTS.items()}


def render(workdir: Path, nodes: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per node, the submodule's ``OUTPUTS`` for the
    inputs given, from one ``tofu apply`` of a configuration with no provider and no resource."""
    workdir.mkdir(parents=True, exist_ok=True)
    blocks = []
    for name, inputs in nodes.items():
        # JSON is valid HCL expression syntax, so the inputs need no HCL encoder.
        body = "\n".join(f"  {k} = {json.dumps(v)}" for k, v in inputs.items())
        blocks.append(f'module "{name}" {{\n  source = "{CLOUD_INIT_MODULE}"\n{body}\n}}\n')
        blocks.extend(
            f'output "{name}--{out}" {{\n  value = module.{name}.{out}\n  sensitive = true\n}}\n'
            for out in OUTPUTS
        )
    (workdir / "main.tf").write_text("\n".join(blocks))
    terraform(workdir, "init", "-input=false")
    terraform(workdir, "apply", "-input=false", "-auto-approve")
    outputs = json.loads(terraform(workdir, "output", "-json"))
    return {name: {out: outputs[f"{name}--{out}"]["value"] for out in OUTPUTS} for name in nodes}


def user_id(name: str, ids: dict[str, int]) -> int:
    if name in ids:
        return ids[name]
    if not name.isdigit():
        raise StackError(f"no id for user or group {name!r}")
    return int(name)


def under(root: Path, path: str) -> Path:
    """Where a node's absolute ``path`` is when the node's filesystem is the directory ``root``."""
    return root / path.lstrip("/")


def write_file(
    root: Path, path: str, content: str, owner: str, group: str, mode: str, ids: dict[str, int]
) -> Path:
    """One file as cloud-init's ``write_files`` makes it: parents 0755, then owner and mode."""
    target = under(root, path)
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    target.write_text(content)
    target.chmod(int(mode, 8))
    os.chown(target, user_id(owner, ids), user_id(group, ids))
    return target


def apply(bootstrap: dict[str, Any], root: Path, ids: dict[str, int]) -> None:
    """Lay the bootstrap down under ``root``: the deferred ``write_files``, then ``runcmd``'s
    ``install -d`` directories (which fix owner and mode of directories already made). ``ids``
    maps user and group names to numeric ids here; numeric names map to themselves."""
    for user in bootstrap["users"]:
        if user not in ids:
            raise StackError(f"user {user} needs an id")
    for f in bootstrap["files"]:
        write_file(root, f["path"], f["content"], f["owner"], f["group"], f["mode"], ids)
    for d in bootstrap["directories"]:
        target = under(root, d["path"])
        target.mkdir(parents=True, exist_ok=True)
        target.chmod(int(d["mode"], 8))
        os.chown(target, user_id(d["owner"], ids), user_id(d["group"], ids))


def rebase(content: str, root: Path) -> str:
    """An agent config with its absolute /etc and /opt paths moved under ``root``."""
    return content.replace('"/etc/', f'"{root}/etc/').replace('"/opt/', f'"{root}/opt/')


@dataclass(frozen=True)
class RootTransport:
    """``runtime.ops.node_keys.push`` to a node that is a directory here: the files under ``root``
    (as ``SshTransport`` writes them on a real node), and ``start`` handed to the caller, which
    runs the agents its own way (the local cluster: inside the node's network namespace)."""

    root: Path
    ids: dict[str, int]
    starter: Callable[[list[str]], None] = lambda services: None

    def put(self, f: KeyFile) -> None:
        write_file(self.root, f.path, f.content, f.owner, f.group, f.mode, self.ids)

    def start(self, services: list[str]) -> None:
        self.starter(services)
