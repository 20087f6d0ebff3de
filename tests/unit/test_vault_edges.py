"""Vault answers that are hard to provoke from a real server, with HTTP canned (as hvac's own
unit tests do); everything else runs against real Vault in tests/integration/test_vault*.py."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from runtime.core.errors import CasConflictError, VaultUnavailableError
from runtime.core.retry import Backoff
from runtime.platform.dbcreds import with_user
from runtime.platform.vault import (
    ExchangeKeys,
    KeyProvider,
    Layout,
    VaultSession,
    deployment_policy,
    parse_time,
)


class Canned:
    """A loopback HTTP server answering every request with one status and JSON body."""

    def __init__(self) -> None:
        self.status = 200
        self.body: Any = {}
        canned = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                payload = json.dumps(canned.body).encode()
                self.send_response(canned.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = _answer

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture(scope="module")
def canned() -> Iterator[Canned]:
    server = Canned()
    yield server
    server.server.shutdown()


DELETED_VERSION = {
    "data": {
        "data": None,
        "metadata": {
            "created_time": "2026-11-21T16:00:00.123456789Z",
            "deletion_time": "2026-11-21T16:05:00Z",
            "destroyed": False,
            "version": 3,
        },
    }
}


@pytest.mark.parametrize(
    ("status", "body", "reason"),
    [
        (503, {"errors": ["Vault is sealed"]}, "sealed"),
        (403, {"errors": ["1 error occurred:\n\t* permission denied\n\n"]}, "denied"),
        (404, {"errors": []}, "missing"),
        (404, DELETED_VERSION, "missing"),
        (500, {"errors": ["internal error"]}, "error"),
        (502, {"errors": ["bad gateway"]}, "error"),
        (429, {"errors": ["rate limit quota exceeded"]}, "error"),
    ],
)
def test_vault_failures_become_one_error_with_a_reason_class(
    canned: Canned, status: int, body: Any, reason: str
) -> None:
    canned.status, canned.body = status, body
    keys = ExchangeKeys(VaultSession(canned.url, token="t"), "exchanges")
    with pytest.raises(VaultUnavailableError) as failure:
        keys.read("binance", "main", 3)
    assert failure.value.reason == reason
    assert "exchanges/binance/main" in str(failure.value)


def test_a_lost_check_and_set_is_a_conflict_not_an_outage(canned: Canned) -> None:
    canned.status = 400
    canned.body = {"errors": ["check-and-set parameter did not match the current version"]}
    keys = ExchangeKeys(VaultSession(canned.url, token="t"), "exchanges")
    from runtime.core.venue import Credentials

    with pytest.raises(CasConflictError, match="cas 4"):
        keys.write("binance", "main", Credentials("k", "s"), cas=4)


def test_an_unreachable_vault_is_reported_as_such() -> None:
    with socket.socket() as placeholder:  # a port nobody listens on
        placeholder.bind(("127.0.0.1", 0))
        port = placeholder.getsockname()[1]
    keys = ExchangeKeys(VaultSession(f"http://127.0.0.1:{port}", token="t"), "exchanges")
    with pytest.raises(VaultUnavailableError) as failure:
        keys.metadata("binance", "main")
    assert failure.value.reason == "unreachable"


async def test_a_missing_token_file_is_named_as_such_not_as_vault_unreachable(
    canned: Canned, tmp_path: Path
) -> None:
    token_file = tmp_path / "vault_token"  # Nomad has not written it (yet)
    session = VaultSession(canned.url, token_file=token_file)
    with pytest.raises(VaultUnavailableError) as failure:
        session.call("probe", lambda c: c.auth.token.lookup_self())
    assert failure.value.reason == "no_token"
    assert str(failure.value) == f"probe: no token file {token_file} (No such file or directory)"
    keys = KeyProvider(ExchangeKeys(session, "exchanges"), {"binance": "main"})
    await keys.sync()
    assert keys.missing() == [
        "no API key for binance from Vault yet (metadata of exchanges/binance/main: "
        f"no token file {token_file} (No such file or directory))"
    ]


def test_a_denied_token_is_read_again_from_its_file(canned: Canned, tmp_path: Any) -> None:
    token_file = tmp_path / "vault_token"
    token_file.write_text("first-token-value")
    session = VaultSession(canned.url, token_file=token_file)
    canned.status, canned.body = 403, {"errors": ["permission denied"]}
    with pytest.raises(VaultUnavailableError):
        session.call("probe", lambda c: c.auth.token.lookup_self())
    token_file.write_text("second-token-value")  # Nomad re-issued it
    assert session.call("probe", lambda c: c.token) == "second-token-value"


@pytest.mark.parametrize(
    ("text", "epoch"),
    [
        ("2026-11-21T16:00:00Z", 1_795_276_800.0),
        ("2026-11-21T16:00:00.5Z", 1_795_276_800.5),
        ("2026-11-21T16:00:00.123456789Z", 1_795_276_800.123456789),
    ],
)
def test_vault_timestamps_parse_with_nanoseconds(text: str, epoch: float) -> None:
    assert parse_time(text) == pytest.approx(epoch, abs=1e-6)


def test_a_deployment_policy_names_only_its_own_accounts() -> None:
    layout = Layout.load(
        deployments={"alpha": {"binance": "a1", "upbit": "a2"}, "beta": {"binance": "b1"}}
    )
    policy = deployment_policy(layout, "alpha")
    assert 'path "exchanges/data/binance/a1"' in policy
    assert 'path "exchanges/metadata/upbit/a2"' in policy
    assert "b1" not in policy and "*" not in policy.split("sys/leases")[0]


def test_backoff_grows_to_its_cap_and_resets() -> None:
    backoff = Backoff(base_s=1.0, cap_s=8.0, min_fraction=0.5)  # as vault_backoff()
    delays = [backoff.next_delay() for _ in range(6)]
    assert all(0.5 * min(8.0, 2.0**n) <= d <= min(8.0, 2.0**n) for n, d in enumerate(delays))
    backoff.reset()
    assert backoff.next_delay() <= 1.0


def test_a_dsn_gets_the_new_user_quoted() -> None:
    dsn = with_user("postgresql://admin:old@127.0.0.1:15432/postgres?sslmode=disable", "v-x", "a/b")
    assert dsn == "postgresql://v-x:a%2Fb@127.0.0.1:15432/postgres?sslmode=disable"


def test_a_multi_host_dsn_keeps_every_host_with_the_new_user() -> None:
    dsn = with_user(
        "postgresql://10.0.0.1:5432,10.0.0.2:5433/db?target_session_attrs=read-write", "v-x", "p"
    )
    assert (
        dsn == "postgresql://v-x:p@10.0.0.1:5432,10.0.0.2:5433/db?target_session_attrs=read-write"
    )
