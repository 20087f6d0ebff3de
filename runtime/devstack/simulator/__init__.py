"""The exchange simulator: the one stand-in for Binance and Upbit (tests, demo, benchmarks)."""

from runtime.devstack.simulator.market import MarketParams
from runtime.devstack.simulator.server import ExchangeSimulator, FaultParams, SimulatorConfig

__all__ = ["ExchangeSimulator", "FaultParams", "MarketParams", "SimulatorConfig"]
