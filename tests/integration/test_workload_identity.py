"""The workload-identity path production takes (Nomad 1.7+), against the real secrets store.

The test cluster's Nomad (1.6.1, the last open-source release) signs no identity for the store,
so these tests sign JWTs shaped like Nomad's (the claims its task identities carry, RS256, a
``kid``) with the stack's own key, which the store's JWT auth method trusts (``stack.up``). The
roles and policies logged in to are the ones production uses: the stack's templated
``nomad-workloads`` role and the per-deployment roles of ``arbfleet secrets apply``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import hvac
import hvac.exceptions
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from runtime.core.venue import Credentials
from runtime.devstack import stack
from runtime.ops.platform.cli import apply_layout
from runtime.platform.vault import ExchangeKeys, Layout, VaultSession
from tests.integration.vault_kit import deployment, remove_layout, unique_layout
from tests.nomad_identity import nomad_identity as identity_jwt

pytestmark = pytest.mark.stack


def nomad_identity(
    job: str,
    *,
    namespace: str = "default",
    task: str = "engine",
    audience: str = stack.WI_AUDIENCE,
    key: str | None = None,
) -> str:
    """A JWT with the claims Nomad 1.7+ signs for a task's identity for the secrets store."""
    signing_key = key if key is not None else stack.jwt_signing_key_file().read_text()
    return identity_jwt(job, signing_key, namespace=namespace, task=task, audience=audience)


def login(vault: hvac.Client, role: str, token: str) -> hvac.Client:
    """A client holding the store token a JWT login to ``role`` returns."""
    response = vault.auth.jwt.jwt_login(
        role=role, jwt=token, path=stack.WI_AUTH_PATH, use_token=False
    )
    return hvac.Client(url=vault.url, token=response["auth"]["client_token"], timeout=10)


def read(client: hvac.Client, path: str, mount: str = "secret") -> dict[str, Any]:
    response = client.secrets.kv.v2.read_secret_version(
        path=path, mount_point=mount, raise_on_deleted_version=True
    )
    return dict(response["data"]["data"])


@pytest.fixture
def job_ids(vault: hvac.Client) -> Iterator[tuple[str, str]]:
    """Two jobs of the default namespace with a secret each."""
    ids = (f"wi-a-{uuid.uuid4().hex[:6]}", f"wi-b-{uuid.uuid4().hex[:6]}")
    for job in ids:
        vault.secrets.kv.v2.create_or_update_secret(
            path=f"default/{job}/config", secret={"owner": job}, mount_point="secret"
        )
    yield ids
    for job in ids:
        vault.secrets.kv.v2.delete_metadata_and_all_versions(
            path=f"default/{job}/config", mount_point="secret"
        )


def test_the_generic_role_reads_the_jobs_own_secret_and_not_another_jobs(
    vault: hvac.Client, job_ids: tuple[str, str]
) -> None:
    mine, theirs = job_ids
    client = login(vault, stack.WI_ROLE, nomad_identity(mine))

    assert read(client, f"default/{mine}/config") == {"owner": mine}
    with pytest.raises(hvac.exceptions.Forbidden):
        read(client, f"default/{theirs}/config")


def test_the_generic_role_scopes_by_namespace_too(
    vault: hvac.Client, job_ids: tuple[str, str]
) -> None:
    mine, _ = job_ids
    client = login(vault, stack.WI_ROLE, nomad_identity(mine, namespace="other"))

    with pytest.raises(hvac.exceptions.Forbidden):
        read(client, f"default/{mine}/config")  # the job of that name in another namespace


def test_a_wrong_audience_is_refused(vault: hvac.Client, job_ids: tuple[str, str]) -> None:
    with pytest.raises(hvac.exceptions.InvalidRequest, match="aud"):
        login(vault, stack.WI_ROLE, nomad_identity(job_ids[0], audience="consul.io"))


def test_a_jwt_signed_by_another_key_is_refused(
    vault: hvac.Client, job_ids: tuple[str, str]
) -> None:
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = stranger.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()

    with pytest.raises(hvac.exceptions.InvalidRequest, match="signature"):
        login(vault, stack.WI_ROLE, nomad_identity(job_ids[0], key=pem))


@pytest.fixture
def layout(vault: hvac.Client) -> Iterator[Layout]:
    """Two deployments with an account each, their keys written."""
    layout = unique_layout({"alpha": {"binance": "acct-a"}, "beta": {"binance": "acct-b"}})
    apply_layout(vault, layout)
    keys = ExchangeKeys(VaultSession(vault.url, token=vault.token), layout.kv_mount)
    for account in ("acct-a", "acct-b"):
        keys.write("binance", account, Credentials(f"key-{account}", f"canary-{account}"), cas=0)
    yield layout
    remove_layout(vault, layout)


def test_a_deployment_identity_reads_its_own_key_and_is_denied_anothers(
    vault: hvac.Client, layout: Layout
) -> None:
    alpha = deployment(layout, "alpha")
    client = login(vault, layout.jwt_role_name(alpha), nomad_identity(alpha))

    assert read(client, "binance/acct-a", mount=layout.kv_mount)["api_key"] == "key-acct-a"
    with pytest.raises(hvac.exceptions.Forbidden):
        read(client, "binance/acct-b", mount=layout.kv_mount)


def test_another_jobs_identity_cannot_log_in_to_a_deployments_role(
    vault: hvac.Client, layout: Layout
) -> None:
    alpha, beta = deployment(layout, "alpha"), deployment(layout, "beta")

    with pytest.raises(hvac.exceptions.InvalidRequest, match="claim"):
        login(vault, layout.jwt_role_name(alpha), nomad_identity(beta))
