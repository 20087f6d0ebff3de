"""The metrics the rules and dashboards read that the runtime's catalogue does not own: those of
Prometheus itself, prometheus-client's process collector and the exporters."""

from __future__ import annotations

from runtime.observability.catalogue import Metric

TARGET = "; with the target labels"

UP = Metric("up", "gauge", f"Prometheus: 1 if the last scrape of the target succeeded{TARGET}.")
ALERTS = Metric(
    "ALERTS",
    "gauge",
    "Prometheus: pending and firing alerts.",
    ("alertname", "alertstate", "severity"),
)
PROCESS_RSS = Metric(
    "process_resident_memory_bytes", "gauge", f"prometheus_client process collector{TARGET}."
)
PROCESS_CPU = Metric(
    "process_cpu_seconds", "counter", f"prometheus_client process collector{TARGET}."
)
NODE_FS_AVAIL = Metric(
    "node_filesystem_avail_bytes",
    "gauge",
    "node_exporter: bytes available to non-root users.",
    ("device", "fstype", "mountpoint"),
)
NODE_FS_SIZE = Metric(
    "node_filesystem_size_bytes",
    "gauge",
    "node_exporter: filesystem size.",
    ("device", "fstype", "mountpoint"),
)
PG_DATABASE_SIZE = Metric(
    "pg_database_size_bytes", "gauge", "postgres_exporter: size of each database.", ("datname",)
)
PG_UP = Metric("pg_up", "gauge", "postgres_exporter: 1 if it reached PostgreSQL.")

ELSEWHERE = (
    UP,
    ALERTS,
    PROCESS_RSS,
    PROCESS_CPU,
    NODE_FS_AVAIL,
    NODE_FS_SIZE,
    PG_DATABASE_SIZE,
    PG_UP,
)
