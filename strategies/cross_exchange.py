"""Cross-exchange spread arbitrage: buy where an asset is cheap, sell where it is dear, at once.

The two legs may be quoted in different currencies (BTC/USDT on Binance, BTC/KRW on Upbit): the
strategy converts with a rate book (Upbit's USDT/KRW) or a fixed rate. It acts when the gross
spread between the buy venue's ask and the sell venue's bid reaches ``min_spread_bps``, which the
config insists exceeds both taker fees together, so every trade it takes is profitable after fees
at the quoted prices. The size is what both books can absorb at a spread still above the threshold
(top of book, or walking the L2 ladders with ``use_depth``), capped by ``max_quantity`` and by the
strategy's balances: the base asset it can sell on one venue, the quote it can spend on the other.

The hot path (every top update, nearly always without an opportunity) is three dict lookups and
two multiplications compared; the thresholds those use are recomputed only when the rate moves.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Final

import pydantic
from pydantic import NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt

from runtime.sdk import (
    BookTicker,
    Level,
    OrderIntent,
    Strategy,
    StrategyConfig,
    StrategyContext,
    Subscription,
    VenueName,
    split_symbol,
)

BPS: Final = 1e-4
DEPTH_LEVELS: Final = 20
_MS: Final = 1_000_000


class CrossExchangeConfig(StrategyConfig):
    """One asset on two venues; see the module docstring."""

    venue_a: VenueName = "binance"
    symbol_a: str = "BTC/USDT"
    venue_b: VenueName = "upbit"
    symbol_b: str = "BTC/KRW"
    rate_venue: VenueName = "upbit"
    rate_symbol: str | None = "USDT/KRW"
    """A book quoting one leg's quote currency in the other's; None to use ``fixed_rate``."""
    fixed_rate: PositiveFloat | None = None
    """Units of symbol_b's quote per unit of symbol_a's quote, when there is no rate book."""
    taker_fee_bps_a: NonNegativeFloat = 10.0
    taker_fee_bps_b: NonNegativeFloat = 5.0
    min_spread_bps: PositiveFloat = 30.0
    max_quantity: PositiveFloat = 0.05
    min_quantity: PositiveFloat = 0.0001
    max_quote_age_ms: PositiveInt = 2_000
    """Ignore a dislocation if either leg's top is older than this: it may be gone already."""
    cooldown_ms: NonNegativeInt = 250
    """Wait this long after acting before acting again, so the same spread is not taken twice."""
    use_depth: bool = False

    @pydantic.field_validator("symbol_a", "symbol_b", "rate_symbol")
    @classmethod
    def _symbol_shape(cls, symbol: str | None) -> str | None:
        if symbol is not None:
            split_symbol(symbol)
        return symbol

    @pydantic.model_validator(mode="after")
    def _legs_fit_together(self) -> CrossExchangeConfig:
        base_a, quote_a = split_symbol(self.symbol_a)
        base_b, quote_b = split_symbol(self.symbol_b)
        if base_a != base_b:
            raise ValueError(
                f"symbol_a ({self.symbol_a}) and symbol_b ({self.symbol_b}) "
                "must trade the same asset"
            )
        rate_assets = set(split_symbol(self.rate_symbol)) if self.rate_symbol else set()
        if quote_a != quote_b and self.fixed_rate is None and rate_assets != {quote_a, quote_b}:
            raise ValueError(
                f"rate_symbol must quote {quote_a} against {quote_b} "
                f"(e.g. '{quote_a}/{quote_b}'), or set fixed_rate"
            )
        fees = self.taker_fee_bps_a + self.taker_fee_bps_b
        if self.min_spread_bps <= fees:
            raise ValueError(
                f"min_spread_bps ({self.min_spread_bps:g}) must exceed the sum of taker fees "
                f"(taker_fee_bps_a {self.taker_fee_bps_a:g} + taker_fee_bps_b "
                f"{self.taker_fee_bps_b:g} = {fees:g}), or every trade loses money"
            )
        return self


class CrossExchangeArbitrage(Strategy[CrossExchangeConfig]):
    """Takes spreads between two venues; see the module docstring."""

    config_class = CrossExchangeConfig
    version = "1.0.0"

    def __init__(self, config: CrossExchangeConfig, context: StrategyContext) -> None:
        super().__init__(config, context)
        # Everything on_book reads is copied out of the config: a pydantic attribute costs about
        # ten times a plain one, and on_book runs for every top update.
        self._symbol_a = config.symbol_a
        self._symbol_b = config.symbol_b
        self._base, self._quote_a = split_symbol(config.symbol_a)
        _, self._quote_b = split_symbol(config.symbol_b)
        self._tops_a = self.market.venue_tops(config.venue_a)
        self._tops_b = self.market.venue_tops(config.venue_b)
        self._min_ratio = 1.0 + config.min_spread_bps * BPS
        self._fee_a = config.taker_fee_bps_a * BPS
        self._fee_b = config.taker_fee_bps_b * BPS
        self._max_age_ns = config.max_quote_age_ms * _MS
        self._cooldown_ns = config.cooldown_ms * _MS
        self._last_action_ns = -self._cooldown_ns - 1
        self._fixed_rate = 1.0 if self._quote_a == self._quote_b else config.fixed_rate
        self._rate_symbol = config.rate_symbol or ""
        self._rate_tops: Mapping[str, BookTicker] = {}
        self._rate_inverted = False
        if self._quote_a != self._quote_b and config.rate_symbol is not None:
            self._rate_tops = self.market.venue_tops(config.rate_venue)
            self._rate_inverted = split_symbol(config.rate_symbol)[0] == self._quote_b
        self._rate = math.nan
        self._buy_a_factor = self._buy_b_factor = math.nan
        self._refresh_thresholds(None)

    def subscriptions(self) -> Sequence[Subscription]:
        config = self.config
        needed = [
            Subscription(config.venue_a, config.symbol_a, depth=config.use_depth),
            Subscription(config.venue_b, config.symbol_b, depth=config.use_depth),
        ]
        if self._rate_symbol and self._quote_a != self._quote_b:
            needed.append(Subscription(config.rate_venue, self._rate_symbol))
        return needed

    def on_book(self, top: BookTicker, **kwargs: Any) -> list[OrderIntent] | None:
        a = self._tops_a.get(self._symbol_a)
        b = self._tops_b.get(self._symbol_b)
        if a is None or b is None:
            return None
        rate_top = self._rate_tops.get(self._rate_symbol)
        if rate_top is not self._rate_seen:
            self._refresh_thresholds(rate_top)
        # Leg B's bid must beat leg A's ask, converted and marked up by min_spread (and the
        # other way round); the factors change only when the rate does.
        if b.bid >= a.ask * self._buy_a_factor:
            return self._take(a, b, self._rate, buy_on_a=True, now_ns=top.local_ts_ns)
        if a.bid * self._buy_b_factor >= b.ask:
            return self._take(b, a, self._rate, buy_on_a=False, now_ns=top.local_ts_ns)
        return None

    def _refresh_thresholds(self, rate_top: BookTicker | None) -> None:
        self._rate_seen = rate_top
        if rate_top is not None:
            rate = (rate_top.bid + rate_top.ask) * 0.5
            self._rate = 1.0 / rate if self._rate_inverted else rate
        elif self._fixed_rate is not None:
            self._rate = self._fixed_rate
        else:
            self._rate = math.nan  # no rate yet: every comparison with NaN is False
        self._buy_a_factor = self._rate * self._min_ratio
        self._buy_b_factor = self._rate / self._min_ratio

    def _take(
        self, buy: BookTicker, sell: BookTicker, rate: float, *, buy_on_a: bool, now_ns: int
    ) -> list[OrderIntent] | None:
        if now_ns - self._last_action_ns < self._cooldown_ns:
            return None
        if now_ns - min(buy.local_ts_ns, sell.local_ts_ns) > self._max_age_ns:
            return None
        # Work in leg A's quote currency; leg B's prices divide by the rate.
        buy_scale = 1.0 if buy_on_a else 1.0 / rate
        sell_scale = 1.0 / rate if buy_on_a else 1.0
        asks = [(p * buy_scale, q) for p, q in self._ladder(buy, "ask")]
        bids = [(p * sell_scale, q) for p, q in self._ladder(sell, "bid")]
        buy_quote = self._quote_a if buy_on_a else self._quote_b
        affordable = self._affordable(buy, sell, buy_quote, asks, buy_scale)
        quantity = min(
            executable_quantity(asks, bids, self._min_ratio), self.config.max_quantity, affordable
        )
        quantity = round(quantity, 8)
        if quantity < self.config.min_quantity:
            return None
        average_buy, worst_ask = sweep(asks, quantity)
        average_sell, worst_bid = sweep(bids, quantity)
        fee_buy, fee_sell = (self._fee_a, self._fee_b) if buy_on_a else (self._fee_b, self._fee_a)
        profit = quantity * (average_sell * (1.0 - fee_sell) - average_buy * (1.0 + fee_buy))
        edge_bps = (average_sell / average_buy - 1.0) / BPS
        self._last_action_ns = now_ns
        self.fleet_opportunity(
            "cross_exchange",
            edge_bps,
            profit,
            f"buy {buy.venue} {buy.symbol} sell {sell.venue} {sell.symbol}",
        )
        return [
            self.fleet_order(
                buy.venue, buy.symbol, "buy", quantity, worst_ask / buy_scale, "buy-leg"
            ),
            self.fleet_order(
                sell.venue, sell.symbol, "sell", quantity, worst_bid / sell_scale, "sell-leg"
            ),
        ]

    def _ladder(self, top: BookTicker, side: str) -> list[Level]:
        if self.config.use_depth:
            book = self.market.book(top.venue, top.symbol)
            if book is not None and book.live:
                return (
                    book.ask_levels(DEPTH_LEVELS)
                    if side == "ask"
                    else book.bid_levels(DEPTH_LEVELS)
                )
        return [(top.ask, top.ask_size)] if side == "ask" else [(top.bid, top.bid_size)]

    def _affordable(
        self,
        buy: BookTicker,
        sell: BookTicker,
        buy_quote: str,
        asks: list[Level],
        buy_scale: float,
    ) -> float:
        """The most base asset the balances allow: quote to spend here, base to sell there."""
        sellable = self.balances.balance(sell.venue, self._base)
        spendable = self.balances.balance(buy.venue, buy_quote)
        highest_native_ask = max(price for price, _ in asks) / buy_scale
        return max(0.0, min(sellable, spendable / highest_native_ask))


def executable_quantity(asks: list[Level], bids: list[Level], min_ratio: float) -> float:
    """How much can be bought from ``asks`` and sold into ``bids`` with every unit's bid
    at least ``min_ratio`` times its ask (both ladders best first, in one currency)."""
    quantity = 0.0
    i = j = 0
    ask_left = asks[0][1] if asks else 0.0
    bid_left = bids[0][1] if bids else 0.0
    while i < len(asks) and j < len(bids) and bids[j][0] >= asks[i][0] * min_ratio:
        take = min(ask_left, bid_left)
        quantity += take
        ask_left -= take
        bid_left -= take
        if ask_left <= 0.0:
            i += 1
            ask_left = asks[i][1] if i < len(asks) else 0.0
        if bid_left <= 0.0:
            j += 1
            bid_left = bids[j][1] if j < len(bids) else 0.0
    return quantity


def sweep(levels: list[Level], quantity: float) -> tuple[float, float]:
    """(average price, worst price) of taking ``quantity`` from ``levels``, best first."""
    remaining = quantity
    notional = 0.0
    worst = levels[0][0]
    for price, size in levels:
        take = min(size, remaining)
        notional += take * price
        worst = price
        remaining -= take
        if remaining <= 0.0:
            break
    return notional / (quantity - max(remaining, 0.0)), worst
