"""Monitoring as code: generated files, alert hygiene, the metrics contract, dashboards, routing.

Fast and service-free. The binaries (promtool, amtool, Alertmanager) are exercised in
tests/integration/test_monitoring_tools.py.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from monitoring import alerting, configs, generate, recording
from monitoring.elsewhere import ELSEWHERE
from monitoring.settings import load_settings, minutes, selectors
from runtime.observability import catalogue

REPO = Path(__file__).resolve().parents[2]
MONITORING = REPO / "monitoring"
RUNBOOKS = REPO / "docs" / "runbooks"
SETTINGS = load_settings()
RULES = [r for g in alerting.alert_rules(SETTINGS)["groups"] for r in g["rules"]]
ALERT_NAMES = sorted({r["alert"] for r in RULES})
RECORDED = {r["record"] for g in recording.recording_rules(SETTINGS)["groups"] for r in g["rules"]}
DASHBOARDS = {
    p.stem: json.loads(p.read_text()) for p in (MONITORING / "grafana/dashboards").glob("*.json")
}
PROMQL_WORDS = {
    "and",
    "or",
    "unless",
    "by",
    "without",
    "on",
    "ignoring",
    "bool",
    "offset",
    "group_left",
    "group_right",
    "inf",
    "nan",
}


# --- generated files --------------------------------------------------------------------------


def test_committed_files_are_what_the_generator_writes() -> None:
    assert generate.drift() == [], "run: python -m monitoring.generate"


def test_drift_check_flags_an_edited_and_an_orphaned_file(tmp_path: Path) -> None:
    copy_root = tmp_path / "monitoring"
    shutil.copytree(MONITORING, copy_root)
    rules = copy_root / generate.ALERTS_FILE
    rules.write_text(rules.read_text().replace("for: 5m", "for: 6m"))
    (copy_root / "grafana/dashboards/forgotten.json").write_text("{}")

    assert generate.drift(copy_root) == [generate.ALERTS_FILE, "grafana/dashboards/forgotten.json"]


def test_a_threshold_changed_in_toml_moves_rule_test_and_dashboard_together() -> None:
    settings = copy.deepcopy(SETTINGS)
    settings["alerts"]["ArbfleetFeedStale"]["thresholds"]["critical"] = 42
    files = generate.outputs(settings)

    exprs = {
        r["expr"] for g in yaml.safe_load(files[generate.ALERTS_FILE])["groups"] for r in g["rules"]
    }
    assert f'{catalogue.FEED_STALENESS.series}{{job="arbfleet-engine"}} > 42' in exprs
    tests = yaml.safe_load(files[generate.ALERT_TESTS_FILE])["tests"]
    assert "42+0x120" in {s["values"] for t in tests for s in t["input_series"]}  # at-threshold
    board = json.loads(files["grafana/dashboards/market-data.json"])
    staleness = next(p for p in board["panels"] if p["title"] == "Feed staleness")
    assert staleness["fieldConfig"]["defaults"]["thresholds"]["steps"][-1]["value"] == 42


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda s: s["alerts"].pop("ArbfleetFeedStale"), "alerts without settings"),
        (
            lambda s: s["alerts"].update(ArbfleetNew={"for": "1m", "severity": "warning"}),
            "settings without alert",
        ),
        (
            lambda s: s["alerts"]["ArbfleetEngineDown"].update(thresholds={"warning": 1}),
            "either `thresholds` or `severity`",
        ),
        (
            lambda s: s["alerts"]["ArbfleetFeedStale"].update(severity="critical"),
            "either `thresholds` or `severity`",
        ),
    ],
)
def test_settings_that_do_not_match_the_alerts_are_refused(edit: Any, message: str) -> None:
    settings = copy.deepcopy(SETTINGS)
    edit(settings)
    with pytest.raises(ValueError, match=re.escape(message)):
        alerting.rules(settings)


def test_a_selector_not_named_after_a_job_is_a_matcher_of_its_own() -> None:
    sel = selectors(SETTINGS)
    assert sel["can_trade"] == SETTINGS["selectors"]["can_trade"]
    assert sel["engine"] == 'job="arbfleet-engine"'
    assert sel["node"].startswith('job="node-exporter", fstype!~')


def test_durations_the_promtool_tests_cannot_step_through_are_refused() -> None:
    assert minutes("2h") == 120
    with pytest.raises(ValueError, match="whole minutes"):
        minutes("90s")


def test_yaml_reads_back_what_was_written_with_expressions_as_blocks() -> None:
    data = {
        "plain": "arbfleet-engine",
        "bool_word": "true",
        "colon": "a: b",
        "comment": "#alerts",
        "duration": "15s",
        "promql": 'up{job="x"}',
        "empty": [],
        "multi": "line one\nline two",
        "long": "x" * 200,
        "nested": [{"k": 1, "v": [{"x": 0.5}]}],
    }
    text = generate.to_yaml(data)
    assert yaml.safe_load(text) == data
    assert "multi: |-\n  line one\n  line two\n" in text  # PromQL reads as written
    assert f"long: {'x' * 200}\n" in text  # never folded
    assert "nested:\n  - k: 1\n    v:\n      - x: 0.5\n" in text


def test_monitoring_and_the_collectors_name_no_metric_themselves() -> None:
    # Metrics are the catalogue's objects; a name typed anywhere else could drift from it.
    sources = [*MONITORING.glob("*.py"), REPO / "runtime/observability/metrics.py"]
    named = {p.name: re.findall(r"arbfleet_[a-z_]+", p.read_text()) for p in sources}
    assert {name: found for name, found in named.items() if found} == {}


# --- alerts ---------------------------------------------------------------------------------


@pytest.mark.parametrize("rule", RULES, ids=lambda r: f"{r['alert']}-{r['labels']['severity']}")
def test_alert_has_summary_description_runbook_and_severity(rule: dict[str, Any]) -> None:
    name = rule["alert"]
    assert rule["labels"]["severity"] in {"warning", "critical"}
    assert set(rule["annotations"]) == {"summary", "description", "runbook_url"}
    assert all(rule["annotations"][k].strip() for k in ("summary", "description"))
    assert rule["annotations"]["runbook_url"] == f"{SETTINGS['runbook_base_url']}/{name}.md"
    assert SETTINGS["runbook_base_url"].endswith("/docs/runbooks")
    assert (RUNBOOKS / f"{name}.md").is_file()
    assert minutes(rule["for"]) > 0  # silent-before-`for:` needs a `for:`


def test_every_runbook_belongs_to_an_alert() -> None:
    pages = {p.stem for p in RUNBOOKS.glob("*.md")} - {"README"}
    assert pages == set(ALERT_NAMES)


def test_seed_thresholds_are_kept() -> None:
    # What the old VPS alerted on: disk 70% / 85%, database 10 GB, loop latency 100 ms.
    alerts = SETTINGS["alerts"]
    assert alerts["ArbfleetDiskUsageHigh"]["thresholds"] == {"warning": 70, "critical": 85}
    assert alerts["ArbfleetDatabaseSizeHigh"]["thresholds"]["critical"] == 10
    assert alerts["ArbfleetLoopLagHigh"]["thresholds"]["warning"] == 0.1


@pytest.mark.parametrize("name", ALERT_NAMES)
def test_alert_has_promtool_case_silent_before_for_and_firing_at_it(name: str) -> None:
    for_ = minutes(next(r["for"] for r in RULES if r["alert"] == name))
    severities = {r["labels"]["severity"] for r in RULES if r["alert"] == name}
    cases = [
        t["alert_rule_test"]
        for t in alerting.alert_tests(SETTINGS)["tests"]
        if t["alert_rule_test"][0]["alertname"] == name
    ]
    assert cases
    fired = set()
    for before, at in cases:
        assert before["exp_alerts"] == [] and at["exp_alerts"] != []
        assert minutes(at["eval_time"]) - minutes(before["eval_time"]) == 1
        assert minutes(at["eval_time"]) >= for_
        fired |= {a["exp_labels"]["severity"] for a in at["exp_alerts"]}
    assert fired == severities


def test_threshold_case_holds_a_series_at_the_threshold_that_must_stay_silent() -> None:
    (case,) = [
        t
        for t in alerting.alert_tests(SETTINGS)["tests"]
        if t["alert_rule_test"][0]["alertname"] == "ArbfleetDiskUsageHigh"
    ]
    series = " ".join(s["series"] for s in case["input_series"])
    assert 'mountpoint="/at-threshold"' in series
    firing = case["alert_rule_test"][1]["exp_alerts"]
    assert {(a["exp_labels"]["mountpoint"], a["exp_labels"]["severity"]) for a in firing} == {
        ("/past-warning", "warning"),
        ("/past-critical", "warning"),
        ("/past-critical", "critical"),
    }


def test_annotation_rendering_matches_prometheus_templates() -> None:
    text = 'disk {{ $labels.mountpoint }} at {{ $value | printf "%.1f" }}%'
    assert alerting.render(text, {"mountpoint": "/"}, 87.25) == "disk / at 87.2%"
    with pytest.raises(ValueError, match="template form"):
        alerting.render("{{ $value | humanize }}", {}, 1.0)


# --- the metrics contract -------------------------------------------------------------------


def contract() -> dict[str, str]:
    """Every metric the rules and panels may read (the series name: a counter's ends in _total)."""
    return {m.series: m.kind for m in (*catalogue.ENGINE, *catalogue.BACKUP, *ELSEWHERE)}


def metrics_in(expr: str) -> set[str]:
    """Metric names an expression reads: strings, matchers, ranges and label lists removed."""
    expr = re.sub(r'"[^"]*"', "", expr)
    expr = re.sub(r"\{[^}]*\}|\[[^\]]*\]", "", expr)
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    expr = re.sub(r"^label_values\((.*),\s*\w+\)$", r"\1", expr)  # Grafana: last arg is a label
    names = re.findall(r"(?<![\w.$])([a-zA-Z_:][\w:]*)(?!\w*\s*\()", expr)
    return {n for n in names if n.lower() not in PROMQL_WORDS}


def known(name: str, metrics: dict[str, str]) -> bool:
    base = re.sub(r"_(bucket|sum|count)$", "", name)
    return name in metrics or name in RECORDED or metrics.get(base) == "histogram"


def all_exprs() -> list[str]:
    exprs = [r["expr"] for r in RULES]
    exprs += [r["expr"] for g in recording.recording_rules(SETTINGS)["groups"] for r in g["rules"]]
    for board in DASHBOARDS.values():
        exprs += [t["expr"] for p in board["panels"] for t in p["targets"]]
        exprs += [v["query"]["query"] for v in board["templating"]["list"]]
    return exprs


def test_metric_extraction_ignores_labels_functions_and_ranges() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (le, venue) (rate(a_bucket{x="y"}[5m]))) / b_total > 1e9'
    )
    assert metrics_in(expr) == {"a_bucket", "b_total"}
    assert metrics_in('label_values(up{job="e", d=~"$d"}, deployment)') == {"up"}


def test_contract_names_follow_prometheus_conventions() -> None:
    metrics = contract()
    assert len(metrics) > 20
    for name, kind in metrics.items():
        assert name.endswith("_total") == (kind == "counter"), name
        assert not re.search(r"_(seconds|bytes)_", name.removesuffix("_total")), name
        if "seconds" in name or "bytes" in name:
            assert re.search(r"_(seconds|bytes)(_total)?$", name), name
    # What the issue asks the engine to report, under the names runtime/observability/metrics.py uses.
    assert set(metrics) >= {
        "arbfleet_feed_frames_total",
        "arbfleet_feed_dropped_total",
        "arbfleet_feed_staleness_seconds",
        "arbfleet_loop_lag_seconds",
        "arbfleet_tick_to_intent_seconds",
        "arbfleet_strategy_orders_total",
        "arbfleet_strategy_fills_total",
        "arbfleet_strategy_blocked_total",
        "arbfleet_venue_rejections_total",
        "arbfleet_strategy_pnl",
        "arbfleet_position",
        "arbfleet_writer_queue_depth",
        "arbfleet_writer_spill_bytes",
        "arbfleet_vault_lease_ttl_seconds",
        "arbfleet_exchange_key_age_seconds",
        "arbfleet_consul_check_state",
        "arbfleet_strategy_quarantines_total",
        "arbfleet_risk_daily_loss",
        "arbfleet_risk_daily_loss_limit",
    }


def test_every_expression_reads_only_contract_or_recorded_metrics() -> None:
    metrics = contract()
    unknown = {(n, e) for e in all_exprs() for n in metrics_in(e) if not known(n, metrics)}
    assert unknown == set()


def test_every_contract_metric_is_used() -> None:
    used = {re.sub(r"_(bucket|sum|count)$", "", n) for e in all_exprs() for n in metrics_in(e)}
    assert set(contract()) - used == set()


def test_target_labels_from_consul_meta_are_documented() -> None:
    doc = (MONITORING / "metrics.md").read_text()
    engine = configs.prometheus_config(SETTINGS)["scrape_configs"][0]
    for relabel in engine["relabel_configs"]:
        source = relabel["source_labels"][0]
        if source.startswith("__meta_consul_service_metadata_"):
            key = source.removeprefix("__meta_consul_service_metadata_")
            row = rf"\| `{relabel['target_label']}`\s*\| service meta `{key}`\s*\|"
            assert re.search(row, doc), row


# --- Prometheus ------------------------------------------------------------------------------


def test_engines_are_found_through_consul_with_their_deployment_labels() -> None:
    config = configs.prometheus_config(SETTINGS)
    engine = next(
        j for j in config["scrape_configs"] if j["job_name"] == SETTINGS["jobs"]["engine"]
    )
    assert engine["metrics_path"] == "/metrics"
    assert [sd["services"] for sd in engine["consul_sd_configs"]] == [["arbfleet-engine"]]
    relabelled = {r["target_label"]: r["source_labels"] for r in engine["relabel_configs"]}
    for label in ("deployment", "strategy", "mode", "venues"):
        assert relabelled[label] == [f"__meta_consul_service_metadata_{label}"]
    # The labels alerts aggregate by, and Alertmanager routes and inhibits on, exist on every
    # engine series even when the engine does not export them.
    assert {"deployment", "strategy", "mode"} <= set(relabelled)


def test_every_scrape_job_and_alertmanager_come_from_consul() -> None:
    config = configs.prometheus_config(SETTINGS)
    for job in config["scrape_configs"]:
        assert set(job) & {"static_configs", "file_sd_configs"} == set(), job["job_name"]
        assert job["consul_sd_configs"][0]["server"] == SETTINGS["prometheus"]["consul_server"]
    (alertmanagers,) = config["alerting"]["alertmanagers"]
    assert alertmanagers["consul_sd_configs"][0]["services"] == ["alertmanager"]


def test_exporter_jobs_used_by_rules_are_named_after_their_consul_services() -> None:
    # The tag-discovered job takes the Consul service name as `job`, which the selectors use.
    config = configs.prometheus_config(SETTINGS)
    tagged = next(j for j in config["scrape_configs"] if j["job_name"] == "consul-services")
    assert {"source_labels": ["__meta_consul_service"], "target_label": "job"} in tagged[
        "relabel_configs"
    ]
    assert tagged["consul_sd_configs"][0]["tags"] == [SETTINGS["prometheus"]["scrape_tag"]]


def test_rule_files_glob_loads_the_generated_rules() -> None:
    config = configs.prometheus_config(SETTINGS)
    loaded = {p.name for g in config["rule_files"] for p in (MONITORING / "prometheus").glob(g)}
    assert loaded == {"alerts.yml", "recording.yml"}


# --- Alertmanager ----------------------------------------------------------------------------


def test_slack_and_pager_secrets_are_read_from_files_never_written_in_the_repo() -> None:
    config = configs.alertmanager_config(SETTINGS)
    assert config["global"]["slack_api_url_file"].startswith("/secrets/")
    (pager,) = next(r for r in config["receivers"] if r["name"] == "pager")["pagerduty_configs"]
    assert pager["routing_key_file"].startswith("/secrets/")
    text = (MONITORING / "alertmanager/alertmanager.yml").read_text()
    assert re.search(r"(api_url|routing_key|service_key):", text) is None
    for path in MONITORING.rglob("*"):
        if path.is_file():
            assert "hooks.slack.com" not in path.read_text(errors="ignore"), path


def test_critical_alerts_page_and_warnings_go_to_slack() -> None:
    route = configs.alertmanager_config(SETTINGS)["route"]
    assert route["receiver"] == "slack"
    pager, rest = route["routes"]
    assert pager["receiver"] == "pager"
    assert pager["matchers"] == ['severity="critical"', 'mode!="paper"']
    assert pager["continue"] is True and rest == {"receiver": "slack"}


def test_engine_down_inhibits_its_own_feed_stale() -> None:
    rules = configs.alertmanager_config(SETTINGS)["inhibit_rules"]
    down = next(r for r in rules if r["source_matchers"] == ['alertname="ArbfleetEngineDown"'])
    (target,) = down["target_matchers"]
    assert re.search(r"\bArbfleetFeedStale\b", target) and down["equal"] == ["deployment"]


def test_an_alert_explaining_the_can_trade_check_never_hides_a_page() -> None:
    # A specific alert (a stale feed) inhibits the check's summary alert of the same deployment;
    # only one of the same severity may, or a Slack warning would swallow a page.
    severity = {r["alert"]: r["labels"]["severity"] for r in RULES}
    assert configs.CHECK_EXPLAINED_BY["ArbfleetEngineCannotTrade"] == ["ArbfleetFeedStale"]
    for target, sources in configs.CHECK_EXPLAINED_BY.items():
        assert {severity[s] for s in sources} == {severity[target]}, target
    rules = configs.alertmanager_config(SETTINGS)["inhibit_rules"]
    targets = {m for r in rules for m in r["target_matchers"]}
    assert set(configs.CHECK_EXPLAINED_BY) <= {t.split('"')[1] for t in targets}


def test_the_kill_switch_alert_is_one_per_cluster_and_never_pages() -> None:
    (rule,) = [r for r in RULES if r["alert"] == "ArbfleetKillSwitchEngaged"]
    assert rule["labels"]["severity"] == "warning"
    assert rule["expr"].startswith("count(")  # no by (...): one alert, however many engines
    assert minutes(rule["for"]) >= 5  # an operator's deliberate halt is not news


def test_can_trade_alerts_select_the_can_trade_check_by_deployment() -> None:
    check = SETTINGS["selectors"]["can_trade"]
    assert check == 'check="can-trade"'  # runtime/platform/consul.py CHECK_NAME
    for name in ("ArbfleetEngineCannotTrade", "ArbfleetEngineDegraded"):
        (rule,) = [r for r in RULES if r["alert"] == name]
        assert check in rule["expr"] and "by (deployment, strategy, mode)" in rule["expr"]
        assert "instance" not in rule["expr"]  # a canary waiting for the lock is no incident
    (critical,) = [r for r in RULES if r["alert"] == "ArbfleetEngineCannotTrade"]
    assert "arbfleet_kill_switch" in critical["expr"]  # a halt is ArbfleetKillSwitchEngaged's


def test_inhibition_names_only_existing_alerts() -> None:
    rules = configs.alertmanager_config(SETTINGS)["inhibit_rules"]
    matchers = [m for r in rules for m in r["source_matchers"] + r["target_matchers"]]
    named = {n for m in matchers if m.startswith("alertname") for n in m.split('"')[1].split("|")}
    assert named and named <= set(ALERT_NAMES)


# --- Grafana ---------------------------------------------------------------------------------


def test_the_four_dashboards_exist_with_unique_uids() -> None:
    assert set(DASHBOARDS) == {
        "fleet-overview",
        "strategy-trading",
        "market-data",
        "system-database",
    }
    uids = [d["uid"] for d in DASHBOARDS.values()]
    assert len(set(uids)) == len(uids)


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_dashboard_panels_are_unique_placed_and_use_the_provisioned_datasource(name: str) -> None:
    provisioned = configs.grafana_provisioning()["grafana/provisioning/datasources/arbfleet.yml"]
    uid = provisioned["datasources"][0]["uid"]
    board = DASHBOARDS[name]
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    variables = {v["name"] for v in board["templating"]["list"]}
    for panel in board["panels"]:
        assert panel["datasource"]["uid"] == uid
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        assert panel["targets"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == uid and target["expr"]
            assert set(re.findall(r"\$(\w+)", target["expr"])) <= variables
    for variable in board["templating"]["list"]:
        assert variable["datasource"]["uid"] == uid


def test_fleet_overview_shows_can_trade_and_the_kill_switch_in_their_alerts_colours() -> None:
    panels = {p["title"]: p for p in DASHBOARDS["fleet-overview"]["panels"]}
    severity = {r["alert"]: r["labels"]["severity"] for r in RULES}
    colours = {"warning": "orange", "critical": "red"}

    def steps(title: str) -> dict[float, str]:
        defaults = panels[title]["fieldConfig"]["defaults"]
        return {s["value"]: s["color"] for s in defaults["thresholds"]["steps"] if s["value"]}

    def mapped(title: str) -> dict[str, str]:
        (mapping,) = panels[title]["fieldConfig"]["defaults"]["mappings"]
        return {value: option["text"] for value, option in mapping["options"].items()}

    for title in ("Can trade (Consul check)", "Can trade over time (Consul check)"):
        (target,) = panels[title]["targets"]
        assert "arbfleet_consul_check_state" in target["expr"]
        assert target["expr"].startswith("min by (deployment)")  # the best allocation
        assert steps(title) == {
            1: colours[severity["ArbfleetEngineDegraded"]],
            2: colours[severity["ArbfleetEngineCannotTrade"]],
        }
        assert mapped(title) == {"0": "can trade", "1": "degraded", "2": "cannot trade"}
    timeline = panels["Can trade over time (Consul check)"]["fieldConfig"]["defaults"]
    assert timeline["color"] == {"mode": "thresholds"}
    assert steps("Kill switch engaged") == {1: colours[severity["ArbfleetKillSwitchEngaged"]]}
    assert mapped("Kill switch engaged") == {"0": "released", "1": "engaged"}
    (halted,) = panels["Engines halted by the kill switch"]["targets"]
    assert "arbfleet_kill_switch" in halted["expr"]


def test_dashboards_are_provisioned_from_files() -> None:
    provisioning = configs.grafana_provisioning()
    (provider,) = provisioning["grafana/provisioning/dashboards/arbfleet.yml"]["providers"]
    assert provider["type"] == "file" and provider["options"]["path"]
    (source,) = provisioning["grafana/provisioning/datasources/arbfleet.yml"]["datasources"]
    assert source["type"] == "prometheus" and source["url"] == "${PROMETHEUS_URL}"
