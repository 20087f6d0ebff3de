"""What a node should look like, as data: one profile per kind of target, read by test_servers.py.

- ``local``: the dev stack of ``runtime.devstack.stack`` (one node in every role; agents run as
  the stack's user, bind 127.0.0.1, keep their state and secrets under the state directory).
- ``production``: the nodes of infra/terraform/modules/cluster. Users, directories and files
  (with TLS files) come from that module's expected_files.json, the one list of what its
  cloud-config writes; agents and ports from its templates (consul.hcl, nomad.hcl, vault.hcl):
  HTTPS for Nomad and Vault, Consul's HTTPS on the private address and its plain HTTP on
  127.0.0.1 only.

Roles: ``server`` (Consul, Nomad and Vault servers), ``client`` (Consul and Nomad clients, where
engines and Prometheus run) and ``data`` (a client with the stateful jobs' host volumes).
"""

from __future__ import annotations

import grp
import json
import os
import pwd
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runtime.devstack import stack

ROLES = ("server", "client", "data")
ANY = "*"
"""Address of a listener bound to an address the profile cannot know (the node's private IP)."""


@dataclass(frozen=True)
class Agent:
    """A process (by command name), the user it runs as and the ``(address, port)`` it listens on."""

    process: str
    user: str
    listens: tuple[tuple[str, int], ...]


@dataclass(frozen=True)
class Entry:
    """A file or directory with its owner, group and mode (an integer, as ``File.mode``)."""

    path: str
    owner: str
    group: str
    mode: int
    directory: bool = False


@dataclass(frozen=True)
class Api:
    """An agent's HTTP API as seen from the node itself; the token, if any, is read from the
    controller's environment variable ``token_env`` (ACLs in production)."""

    url: str
    ca_file: str | None = None
    token_env: str | None = None
    token_header: str = ""


@dataclass(frozen=True)
class Profile:
    name: str
    agents: dict[str, tuple[Agent, ...]]
    users: dict[str, tuple[str, ...]]
    entries: dict[str, tuple[Entry, ...]]
    consul: Api
    nomad: Api
    vault: Api
    default_roles: tuple[str, ...] = field(default=())

    def for_roles(self, roles: tuple[str, ...]) -> tuple[list[Agent], list[str], list[Entry]]:
        """The agents (one per process, with the listeners of all the roles), users and entries
        the roles have, each once."""

        def union(by_role: dict[str, tuple[Any, ...]]) -> list[Any]:
            return list(dict.fromkeys(x for role in roles for x in by_role.get(role, ())))

        agents: dict[str, Agent] = {}
        for a in union(self.agents):
            known = agents.get(a.process, Agent(a.process, a.user, ()))
            listens = tuple(dict.fromkeys((*known.listens, *a.listens)))
            agents[a.process] = Agent(a.process, a.user, listens)
        return list(agents.values()), union(self.users), union(self.entries)


# --- local: the dev stack ------------------------------------------------------------------


def local() -> Profile:
    ports = stack.default_ports()
    ep = stack.endpoints(ports)
    state = stack.state_dir()
    me = pwd.getpwuid(os.getuid()).pw_name
    my_group = grp.getgrgid(os.getgid()).gr_name
    host = stack.HOST
    consul_server = Agent(
        "consul",
        me,
        tuple((host, ports.consul[name]) for name in ("http", "server", "serf-lan", "serf-wan")),
    )
    consul_client = Agent(
        "consul", me, ((host, ports.consul["http"]), (host, ports.consul["serf-lan"]))
    )
    nomad_server = Agent("nomad", me, tuple((host, port) for port in ports.nomad))
    nomad_client = Agent("nomad", me, ((host, ports.nomad[0]),))

    # nomad.hcl and redis/ are created under the default umask (022); the rest with explicit modes.
    def mine(path: Path, mode: int, directory: bool = False) -> Entry:
        return Entry(str(path), me, my_group, mode, directory)

    return Profile(
        name="local",
        agents={
            "server": (consul_server, nomad_server, Agent("bao", me, ((host, ports.vault),))),
            "client": (consul_client, nomad_client),
            "data": (
                consul_client,
                nomad_client,
                Agent("postgres", "postgres", ((host, ports.postgres),)),
                Agent("redis-server", me, ((host, ports.redis),)),
            ),
        },
        users={"server": (me,), "client": (me,), "data": (me, "postgres")},
        entries={
            # The postgres user must traverse the state directory to its own data directory.
            "server": (
                mine(state, 0o711, directory=True),
                mine(state / "secrets", 0o700, directory=True),
                mine(ep.vault_token_file, 0o600),
                mine(state / "nomad", 0o700, directory=True),
                mine(state / "nomad.hcl", 0o644),
            ),
            "client": (
                mine(state, 0o711, directory=True),
                mine(state / "nomad", 0o700, directory=True),
                mine(state / "nomad.hcl", 0o644),
            ),
            "data": (
                mine(state / "secrets", 0o700, directory=True),
                mine(ep.postgres_dsn_file, 0o600),
                Entry(str(state / "postgres" / "data"), "postgres", "postgres", 0o700, True),
                mine(state / "redis", 0o755, directory=True),
            ),
        },
        consul=Api(ep.consul),
        nomad=Api(ep.nomad),
        vault=Api(ep.vault),
        default_roles=ROLES,
    )


# --- production: infra/terraform/modules/cluster -------------------------------------------

EXPECTED_FILES = Path(__file__).resolve().parents[3] / (
    "infra/terraform/modules/cluster/expected_files.json"
)
# Node kinds of expected_files.json -> roles.
KINDS = {"server": "server", "client": "client", "data_client": "data"}


def production(expected_files: Path = EXPECTED_FILES) -> Profile:
    """Users, files and directories from the cluster module's expected_files.json (what its
    cloud-init bootstrap leaves on disk; tests/infra/test_terraform.py proves the rendered
    cloud-config produces exactly that); agents and ports from its agent templates."""
    kinds = json.loads(expected_files.read_text())
    # Consul: plain HTTP on loopback, HTTPS (8501) and LAN gossip on the private address.
    local_api, https, serf = ("127.0.0.1", 8500), (ANY, 8501), (ANY, 8301)
    consul = Agent("consul", "consul", (local_api, https, serf))
    nomad = Agent("nomad", "root", (("0.0.0.0", 4646),))
    return Profile(
        name="production",
        agents={
            "server": (
                Agent("consul", "consul", (local_api, https, (ANY, 8300), serf, (ANY, 8302))),
                Agent("nomad", "root", tuple(("0.0.0.0", p) for p in (4646, 4647, 4648))),
                Agent("vault", "vault", (("0.0.0.0", 8200), (ANY, 8201))),
            ),
            "client": (consul, nomad),
            "data": (consul, nomad),
        },
        users={role: tuple(kinds[kind]["users"]) for kind, role in KINDS.items()},
        entries={
            role: tuple(
                Entry(path, e["owner"], e["group"], int(e["mode"], 8), e["type"] == "directory")
                for path, e in kinds[kind]["paths"].items()
            )
            for kind, role in KINDS.items()
        },
        consul=Api("http://127.0.0.1:8500", None, "CONSUL_HTTP_TOKEN", "X-Consul-Token"),
        nomad=Api(
            "https://127.0.0.1:4646", "/etc/nomad.d/tls/ca.pem", "NOMAD_TOKEN", "X-Nomad-Token"
        ),
        vault=Api("https://127.0.0.1:8200", "/etc/vault.d/tls/ca.pem"),
    )
