"""Bounded logging and secret scrubbing."""

from __future__ import annotations

import io
import json

from runtime.core.logging import BoundedLog, configure, logger, redact, register_secret


def capture() -> io.StringIO:
    sink = io.StringIO()
    configure("DEBUG", json=True, stream=sink)
    return sink


def restore() -> None:
    configure("WARNING", json=False)


def test_bounded_log_logs_a_burst_then_counts_and_reports_suppressed() -> None:
    now = [0.0]
    sink = capture()
    try:
        log = BoundedLog(interval_s=10.0, burst=2, clock=lambda: now[0])
        results = [log.warning("feed:malformed", "dropped a frame") for _ in range(5)]
        assert results == [True, True, False, False, False]
        assert log.suppressed("feed:malformed") == 3
        now[0] = 11.0
        assert log.warning("feed:malformed", "dropped a frame")
    finally:
        restore()
    lines = [json.loads(line) for line in sink.getvalue().splitlines()]
    assert len(lines) == 3
    assert lines[-1]["record"]["extra"]["suppressed_before"] == 3


def test_json_lines_when_not_a_terminal() -> None:
    sink = capture()
    try:
        logger.info("hello")
    finally:
        restore()
    record = json.loads(sink.getvalue())
    assert record["record"]["message"] == "hello"


def test_registered_secrets_are_redacted_and_short_values_ignored() -> None:
    register_secret("s3cr3t-value-xyz")
    register_secret("ab")  # too short to scrub safely
    assert redact("key=s3cr3t-value-xyz ab") == "key=*** ab"
