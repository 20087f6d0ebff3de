"""A testinfra host that is one network namespace of this machine (a node of the local cluster).

Every command runs through ``ip netns exec <namespace>``, so ``host.socket``, ``host.run`` and
``curl`` see that node's interfaces, listeners and routes. Processes and files are the machine's:
the namespace shares them, so ``pids()`` names the node's processes and the caller maps a node's
paths (runtime.devstack.cluster.node_path). Needs root, as the cluster does.
"""

from __future__ import annotations

import subprocess
from typing import Any

import testinfra.host
from testinfra.backend import base
from testinfra.backend.local import LocalBackend


class NamespaceBackend(LocalBackend):  # type: ignore[misc]  # testinfra is untyped
    NAME = "netns"

    def __init__(self, namespace: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.namespace = namespace

    def get_pytest_id(self) -> str:
        return self.namespace

    def run(self, command: str, *args: str, **kwargs: Any) -> base.CommandResult:
        inner = self.get_command(command, *args)
        return self.run_local(self.quote("ip netns exec %s /bin/sh -c %s", self.namespace, inner))

    def pids(self) -> set[int]:
        """The processes whose network namespace is this node's."""
        out = subprocess.run(
            ["ip", "netns", "pids", self.namespace], capture_output=True, text=True, check=True
        )
        return {int(pid) for pid in out.stdout.split()}


def host(namespace: str) -> testinfra.host.Host:
    return testinfra.host.Host(NamespaceBackend(namespace))
