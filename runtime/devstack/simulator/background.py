"""The exchange simulator in an event loop of its own thread, for synchronous callers (the
infrastructure tests, the fleet benchmark) that need a venue beside jobs running under Nomad."""

from __future__ import annotations

import asyncio
import threading

from runtime.devstack.simulator.server import ExchangeSimulator, SimulatorConfig


class SimulatorThread:
    """``with SimulatorThread(config) as simulator:`` serves until the block ends."""

    def __init__(self, config: SimulatorConfig | None = None) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.simulator = ExchangeSimulator(config)

    def __enter__(self) -> ExchangeSimulator:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.simulator.start(), self.loop).result(timeout=10)
        return self.simulator

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.simulator.stop(), self.loop).result(timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()
