"""Risk guards: each limit blocks with a reason, batches fail together, the kill switch wins."""

from __future__ import annotations

import pytest

from runtime.core.events import BookTicker
from runtime.core.orders import Fill, OrderIntent
from runtime.trading.book import Books
from runtime.trading.portfolio import MidPrices, Portfolio
from runtime.trading.risk import KillSwitch, RiskGuard, RiskLimits


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def intent(
    qty: float = 0.1, side: str = "buy", symbol: str = "BTC/USDT", n: int = 1
) -> OrderIntent:
    return OrderIntent("s", f"s-x-{n}", "binance", symbol, side, qty)  # type: ignore[arg-type]


def guard(**limits: object) -> tuple[RiskGuard, Portfolio, Books, Clock]:
    books = Books()
    books.on_ticker(BookTicker("binance", "BTC/USDT", 59_999.0, 1.0, 60_001.0, 1.0, 1, 0, 0))
    portfolio = Portfolio({"binance": {"USDT": 100_000.0, "BTC": 1.0}})
    clock = Clock()
    risk = RiskGuard(RiskLimits(**limits), portfolio, MidPrices(books.tops), KillSwitch(), clock)  # type: ignore[arg-type]
    return risk, portfolio, books, clock


def test_an_order_within_every_limit_passes() -> None:
    risk, *_ = guard()
    assert risk.check(intent()) is None


def test_kill_switch_blocks_everything_until_released() -> None:
    risk, *_ = guard()
    risk.kill_switch.engage("operator pressed the button")
    assert risk.check(intent()) == "kill_switch: operator pressed the button"
    risk.kill_switch.release()
    assert risk.check(intent()) is None
    assert risk.blocked["kill_switch"] == 1


def test_orders_on_a_stale_venue_are_blocked() -> None:
    books = Books()
    books.on_ticker(BookTicker("binance", "BTC/USDT", 59_999.0, 1.0, 60_001.0, 1.0, 1, 0, 0))
    portfolio = Portfolio({"binance": {"USDT": 100_000.0}})
    stale = {"binance"}
    risk = RiskGuard(RiskLimits(), portfolio, MidPrices(books.tops), stale_venue=stale.__contains__)
    assert risk.check(intent()) == "stale_feed: no market data from binance recently"
    stale.clear()
    assert risk.check(intent()) is None


def test_notional_limit_is_valued_in_usdt() -> None:
    risk, *_ = guard(max_order_notional=5_000.0)
    assert risk.check(intent(0.08)) is None
    reason = risk.check(intent(0.1))
    assert reason is not None and reason.startswith("max_order_notional: 6000.00 over 5000")


def test_position_limit_counts_fills_and_open_orders() -> None:
    risk, portfolio, *_ = guard(max_position={"BTC/USDT": 0.25})
    portfolio.apply_fill(
        Fill("s", "s-x-0", "binance", "BTC/USDT", "buy", 0.1, 60_000.0, 0.0, "USDT", 0)
    )
    risk.order_opened(intent(0.1, n=1))
    assert risk.check(intent(0.05, n=2)) is None
    reason = risk.check(intent(0.1, n=3))
    assert reason is not None and reason.startswith("max_position: BTC/USDT would reach 0.3")
    assert risk.check(intent(0.4, side="sell", n=4)) is None  # 0.2 - 0.4 = -0.2
    reason = risk.check(intent(0.5, side="sell", n=5))  # 0.2 - 0.5 = -0.3: short beyond limit
    assert reason is not None and reason.startswith("max_position")


def test_open_orders_limit() -> None:
    risk, *_ = guard(max_open_orders=2)
    risk.order_opened(intent(n=1))
    risk.order_opened(intent(n=2))
    assert risk.check(intent(n=3)) == "max_open_orders: 2 already open"
    risk.order_closed(intent(n=1))
    assert risk.check(intent(n=3)) is None


def test_order_rate_limit_refills_over_time() -> None:
    risk, _, _, clock = guard(max_orders_per_second=2.0, order_burst=2)
    assert risk.check(intent(n=1)) is None
    assert risk.check(intent(n=2)) is None
    assert risk.check(intent(n=3)) == "order_rate: over 2 orders/s"
    clock.now += 0.5
    assert risk.check(intent(n=4)) is None


def test_daily_loss_blocks_and_resets_the_next_day() -> None:
    risk, portfolio, _, clock = guard(max_daily_loss=100.0)
    assert risk.check(intent()) is None  # sets the day's starting PnL
    portfolio.apply_fill(
        Fill("s", "s-x-9", "binance", "BTC/USDT", "buy", 1.0, 60_200.0, 0.0, "USDT", 0)
    )
    reason = risk.check(intent())
    assert reason is not None and reason.startswith("max_daily_loss: lost 200.00 today")
    clock.now += 86_400
    assert risk.check(intent()) is None


def test_a_blocked_leg_blocks_the_whole_batch() -> None:
    risk, *_ = guard(max_order_notional=5_000.0)
    reason = risk.check_batch([intent(0.01, n=1), intent(1.0, n=2)])
    assert reason is not None and reason.startswith("leg 2: max_order_notional")


def test_unpriceable_asset_is_blocked_rather_than_guessed() -> None:
    risk, *_ = guard()
    reason = risk.check(intent(symbol="DOGE/USDT"))
    assert reason == "no_price: cannot value DOGE to check notional"


@pytest.mark.parametrize("field", ["max_order_notional", "max_daily_loss", "max_open_orders"])
def test_limits_must_be_positive(field: str) -> None:
    with pytest.raises(ValueError, match=field):
        RiskLimits(**{field: 0})  # type: ignore[arg-type]
