"""JWTs shaped like the identities Nomad 1.7+ signs for a task, signed by a key the test holds:
for the secrets store's JWT auth (``vault_default``, audience ``vault.io``) and for Consul's
(``consul_default``, audience ``consul.io``)."""

from __future__ import annotations

import time
import uuid

import jwt


def nomad_identity(
    job: str,
    key: str,
    *,
    namespace: str = "default",
    task: str = "engine",
    audience: str = "vault.io",
    identity: str = "vault_default",
) -> str:
    """The claims Nomad signs for ``task`` of ``job``'s identity ``identity``, signed RS256."""
    now = int(time.time())
    claims = {
        "aud": [audience],
        "sub": f"global:{namespace}:{job}:{task}:{task}:{identity}",
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "jti": str(uuid.uuid4()),
        "nomad_namespace": namespace,
        "nomad_job_id": job,
        "nomad_allocation_id": str(uuid.uuid4()),
        "nomad_task": task,
    }
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": "test-key"})
