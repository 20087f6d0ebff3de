"""The one module strategy plugin authors import: the base class, its config, and the types
hooks receive and return. Everything else in ``runtime`` is the engine's and may change.

Writing a strategy::

    from runtime.sdk import BookTicker, OrderIntent, Strategy, StrategyConfig, Subscription

    class MyConfig(StrategyConfig):
        venue: str = "binance"
        threshold_bps: PositiveFloat = 5.0

    class MyStrategy(Strategy[MyConfig]):
        config_class = MyConfig
        version = "1.0.0"

        def subscriptions(self) -> list[Subscription]:       # the one required hook
            return [Subscription(self.config.venue, "BTC/USDT")]

        def on_book(self, top: BookTicker, **kwargs: Any) -> list[OrderIntent] | None:
            ...
            return [self.fleet_order(top.venue, top.symbol, "buy", 0.01)]

and declaring it in the package's ``pyproject.toml``::

    [project.entry-points."arbfleet.strategies"]
    my_strategy = "my_package.module:MyStrategy"

Every optional hook (``on_start``, ``on_book``, ``on_trade``, ``on_timer``, ``on_fill``,
``on_stop``, ``on_save_state``, ``on_restore_state``) defaults to doing nothing and takes
``**kwargs``, so the engine can pass more arguments later without breaking plugins. A strategy
that keeps state worth surviving a restart (a filter's estimate, say) returns it from
``on_save_state`` as JSON-encodable data; the engine stores it with each Redis snapshot and hands
it to ``on_restore_state`` before ``on_start`` of the next run. Names starting with ``fleet_``
belong to the engine: a plugin class that defines one is refused when it is created, so it
cannot shadow one by accident.

The engine calls plugins only through a safe wrapper (runtime/engine/plugins.py): an exception
becomes a counted, logged ``StrategyError``; a plugin that keeps failing is quarantined while the
others keep trading. Events and fills handed to hooks are frozen structs: a plugin cannot change
what another one sees.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Final, Generic, Protocol, TypeVar

import pydantic
from loguru import logger

from runtime.core.errors import PluginError
from runtime.core.events import BUY, SELL, BookTicker, Level, Side, Trade
from runtime.core.instruments import split_symbol
from runtime.core.orders import Fill, Opportunity, OrderIntent, client_order_id
from runtime.core.subscriptions import Subscription
from runtime.trading.book import OrderBook
from runtime.venues.registry import VenueName, known_venue

__all__ = [
    "BUY",
    "SELL",
    "BalanceView",
    "BookTicker",
    "Fill",
    "Intents",
    "Level",
    "MarketView",
    "OrderBook",
    "OrderIntent",
    "Side",
    "Strategy",
    "StrategyConfig",
    "StrategyContext",
    "Subscription",
    "Trade",
    "VenueName",
    "known_venue",
    "split_symbol",
]

INTERFACE_VERSION: Final = 1
ENTRY_POINT_GROUP: Final = "arbfleet.strategies"
ENGINE_PREFIX: Final = "fleet_"
REQUIRED_HOOK: Final = "subscriptions"
OPTIONAL_HOOKS: Final = (
    "on_start",
    "on_book",
    "on_trade",
    "on_timer",
    "on_fill",
    "on_stop",
    "on_save_state",
    "on_restore_state",
)

Intents = list[OrderIntent]


class StrategyConfig(pydantic.BaseModel):
    """Base of every strategy's config: frozen, and unknown fields are errors, not ignored."""

    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")


ConfigT = TypeVar("ConfigT", bound=StrategyConfig)


class MarketView(Protocol):
    """Read access to the engine's books."""

    def top(self, venue: str, symbol: str) -> BookTicker | None: ...

    def book(self, venue: str, symbol: str) -> OrderBook | None: ...

    def venue_tops(self, venue: str) -> Mapping[str, BookTicker]:
        """The live tops of one venue by symbol: hold it and look up with one dict access."""
        ...


class BalanceView(Protocol):
    """Read access to one strategy's paper or live balances."""

    def balance(self, venue: str, asset: str) -> float: ...


@dataclass
class StrategyContext:
    """What the engine hands a strategy when it builds one."""

    instance_id: str
    market: MarketView
    balances: BalanceView
    session: str = "0"
    clock_ns: Callable[[], int] = time.time_ns
    on_opportunity: Callable[[Opportunity], None] = lambda _opportunity: None


class Strategy(abc.ABC, Generic[ConfigT]):
    """Base class of every strategy plugin; see the module docstring."""

    config_class: ClassVar[type[StrategyConfig]]
    version: ClassVar[str] = "0.0.0"
    interface_version: ClassVar[int] = INTERFACE_VERSION
    timer_interval_s: ClassVar[float | None] = None
    """Call ``on_timer`` this often (seconds); None: never."""

    def __init__(self, config: ConfigT, context: StrategyContext) -> None:
        self.config = config
        self.market = context.market
        self.balances = context.balances
        self.log = logger.bind(strategy=context.instance_id)
        self.fleet_context = context
        self.fleet_sequence = 0

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        clashes = sorted(name for name in vars(cls) if name.startswith(ENGINE_PREFIX))
        if clashes:
            raise PluginError(
                f"{cls.__qualname__} defines {', '.join(clashes)}: "
                f"names starting with {ENGINE_PREFIX!r} belong to the engine"
            )

    @abc.abstractmethod
    def subscriptions(self) -> Sequence[Subscription]:
        """The market data this strategy needs; called once, before ``on_start``."""

    def on_start(self, **kwargs: Any) -> None:
        """Called once before the first event."""

    def on_book(self, top: BookTicker, **kwargs: Any) -> Intents | None:
        """The top of a subscribed book changed."""
        return None

    def on_trade(self, trade: Trade, **kwargs: Any) -> Intents | None:
        """A public trade on a subscribed symbol with ``trades=True``."""
        return None

    def on_timer(self, now_ns: int, **kwargs: Any) -> Intents | None:
        """Every ``timer_interval_s`` seconds."""
        return None

    def on_fill(self, fill: Fill, **kwargs: Any) -> Intents | None:
        """One of this strategy's orders (partly) filled."""
        return None

    def on_stop(self, **kwargs: Any) -> None:
        """Called once when the engine stops or the strategy is quarantined."""

    def on_save_state(self, **kwargs: Any) -> dict[str, Any] | None:
        """State to keep across restarts (JSON-encodable), saved with every state snapshot."""
        return None

    def on_restore_state(self, state: dict[str, Any], **kwargs: Any) -> None:
        """Before ``on_start``: what ``on_save_state`` returned when the last snapshot was taken."""

    # --- engine-owned: plugins call these, never define them -----------------------------------

    @property
    def fleet_id(self) -> str:
        """This instance's id (several instances of one plugin may run)."""
        return self.fleet_context.instance_id

    def fleet_order(
        self,
        venue: str,
        symbol: str,
        side: Side,
        quantity: float,
        limit_price: float | None = None,
        tag: str = "",
    ) -> OrderIntent:
        """An intent with the next deterministic client order id of this strategy."""
        self.fleet_sequence += 1
        context = self.fleet_context
        order_id = client_order_id(context.instance_id, context.session, self.fleet_sequence)
        return OrderIntent(
            context.instance_id,
            order_id,
            venue,
            symbol,
            side,
            quantity,
            limit_price,
            tag,
            context.clock_ns(),
        )

    def fleet_opportunity(
        self, kind: str, edge_bps: float, expected_profit: float, detail: str = ""
    ) -> None:
        """Report a dislocation this strategy judged worth acting on (for metrics and logs)."""
        context = self.fleet_context
        context.on_opportunity(
            Opportunity(
                context.instance_id, kind, edge_bps, expected_profit, context.clock_ns(), detail
            )
        )
