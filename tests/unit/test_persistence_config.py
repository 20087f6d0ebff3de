"""The [postgres], [redis], [journal] and [shutdown] sections: defaults, files, errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.config import load_config
from runtime.core.errors import ConfigError
from runtime.core.logging import redact
from runtime.node import Node
from runtime.persistence.settings import describe_url

CANARY = "pg-canary-Zq81x"


def test_embedded_defaults_configure_no_service() -> None:
    config = load_config(env={})
    assert not config.postgres.enabled and not config.redis.enabled
    assert config.journal.dir is None
    assert config.postgres.retention_hours["ticks"] == 48.0
    assert (config.shutdown.open_orders, config.shutdown.deadline_s) == ("keep", 10.0)


def test_sections_come_from_toml_and_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "engine.toml"
    path.write_text(
        '[postgres]\ndsn_file = "/run/dsn"\nretention_hours = { ticks = 24 }\n'
        '[redis]\nenvironment = "prod"\ndeployment = "xarb-1"\n'
        '[shutdown]\nopen_orders = "cancel"\n'
    )
    config = load_config(path, env={"ARBFLEET_JOURNAL__DIR": "/var/lib/arbfleet"})
    assert config.postgres.dsn_file == Path("/run/dsn")
    assert config.postgres.retention_hours["ticks"] == 24.0
    assert config.postgres.retention_hours["system_events"] == 720.0  # the others keep defaults
    assert (config.redis.environment, config.redis.deployment) == ("prod", "xarb-1")
    assert config.journal.dir == Path("/var/lib/arbfleet")
    assert config.shutdown.open_orders == "cancel"


def test_a_dsn_file_is_read_and_its_password_never_logged(tmp_path: Path) -> None:
    dsn_file = tmp_path / "postgres.dsn"
    dsn_file.write_text(f"postgresql://writer:{CANARY}@db.internal:5432/arbfleet\n")
    config = load_config(env={}, overrides={"postgres": {"dsn_file": dsn_file}})
    dsn = config.postgres.resolve_dsn()
    assert CANARY in dsn
    assert CANARY not in redact(f"connect failed for {dsn} (password {CANARY})")
    assert describe_url(dsn) == "db.internal:5432/arbfleet"


def test_a_multi_host_dsn_is_described_with_every_host_and_no_password() -> None:
    # A primary and its standby (infra/nomad/ha): the writer logs where it may connect.
    dsn = f"postgresql://w:{CANARY}@10.0.0.1:5432,10.0.0.2:5433/db?target_session_attrs=read-write"
    assert describe_url(dsn) == "10.0.0.1:5432,10.0.0.2:5433/db"


def test_a_dsn_and_a_dsn_file_together_are_refused(tmp_path: Path) -> None:
    overrides = {"postgres": {"dsn": "postgresql://a@b/c", "dsn_file": tmp_path / "x"}}
    with pytest.raises(ConfigError, match=r"postgres\.dsn and postgres\.dsn_file"):
        load_config(env={}, overrides=overrides).postgres.resolve_dsn()


def test_a_missing_dsn_file_says_which_and_why(tmp_path: Path) -> None:
    overrides = {"postgres": {"dsn_file": tmp_path / "nope.dsn"}}
    with pytest.raises(ConfigError, match=r"postgres.dsn_file: cannot read .*nope.dsn"):
        load_config(env={}, overrides=overrides).postgres.resolve_dsn()


def test_retention_of_an_unknown_table_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"retention_hours: .*no time-series table tick"):
        load_config(env={}, overrides={"postgres": {"retention_hours": {"tick": 1}}})


def test_a_database_without_a_place_to_spill_is_refused(tmp_path: Path) -> None:
    dsn_file = tmp_path / "postgres.dsn"
    dsn_file.write_text("postgresql://writer:pw@127.0.0.1:1/arbfleet")
    config = load_config(env={}, overrides={"postgres": {"dsn_file": dsn_file}})
    with pytest.raises(ConfigError, match=r"postgres\.spill_dir: required"):
        Node(config)


def test_redis_names_are_checked() -> None:
    with pytest.raises(ConfigError, match=r"redis\.deployment"):
        load_config(env={}, overrides={"redis": {"deployment": "has:colon"}})
