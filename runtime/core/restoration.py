"""What a restart gives back to the engine: persistence returns it, the node applies it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from runtime.core.orders import Fill, OrderIntent


@dataclass(frozen=True)
class Account:
    """One strategy's account as last saved: balances by (venue, asset), fees paid, fill count."""

    balances: dict[tuple[str, str], float]
    fees: dict[str, float]
    fills: int


@dataclass(frozen=True)
class Restoration:
    """State to put back before the first event; empty: start from the configured balances."""

    session: str
    """The session to run under: later than every session a journal or snapshot has seen."""
    accounts: dict[str, Account] = field(default_factory=dict)
    fills: list[Fill] = field(default_factory=list)
    """Fills after the accounts were saved, applied on top of them."""
    states: dict[str, Any] = field(default_factory=dict)
    """Plugin state per strategy, as its ``save_state`` returned it."""
    in_doubt: list[OrderIntent] = field(default_factory=list)
    """Orders sent but never reported: open for the risk guards until the venue is asked."""
