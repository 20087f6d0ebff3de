"""Alert rules from the alert specs and thresholds.toml, and their promtool tests.

The tests come from the same numbers, so a changed threshold moves its test with it: each
alert gets a series at the threshold (must stay silent), one just past each severity's
threshold, and is evaluated one minute before its `for:` (silent) and at it (firing).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from monitoring.alert_cases import Case, Firing
from monitoring.alerts import Alert, alert_specs
from monitoring.settings import THRESHOLD, Labels, Settings, fill, minutes, selectors


@dataclass(frozen=True)
class Rule:
    alert: Alert
    severity: str
    expr: str
    for_: str
    params: dict[str, Any]  # what the ${...} placeholders of this rule expand to

    def to_dict(self, runbook_base: str) -> dict[str, Any]:
        return {
            "alert": self.alert.name,
            "expr": self.expr,
            "for": self.for_,
            "labels": {"severity": self.severity},
            "annotations": {
                "summary": fill(self.alert.summary, self.params),
                "description": fill(self.alert.description, self.params),
                "runbook_url": f"{runbook_base}/{self.alert.name}.md",
            },
        }


def _check_specs(specs: list[Alert], settings: Settings) -> None:
    """Every alert is configured in thresholds.toml and vice versa, each in one way."""
    names = {a.name for a in specs}
    configured = settings["alerts"]
    if names != set(configured):
        raise ValueError(
            f"alerts without settings: {sorted(names - set(configured))}; "
            f"settings without alert: {sorted(set(configured) - names)}"
        )
    for alert in specs:
        keys = configured[alert.name]
        if ("severity" in keys) == ("thresholds" in keys):
            raise ValueError(f"{alert.name}: give either `thresholds` or `severity`")
        if alert.fixture is not None and "thresholds" not in keys:
            raise ValueError(f"{alert.name}: a threshold alert needs `thresholds`")
        if (alert.fixture is None) == (alert.cases is None):
            raise ValueError(f"{alert.name}: give either a fixture or cases")


def rules(settings: Settings) -> list[Rule]:
    specs = alert_specs(settings)
    _check_specs(specs, settings)
    out = []
    for alert in specs:
        conf = settings["alerts"][alert.name]
        base = {**selectors(settings), **conf}
        levels = conf.get("thresholds") or {conf["severity"]: None}
        for severity, threshold in levels.items():
            params = base if threshold is None else base | {"threshold": float(threshold)}
            expr = fill(alert.expr or f"{alert.query} {alert.op} {THRESHOLD}", params)
            out.append(Rule(alert, severity, expr, conf["for"], params))
    return out


def alert_rules(settings: Settings) -> dict[str, Any]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for rule in rules(settings):
        groups.setdefault(rule.alert.group, []).append(rule.to_dict(settings["runbook_base_url"]))
    return {"groups": [{"name": f"arbfleet-{g}", "rules": r} for g, r in groups.items()]}


# --- promtool tests for the alerts -------------------------------------------------------------


def render(template: str, labels: Labels, value: float) -> str:
    """What Prometheus makes of an annotation: only the template forms our rules use."""

    def one(match: re.Match[str]) -> str:
        if match[1] is not None:
            return labels[match[1]]  # a label the alert lacks would render "<no value>"
        return format(value, match[2])

    pattern = r'\{\{ (?:\$labels\.(\w+)|\$value \| printf "%([.\d]+f)") \}\}'
    out = re.sub(pattern, one, template)
    if "{{" in out:
        raise ValueError(f"annotation uses a template form render() does not know: {template!r}")
    return out


def threshold_cases(alert: Alert, found: list[Rule]) -> list[Case]:
    """A series at the easiest threshold (silent) and one just past each severity's threshold."""
    sign = 1 if alert.op == ">" else -1
    assert alert.fixture is not None
    levels = {rule.severity: rule.params["threshold"] for rule in found}
    boundary = min(levels.values(), key=lambda t: sign * t)
    series = alert.fixture(boundary, "at-threshold")
    fires = []
    for severity, threshold in levels.items():
        value = round(threshold + sign * alert.margin, 9)  # no 0.15000000000000002
        new = alert.fixture(value, f"past-{severity}")
        series += new
        for rule in found:  # every severity whose threshold this value crosses fires
            if sign * value > sign * rule.params["threshold"]:
                fires.append(Firing(new[0].labels | {"severity": rule.severity}, value))
    return [Case(series, fires)]


def _cases(alert: Alert, found: list[Rule], settings: Settings) -> list[Case]:
    if alert.cases is None:
        return threshold_cases(alert, found)
    (rule,) = found  # hand-made cases know one severity only
    return alert.cases(rule.params | {"jobs": settings["jobs"], "severity": rule.severity})


def _expected(case: Case, found: list[Rule], runbook_base: str) -> list[dict[str, Any]]:
    """What promtool must see firing: the labels, and the annotations rendered for them."""
    by_severity = {r.severity: r for r in found}
    out = []
    for firing in case.fires:
        rule = by_severity[firing.labels["severity"]]
        annotations = rule.to_dict(runbook_base)["annotations"]
        rendered = {k: render(v, firing.labels, firing.value) for k, v in annotations.items()}
        out.append({"exp_labels": firing.labels, "exp_annotations": rendered})
    return out


def _test(alert: Alert, case: Case, wait: int, expected: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "interval": "1m",
        "input_series": [{"series": s.promql(), "values": s.values} for s in case.series],
        "alert_rule_test": [
            # Pending, not firing, one evaluation before `for:` has passed...
            {"eval_time": f"{case.starts + wait - 1}m", "alertname": alert.name, "exp_alerts": []},
            # ...and firing, with exactly these labels and texts, once it has.
            {
                "eval_time": f"{case.starts + wait}m",
                "alertname": alert.name,
                "exp_alerts": expected,
            },
        ],
    }


def alert_tests(settings: Settings) -> dict[str, Any]:
    all_rules = rules(settings)
    tests = []
    for alert in alert_specs(settings):
        found = [r for r in all_rules if r.alert.name == alert.name]
        wait = minutes(found[0].for_)
        for case in _cases(alert, found, settings):
            expected = _expected(case, found, settings["runbook_base_url"])
            tests.append(_test(alert, case, wait, expected))
    return {"rule_files": ["../rules/alerts.yml"], "evaluation_interval": "1m", "tests": tests}
