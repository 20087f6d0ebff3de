"""The Consul side's decisions that need no Consul: off by default, safe before its first read."""

from __future__ import annotations

import pytest

from runtime.cli import build_parser
from runtime.config import load_config
from runtime.consul import describe_kill_switch
from runtime.engine import Engine
from runtime.errors import ConfigError


def test_embedded_defaults_run_without_consul() -> None:
    engine = Engine(load_config(env={}))
    assert engine.consul is None
    assert "consul" not in " ".join(engine.health()["reasons"])


def test_enabled_consul_locks_the_vault_accounts_and_blocks_orders_until_it_has_looked() -> None:
    env = {
        "ARBFLEET_CONSUL__ENABLED": "true",
        "ARBFLEET_VAULT__ADDRESS": "http://127.0.0.1:8200",
        "ARBFLEET_VAULT__TOKEN_FILE": "/nonexistent/token",
        "ARBFLEET_VAULT__ACCOUNTS__BINANCE": "main",
    }
    link = Engine(load_config(env=env)).consul
    assert link is not None and link.needs_lock
    assert link.blocked() == "consul: kill switch not read yet"
    link.kill_switch_read = True
    assert link.blocked() == "consul: account lock not held"  # no lock, no trading


def test_consul_settings_are_validated() -> None:
    with pytest.raises(ConfigError, match=r"consul\.session_ttl_s"):
        load_config(env={}, overrides={"consul": {"session_ttl_s": 5}})  # Consul's minimum: 10 s


def test_an_unreadable_kill_switch_still_names_itself() -> None:
    assert describe_kill_switch('{"reason": "drill", "who": "ops", "when": "now"}') == (
        "drill (by ops at now)"
    )
    assert describe_kill_switch("not json").startswith("unreadable value")


def test_halt_needs_a_reason() -> None:
    parser = build_parser()
    with pytest.raises(SystemExit):
        parser.parse_args(["halt"])
    args = parser.parse_args(["halt", "--reason", "drill", "--consul", "http://c:8500"])
    assert (args.reason, args.consul, args.key) == (
        "drill",
        "http://c:8500",
        "arbfleet/kill-switch",
    )
