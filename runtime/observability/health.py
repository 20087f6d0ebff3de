"""``/health`` (Nomad's check) and ``/metrics`` (Prometheus text) on a small aiohttp server.

``/health`` means "the process is alive and serving": 200 whenever it answers, with the full
report (``can_trade`` and every reason it cannot) in the body. Whether the engine can trade is
the Consul TTL check's business (runtime/platform/consul.py), not Nomad's: a canary waiting for the
account lock must pass Nomad's check or every deployment auto-reverts, and ``check_restart``
must not restart a halted (kill-switched) engine or one whose venue went quiet, which a restart
cannot fix. A blocked event loop does not answer, and that fails the check."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pydantic
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from runtime.core.settings import Frozen


class HealthConfig(Frozen):
    host: str = "127.0.0.1"
    port: int = pydantic.Field(default=8080, ge=0, le=65_535)


Report = Callable[[], dict[str, Any]]
"""The node's full health report (runtime.node.Node.health)."""


def health_app(report: Report, registry: CollectorRegistry) -> web.Application:
    async def health(request: web.Request) -> web.Response:
        return web.json_response(report())

    async def metrics(request: web.Request) -> web.Response:
        body = generate_latest(registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics)
    return app


class HealthServer:
    """Serves ``health_app`` on ``host:port`` (port 0: any free port, see ``port``)."""

    def __init__(
        self,
        report: Report,
        registry: CollectorRegistry,
        host: str,
        port: int,
    ) -> None:
        self._runner = web.AppRunner(health_app(report, registry), access_log=None)
        self._host = host
        self._requested_port = port
        self.port = 0

    async def start(self) -> None:
        await self._runner.setup()
        await web.TCPSite(self._runner, self._host, self._requested_port).start()
        self.port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        await self._runner.cleanup()

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self.port}"
