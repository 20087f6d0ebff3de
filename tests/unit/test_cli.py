"""The ``arbfleet`` command: strategies list/check, argument errors, and the registrars."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runtime.cli import build_parser, main


def test_every_subcommand_is_registered() -> None:
    parser = build_parser()
    choices = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert {"run", "demo", "strategies", "toolchain", "dev"} <= set(choices)


def test_strategies_list_shows_name_version_and_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["strategies", "list", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    plugins = listing["plugins"]
    assert {"cross_exchange", "triangular", "pairs_kalman"} <= set(plugins)
    schema = plugins["cross_exchange"]["config_schema"]
    assert schema["properties"]["min_spread_bps"]["default"] == 30.0
    assert plugins["pairs_kalman"]["version"] == "1.0.0"


def test_strategies_list_human_readable(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["strategies", "list"]) == 0
    out = capsys.readouterr().out
    assert "triangular 1.0.0" in out
    assert "min_profit_bps" in out


def test_check_accepts_a_valid_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "tri.toml"
    path.write_text('venue = "binance"\nmin_profit_bps = 8.0\n')
    assert main(["strategies", "check", "triangular", "--config", str(path)]) == 0
    assert "triangular config is valid" in capsys.readouterr().out


def test_check_names_each_bad_field(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "xex.toml"
    path.write_text("min_spread_bps = 10.0\ntaker_fee_bps_a = 10.0\n")
    assert main(["strategies", "check", "cross_exchange", "--config", str(path)]) == 1
    out = capsys.readouterr().out
    assert "min_spread_bps (10) must exceed the sum of taker fees" in out


def test_check_reads_strategy_entries_of_an_engine_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "engine.toml"
    path.write_text(
        '[[strategies]]\nplugin = "pairs_kalman"\nid = "p"\n[strategies.config]\nexit_z = 3.0\n'
    )
    assert main(["strategies", "check", "pairs_kalman", "--config", str(path)]) == 1
    assert "strategies.0.config.exit_z (3) must be below entry_z" in capsys.readouterr().out


def test_check_of_an_unknown_plugin_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "x.toml"
    path.write_text("")
    with pytest.raises(SystemExit) as excinfo:
        main(["strategies", "check", "nope", "--config", str(path)])
    assert excinfo.value.code == 2
    assert "no strategy plugin named 'nope'" in capsys.readouterr().err


def test_demo_refuses_a_non_positive_duration(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as excinfo:
        main(["demo", "--duration", "0"])
    assert excinfo.value.code == 2
    assert "--duration must be positive" in capsys.readouterr().err


def test_run_replays_a_recorded_session_and_prints_what_happened(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from runtime.feeds.replay import FrameRecorder
    from tests.unit.market_kit import binance_ticker, upbit_book

    path = tmp_path / "session.jsonl.gz"
    rate, krw = 1_400.0, 60_000.0 * 1.006 * 1_400.0
    with FrameRecorder(path) as recorder:
        recorder.record("upbit", upbit_book("KRW-USDT", rate - 0.5, rate + 0.5, 1), 1_000)
        recorder.record("binance", binance_ticker(59_995.0, 60_000.0, 1), 2_000)
        recorder.record("upbit", upbit_book("KRW-BTC", krw, krw * 1.0002, 2, size=0.05), 3_000)
    config = tmp_path / "engine.toml"
    config.write_text('[[strategies]]\nplugin = "cross_exchange"\nid = "xex"\n[health]\nport = 0\n')
    args = ["run", "--config", str(config), "--replay", str(path), "--log-level", "ERROR"]
    assert main(args) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.strip().startswith("xex"))
    assert row.split()[1:4] == ["1", "2", "2"]  # one opportunity, two orders, two fills


def test_run_refuses_a_missing_replay_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as excinfo:
        main(["run", "--replay", str(tmp_path / "nope.jsonl")])
    assert excinfo.value.code == 2
    assert "no such file" in capsys.readouterr().err
