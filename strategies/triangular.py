"""Triangular arbitrage on one venue: three pairs whose prices disagree about one exchange rate.

With BTC/USDT, ETH/USDT and ETH/BTC, starting from USDT there are two round trips:
USDT -> BTC -> ETH -> USDT and the reverse. Each leg either buys a pair's base with its quote at
the ask or sells the base for the quote at the bid, and pays the taker fee on what it receives.
When a round trip returns more than ``min_profit_bps`` over what it started with, after all three
fees, the strategy sends the three legs at once as immediate-or-cancel orders at the quoted prices.

The start amount is the smallest of ``max_notional`` and what each leg's top of book can absorb,
carried back to the start asset through the legs before it.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any, Final

import msgspec
import pydantic
from pydantic import NonNegativeFloat, NonNegativeInt, PositiveFloat

from runtime.sdk import (
    BookTicker,
    OrderIntent,
    Side,
    Strategy,
    StrategyConfig,
    StrategyContext,
    Subscription,
    VenueName,
    split_symbol,
)

BPS: Final = 1e-4
_MS: Final = 1_000_000


class Leg(msgspec.Struct, frozen=True):
    """One conversion: trade ``symbol`` on ``side``, turning ``spends`` into ``receives``."""

    symbol: str
    side: Side
    spends: str
    receives: str


def find_cycles(symbols: Sequence[str], start: str) -> list[tuple[Leg, Leg, Leg]]:
    """Every way to go from ``start`` through all three pairs and back to ``start``."""
    cycles = []
    for order in itertools.permutations(symbols):
        legs: list[Leg] = []
        holding = start
        for symbol in order:
            base, quote = split_symbol(symbol)
            if holding == quote:
                legs.append(Leg(symbol, "buy", quote, base))
                holding = base
            elif holding == base:
                legs.append(Leg(symbol, "sell", base, quote))
                holding = quote
            else:
                break
        if len(legs) == 3 and holding == start:
            cycles.append((legs[0], legs[1], legs[2]))
    return cycles


class TriangularConfig(StrategyConfig):
    """Three pairs on one venue; see the module docstring."""

    venue: VenueName = "binance"
    symbols: tuple[str, str, str] = ("BTC/USDT", "ETH/BTC", "ETH/USDT")
    start_asset: str = "USDT"
    taker_fee_bps: NonNegativeFloat = 10.0
    min_profit_bps: PositiveFloat = 5.0
    """Net of the three taker fees."""
    max_notional: PositiveFloat = 1_000.0
    """Most of ``start_asset`` one round trip may spend."""
    min_notional: PositiveFloat = 10.0
    cooldown_ms: NonNegativeInt = 250

    @pydantic.model_validator(mode="after")
    def _symbols_form_a_triangle(self) -> TriangularConfig:
        for symbol in self.symbols:
            split_symbol(symbol)
        if len(set(self.symbols)) != 3:
            raise ValueError("symbols must be three different pairs")
        if not find_cycles(self.symbols, self.start_asset):
            raise ValueError(
                f"symbols {list(self.symbols)} do not form a round trip from {self.start_asset}"
            )
        if self.min_notional > self.max_notional:
            raise ValueError("min_notional must not exceed max_notional")
        return self


class TriangularArbitrage(Strategy[TriangularConfig]):
    """Takes round trips through three pairs of one venue; see the module docstring."""

    config_class = TriangularConfig
    version = "1.0.0"

    def __init__(self, config: TriangularConfig, context: StrategyContext) -> None:
        super().__init__(config, context)
        self.cycles = find_cycles(config.symbols, config.start_asset)
        self._tops = self.market.venue_tops(config.venue)
        self._keep = 1.0 - config.taker_fee_bps * BPS
        self._min_return = 1.0 + config.min_profit_bps * BPS
        self._cooldown_ns = config.cooldown_ms * _MS
        self._last_action_ns = -self._cooldown_ns - 1

    def subscriptions(self) -> Sequence[Subscription]:
        return [Subscription(self.config.venue, symbol) for symbol in self.config.symbols]

    def on_book(self, top: BookTicker, **kwargs: Any) -> list[OrderIntent] | None:
        tops = self._tops
        for cycle in self.cycles:
            gross = 1.0
            for leg in cycle:
                leg_top = tops.get(leg.symbol)
                if leg_top is None:
                    return None
                gross = gross / leg_top.ask if leg.side == "buy" else gross * leg_top.bid
            if gross * self._keep**3 >= self._min_return:
                return self._take(cycle, gross, top.local_ts_ns)
        return None

    def _take(
        self, cycle: tuple[Leg, Leg, Leg], gross: float, now_ns: int
    ) -> list[OrderIntent] | None:
        if now_ns - self._last_action_ns < self._cooldown_ns:
            return None
        start = self._start_amount(cycle)
        if start < self.config.min_notional:
            return None
        intents = []
        amount = start
        for leg in cycle:
            top = self._tops[leg.symbol]
            if leg.side == "buy":
                quantity = amount / top.ask
                intents.append(self._order(leg, quantity, top.ask))
                amount = quantity * self._keep
            else:
                intents.append(self._order(leg, amount, top.bid))
                amount = amount * top.bid * self._keep
        net_return = gross * self._keep**3
        self._last_action_ns = now_ns
        self.fleet_opportunity(
            "triangular",
            (net_return - 1.0) / BPS,
            amount - start,
            " -> ".join([cycle[0].spends] + [leg.receives for leg in cycle]),
        )
        return intents

    def _order(self, leg: Leg, quantity: float, price: float) -> OrderIntent:
        return self.fleet_order(self.config.venue, leg.symbol, leg.side, round(quantity, 8), price)

    def _start_amount(self, cycle: tuple[Leg, Leg, Leg]) -> float:
        """The largest start amount every leg's top of book can absorb, and the balances allow."""
        limit = min(
            self.config.max_notional, self.balances.balance(self.config.venue, cycle[0].spends)
        )
        carried = 1.0  # units of the current leg's input per unit of start asset
        for leg in cycle:
            top = self._tops[leg.symbol]
            if leg.side == "buy":
                capacity = top.ask_size * top.ask  # quote the ask can take
                limit = min(limit, capacity / carried)
                carried = carried / top.ask * self._keep
            else:
                limit = min(limit, top.bid_size / carried)
                carried = carried * top.bid * self._keep
        return max(limit, 0.0)
