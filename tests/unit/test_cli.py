"""The ``arbfleet`` command: strategies list/check, argument errors, and the registrars."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runtime.cli.main import build_parser, main


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
    from runtime.venues.replay import FrameRecorder
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


def _cross_exchange_config(tmp_path: Path) -> Path:
    config = tmp_path / "engine.toml"
    config.write_text('[[strategies]]\nplugin = "cross_exchange"\nid = "xex"\n[health]\nport = 0\n')
    return config


def test_run_replays_raw_binance_frames_and_counts_every_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A websocket log as people save it: combined-stream frames, a blank line, a bad one."""
    ticker = b'{"u":%d,"s":"BTCUSDT","b":"59995","B":"1","a":"60000","A":"1"}'
    path = tmp_path / "binance.log"
    path.write_bytes(
        b"\n".join(
            [
                b'{"stream":"btcusdt@bookTicker","data":' + ticker % 1 + b"}",
                b"",
                b"not json",
                b'{"stream":"btcusdt@bookTicker","data":' + ticker % 2 + b"}",
            ]
        )
        + b"\n"
    )
    args = ["run", "--config", str(_cross_exchange_config(tmp_path)), "--replay", str(path)]
    assert main([*args, "--replay-venue", "binance", "--log-level", "ERROR"]) == 0
    out = capsys.readouterr().out
    assert "msgs 3 " in out and "dropped 1 " in out
    assert "replay lines: played 3, blank 1, bad_record 0, unknown_venue 0; frames used 2" in out


@pytest.mark.parametrize("venue", [None, "binance"])
def test_run_says_which_format_a_replay_that_yields_nothing_should_have(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], venue: str | None
) -> None:
    path = tmp_path / "wrong.jsonl"
    path.write_text('{"ts_ns": "yesterday"}\n\n' if venue is None else '{"ts_ns": 1}\n')
    args = ["run", "--config", str(_cross_exchange_config(tmp_path)), "--replay", str(path)]
    with pytest.raises(SystemExit) as excinfo:
        main([*args, "--log-level", "ERROR", *(["--replay-venue", venue] if venue else [])])
    assert excinfo.value.code == 2
    err = capsys.readouterr().err
    assert str(path) in err and '{"ts_ns": <int>, "venue": "<venue>"' in err
    assert "one frame a line, exactly as the venue sent it" in err


def test_run_refuses_a_replay_venue_nobody_listens_to(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "upbit.log"
    path.write_text("{}\n")
    config = tmp_path / "engine.toml"
    config.write_text('[[strategies]]\nplugin = "triangular"\nid = "tri"\n[health]\nport = 0\n')
    with pytest.raises(SystemExit) as excinfo:
        main(["run", "--config", str(config), "--replay", str(path), "--replay-venue", "upbit"])
    assert excinfo.value.code == 2
    assert "no strategy listens to 'upbit'" in capsys.readouterr().err


def test_run_refuses_a_missing_replay_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as excinfo:
        main(["run", "--replay", str(tmp_path / "nope.jsonl")])
    assert excinfo.value.code == 2
    assert "no such file" in capsys.readouterr().err
