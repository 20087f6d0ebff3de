"""Prometheus's and Alertmanager's configurations and Grafana's provisioning files."""

from __future__ import annotations

from typing import Any

from monitoring.settings import Settings

DATASOURCE = {"type": "prometheus", "uid": "arbfleet-prometheus"}


NODE = {"source_labels": ["__meta_consul_node"], "target_label": "node"}


def _consul(prom: dict[str, Any], **filters: list[str]) -> list[dict[str, Any]]:
    # No token here: the local agent's default token grants the service/node reads.
    return [{"server": prom["consul_server"], **filters}]


def _meta(key: str) -> dict[str, Any]:
    return {"source_labels": [f"__meta_consul_service_metadata_{key}"], "target_label": key}


def _engine_job(prom: dict[str, Any], engine: str) -> dict[str, Any]:
    return {
        "job_name": engine,
        "metrics_path": "/metrics",
        # A series the engine labels with its own `strategy` (one process may host several
        # plugins) keeps it; the others take the deployment's from Consul.
        "honor_labels": True,
        # Unhealthy instances too: a failing engine is when its metrics matter most.
        "consul_sd_configs": _consul(prom, services=[engine]),
        "relabel_configs": [
            *(_meta(key) for key in ("deployment", "strategy", "mode", "venues")),
            NODE,
        ],
    }


def _tagged_services_job(prom: dict[str, Any], engine: str) -> dict[str, Any]:
    """Exporters and the monitoring jobs themselves: any Consul service tagged for scraping,
    its service name as `job` (so `job="node-exporter"`)."""
    return {
        "job_name": "consul-services",
        "consul_sd_configs": _consul(prom, tags=[prom["scrape_tag"]]),
        "relabel_configs": [
            {"source_labels": ["__meta_consul_service"], "regex": engine, "action": "drop"},
            {"source_labels": ["__meta_consul_service"], "target_label": "job"},
            {
                "source_labels": ["__meta_consul_service_metadata_metrics_path"],
                "regex": "(.+)",
                "target_label": "__metrics_path__",
            },
            NODE,
        ],
    }


def prometheus_config(settings: Settings) -> dict[str, Any]:
    prom, engine = settings["prometheus"], settings["jobs"]["engine"]
    nomad = {
        "job_name": "nomad",
        "metrics_path": "/v1/metrics",
        "params": {"format": ["prometheus"]},
        "consul_sd_configs": _consul(prom, services=["nomad", "nomad-client"], tags=["http"]),
        "relabel_configs": [NODE],
    }
    alertmanagers = _consul(prom, services=[prom["alertmanager_service"]])
    return {
        "global": {
            "scrape_interval": prom["scrape_interval"],
            "evaluation_interval": prom["evaluation_interval"],
        },
        "rule_files": ["rules/*.yml"],
        "alerting": {"alertmanagers": [{"api_version": "v2", "consul_sd_configs": alertmanagers}]},
        "scrape_configs": [
            _engine_job(prom, engine),
            nomad,
            _tagged_services_job(prom, engine),
        ],
    }


ENGINE_INHIBITED = [
    "ArbfleetFeedStale",
    "ArbfleetLoopLagHigh",
    "ArbfleetNoFillsWhileOpportunities",
    "ArbfleetEngineCannotTrade",
    "ArbfleetEngineDegraded",
]
# The engine's "can trade" check summarises reasons that have alerts of their own, which fire
# sooner and say more: while one fires, the check's alert of the same deployment is inhibited.
# Only an alert of the same severity explains one: a warning never hides a page.
CHECK_EXPLAINED_BY = {
    "ArbfleetEngineCannotTrade": ["ArbfleetFeedStale"],
    "ArbfleetEngineDegraded": ["ArbfleetWriterSpilling"],
}


def _route(am: dict[str, Any]) -> dict[str, Any]:
    return {
        "receiver": "slack",
        "group_by": ["alertname", "deployment", "strategy"],
        "group_wait": am["group_wait"],
        "group_interval": am["group_interval"],
        "repeat_interval": am["repeat_interval"],
        "routes": [
            {
                # Paper trading risks no money: its critical alerts go to Slack only.
                "receiver": "pager",
                "matchers": ['severity="critical"', 'mode!="paper"'],
                "repeat_interval": am["pager_repeat_interval"],
                "continue": True,  # the channel sees pages too, for context
            },
            {"receiver": "slack"},
        ],
    }


def _inhibit(sources: str, targets: str, equal: list[str]) -> dict[str, Any]:
    return {"source_matchers": [sources], "target_matchers": [targets], "equal": equal}


def _inhibit_rules() -> list[dict[str, Any]]:
    return [
        # A down engine explains its own stale feeds, lag and missing fills.
        _inhibit(
            'alertname="ArbfleetEngineDown"',
            f'alertname=~"{"|".join(ENGINE_INHIBITED)}"',
            ["deployment"],
        ),
        *(
            _inhibit(f'alertname=~"{"|".join(sources)}"', f'alertname="{target}"', ["deployment"])
            for target, sources in CHECK_EXPLAINED_BY.items()
        ),
        # The critical alert of a thing silences the warning of the same thing.
        _inhibit(
            'severity="critical"',
            'severity="warning"',
            ["alertname", "deployment", "instance", "mountpoint", "datname"],
        ),
    ]


def _receivers(am: dict[str, Any]) -> list[dict[str, Any]]:
    pager = {
        "routing_key_file": am["pagerduty_routing_key_file"],
        "description": "{{ .CommonAnnotations.summary }}",
        "links": [{"href": "{{ (index .Alerts 0).Annotations.runbook_url }}", "text": "runbook"}],
    }
    slack = {
        "channel": am["slack_channel"],
        "send_resolved": True,
        "title": "[{{ .Status | toUpper }}] {{ .CommonLabels.alertname }}",
        "text": (
            "{{ range .Alerts }}*{{ .Annotations.summary }}*\n{{ .Annotations.description }}\n"
            "<{{ .Annotations.runbook_url }}|runbook>\n{{ end }}"
        ),
    }
    return [
        {"name": "pager", "pagerduty_configs": [pager]},
        {"name": "slack", "slack_configs": [slack]},
    ]


def alertmanager_config(settings: Settings) -> dict[str, Any]:
    am = settings["alertmanager"]
    return {
        "global": {"resolve_timeout": "5m", "slack_api_url_file": am["slack_api_url_file"]},
        "route": _route(am),
        "inhibit_rules": _inhibit_rules(),
        "receivers": _receivers(am),
    }


# --- Grafana ----------------------------------------------------------------------------------


def grafana_provisioning() -> dict[str, dict[str, Any]]:
    # ${...} is expanded by Grafana from the environment the Nomad job gives it.
    return {
        "grafana/provisioning/datasources/arbfleet.yml": {
            "apiVersion": 1,
            "datasources": [
                {
                    "name": "Prometheus",
                    **DATASOURCE,
                    "access": "proxy",
                    "url": "${PROMETHEUS_URL}",
                    "isDefault": True,
                    "editable": False,
                    "jsonData": {"timeInterval": "15s"},
                }
            ],
        },
        "grafana/provisioning/dashboards/arbfleet.yml": {
            "apiVersion": 1,
            "providers": [
                {
                    "name": "arbfleet",
                    "folder": "Arbfleet",
                    "type": "file",
                    "disableDeletion": True,
                    "allowUiUpdates": False,
                    "options": {"path": "${ARBFLEET_DASHBOARDS_DIR}"},
                }
            ],
        },
    }
