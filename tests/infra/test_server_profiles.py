"""The production profile of the server suite (servers/profiles.py) is the cluster module's own
data, expected_files.json, which tests/infra/test_terraform.py proves the rendered cloud-config
produces: every node kind becomes a role, every path a fact with an integer mode."""

from __future__ import annotations

import json

from tests.infra.servers import profiles

EXPECTED = json.loads(profiles.EXPECTED_FILES.read_text())


def test_every_node_kind_is_a_role() -> None:
    assert set(profiles.KINDS) == set(EXPECTED) - {"_about"}


def test_each_role_checks_every_path_of_its_node_kind() -> None:
    checked = {
        kind: {(e.path, e.owner, e.group, e.mode) for e in profiles.production().entries[role]}
        for kind, role in profiles.KINDS.items()
    }
    assert checked == {
        kind: {
            (p, e["owner"], e["group"], int(e["mode"], 8))
            for p, e in EXPECTED[kind]["paths"].items()
        }
        for kind in profiles.KINDS
    }


def test_each_role_checks_the_users_of_its_node_kind() -> None:
    users = profiles.production().users
    assert {kind: list(users[role]) for kind, role in profiles.KINDS.items()} == {
        kind: EXPECTED[kind]["users"] for kind in profiles.KINDS
    }


def test_tls_keys_are_checked_with_integer_modes() -> None:
    server = profiles.production().entries["server"]
    keys = {e.path: e.mode for e in server if e.path.endswith("agent-key.pem")}
    assert keys == {
        "/etc/consul.d/tls/agent-key.pem": 0o640,
        "/etc/nomad.d/tls/agent-key.pem": 0o600,
        "/etc/vault.d/tls/agent-key.pem": 0o640,
    }


def test_data_role_checks_host_volumes_owned_by_image_uids() -> None:
    data = profiles.production().entries["data"]
    (redis,) = [e for e in data if e.path.endswith("/redis-data")]
    assert (redis.owner, redis.group, redis.mode, redis.directory) == ("999", "999", 0o700, True)
