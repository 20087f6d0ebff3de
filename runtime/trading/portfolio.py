"""Balances, positions and PnL per strategy, kept from fills.

Each strategy trades its own account: a balance per (venue, asset), starting from the configured
initial balances. PnL is marked to market: the change of every balance since the start, valued in
the reporting currency (USDT) at current mid prices. That one rule covers every strategy shape:
a cross-exchange arbitrage that buys BTC for USDT on one venue and sells it for KRW on another,
a triangle that ends where it started, and a pair that holds two legs for a while.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final

from runtime.core.events import BookTicker
from runtime.core.instruments import split_symbol
from runtime.core.orders import Fill

REPORTING_ASSET: Final = "USDT"

Balances = dict[tuple[str, str], float]


class MidPrices:
    """Values assets in the reporting currency from the current tops of any venue."""

    def __init__(
        self, tops: Mapping[str, Mapping[str, BookTicker]], reporting: str = REPORTING_ASSET
    ) -> None:
        self._tops = tops
        self.reporting = reporting

    def value(self, asset: str) -> float | None:
        """How much one unit of ``asset`` is worth in the reporting currency, if known."""
        if asset == self.reporting:
            return 1.0
        direct = f"{asset}/{self.reporting}"
        inverse = f"{self.reporting}/{asset}"
        for venue_tops in self._tops.values():
            top = venue_tops.get(direct)
            if top is not None:
                return top.mid
            top = venue_tops.get(inverse)
            if top is not None:
                return 1.0 / top.mid
        return None


class StrategyBalances:
    """One strategy's balances, as strategies see them (read-only)."""

    def __init__(self, balances: Balances) -> None:
        self._balances = balances

    def balance(self, venue: str, asset: str) -> float:
        return self._balances.get((venue, asset), 0.0)


class Portfolio:
    """Every strategy's balances and what its fills did to them."""

    def __init__(self, initial: Mapping[str, Mapping[str, float]] | None = None) -> None:
        """``initial``: venue -> asset -> amount, the starting balances of every strategy."""
        self._initial: Balances = {
            (venue, asset): float(amount)
            for venue, assets in (initial or {}).items()
            for asset, amount in assets.items()
        }
        self._accounts: dict[str, Balances] = {}
        self.fees_paid: dict[str, dict[str, float]] = {}
        self.fills: dict[str, int] = {}

    def account(self, strategy: str) -> Balances:
        account = self._accounts.get(strategy)
        if account is None:
            account = self._accounts[strategy] = dict(self._initial)
        return account

    def view(self, strategy: str) -> StrategyBalances:
        return StrategyBalances(self.account(strategy))

    def strategies(self) -> Iterable[str]:
        return self._accounts.keys()

    def balance(self, strategy: str, venue: str, asset: str) -> float:
        return self.account(strategy).get((venue, asset), 0.0)

    def apply_fill(self, fill: Fill) -> None:
        base, quote = split_symbol(fill.symbol)
        account = self.account(fill.strategy)
        signed = fill.quantity if fill.side == "buy" else -fill.quantity
        base_key = (fill.venue, base)
        quote_key = (fill.venue, quote)
        account[base_key] = account.get(base_key, 0.0) + signed
        account[quote_key] = account.get(quote_key, 0.0) - signed * fill.price
        fee_key = (fill.venue, fill.fee_asset)
        account[fee_key] = account.get(fee_key, 0.0) - fill.fee
        fees = self.fees_paid.setdefault(fill.strategy, {})
        fees[fill.fee_asset] = fees.get(fill.fee_asset, 0.0) + fill.fee
        self.fills[fill.strategy] = self.fills.get(fill.strategy, 0) + 1

    def restore(
        self,
        strategy: str,
        balances: Mapping[tuple[str, str], float],
        fees: Mapping[str, float],
        fills: int,
    ) -> None:
        """Put back a strategy's account as the order journal or a snapshot recorded it.

        The balances dict is updated in place: the strategy's ``view`` keeps reading it."""
        account = self.account(strategy)
        account.clear()
        account.update(balances)
        self.fees_paid[strategy] = dict(fees)
        self.fills[strategy] = fills

    def position(self, strategy: str, venue: str, asset: str) -> float:
        """How much ``asset`` the strategy holds beyond its initial balance."""
        key = (venue, asset)
        return self.account(strategy).get(key, 0.0) - self._initial.get(key, 0.0)

    def pnl(self, strategy: str, prices: MidPrices) -> float | None:
        """Marked-to-market PnL in the reporting currency; None while an asset has no price."""
        total = 0.0
        for (venue, asset), amount in self.account(strategy).items():
            change = amount - self._initial.get((venue, asset), 0.0)
            if change == 0.0:
                continue
            value = prices.value(asset)
            if value is None:
                return None
            total += change * value
        return total
