"""Config layers (defaults, TOML, environment, secrets) and errors that name the field."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from runtime.config import DirectorySecrets, EnvironmentSecrets, load_config
from runtime.core.errors import ConfigError
from runtime.core.logging import configure, logger

CANARY = "canary-secret-6f1d2c9e"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "arbfleet.toml"
    path.write_text(text)
    return path


def test_defaults_run_three_strategies_in_paper_mode_without_services() -> None:
    config = load_config(env={})
    assert config.mode == "paper"
    assert [s.plugin for s in config.strategies] == ["cross_exchange", "triangular", "pairs_kalman"]
    assert set(config.venues) == {"binance", "upbit"}


def test_file_overrides_defaults_and_environment_overrides_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[risk]
max_daily_loss = 250.0
max_open_orders = 7

[venues.binance]
ws_url = "ws://127.0.0.1:9001"

[[strategies]]
plugin = "cross_exchange"
id = "only-one"
config = { min_spread_bps = 40.0 }
""",
    )
    env = {
        "ARBFLEET_RISK__MAX_DAILY_LOSS": "100",
        "ARBFLEET_STRATEGIES__0__CONFIG__MIN_SPREAD_BPS": "45",
        "ARBFLEET_CACHE": "/somewhere",  # the toolchain's variable, not a config field
    }
    config = load_config(path, env=env)
    assert config.risk.max_daily_loss == 100.0
    assert config.risk.max_open_orders == 7
    assert config.venues["binance"].ws_url == "ws://127.0.0.1:9001"
    assert config.venues["binance"].rest_url == "https://api.binance.com"  # merged, not replaced
    assert [s.id for s in config.strategies] == ["only-one"]
    assert config.strategies[0].config["min_spread_bps"] == "45"


def test_errors_name_every_bad_field(tmp_path: Path) -> None:
    path = write(tmp_path, 'mode = "yolo"\n[risk]\nmax_open_orders = -1\n[health]\nport = 70000\n')
    with pytest.raises(ConfigError) as excinfo:
        load_config(path, env={})
    message = str(excinfo.value)
    assert "mode: Input should be 'paper' or 'live'" in message
    assert "risk.max_open_orders: Input should be greater than 0" in message
    assert "health.port: Input should be less than or equal to 65535" in message


def test_unreadable_and_invalid_files_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "missing.toml", env={})
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "mode = \n"), env={})


def test_duplicate_strategy_ids_are_refused() -> None:
    strategies = [{"plugin": "triangular", "id": "same"}, {"plugin": "pairs_kalman", "id": "same"}]
    with pytest.raises(ConfigError, match="ids must be unique, repeated: same"):
        load_config(env={}, overrides={"strategies": strategies})


def test_env_index_beyond_the_list_is_an_error() -> None:
    with pytest.raises(ConfigError, match=r"strategies\.9: there are only 3 entries"):
        load_config(env={"ARBFLEET_STRATEGIES__9__ID": "x"})


def test_live_mode_needs_keys_and_takes_them_from_the_secrets_provider() -> None:
    with pytest.raises(ConfigError, match=r"venues\.binance: live mode needs api_key"):
        load_config(env={"ARBFLEET_MODE": "live"})
    env = {
        "ARBFLEET_MODE": "live",
        "ARBFLEET_SECRET_BINANCE_API_KEY": "bkey",
        "ARBFLEET_SECRET_BINANCE_API_SECRET": CANARY,
        "ARBFLEET_SECRET_UPBIT_API_KEY": "ukey",
        "ARBFLEET_SECRET_UPBIT_API_SECRET": "usecret-1234",
    }
    config = load_config(env=env)
    secret = config.venues["binance"].api_secret
    assert secret is not None and secret.get_secret_value() == CANARY
    assert CANARY not in repr(config) and CANARY not in str(config.model_dump())


def test_directory_secrets_read_key_files(tmp_path: Path) -> None:
    (tmp_path / "upbit").mkdir()
    (tmp_path / "upbit" / "api_key").write_text("access\n")
    (tmp_path / "upbit" / "api_secret").write_text("file-secret-9\n")
    assert DirectorySecrets(tmp_path).venue_credentials("upbit") == ("access", "file-secret-9")
    assert DirectorySecrets(tmp_path).venue_credentials("binance") is None
    assert EnvironmentSecrets({}).venue_credentials("upbit") is None


def test_loaded_secrets_never_reach_the_logs() -> None:
    env = {
        "ARBFLEET_SECRET_BINANCE_API_KEY": "bkey",
        "ARBFLEET_SECRET_BINANCE_API_SECRET": CANARY,
    }
    load_config(env=env)
    sink = io.StringIO()
    configure("DEBUG", json=True, stream=sink)
    try:
        logger.bind(secret=CANARY).info(f"signing with {CANARY}")
        try:
            raise ValueError(f"bad key {CANARY}")
        except ValueError:
            logger.exception("request failed")
    finally:
        configure("WARNING", json=False)
    output = sink.getvalue()
    assert CANARY not in output
    assert output.count("***") >= 3
