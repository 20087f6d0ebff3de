"""The simulator's API keys and their management API: create, list, revoke.

Real venues differ (Binance manages sub-account keys from the master account, others only in a
web page); this is the shape key rotation needs, behind an admin bearer token standing for the
master account's credential:

    POST   /admin/keys             {"label": ..., "permissions": [...]} -> 201 the key AND secret
    GET    /admin/keys?label=...   the keys (never a secret), revoked ones included
    DELETE /admin/keys/{api_key}   revoke; 404 for an unknown key, 200 again for a revoked one

Keys from ``SimulatorConfig.credentials`` exist from the start (label ``""``). A revoked or
unknown key is refused by every signed endpoint with 401, as a venue refuses it. A venue caps
how many keys an account may hold (``max_keys_per_label``): creation beyond it is refused.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class ApiKey:
    api_key: str
    secret: str
    label: str
    permissions: tuple[str, ...]
    created_ms: int
    revoked_ms: int | None = None
    uses: int = 0
    """Signed requests that presented this key while it was active."""

    def public(self) -> dict[str, Any]:
        """What listing shows: everything but the secret."""
        return {
            "api_key": self.api_key,
            "label": self.label,
            "permissions": list(self.permissions),
            "created": self.created_ms,
            "revoked": self.revoked_ms is not None,
        }


@dataclass
class KeyRegistry:
    """Every API key the simulator knows; ``secret_of`` is what the signed endpoints check."""

    initial: Mapping[str, str]
    admin_token: str | None = None
    max_keys_per_label: int = 30
    keys: dict[str, ApiKey] = field(default_factory=dict)
    created: int = 0
    revoked: int = 0
    refused: int = 0

    def __post_init__(self) -> None:
        now = int(time.time() * 1000)
        for api_key, secret in self.initial.items():
            self.keys[api_key] = ApiKey(api_key, secret, "", ("trade",), now)

    def secret_of(self, api_key: str) -> str | None:
        """The secret of an active key; None for an unknown or revoked one."""
        key = self.keys.get(api_key)
        if key is None or key.revoked_ms is not None:
            return None
        key.uses += 1
        return key.secret

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/admin/keys", self._create)
        app.router.add_get("/admin/keys", self._list)
        app.router.add_delete("/admin/keys/{api_key}", self._revoke)

    def _refused(self, request: web.Request) -> web.Response | None:
        expected = f"Bearer {self.admin_token}" if self.admin_token else None
        offered = request.headers.get("Authorization", "")
        if expected is None or not secrets.compare_digest(offered, expected):
            return web.json_response({"code": -2015, "msg": "Invalid admin token."}, status=401)
        return None

    async def _create(self, request: web.Request) -> web.Response:
        refused = self._refused(request)
        if refused is not None:
            return refused
        body = await request.json()
        label = str(body.get("label", ""))
        permissions = tuple(str(p) for p in body.get("permissions", ["trade"]))
        active = [k for k in self.keys.values() if k.label == label and k.revoked_ms is None]
        if len(active) >= self.max_keys_per_label:
            self.refused += 1
            return web.json_response(
                {"code": -4016, "msg": f"Too many API keys for {label!r}."}, status=400
            )
        key = ApiKey(
            f"sim-{secrets.token_hex(16)}",
            secrets.token_urlsafe(32),
            label,
            permissions,
            int(time.time() * 1000),
        )
        self.keys[key.api_key] = key
        self.created += 1
        return web.json_response(key.public() | {"secret": key.secret}, status=201)

    async def _list(self, request: web.Request) -> web.Response:
        refused = self._refused(request)
        if refused is not None:
            return refused
        label = request.query.get("label")
        listed = [k.public() for k in self.keys.values() if label is None or k.label == label]
        return web.json_response(listed)

    async def _revoke(self, request: web.Request) -> web.Response:
        refused = self._refused(request)
        if refused is not None:
            return refused
        key = self.keys.get(request.match_info["api_key"])
        if key is None:
            return web.json_response({"code": -2008, "msg": "Invalid Api-Key ID."}, status=404)
        if key.revoked_ms is None:
            key.revoked_ms = int(time.time() * 1000)
            self.revoked += 1
        return web.json_response(key.public())
