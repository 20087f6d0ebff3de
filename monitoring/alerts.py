"""Every alert: its PromQL, its text and the series its promtool test feeds it.

Thresholds, durations, severities and selectors are thresholds.toml's; `${name}` placeholders
in the texts and expressions are filled from there (per severity for `${threshold}`). Metrics
are the catalogue's objects (`q(metric)` selects one), never names typed here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from monitoring import alert_cases as cases
from monitoring.alert_cases import Case, Fixture
from monitoring.elsewhere import NODE_FS_AVAIL, NODE_FS_SIZE, PG_DATABASE_SIZE, UP
from monitoring.settings import THRESHOLD, Settings, q
from runtime.observability import catalogue as m


@dataclass(frozen=True)
class Alert:
    """One alert name: a rule per severity (`thresholds`) or a single rule (`severity`).

    A threshold alert's expr is `<query> <op> ${threshold}`; `fixture(value, name)` returns
    series on which `query` evaluates to `value`, distinguished from the other cases' series by
    `name`. Other alerts give their whole expr and their own `cases`.
    """

    name: str
    group: str
    summary: str
    description: str
    query: str = ""
    op: str = ">"
    margin: float = 1.0
    fixture: Fixture | None = None
    expr: str = ""
    cases: Callable[[dict[str, Any]], list[Case]] | None = None


def _can_trade_check(state: str) -> str:
    return q(m.CONSUL_CHECK_STATE, f'${{engine}}, ${{can_trade}}, state="{state}"')


def _engine_alerts(engine: str) -> list[Alert]:
    return [
        Alert(
            "ArbfleetEngineDown",
            "engine",
            summary="Engine deployment {{ $labels.deployment }} is down",
            description=(
                "Prometheus cannot scrape any allocation of {{ $labels.deployment }} "
                "(strategy {{ $labels.strategy }}, {{ $labels.mode }}), or the deployment left "
                "Consul within the last ${lookback}. It is neither trading nor reporting."
            ),
            expr=(
                f"(max by (deployment, strategy, mode) ({q(UP)}) == 0)\n"
                "or\n"
                "(\n"
                "  group by (deployment, strategy, mode)\n"
                f"    (max_over_time({q(UP, window='${lookback}')}))\n"
                "  unless on (deployment)\n"
                f"  {q(UP)}\n"
                ")"
            ),
            cases=cases.engine_down,
        ),
        Alert(
            "ArbfleetLoopLagHigh",
            "engine",
            summary="Event loop of {{ $labels.deployment }} lags",
            description=(
                "The event loop of {{ $labels.deployment }} ({{ $labels.instance }}) fires "
                'timers {{ $value | printf "%.3f" }} s late (threshold ${threshold} s): something '
                "blocks the hot path, so every price the strategies see is that much older."
            ),
            query=q(m.LOOP_LAG),
            margin=0.05,
            fixture=cases.engine_gauge(m.LOOP_LAG, engine, "deployment"),
        ),
        Alert(
            "ArbfleetPluginQuarantined",
            "engine",
            summary="Strategy {{ $labels.strategy }} is quarantined",
            description=(
                "The plugin wrapper quarantined {{ $labels.strategy }} in "
                "{{ $labels.deployment }} after repeated exceptions; it no longer receives "
                "events while the other strategies go on."
            ),
            expr=f"{q(m.STRATEGY_QUARANTINED)} > 0",
            cases=cases.quarantine,
        ),
        Alert(
            "ArbfleetEngineCannotTrade",
            "engine",
            summary="Engine deployment {{ $labels.deployment }} cannot trade",
            description=(
                "No allocation of {{ $labels.deployment }} (strategy {{ $labels.strategy }}, "
                "{{ $labels.mode }}) has been able to trade for ${for}: its Consul "
                '"can trade" check is critical (a stale feed, loop lag, no account lock, missing '
                "exchange keys, every strategy quarantined, the writer's spill over its bound; "
                "the engine's /health names it). A halt by the kill switch is left to "
                "ArbfleetKillSwitchEngaged."
            ),
            expr=(
                "(\n"
                "  min by (deployment, strategy, mode)\n"
                f"    ({_can_trade_check('critical')})\n"
                "  == 1\n"
                ")\n"
                "unless on (deployment)\n"
                f"(max by (deployment) ({q(m.KILL_SWITCH)}) > 0)"
            ),
            cases=cases.can_trade("critical"),
        ),
        Alert(
            "ArbfleetEngineDegraded",
            "engine",
            summary="Engine deployment {{ $labels.deployment }} trades degraded",
            description=(
                "The best allocation of {{ $labels.deployment }} (strategy "
                '{{ $labels.strategy }}, {{ $labels.mode }}) has reported its Consul "can trade" '
                "check as warning for ${for}: it trades, but a store is unreachable and "
                "buffering, Vault credentials or exchange keys are not refreshed, or Consul is "
                "unreachable. The engine's /health names the reason."
            ),
            expr=(
                "(\n"
                "  max by (deployment, strategy, mode)\n"
                f"    ({_can_trade_check('warning')})\n"
                "  == 1\n"
                ")\n"
                "unless on (deployment)\n"
                "(\n"
                "  max by (deployment)\n"
                f"    ({_can_trade_check('passing')})\n"
                "  == 1\n"
                ")"
            ),
            cases=cases.can_trade("warning"),
        ),
    ]


def _market_data_and_trading_alerts(engine: str) -> list[Alert]:
    return [
        Alert(
            "ArbfleetFeedStale",
            "market-data",
            summary="{{ $labels.venue }} feed of {{ $labels.deployment }} is stale",
            description=(
                'No message from {{ $labels.venue }} for {{ $value | printf "%.0f" }} s (threshold '
                "${threshold} s). The engine cannot price or hedge on this venue and its Consul "
                "check should report that it cannot trade."
            ),
            query=q(m.FEED_STALENESS),
            margin=5,
            fixture=cases.engine_gauge(m.FEED_STALENESS, engine, "venue"),
        ),
        Alert(
            "ArbfleetNoFillsWhileOpportunities",
            "trading",
            summary="{{ $labels.strategy }} sees opportunities but gets no fills",
            description=(
                "{{ $labels.strategy }} in {{ $labels.deployment }} acted on more than "
                "${threshold} opportunities in the last ${window} and got no fill: orders are "
                "rejected (risk guards, venue), the kill switch is engaged, or execution is stuck."
            ),
            expr=(
                "(\n"
                "  sum by (deployment, strategy, mode) "
                f"(increase({q(m.STRATEGY_OPPORTUNITIES, window='${window}')}))\n"
                f"  > {THRESHOLD}\n"
                ")\n"
                "unless on (deployment, strategy)\n"
                "(sum by (deployment, strategy) "
                f"(increase({q(m.STRATEGY_FILLS, window='${window}')})) > 0)"
            ),
            cases=cases.no_fills,
        ),
        Alert(
            "ArbfleetDailyLossNearLimit",
            "trading",
            summary="{{ $labels.strategy }} is near its daily loss limit",
            description=(
                "{{ $labels.strategy }} in {{ $labels.deployment }} has lost "
                '{{ $value | printf "%.0f" }}% '
                "of its max_daily_loss today (threshold ${threshold}%). At 100% the risk guard "
                "halts it until the next UTC day."
            ),
            query=(f"100 * {q(m.RISK_DAILY_LOSS)}\n  / ({q(m.RISK_DAILY_LOSS_LIMIT)} > 0)"),
            margin=5,
            fixture=cases.daily_loss(engine),
        ),
        Alert(
            "ArbfleetKillSwitchEngaged",
            "trading",
            summary="The cluster kill switch is engaged",
            description=(
                '{{ $value | printf "%.0f" }} engines report the cluster-wide kill switch '
                "engaged, and it has been for at least ${for}: no new orders go out. If the halt "
                "is still intended, silence this alert until it is meant to end; if not, "
                "`arbfleet resume`."
            ),
            expr=f"count({q(m.KILL_SWITCH)} > 0)",
            cases=cases.kill_switch,
        ),
    ]


def _secrets_alerts(engine: str) -> list[Alert]:
    return [
        Alert(
            "ArbfleetExchangeKeyTooOld",
            "secrets",
            summary="{{ $labels.venue }} API key of {{ $labels.account }} is due for rotation",
            description=(
                "The {{ $labels.venue }} key of account {{ $labels.account }} used by "
                '{{ $labels.deployment }} is {{ $value | printf "%.0f" }} days old (threshold '
                "${threshold} "
                "days). Rotate it with the dual-key procedure in secrets/."
            ),
            query=f"{q(m.EXCHANGE_KEY_AGE)} / 86400",
            margin=1,
            fixture=cases.engine_gauge(
                m.EXCHANGE_KEY_AGE, engine, "account", 86400, venue="binance"
            ),
        ),
        Alert(
            "ArbfleetVaultLeaseExpiring",
            "secrets",
            summary="Vault lease {{ $labels.secret }} of {{ $labels.deployment }} is expiring",
            description=(
                "{{ $labels.deployment }} holds {{ $labels.secret }} with "
                '{{ $value | printf "%.0f" }} s '
                "left (threshold ${threshold} s) and has not renewed it. When it expires the "
                "engine loses that credential."
            ),
            query=q(m.VAULT_LEASE_TTL),
            op="<",
            margin=60,
            fixture=cases.engine_gauge(m.VAULT_LEASE_TTL, engine, "secret"),
        ),
    ]


def _storage_alerts(jobs: dict[str, str]) -> list[Alert]:
    node = "${node}"
    return [
        Alert(
            "ArbfleetWriterSpilling",
            "storage",
            summary="Writer of {{ $labels.deployment }} is spilling to disk",
            description=(
                '{{ $labels.deployment }} has {{ $value | printf "%.0f" }} bytes of rows spilled '
                "to local disk "
                "because it cannot write to the database; they are replayed once it can."
            ),
            query=q(m.WRITER_SPILL),
            margin=1048576,
            fixture=cases.engine_gauge(m.WRITER_SPILL, jobs["engine"], "deployment"),
        ),
        Alert(
            "ArbfleetDiskUsageHigh",
            "storage",
            summary="Disk {{ $labels.mountpoint }} on {{ $labels.instance }} is filling up",
            description=(
                "{{ $labels.mountpoint }} on {{ $labels.instance }} is "
                '{{ $value | printf "%.0f" }}% full '
                "(threshold ${threshold}%)."
            ),
            query=(
                f"100 * ({q(NODE_FS_SIZE, node)} - {q(NODE_FS_AVAIL, node)})\n"
                f"  / {q(NODE_FS_SIZE, node)}"
            ),
            margin=5,
            fixture=cases.disk(jobs["node"]),
        ),
        Alert(
            "ArbfleetDatabaseSizeHigh",
            "storage",
            summary='Database {{ $labels.datname }} is {{ $value | printf "%.1f" }} GB',
            description=(
                'Database {{ $labels.datname }} is {{ $value | printf "%.1f" }} GB '
                "(threshold ${threshold} GB): retention is not dropping old partitions or chunks."
            ),
            query=f"{q(PG_DATABASE_SIZE, '${postgres}')} / 1e9",
            margin=0.5,
            fixture=cases.database(jobs["postgres"]),
        ),
    ]


def _backup_alerts(job: str) -> list[Alert]:
    backup = "${backup}"
    return [
        Alert(
            "ArbfleetBackupTooOld",
            "backups",
            summary="The newest {{ $labels.store }} backup is too old",
            description=(
                'The newest {{ $labels.store }} backup ended {{ $value | printf "%.1f" }} hours '
                "ago (threshold ${threshold} h): backup runs are missing or failing."
            ),
            query=f"(time() - {q(m.BACKUP_LAST_SUCCESS, backup)}) / 3600",
            margin=1,
            fixture=cases.backup_age(job),
        ),
        Alert(
            "ArbfleetBackupFailed",
            "backups",
            summary="The last {{ $labels.store }} backup run failed",
            description=(
                "The backup job's last run for {{ $labels.store }} exited with an error; the "
                "previous backup is kept. Look at the run's logs before the next one is due."
            ),
            query=q(m.BACKUP_LAST_RUN_FAILED, backup),
            fixture=cases.backup_gauge(job, m.BACKUP_LAST_RUN_FAILED),
        ),
    ]


def alert_specs(settings: Settings) -> list[Alert]:
    jobs = settings["jobs"]
    return [
        *_engine_alerts(jobs["engine"]),
        *_market_data_and_trading_alerts(jobs["engine"]),
        *_secrets_alerts(jobs["engine"]),
        *_storage_alerts(jobs),
        *_backup_alerts(jobs["backup"]),
    ]
