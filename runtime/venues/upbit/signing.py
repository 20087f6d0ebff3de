"""Upbit request signing: a JWT per request (HS256/HS512) carrying the hash of its parameters.

Small enough to write out with the standard library, which keeps the secret in our own code path
(no third-party JWT library sees it) and lets the exchange simulator verify requests with the same
definitions the live client signs them with. The unit tests check them against independently
computed values, so a shared mistake cannot hide.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import urlencode

JWT_ALGORITHMS: Final = {"HS256": hashlib.sha256, "HS512": hashlib.sha512}


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def upbit_query_hash(params: Mapping[str, Any]) -> str:
    """SHA-512 hex of the parameters as a query string, the way Upbit hashes them."""
    return hashlib.sha512(urlencode(list(params.items())).encode()).hexdigest()


def upbit_token(
    access_key: str,
    secret: str,
    params: Mapping[str, Any] | None = None,
    *,
    nonce: str | None = None,
    algorithm: str = "HS512",
) -> str:
    """A JWT for one Upbit request: access key, fresh nonce and the hash of its parameters."""
    header = {"alg": algorithm, "typ": "JWT"}
    payload: dict[str, str] = {"access_key": access_key, "nonce": nonce or str(uuid.uuid4())}
    if params:
        payload["query_hash"] = upbit_query_hash(params)
        payload["query_hash_alg"] = "SHA512"
    signing_input = ".".join(
        _b64url(json.dumps(part, separators=(",", ":")).encode()) for part in (header, payload)
    )
    digest = JWT_ALGORITHMS[algorithm]
    signature = hmac.new(secret.encode(), signing_input.encode(), digest).digest()
    return f"{signing_input}.{_b64url(signature)}"


def read_upbit_token(token: str) -> tuple[dict[str, Any], dict[str, Any], bytes, str]:
    """(header, payload, signature, signing input) of a token, unverified; ValueError if garbled."""
    try:
        header_part, payload_part, signature_part = token.split(".")
        header = json.loads(_b64url_decode(header_part))
        payload = json.loads(_b64url_decode(payload_part))
        signature = _b64url_decode(signature_part)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"not a JWT: {exc}") from exc
    if not isinstance(header, dict) or not isinstance(payload, dict):
        raise ValueError("not a JWT: header or payload is not an object")
    return header, payload, signature, f"{header_part}.{payload_part}"


def verify_upbit_token(token: str, secret: str, params: Mapping[str, Any] | None) -> dict[str, Any]:
    """The payload if ``token`` is signed with ``secret`` and hashes ``params``; else ValueError."""
    header, payload, signature, signing_input = read_upbit_token(token)
    digest = JWT_ALGORITHMS.get(str(header.get("alg")))
    if digest is None:
        raise ValueError(f"unsupported JWT algorithm {header.get('alg')!r}")
    expected = hmac.new(secret.encode(), signing_input.encode(), digest).digest()
    if not hmac.compare_digest(expected, signature):
        raise ValueError("JWT signature does not match")
    if params and payload.get("query_hash") != upbit_query_hash(params):
        raise ValueError("query_hash does not match the request parameters")
    return payload
