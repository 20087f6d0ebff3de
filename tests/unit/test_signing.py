"""Request signing against values computed independently of the code under test."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from urllib.parse import urlencode

import pytest

from runtime.venues.binance.signing import binance_signature, binance_signed_query
from runtime.venues.upbit.signing import upbit_query_hash, upbit_token, verify_upbit_token

# The example from Binance's "SIGNED endpoint security" documentation.
DOC_SECRET = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
DOC_QUERY = (
    "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1"
    "&recvWindow=5000&timestamp=1499827319559"
)
DOC_SIGNATURE = "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71"


def test_binance_signature_matches_the_documented_example() -> None:
    assert binance_signature(DOC_SECRET, DOC_QUERY) == DOC_SIGNATURE


def test_binance_signed_query_appends_the_signature_of_the_encoded_params() -> None:
    params = {
        "symbol": "LTCBTC",
        "side": "BUY",
        "type": "LIMIT",
        "timeInForce": "GTC",
        "quantity": "1",
        "price": "0.1",
        "recvWindow": "5000",
        "timestamp": "1499827319559",
    }
    assert binance_signed_query(params, DOC_SECRET) == f"{DOC_QUERY}&signature={DOC_SIGNATURE}"


def _decode(part: str) -> dict[str, str]:
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def test_upbit_token_is_an_hs512_jwt_over_the_query_hash() -> None:
    params = {
        "market": "KRW-BTC",
        "side": "bid",
        "volume": "0.01",
        "price": "100",
        "ord_type": "limit",
    }
    token = upbit_token("access", "secret-key", params, nonce="n-1")
    header, payload, signature = token.split(".")
    assert _decode(header) == {"alg": "HS512", "typ": "JWT"}
    expected_hash = hashlib.sha512(urlencode(params).encode()).hexdigest()
    assert _decode(payload) == {
        "access_key": "access",
        "nonce": "n-1",
        "query_hash": expected_hash,
        "query_hash_alg": "SHA512",
    }
    mac = hmac.new(b"secret-key", f"{header}.{payload}".encode(), hashlib.sha512).digest()
    assert signature == base64.urlsafe_b64encode(mac).rstrip(b"=").decode()
    assert upbit_query_hash(params) == expected_hash


def test_upbit_token_without_params_has_no_query_hash() -> None:
    _, payload, _ = upbit_token("access", "secret-key").split(".")
    assert set(_decode(payload)) == {"access_key", "nonce"}


@pytest.mark.parametrize(
    ("secret", "params", "message"),
    [
        ("other-secret", {"a": "1"}, "signature does not match"),
        ("secret-key", {"a": "2"}, "query_hash does not match"),
    ],
)
def test_verification_refuses_wrong_secret_or_tampered_params(
    secret: str, params: dict[str, str], message: str
) -> None:
    token = upbit_token("access", "secret-key", {"a": "1"})
    with pytest.raises(ValueError, match=message):
        verify_upbit_token(token, secret, params)
    assert verify_upbit_token(token, "secret-key", {"a": "1"})["access_key"] == "access"


def test_garbled_tokens_are_value_errors() -> None:
    with pytest.raises(ValueError, match="not a JWT"):
        verify_upbit_token("abc", "secret-key", None)
