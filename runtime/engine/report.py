"""The summary table the engine's run prints: after ``arbfleet run --replay``, and every second
of ``arbfleet demo`` (developer tooling, which the engine's install does not ship)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from runtime.engine.engine import Engine, Summary


def _money(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+,.2f}"


def _micros(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f} µs"


def render(summary: Summary, engine: Engine) -> str:
    """The summary as a small table."""
    dropped = sum(sum(reasons.values()) for reasons in summary.dropped.values())
    lines = [
        f"{summary.elapsed_s:6.1f} s  msgs {summary.frames:,} ({summary.frames_per_s:,.0f}/s)  "
        f"p50 {_micros(summary.p50_us)}  p99 {_micros(summary.p99_us)}  dropped {dropped}  "
        f"gaps {summary.gaps}  loop stalls {summary.loop_stalls}",
        f"  {'strategy':<15}{'opps':>6}{'orders':>8}{'fills':>7}{'blocked':>9}{'rejected':>10}"
        f"{'pnl USDT':>12}  state",
    ]
    if summary.replay_lines:
        counts = ", ".join(f"{outcome} {n:,}" for outcome, n in summary.replay_lines.items())
        lines.append(f"  replay lines: {counts}; frames used {summary.frames_used:,}")
    for row in summary.strategies:
        lines.append(
            f"  {row.name:<15}{row.opportunities:>6}{row.orders:>8}{row.fills:>7}{row.blocked:>9}"
            f"{row.rejected:>10}{_money(row.pnl):>12}  {row.state}"
        )
    if engine.stats.recent:
        last = engine.stats.recent[-1]
        lines.append(
            f"  last opportunity: {last.strategy} {last.edge_bps:.1f} bps, "
            f"expected {_money(last.expected_profit)} USDT: {last.detail}"
        )
    return "\n".join(lines)
