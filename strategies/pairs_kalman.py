"""Pairs trading with a hedge ratio that a Kalman filter re-estimates on every sample.

Model, in log prices: ``log y = beta * log x + alpha + noise``, where (beta, alpha) drift as a
random walk (process variance ``delta / (1 - delta)``, as in Chan's "Algorithmic Trading") and
the noise has variance ``observation_var``. Log prices are taken relative to the first sample:
around 0 rather than 11, beta and alpha are not nearly collinear, and the process noise that
``x**2`` scales stays well below the observation noise. The filter's innovation ``e`` divided by
its predicted standard deviation is a z-score: above ``entry_z`` the spread is rich (sell y,
buy x), below ``-entry_z`` cheap (buy y, sell x); inside ``exit_z`` the position is closed. In
log space beta is the ratio of returns, so the x leg's notional is ``beta`` times the y leg's.

The filter samples at most once per ``sample_interval_ms``, so its dynamics depend on time and not
on how many book updates a venue happens to send.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Final

import pydantic
from pydantic import NonNegativeInt, PositiveFloat, PositiveInt

from runtime.sdk import (
    BookTicker,
    Fill,
    OrderIntent,
    Side,
    Strategy,
    StrategyConfig,
    StrategyContext,
    Subscription,
    VenueName,
    split_symbol,
)

_MS: Final = 1_000_000


class KalmanHedge:
    """A two-state Kalman filter for ``y = beta * x + alpha``; all 2x2 algebra written out."""

    __slots__ = ("alpha", "beta", "p00", "p01", "p11", "q", "r", "updates")

    def __init__(self, delta: float, observation_var: float, beta: float = 0.0) -> None:
        self.beta = beta
        self.alpha = 0.0
        # A vague prior: the first observations decide.
        self.p00 = self.p11 = 1.0
        self.p01 = 0.0
        self.q = delta / (1.0 - delta)
        self.r = observation_var
        self.updates = 0

    def update(self, x: float, y: float) -> tuple[float, float]:
        """Fold in one observation; return (innovation, its predicted variance)."""
        p00 = self.p00 + self.q
        p01 = self.p01
        p11 = self.p11 + self.q
        error = y - (self.beta * x + self.alpha)
        hp0 = x * p00 + p01
        hp1 = x * p01 + p11
        variance = x * hp0 + hp1 + self.r
        gain0 = hp0 / variance
        gain1 = hp1 / variance
        self.beta += gain0 * error
        self.alpha += gain1 * error
        self.p00 = p00 - gain0 * hp0
        self.p01 = p01 - gain0 * hp1
        self.p11 = p11 - gain1 * hp1
        self.updates += 1
        return error, variance


class PairsKalmanConfig(StrategyConfig):
    """Two cointegrated symbols on one venue; see the module docstring."""

    venue: VenueName = "binance"
    symbol_y: str = "ETH/USDT"
    symbol_x: str = "BTC/USDT"
    delta: float = pydantic.Field(default=1e-9, gt=0.0, lt=1.0)
    observation_var: PositiveFloat = 1e-6
    entry_z: PositiveFloat = 2.0
    exit_z: float = pydantic.Field(default=0.5, ge=0.0)
    warmup_samples: PositiveInt = 100
    sample_interval_ms: NonNegativeInt = 100
    notional: PositiveFloat = 1_000.0
    """Quote currency put into the y leg of a position; the x leg gets beta times it."""

    @pydantic.model_validator(mode="after")
    def _consistent(self) -> PairsKalmanConfig:
        _, quote_y = split_symbol(self.symbol_y)
        _, quote_x = split_symbol(self.symbol_x)
        if self.symbol_x == self.symbol_y:
            raise ValueError("symbol_x and symbol_y must differ")
        if quote_x != quote_y:
            raise ValueError(f"symbol_x and symbol_y must share a quote ({quote_x} vs {quote_y})")
        if self.exit_z >= self.entry_z:
            raise ValueError(f"exit_z ({self.exit_z:g}) must be below entry_z ({self.entry_z:g})")
        return self


class PairsKalman(Strategy[PairsKalmanConfig]):
    """Mean reversion of a Kalman-hedged spread; see the module docstring."""

    config_class = PairsKalmanConfig
    version = "1.0.0"

    def __init__(self, config: PairsKalmanConfig, context: StrategyContext) -> None:
        super().__init__(config, context)
        self.filter = KalmanHedge(config.delta, config.observation_var)
        self.position = 0
        """+1 long the spread (long y, short x), -1 short it, 0 flat."""
        self.z = 0.0
        self.spread = 0.0
        """The latest innovation: how far log y is from the hedge's prediction."""
        self.held: dict[str, float] = {config.symbol_y: 0.0, config.symbol_x: 0.0}
        self._tops = self.market.venue_tops(config.venue)
        self._interval_ns = config.sample_interval_ms * _MS
        self._last_sample_ns = -self._interval_ns - 1
        self._origin: tuple[float, float] | None = None

    def subscriptions(self) -> Sequence[Subscription]:
        return [
            Subscription(self.config.venue, self.config.symbol_y),
            Subscription(self.config.venue, self.config.symbol_x),
        ]

    def on_book(self, top: BookTicker, **kwargs: Any) -> list[OrderIntent] | None:
        if top.local_ts_ns - self._last_sample_ns < self._interval_ns:
            return None
        y_top = self._tops.get(self.config.symbol_y)
        x_top = self._tops.get(self.config.symbol_x)
        if y_top is None or x_top is None:
            return None
        self._last_sample_ns = top.local_ts_ns
        log_x = math.log(x_top.mid)
        log_y = math.log(y_top.mid)
        if self._origin is None:
            self._origin = (log_x, log_y)
        error, variance = self.filter.update(log_x - self._origin[0], log_y - self._origin[1])
        self.spread = error
        self.z = error / math.sqrt(variance)
        if self.filter.updates < self.config.warmup_samples:
            return None
        return self._decide(y_top, x_top)

    def _decide(self, y_top: BookTicker, x_top: BookTicker) -> list[OrderIntent] | None:
        config = self.config
        if self.position == 0 and abs(self.z) >= config.entry_z and self.filter.beta > 0.0:
            direction = -1 if self.z > 0 else 1
            return self._open(direction, y_top, x_top)
        if self.position != 0 and abs(self.z) <= config.exit_z:
            return self._close()
        return None

    def _open(self, direction: int, y_top: BookTicker, x_top: BookTicker) -> list[OrderIntent]:
        config = self.config
        beta = self.filter.beta
        y_side: Side = "buy" if direction > 0 else "sell"
        x_side: Side = "sell" if direction > 0 else "buy"
        y_quantity = round(config.notional / y_top.mid, 8)
        x_quantity = round(beta * config.notional / x_top.mid, 8)
        self.position = direction
        self.fleet_opportunity(
            "pairs_kalman",
            abs(self.spread) * 1e4,
            0.0,
            f"{'long' if direction > 0 else 'short'} spread z={self.z:.2f} beta={beta:.4f}",
        )
        return [
            self.fleet_order(config.venue, config.symbol_y, y_side, y_quantity, tag="open-y"),
            self.fleet_order(config.venue, config.symbol_x, x_side, x_quantity, tag="open-x"),
        ]

    def _close(self) -> list[OrderIntent]:
        self.position = 0
        intents = []
        for symbol, held in self.held.items():
            if abs(held) > 1e-12:
                side: Side = "sell" if held > 0 else "buy"
                intents.append(
                    self.fleet_order(
                        self.config.venue, symbol, side, round(abs(held), 8), tag="close"
                    )
                )
        return intents

    def on_fill(self, fill: Fill, **kwargs: Any) -> list[OrderIntent] | None:
        if fill.symbol in self.held:
            signed = fill.quantity if fill.side == "buy" else -fill.quantity
            self.held[fill.symbol] += signed
        return None
