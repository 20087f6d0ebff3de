"""``bench/results.json``: figures by name, the machine and when, merged across benchmarks."""

from __future__ import annotations

import datetime
import json
import os
import platform
from pathlib import Path

RESULTS = Path(__file__).with_name("results.json")


def machine() -> str:
    """CPU model, cores and Python, e.g. 'AMD EPYC 7B13, 2 cores, CPython 3.11.7, Linux'."""
    model = platform.processor() or "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    python = f"{platform.python_implementation()} {platform.python_version()}"
    return f"{model}, {os.cpu_count()} cores, {python}, {platform.system()}"


def write_results(
    figures: dict[str, float],
    path: Path = RESULTS,
    *,
    replace_prefix: str | None = None,
    stamp: bool = True,
) -> dict[str, object]:
    """Merge ``figures`` into the file (other benchmarks' figures stay) and stamp it.

    With ``replace_prefix``, the file's old figures under that prefix go first: a benchmark
    that renamed or dropped a figure leaves no stale one behind. With ``stamp=False`` the
    machine and time stay those of the other figures (a test adding its own, whose machine
    docs/benchmarks.md states)."""
    document: dict[str, object] = {"figures": {}}
    if path.exists():
        document = json.loads(path.read_text())
    merged = dict(document.get("figures", {}))  # type: ignore[call-overload]
    if replace_prefix is not None:
        merged = {name: v for name, v in merged.items() if not name.startswith(replace_prefix)}
    merged.update({name: round(value, 3) for name, value in figures.items()})
    document["figures"] = dict(sorted(merged.items()))
    if stamp or "machine" not in document:
        document["machine"] = machine()
        document["when"] = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    path.write_text(json.dumps(document, indent=2) + "\n")
    return document


def load_average() -> float:
    """The 1-minute load average: other work on the machine skews every figure."""
    return os.getloadavg()[0]
