"""What the server profiles (servers/profiles.py) do with their data, not the data itself.

The production profile is built from the cluster module's expected_files.json, which
tests/infra/test_terraform.py proves the rendered cloud-config produces; comparing the profile
with that file again would check the file against itself. These tests check the conversion
(octal strings, node kinds, directories) on a file of their own, how roles combine on one node,
and properties the production nodes must have whatever the file lists.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.infra.servers import profiles


def test_production_turns_each_node_kind_into_a_role_with_integer_modes(tmp_path: Path) -> None:
    expected = tmp_path / "expected_files.json"
    path = {"type": "file", "owner": "root", "group": "consul", "mode": "0640"}
    directory = {"type": "directory", "owner": "999", "group": "999", "mode": "0700"}
    expected.write_text(
        json.dumps(
            {
                "_about": "ignored",
                "server": {"users": ["consul", "vault"], "paths": {"/etc/a.hcl": path}},
                "client": {"users": [], "paths": {}},
                "data_client": {"users": ["nomad"], "paths": {"/srv/redis-data": directory}},
            }
        )
    )
    profile = profiles.production(expected)
    assert profile.users == {"server": ("consul", "vault"), "client": (), "data": ("nomad",)}
    assert profile.entries["server"] == (profiles.Entry("/etc/a.hcl", "root", "consul", 0o640),)
    assert profile.entries["data"] == (
        profiles.Entry("/srv/redis-data", "999", "999", 0o700, directory=True),
    )


def test_a_node_of_several_roles_has_each_agent_once_with_every_listener() -> None:
    agents, users, entries = profiles.production().for_roles(("server", "client", "data"))
    by_process = {agent.process: agent for agent in agents}
    assert len(by_process) == len(agents) == 3
    consul = by_process["consul"]
    assert len(set(consul.listens)) == len(consul.listens)
    server_consul = next(a for a in profiles.production().agents["server"] if a.process == "consul")
    assert set(server_consul.listens) <= set(consul.listens)
    assert len(set(users)) == len(users)
    assert len({e.path for e in entries}) == len(entries)


def test_no_private_key_of_a_production_node_is_readable_by_others() -> None:
    keys = [
        entry
        for role_entries in profiles.production().entries.values()
        for entry in role_entries
        if entry.path.endswith("-key.pem")
    ]
    assert keys, "the profile checks no private key at all"
    for key in keys:
        assert key.mode & 0o007 == 0, f"{key.path} is readable by others ({key.mode:o})"
        assert key.owner == "root", key.path


def test_the_api_clients_trust_ca_files_the_server_role_checks() -> None:
    profile = profiles.production()
    server_files = {e.path for e in profile.entries["server"] if not e.directory}
    for api in (profile.nomad, profile.vault):
        assert api.url.startswith("https://") and api.ca_file in server_files, api
