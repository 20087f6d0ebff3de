"""thresholds.toml and the small vocabulary every generator shares: selectors, durations,
`${...}` placeholders, and PromQL selectors of catalogue metrics."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

from runtime.observability.catalogue import Metric

HERE = Path(__file__).resolve().parent
THRESHOLDS = HERE / "thresholds.toml"

ENGINE = "${engine}"  # placeholders that rules() fills from thresholds.toml
THRESHOLD = "${threshold}"

Labels = dict[str, str]
Settings = dict[str, Any]


def load_settings(path: Path = THRESHOLDS) -> Settings:
    with path.open("rb") as handle:
        return tomllib.load(handle)


def selectors(settings: Settings) -> dict[str, str]:
    """`job="..."` plus the extra matchers of each job: what `${engine}` etc. expand to.

    A selector not named after a job (`can_trade`) is a matcher of its own, used as is.
    """
    jobs = settings["jobs"]
    out = {name: m for name, m in settings["selectors"].items() if name not in jobs}
    for name, job in jobs.items():
        extra = settings["selectors"].get(name)
        out[name] = f'job="{job}"' + (f", {extra}" if extra else "")
    return out


def q(metric: Metric, matchers: str = ENGINE, *, suffix: str = "", window: str = "") -> str:
    """PromQL selecting `metric` (a histogram's part by `suffix`), over `window` if given."""
    selector = f"{metric.series}{suffix}{{{matchers}}}"
    return f"{selector}[{window}]" if window else selector


def minutes(duration: str) -> int:
    match = re.fullmatch(r"(\d+)([mh])", duration)
    if not match:
        raise ValueError(f"duration {duration!r}: use whole minutes or hours, like 5m or 1h")
    return int(match[1]) * (60 if match[2] == "h" else 1)


def fill(template: str, values: dict[str, Any]) -> str:
    """Replace ${name} placeholders; PromQL and Go templates never use `${`."""

    def one(match: re.Match[str]) -> str:
        if match[1] not in values:
            raise KeyError(f"unknown placeholder ${{{match[1]}}} in {template!r}")
        value = values[match[1]]
        return number(value) if isinstance(value, float) else str(value)

    return re.sub(r"\$\{(\w+)\}", one, template)


def number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))
