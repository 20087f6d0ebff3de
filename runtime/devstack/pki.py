"""A CA, the cluster module's two role certificates and both gossip keys, for the local cluster.

The same files and SANs the cluster module's README has operators make with ``consul tls``
(one certificate per role, not per node), in a keys directory laid out as
``runtime.ops.node_keys`` reads it: ``ca.pem``, ``server.pem``, ``client.pem`` (public) and
``server-key.pem``, ``client-key.pem``, ``consul-gossip.key``, ``nomad-gossip.key`` (mode 0600),
plus the CA's own key (0600), which never leaves this directory.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = datetime.timedelta(days=7)  # a test cluster's lifetime, with room


def _write(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    path.chmod(mode)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _builder(
    subject: str, issuer: str, public: ec.EllipticCurvePublicKey
) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
    )


def make(keys_dir: Path, consul_dc: str, region: str, server_ips: list[str]) -> None:
    """Write the CA, the server and client certificates and keys, and two gossip keys."""
    keys_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = f"Arbfleet local cluster CA ({consul_dc})"
    ca = (
        _builder(ca_name, ca_name, ca_key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    _write(keys_dir / "ca.pem", ca.public_bytes(serialization.Encoding.PEM), 0o644)
    _write(keys_dir / "ca-key.pem", _key_pem(ca_key), 0o600)
    loopback = ["localhost"], ["127.0.0.1"]
    roles = {
        "server": ([f"server.{consul_dc}.consul", f"server.{region}.nomad"], server_ips),
        "client": ([f"client.{consul_dc}.consul", f"client.{region}.nomad"], []),
    }
    for role, (names, ips) in roles.items():
        key = ec.generate_private_key(ec.SECP256R1())
        sans: list[x509.GeneralName] = [x509.DNSName(n) for n in names + loopback[0]]
        sans += [x509.IPAddress(ipaddress.ip_address(a)) for a in ips + loopback[1]]
        usage = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
        cert = (
            _builder(names[0], ca_name, key.public_key())
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.ExtendedKeyUsage(usage), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        _write(keys_dir / f"{role}.pem", cert.public_bytes(serialization.Encoding.PEM), 0o644)
        _write(keys_dir / f"{role}-key.pem", _key_pem(key), 0o600)
    for agent in ("consul", "nomad"):
        _write(keys_dir / f"{agent}-gossip.key", base64.b64encode(os.urandom(32)) + b"\n", 0o600)
