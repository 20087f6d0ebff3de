"""Desired state against live state, over the HTTP APIs of the secrets store, Consul and Nomad.

A ``Resource`` is one object of one API (a policy, a role, a mount): how to read it, the view
of it that must match, and how to write it. ``apply`` reads each resource in order, compares
the desired view with the live one and writes only what differs; with ``dry_run`` it writes
nothing and reports what it would change. Resources come in dependency order (a mount before
its config, a policy before the role naming it), so one pass is enough.

The APIs are reached through an ``Api`` callable, so the same resources and the same comparison
run against production (``HttpApi`` with its address, token and CA) and the local stack or
cluster in our tests.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from runtime.core.errors import DeployError

TOKEN_HEADERS = {"vault": "X-Vault-Token", "consul": "X-Consul-Token", "nomad": "X-Nomad-Token"}


class PlatformError(DeployError):
    """A platform API refused a change, or holds something we must not overwrite."""


class Absent(LookupError):
    """The API has no such object."""


class Api(Protocol):
    """One JSON call: ``(method, path, body)`` -> the decoded answer (None if empty); raises
    ``Absent`` when the object does not exist and ``PlatformError`` on any other refusal."""

    def __call__(self, method: str, path: str, body: Any = None) -> Any: ...


@dataclass(frozen=True)
class HttpApi:
    """An agent's HTTP API: ``address`` (``https://vault.service.consul:8200``), its token, and
    the CA (and client certificate) of its TLS listener."""

    service: str
    address: str
    token: str | None = field(default=None, repr=False)
    ca_file: str | None = None
    client_cert: tuple[str, str] | None = None

    def __post_init__(self) -> None:
        if not self.address.startswith(("http://", "https://")):
            raise PlatformError(f"{self.service} address {self.address!r}: not an http(s) URL")

    def __call__(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers[TOKEN_HEADERS[self.service]] = self.token
        # http(s) only: __post_init__ refuses any other scheme.
        request = urllib.request.Request(self.address + path, data, headers, method=method)  # noqa: S310
        context = None
        if self.address.startswith("https:"):
            context = ssl.create_default_context(cafile=self.ca_file)
            if self.client_cert:
                context.load_cert_chain(*self.client_cert)
        # No proxy: the platform's agents are reached directly.
        opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context)
        )
        try:
            with opener.open(request, timeout=30) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace").strip()
            raise refusal(exc.code, detail, f"{method} {self.address}{path}") from None
        except OSError as exc:
            raise PlatformError(f"{self.service} at {self.address} unreachable: {exc}") from exc
        return json.loads(raw) if raw.strip() else None


def refusal(status: int, detail: str, what: str) -> Exception:
    """The exception for an HTTP error: ``Absent`` for a missing object (Consul's ACL
    endpoints answer 403 "ACL not found" for a missing name), else ``PlatformError``."""
    if status == 404 or (status == 403 and "not found" in detail.lower()):
        return Absent(what)
    return PlatformError(f"{what}: HTTP {status} {detail[:500]}")


# --- resources ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Resource:
    """One object of one API. ``read`` gives the live object (None if absent), ``view`` the
    part of it that must equal ``want``; ``want`` may read live state (a mount's accessor)
    and raise ``Absent`` while what it depends on does not exist yet."""

    service: str
    kind: str
    name: str
    read: Callable[[Api], Any]
    want: Callable[[Api], dict[str, Any]]
    write: Callable[[Api, Any, dict[str, Any]], None]
    view: Callable[[Any], dict[str, Any]] = lambda live: dict(live)

    def __str__(self) -> str:
        return f"{self.service} {self.kind} {self.name}"


def document(
    service: str,
    kind: str,
    name: str,
    path: str,
    body: dict[str, Any] | Callable[[Api], dict[str, Any]],
    *,
    method: str = "POST",
    view: Callable[[Any], dict[str, Any]] = lambda live: dict(live.get("data") or {}),
) -> Resource:
    """An object read with GET at ``path`` and written whole with ``method`` at the same path
    (most of the secrets store's and Nomad's)."""

    def read(api: Api) -> Any:
        try:
            return api("GET", path)
        except Absent:
            return None

    def write(api: Api, _live: Any, want: dict[str, Any]) -> None:
        api(method, path, want)

    want = body if callable(body) else (lambda _api: body)
    return Resource(service, kind, name, read, want, write, view)


@dataclass(frozen=True)
class Change:
    """What ``apply`` did (or, dry, would do) to one resource."""

    resource: Resource
    action: str
    """``create``, ``update``, ``ok`` (already as wanted)."""
    fields: tuple[str, ...] = ()
    """The fields an update changes."""

    def __str__(self) -> str:
        detail = f" ({', '.join(self.fields)})" if self.fields else ""
        return f"{self.action:6} {self.resource}{detail}"


def _same(want: Any, live: Any) -> bool:
    """Equal for our purpose: an empty list, map or string is no value, and a map needs to
    hold only the keys we set (APIs add defaults)."""
    if isinstance(want, dict) and isinstance(live, dict):
        return all(_same(v, live.get(k)) for k, v in want.items())
    if not want and not live and not isinstance(want, bool | int | float):
        return True
    return bool(want == live)


def differing(want: dict[str, Any], live: dict[str, Any]) -> tuple[str, ...]:
    return tuple(sorted(k for k, v in want.items() if not _same(v, live.get(k))))


def apply(
    api: Callable[[str], Api],
    resources: Iterable[Resource],
    *,
    dry_run: bool = False,
    say: Callable[[str], None] = lambda _msg: None,
) -> list[Change]:
    """Make each resource as wanted (``dry_run``: only say what would change); ``api`` gives
    the API of a service. Returns every resource's change, ``ok`` ones included."""
    changes = []
    for resource in resources:
        client = api(resource.service)
        live = resource.read(client)
        try:
            want = resource.want(client)
        except Absent:
            if not dry_run:
                raise
            # Depends on something a real run creates first: it will be created too.
            change = Change(resource, "create" if live is None else "update")
        else:
            if live is None:
                change = Change(resource, "create")
            else:
                fields = differing(want, resource.view(live))
                change = Change(resource, "update" if fields else "ok", fields)
            if change.action != "ok" and not dry_run:
                resource.write(client, live, want)
        if change.action != "ok":
            say(str(change))
        changes.append(change)
    return changes
