"""The simulator's price process: five related markets on two venues, with dislocations.

All prices derive from one random walk, so the relations the shipped strategies trade on hold
most of the time and break now and then:

- Binance BTC/USDT: geometric random walk (``volatility_bps`` per tick).
- Binance ETH/USDT: ``log eth = alpha + beta * log btc + s``, ``s`` mean-reverting (pairs).
- Binance ETH/BTC: ETH/USDT over BTC/USDT times a little noise (triangular).
- Upbit USDT/KRW: a KRW rate with a little noise.
- Upbit BTC/KRW: BTC/USDT times USDT/KRW times a "kimchi premium" that mean-reverts (cross-venue).

At ``dislocations_per_s`` a random one of the three relations jumps by ``dislocation_bps`` and
decays (half-life 30 ms, whatever the tick rate): those are the opportunities the demo's
strategies find. Books are a ladder of ``depth_levels`` levels per side on a fixed price grid,
so consecutive books share levels and L2 diffs stay small, as on a real venue.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Final

import pydantic
from pydantic import NonNegativeFloat, PositiveFloat, PositiveInt

from runtime.core.events import Level

BPS: Final = 1e-4
MARKETS: Final = (
    ("binance", "BTC/USDT"),
    ("binance", "ETH/USDT"),
    ("binance", "ETH/BTC"),
    ("upbit", "USDT/KRW"),
    ("upbit", "BTC/KRW"),
)
_BASE_SIZE: Final = {
    "BTC/USDT": 0.6,
    "ETH/USDT": 10.0,
    "ETH/BTC": 10.0,
    "USDT/KRW": 30_000.0,
    "BTC/KRW": 0.6,
}
_SHOCK_HALF_LIFE_S: Final = 0.03
"""A dislocation halves every 30 ms, whatever the tick rate."""


class MarketParams(pydantic.BaseModel):
    """The price process; defaults give the demo a few opportunities a second."""

    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")

    seed: int = 1
    btc_usdt: PositiveFloat = 60_000.0
    eth_usdt: PositiveFloat = 3_000.0
    eth_beta: PositiveFloat = 0.8
    usdt_krw: PositiveFloat = 1_380.0
    volatility_bps: NonNegativeFloat = 1.0
    half_spread_bps: NonNegativeFloat = 0.5
    level_step_bps: PositiveFloat = 1.0
    depth_levels: PositiveInt = 10
    pairs_noise_bps: NonNegativeFloat = 1.5
    pairs_reversion: float = pydantic.Field(default=0.05, gt=0.0, le=1.0)
    premium_bps: float = 10.0
    premium_noise_bps: NonNegativeFloat = 1.0
    cross_noise_bps: NonNegativeFloat = 0.5
    dislocations_per_s: NonNegativeFloat = 1.0
    dislocation_bps: NonNegativeFloat = 60.0


@dataclass
class Ladder:
    """One market's book at one tick."""

    bids: list[Level]
    asks: list[Level]

    @property
    def bid(self) -> float:
        return self.bids[0][0]

    @property
    def ask(self) -> float:
        return self.asks[0][0]


class MarketModel:
    """Steps the price process; ``ladders`` holds every market's current book."""

    def __init__(self, params: MarketParams) -> None:
        self.params = params
        self.rng = random.Random(params.seed)
        """Every random draw of the simulator, so one seed repeats a whole session."""
        self._log_btc = math.log(params.btc_usdt)
        self._alpha = math.log(params.eth_usdt) - params.eth_beta * self._log_btc
        self._pairs = 0.0
        self._premium = params.premium_bps * BPS
        self._cross = 0.0
        self._krw = 0.0
        self._shock = {"premium": 0.0, "cross": 0.0, "pairs": 0.0}
        self._grid = {
            market: self._initial_mid(market) * params.level_step_bps * BPS for market in MARKETS
        }
        self.ticks = 0
        self.dislocations = 0
        self.last_dislocation = ""
        """Which relation broke last: ``premium``, ``cross`` or ``pairs``."""
        self.ladders: dict[tuple[str, str], Ladder] = {}
        self._build_ladders()

    def _initial_mid(self, market: tuple[str, str]) -> float:
        return self.mids()[market]

    def mids(self) -> dict[tuple[str, str], float]:
        p = self.params
        btc = math.exp(self._log_btc)
        eth = math.exp(
            self._alpha + p.eth_beta * self._log_btc + self._pairs + self._shock["pairs"]
        )
        krw = p.usdt_krw * (1.0 + self._krw)
        return {
            ("binance", "BTC/USDT"): btc,
            ("binance", "ETH/USDT"): eth,
            ("binance", "ETH/BTC"): eth / btc * (1.0 + self._cross + self._shock["cross"]),
            ("upbit", "USDT/KRW"): krw,
            ("upbit", "BTC/KRW"): btc * krw * (1.0 + self._premium + self._shock["premium"]),
        }

    def step(self, dt_s: float) -> None:
        """Advance one tick of ``dt_s`` seconds and rebuild the ladders."""
        p = self.params
        gauss = self.rng.gauss
        self._log_btc += gauss(0.0, p.volatility_bps * BPS)
        self._pairs += -p.pairs_reversion * self._pairs + gauss(0.0, p.pairs_noise_bps * BPS)
        mean_premium = p.premium_bps * BPS
        self._premium += 0.05 * (mean_premium - self._premium) + gauss(
            0.0, p.premium_noise_bps * BPS
        )
        self._cross = gauss(0.0, p.cross_noise_bps * BPS)
        self._krw = 0.9 * self._krw + gauss(0.0, 0.2 * BPS)
        decay = 0.5 ** (dt_s / _SHOCK_HALF_LIFE_S)
        for kind in self._shock:
            self._shock[kind] *= decay
        if self.rng.random() < p.dislocations_per_s * dt_s:
            kind = self.rng.choice(list(self._shock))
            self._shock[kind] = self.rng.choice((-1.0, 1.0)) * p.dislocation_bps * BPS
            self.dislocations += 1
            self.last_dislocation = kind
        self.ticks += 1
        self._build_ladders()

    def _build_ladders(self) -> None:
        p = self.params
        for market, mid in self.mids().items():
            step = self._grid[market]
            half = max(mid * p.half_spread_bps * BPS, step * 0.5)
            # Prices are whole multiples of the grid step, rounded, so a level keeps the exact
            # same price (and the same float on the client) from one tick to the next.
            bid_k = math.floor((mid - half) / step)
            ask_k = max(math.ceil((mid + half) / step), bid_k + 1)
            size = _BASE_SIZE[market[1]]
            uniform = self.rng.uniform
            levels = range(p.depth_levels)
            bids = [
                (round((bid_k - i) * step, 8), round(size * uniform(0.2, 1.0), 8)) for i in levels
            ]
            asks = [
                (round((ask_k + i) * step, 8), round(size * uniform(0.2, 1.0), 8)) for i in levels
            ]
            self.ladders[market] = Ladder(bids, asks)

    def trade(self, market: tuple[str, str]) -> tuple[float, float, bool] | None:
        """Maybe a public trade this tick: (price, size, buyer is maker)."""
        if self.rng.random() > 0.2:
            return None
        ladder = self.ladders[market]
        buyer_maker = self.rng.random() < 0.5
        price = ladder.bid if buyer_maker else ladder.ask
        return price, _BASE_SIZE[market[1]] * self.rng.uniform(0.01, 0.2), buyer_maker
