"""Prometheus's and Alertmanager's configurations and Grafana's provisioning files."""

from __future__ import annotations

from typing import Any

from monitoring.settings import Settings

DATASOURCE = {"type": "prometheus", "uid": "arbfleet-prometheus"}


def prometheus_config(settings: Settings) -> dict[str, Any]:
    prom, jobs = settings["prometheus"], settings["jobs"]

    def consul(**filters: list[str]) -> list[dict[str, Any]]:
        # No token here: the local agent's default token grants the service/node reads.
        return [{"server": prom["consul_server"], **filters}]

    def meta(key: str, label: str | None = None) -> dict[str, Any]:
        return {
            "source_labels": [f"__meta_consul_service_metadata_{key}"],
            "target_label": label or key,
        }

    node = {"source_labels": ["__meta_consul_node"], "target_label": "node"}
    return {
        "global": {
            "scrape_interval": prom["scrape_interval"],
            "evaluation_interval": prom["evaluation_interval"],
        },
        "rule_files": ["rules/*.yml"],
        "alerting": {
            "alertmanagers": [
                {
                    "api_version": "v2",
                    "consul_sd_configs": consul(services=[prom["alertmanager_service"]]),
                }
            ]
        },
        "scrape_configs": [
            {
                "job_name": jobs["engine"],
                "metrics_path": "/metrics",
                # A series the engine labels with its own `strategy` (one process may host
                # several plugins) keeps it; the others take the deployment's from Consul.
                "honor_labels": True,
                # Unhealthy instances too: a failing engine is when its metrics matter most.
                "consul_sd_configs": consul(services=[jobs["engine"]]),
                "relabel_configs": [
                    meta("deployment"),
                    meta("strategy"),
                    meta("mode"),
                    meta("venues"),
                    node,
                ],
            },
            {
                "job_name": "nomad",
                "metrics_path": "/v1/metrics",
                "params": {"format": ["prometheus"]},
                "consul_sd_configs": consul(services=["nomad", "nomad-client"], tags=["http"]),
                "relabel_configs": [node],
            },
            {
                # Exporters and the monitoring jobs themselves: any Consul service tagged for
                # scraping, its service name as `job` (so `job="node-exporter"`).
                "job_name": "consul-services",
                "consul_sd_configs": consul(tags=[prom["scrape_tag"]]),
                "relabel_configs": [
                    {
                        "source_labels": ["__meta_consul_service"],
                        "regex": jobs["engine"],
                        "action": "drop",
                    },
                    {"source_labels": ["__meta_consul_service"], "target_label": "job"},
                    {
                        "source_labels": ["__meta_consul_service_metadata_metrics_path"],
                        "regex": "(.+)",
                        "target_label": "__metrics_path__",
                    },
                    node,
                ],
            },
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


def alertmanager_config(settings: Settings) -> dict[str, Any]:
    am = settings["alertmanager"]
    slack_text = (
        "{{ range .Alerts }}*{{ .Annotations.summary }}*\n{{ .Annotations.description }}\n"
        "<{{ .Annotations.runbook_url }}|runbook>\n{{ end }}"
    )
    return {
        "global": {"resolve_timeout": "5m", "slack_api_url_file": am["slack_api_url_file"]},
        "route": {
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
        },
        "inhibit_rules": [
            {
                # A down engine explains its own stale feeds, lag and missing fills.
                "source_matchers": ['alertname="ArbfleetEngineDown"'],
                "target_matchers": [f'alertname=~"{"|".join(ENGINE_INHIBITED)}"'],
                "equal": ["deployment"],
            },
            *(
                {
                    "source_matchers": [f'alertname=~"{"|".join(sources)}"'],
                    "target_matchers": [f'alertname="{target}"'],
                    "equal": ["deployment"],
                }
                for target, sources in CHECK_EXPLAINED_BY.items()
            ),
            {
                # The critical alert of a thing silences the warning of the same thing.
                "source_matchers": ['severity="critical"'],
                "target_matchers": ['severity="warning"'],
                "equal": ["alertname", "deployment", "instance", "mountpoint", "datname"],
            },
        ],
        "receivers": [
            {
                "name": "pager",
                "pagerduty_configs": [
                    {
                        "routing_key_file": am["pagerduty_routing_key_file"],
                        "description": "{{ .CommonAnnotations.summary }}",
                        "links": [
                            {
                                "href": "{{ (index .Alerts 0).Annotations.runbook_url }}",
                                "text": "runbook",
                            }
                        ],
                    }
                ],
            },
            {
                "name": "slack",
                "slack_configs": [
                    {
                        "channel": am["slack_channel"],
                        "send_resolved": True,
                        "title": "[{{ .Status | toUpper }}] {{ .CommonLabels.alertname }}",
                        "text": slack_text,
                    }
                ],
            },
        ],
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
