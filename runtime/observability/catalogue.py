"""Every metric the runtime exports: name, type, help text, label names (and buckets), once.

The engine's and the backup exporter's collectors (``metrics.py``) build their families from
these entries, and ``monitoring/`` derives its alert rules, recording rules, dashboards and
``monitoring/metrics.md`` from the same objects, so a renamed metric moves everywhere at once.
Plain frozen data with no import of prometheus_client: the monitoring generator imports it for
nothing (its one runtime import is the engine's histogram bounds, which the engine counts into).

Naming follows Prometheus: base units (``_seconds``, ``_bytes``), a histogram's name carries
its unit, and a counter's name is given without the ``_total`` its samples are exposed with
(``Metric.series`` adds it), as prometheus-client's ``CounterMetricFamily`` takes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from runtime.engine.stats import TICK_TO_INTENT_BUCKETS_S

Kind = Literal["counter", "gauge", "histogram"]


@dataclass(frozen=True)
class Metric:
    name: str
    kind: Kind
    help: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()
    """A histogram's upper bounds in the metric's unit (without +Inf)."""

    @property
    def series(self) -> str:
        """The name PromQL reads: a counter's samples end in ``_total``."""
        return f"{self.name}_total" if self.kind == "counter" else self.name

    def __post_init__(self) -> None:
        if (self.kind == "histogram") != bool(self.buckets):
            raise ValueError(f"{self.name}: buckets are for histograms, and histograms need them")


def _counter(name: str, text: str, *labels: str) -> Metric:
    return Metric(name, "counter", text, labels)


def _gauge(name: str, text: str, *labels: str) -> Metric:
    return Metric(name, "gauge", text, labels)


# --- the engine (EngineCollector) -------------------------------------------------------------

ENGINE_INFO: Final = _gauge(
    "arbfleet_engine_info", "Always 1; the engine's version and trading mode.", "version", "mode"
)
FEED_FRAMES: Final = _counter(
    "arbfleet_feed_frames",
    "Messages received and parsed into normalized events.",
    "venue",
    "type",
)
FEED_DROPPED: Final = _counter(
    "arbfleet_feed_dropped", "Messages dropped instead of parsed.", "venue", "reason"
)
FEED_CONNECTED: Final = _gauge(
    "arbfleet_feed_connected", "1 while the venue's websocket is connected.", "venue"
)
FEED_STALE: Final = _gauge(
    "arbfleet_feed_stale",
    "1 while the engine itself considers the venue silent (its own threshold).",
    "venue",
)
FEED_STALENESS: Final = _gauge(
    "arbfleet_feed_staleness_seconds",
    "Seconds since the last message from the venue, computed at scrape time.",
    "venue",
)
FEED_RECONNECTS: Final = _counter(
    "arbfleet_feed_reconnects", "Websocket (re)connections after the first.", "venue"
)
FEED_RESTARTS: Final = _counter(
    "arbfleet_feed_restarts",
    "Feed tasks restarted after an unexpected error (a bug in a parser or handler; `/health` "
    "shows the count too).",
    "venue",
)
REPLAY_LINES: Final = _counter(
    "arbfleet_replay_lines",
    "Lines of a replay file (`arbfleet run --replay`) by what became of them: `played` into a "
    "parser (which counts its own drops), `blank`, `bad_record` (not a line of the recorded "
    "format), `unknown_venue`. No samples outside a replay.",
    "outcome",
)
BOOK_GAPS: Final = _counter(
    "arbfleet_book_gaps", "Order book sequence gaps (each one triggers a resync).", "venue"
)
LOOP_LAG: Final = _gauge(
    "arbfleet_loop_lag_seconds",
    "Latest measured event-loop lag (how late a periodic timer fired).",
)
LOOP_STALLS: Final = _counter("arbfleet_loop_stalls", "Times the watchdog found the loop blocked.")
TICK_TO_INTENT: Final = Metric(
    "arbfleet_tick_to_intent_seconds",
    "histogram",
    "Local receive timestamp to intent emitted.",
    ("strategy",),
    TICK_TO_INTENT_BUCKETS_S,  # the bounds the engine counts its latencies into
)
STRATEGY_OPPORTUNITIES: Final = _counter(
    "arbfleet_strategy_opportunities",
    "Opportunities a strategy acted on (emitted intents for).",
    "strategy",
)
STRATEGY_ORDERS: Final = _counter(
    "arbfleet_strategy_orders",
    "Orders sent to the venue (or the paper executor).",
    "strategy",
    "venue",
)
STRATEGY_FILLS: Final = _counter(
    "arbfleet_strategy_fills", "Fills received (full or partial).", "strategy", "venue"
)
STRATEGY_BLOCKED: Final = _counter(
    "arbfleet_strategy_blocked", "Orders the risk guards blocked.", "strategy"
)
RISK_BLOCKED: Final = _counter(
    "arbfleet_risk_blocked",
    "Orders the risk guards blocked, by guard (all strategies of the engine).",
    "reason",
)
VENUE_REJECTIONS: Final = _counter(
    "arbfleet_venue_rejections",
    "Orders the venue refused (balance, permissions, rate limit, filters).",
    "strategy",
    "venue",
    "reason",
)
STRATEGY_PNL: Final = _gauge(
    "arbfleet_strategy_pnl", "Profit and loss, marked to market.", "strategy"
)
POSITION: Final = _gauge(
    "arbfleet_position", "Signed position in base units.", "strategy", "venue", "instrument"
)
RISK_DAILY_LOSS: Final = _gauge(
    "arbfleet_risk_daily_loss", "Loss so far this UTC day (0 when in profit).", "strategy"
)
RISK_DAILY_LOSS_LIMIT: Final = _gauge(
    "arbfleet_risk_daily_loss_limit",
    "The strategy's `max_daily_loss`; the risk guard halts trading at it. Always > 0.",
    "strategy",
)
KILL_SWITCH: Final = _gauge(
    "arbfleet_kill_switch", "1 while the cluster-wide kill switch is engaged."
)
STRATEGY_ERRORS: Final = _counter(
    "arbfleet_strategy_errors",
    "Exceptions the plugin wrapper turned into `StrategyError`.",
    "strategy",
    "hook",
)
STRATEGY_QUARANTINES: Final = _counter(
    "arbfleet_strategy_quarantines", "Times a plugin was quarantined.", "strategy"
)
STRATEGY_QUARANTINED: Final = _gauge(
    "arbfleet_strategy_quarantined", "1 while the plugin is quarantined, else 0.", "strategy"
)
WRITER_QUEUE_DEPTH: Final = _gauge(
    "arbfleet_writer_queue_depth", "Rows waiting in the writer's bounded queue.", "table"
)
WRITER_ROWS: Final = _counter("arbfleet_writer_rows", "Rows written to the database.", "table")
WRITER_SPILL: Final = _gauge(
    "arbfleet_writer_spill_bytes",
    "Bytes currently spilled to local disk while the database is unreachable.",
)
VAULT_LEASE_TTL: Final = _gauge(
    "arbfleet_vault_lease_ttl_seconds",
    "Seconds left on each Vault lease or token the engine holds.",
    "secret",
)
EXCHANGE_KEY_AGE: Final = _gauge(
    "arbfleet_exchange_key_age_seconds",
    "Age of the exchange API key in use (from its KV version's `created_time`).",
    "venue",
    "account",
)
EXCHANGE_KEY_VERSION: Final = _gauge(
    "arbfleet_exchange_key_version",
    "KV v2 version of the key in use; key rotation waits until every engine reports the new one.",
    "venue",
    "account",
)
CONSUL_CHECK_STATE: Final = _gauge(
    "arbfleet_consul_check_state",
    "1 for the check's current state, 0 for the others (a `prometheus_client` Enum).",
    "check",
    "state",
)

ENGINE: Final = (
    ENGINE_INFO,
    FEED_FRAMES,
    FEED_DROPPED,
    FEED_CONNECTED,
    FEED_STALE,
    FEED_STALENESS,
    FEED_RECONNECTS,
    FEED_RESTARTS,
    REPLAY_LINES,
    BOOK_GAPS,
    LOOP_LAG,
    LOOP_STALLS,
    TICK_TO_INTENT,
    STRATEGY_OPPORTUNITIES,
    STRATEGY_ORDERS,
    STRATEGY_FILLS,
    STRATEGY_BLOCKED,
    RISK_BLOCKED,
    VENUE_REJECTIONS,
    STRATEGY_PNL,
    POSITION,
    RISK_DAILY_LOSS,
    RISK_DAILY_LOSS_LIMIT,
    KILL_SWITCH,
    STRATEGY_ERRORS,
    STRATEGY_QUARANTINES,
    STRATEGY_QUARANTINED,
    WRITER_QUEUE_DEPTH,
    WRITER_ROWS,
    WRITER_SPILL,
    VAULT_LEASE_TTL,
    EXCHANGE_KEY_AGE,
    EXCHANGE_KEY_VERSION,
    CONSUL_CHECK_STATE,
)
"""What ``EngineCollector`` exports on the engine's ``/metrics``, in the contract's order."""

# --- the backup exporter (BackupCollector) ---------------------------------------------------

BACKUP_LAST_SUCCESS: Final = _gauge(
    "arbfleet_backup_last_success_timestamp_seconds",
    "When the newest backup of the store ended (absent before the first).",
    "store",
)
BACKUP_LAST_SIZE: Final = _gauge(
    "arbfleet_backup_last_size_bytes",
    "Size of that backup in the repository (pgBackRest: compressed).",
    "store",
)
BACKUP_LAST_RUN_FAILED: Final = _gauge(
    "arbfleet_backup_last_run_failed",
    "1 when the backup job's last run for the store exited non-zero, else 0.",
    "store",
)

BACKUP: Final = (BACKUP_LAST_SUCCESS, BACKUP_LAST_SIZE, BACKUP_LAST_RUN_FAILED)
"""What ``BackupCollector`` exports (``arbfleet db backup-exporter``)."""
