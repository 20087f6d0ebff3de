"""Logs: loguru, JSON lines when stdout is not a terminal, secrets scrubbed, noisy sources bounded.

Secrets are scrubbed at the sink, on the fully formatted line, so a key that reaches a log through
a message, an ``extra`` field or an exception text is replaced all the same. Loguru's ``diagnose``
mode is off because it prints local variables in tracebacks, and locals hold keys.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TextIO

from loguru import logger

REDACTED = "***"
_MIN_SECRET_LEN = 4  # shorter values would scrub ordinary words out of every line
# Replaced whole under the lock, never mutated: readers (the log sink, on any thread) iterate
# one snapshot without locking and can never see it change size mid-iteration.
_secrets: frozenset[str] = frozenset()
_secrets_lock = threading.Lock()

__all__ = ["REDACTED", "BoundedLog", "configure", "logger", "redact", "register_secret"]


def register_secret(value: str) -> None:
    """Never let ``value`` reach a log line from now on."""
    global _secrets
    if len(value) >= _MIN_SECRET_LEN:
        with _secrets_lock:
            _secrets = _secrets | {value}


def redact(text: str) -> str:
    """``text`` with every registered secret replaced by ``***``."""
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


class _RedactingSink:
    def __init__(self, stream: TextIO | None) -> None:
        self._stream = stream

    def write(self, message: str) -> None:
        # Without an explicit stream, look stdout up on every write: whoever replaced it since
        # (a test runner capturing output, a daemonizing wrapper) gets the line.
        stream = self._stream if self._stream is not None else sys.stdout
        stream.write(redact(message))
        stream.flush()


def configure(
    level: str = "INFO", *, json: bool | None = None, stream: TextIO | None = None
) -> None:
    """Send logs to ``stream`` (default stdout): JSON lines unless it is a terminal."""
    target = stream if stream is not None else sys.stdout
    serialize = json if json is not None else not target.isatty()
    logger.remove()
    logger.add(
        _RedactingSink(stream),
        level=level.upper(),
        serialize=serialize,
        backtrace=False,
        diagnose=False,
        format="{time:HH:mm:ss.SSS} | {level: <7} | {message} | {extra}",
    )


class BoundedLog:
    """Log at most ``burst`` warnings per key in each ``interval_s``; count the rest.

    Used for per-message problems (a feed sending garbage), where one line per message would
    drown the log and slow the loop. The first line after a quiet window says how many were
    suppressed.
    """

    def __init__(
        self,
        interval_s: float = 10.0,
        burst: int = 3,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._interval_s = interval_s
        self._burst = burst
        self._clock = clock
        self._windows: dict[str, list[float]] = {}  # key -> [window start, logged, suppressed]

    def warning(self, key: str, message: str, **fields: Any) -> bool:
        """Log ``message`` unless ``key`` used up its burst; True if it was logged."""
        now = self._clock()
        window = self._windows.get(key)
        if window is None or now - window[0] >= self._interval_s:
            suppressed = int(window[2]) if window is not None else 0
            window = [now, 0.0, 0.0]
            self._windows[key] = window
            if suppressed:
                fields["suppressed_before"] = suppressed
        if window[1] >= self._burst:
            window[2] += 1
            return False
        window[1] += 1
        logger.bind(key=key, **fields).warning(message)
        return True

    def suppressed(self, key: str) -> int:
        window = self._windows.get(key)
        return int(window[2]) if window is not None else 0
