"""Engines on the multi-node cluster with Consul ACLs on (issue #16, item 2).

One cluster for the module (runtime/devstack/cluster.py), the exchange simulator in this process
on the bridge address (inside the cluster's private bridge: the only address of this machine the
namespaces reach), and a paper engine deployed from infra/nomad/engine.nomad.hcl with
``consul_acl = true`` on Nomad 1.6.1: its Consul token through the ``legacy_token`` path (a
template reading it from OpenBao with the task's own token), its Consul policy and role from the
platform module's ``consul/engine-acl.json`` (runtime/devstack/cluster_engines.py). The engine
runs the worktree's code (``source_dir``: ``<venv>/bin/python -m runtime.cli.main``).

Then the production path's Consul side (Nomad 1.7+): the same file's JWT auth method and binding
rule applied to the real Consul, logged in to with JWTs shaped like Nomad's ``consul_default``
identities, signed by a key this module makes.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from runtime.core.errors import StackError
from runtime.devstack import cluster, netns
from runtime.devstack import cluster_engines as ce
from runtime.devstack.simulator.background import SimulatorThread
from runtime.devstack.simulator.server import SimulatorConfig
from runtime.ops.platform import desired
from tests.nomad_identity import nomad_identity

DEPLOYMENT = "acl"
JOB = ce.job_id(DEPLOYMENT)
ACCOUNTS = {"binance": "paper", "upbit": "paper"}  # the local paper deployment's [consul.accounts]
# A second deployment on other accounts: the engine's token must not touch its lock.
OTHER_JOB = ce.job_id("other")
OTHER_ACCOUNTS = {"binance": "other"}
ENGINE_UP_S = 120.0  # submit to lock held: raw_exec start, Python imports on 2 busy cores


@dataclass(frozen=True)
class Engine:
    alloc_id: str
    node: cluster.Node
    simulator: str


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    bridge = str(next(cluster.SUBNET.hosts()))
    try:
        cluster.up(say=print)
        with SimulatorThread(SimulatorConfig(host=bridge)) as simulator:
            for job, accounts in ((JOB, ACCOUNTS), (OTHER_JOB, OTHER_ACCOUNTS)):
                ce.provision_consul_token(job, ce.apply_engine_acl(job, accounts))
            started = time.monotonic()
            ce.submit_engine(DEPLOYMENT, f"{bridge}:{simulator.port}")
            cluster.wait_for(
                "the engine's account locks",
                lambda: all(ce.lock_holder(*a) for a in ACCOUNTS.items()),
                ENGINE_UP_S,
            )
            (alloc,) = ce.running_allocations(JOB)
            print(
                f"engine on the cluster: submit to locks held in {time.monotonic() - started:.1f} s"
            )
            node = next(n for n in cluster.nodes() if n.name == alloc["NodeName"])
            yield Engine(alloc["ID"], node, f"{bridge}:{simulator.port}")
    finally:
        cluster.down(say=print)


def engine_token(engine: Engine) -> str:
    """The engine's secrets/consul_token, as the engine process sees it (Nomad's secrets
    directory is a tmpfs in the task's mount namespace, not visible from this one)."""
    for pid in netns.pids(netns.namespace(engine.node.name)):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"runtime.cli.main" in cmdline and engine.alloc_id.encode() in b" ".join(cmdline):
            secrets = cluster.node_root(engine.node) / "opt/nomad/data/alloc" / engine.alloc_id
            path = (
                Path(f"/proc/{pid}/root") / str(secrets).lstrip("/") / "engine/secrets/consul_token"
            )
            assert path.stat().st_mode & 0o077 == 0
            return path.read_text().strip()
    raise AssertionError(f"no engine process for allocation {engine.alloc_id}")


def denied(call: object) -> bool:
    try:
        call()  # type: ignore[operator]
    except StackError as exc:
        if "HTTP 403" in str(exc):
            return True
        raise
    return False


def test_the_engine_holds_its_locks_and_its_check_passes_with_its_own_token(engine: Engine) -> None:
    token = engine_token(engine)
    assert token not in {cluster.token("consul")}
    me = ce.consul("/v1/acl/token/self", token=token)
    assert [r["Name"] for r in me["Roles"]] == [ce.engine_role(JOB)] and not me.get("Policies")
    # Its session (made with its token) holds each lock; its own service's check passes.
    for venue, account in ACCOUNTS.items():
        session = ce.consul(f"/v1/session/info/{ce.lock_holder(venue, account)}")[0]
        assert session["Name"] == f"arbfleet-engine arbfleet-engine-ttl-{engine.alloc_id}"
        assert session["Node"] == engine.node.name

    def passing() -> bool:
        checks = ce.consul("/v1/health/checks/arbfleet-engine-ttl")
        mine = [c for c in checks if c["ServiceID"].endswith(engine.alloc_id)]
        return bool(mine) and mine[0]["Status"] == "passing"

    cluster.wait_for("the engine's can-trade check passing", passing, 60)


def test_the_engine_token_cannot_write_another_deployments_lock_or_the_kill_switch(
    engine: Engine,
) -> None:
    token = engine_token(engine)
    other = ce.lock_key(*next(iter(OTHER_ACCOUNTS.items())))
    assert denied(lambda: ce.consul(f"/v1/kv/{other}", "PUT", "x", token=token))
    assert denied(lambda: ce.consul("/v1/kv/arbfleet/kill-switch", "PUT", "{}", token=token))
    assert denied(lambda: ce.consul("/v1/kv/arbfleet/kill-switch", "DELETE", token=token))
    assert denied(lambda: ce.consul("/v1/acl/tokens", token=token))
    assert denied(lambda: ce.consul("/v1/kv/other/thing", "PUT", "x", token=token))
    # What it needs: read the kill switch (absent: 404, not 403).
    with pytest.raises(StackError, match="HTTP 404"):
        ce.consul("/v1/kv/arbfleet/kill-switch", token=token)


# --- the production path's Consul side: the JWT auth method and binding rule ----------------


@pytest.fixture(scope="module")
def signing_key(engine: Engine) -> str:
    """A key this module controls, trusted by the auth method as Nomad's JWKS is in production."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    ce.apply_auth_method([JOB, OTHER_JOB], {"JWTValidationPubKeys": [public.decode()]})
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def consul_identity(
    key: str, job: str, *, task: str = "engine", audience: str = "consul.io"
) -> str:
    """The claims Nomad 1.7+ signs for a task's ``consul_default`` identity."""
    return nomad_identity(job, key, task=task, audience=audience, identity="consul_default")


def test_the_auth_method_is_the_one_the_platform_applier_applies(signing_key: str) -> None:
    method = ce.consul(f"/v1/acl/auth-method/{ce.definitions()['auth_method']['name']}")
    assert method["Config"]["BoundAudiences"] == ["consul.io"]
    (rule,) = ce.consul(f"/v1/acl/binding-rules?authmethod={method['Name']}")
    assert (rule["BindType"], rule["BindName"]) == ("role", "arbfleet-engine-${value.nomad_job_id}")
    # One definition: the cluster's come from the applier production runs (no Terraform copy).
    assert ce.definitions() is desired.engine_acl()


def test_a_deployments_engine_identity_gets_its_role_and_takes_its_own_lock(
    signing_key: str,
) -> None:
    login = ce.login(consul_identity(signing_key, OTHER_JOB))
    token = login["SecretID"]
    try:
        assert [r["Name"] for r in login["Roles"]] == [ce.engine_role(OTHER_JOB)]
        session = ce.consul("/v1/session/create", "PUT", {"TTL": "10s"}, token=token)["ID"]
        own = ce.lock_key(*next(iter(OTHER_ACCOUNTS.items())))
        assert ce.consul(f"/v1/kv/{own}?acquire={session}", "PUT", "x", token=token) is True
        # Not the account the running engine trades, not the kill switch.
        engine_lock = ce.lock_key(*next(iter(ACCOUNTS.items())))
        assert denied(lambda: ce.consul(f"/v1/kv/{engine_lock}", "PUT", "x", token=token))
        assert denied(lambda: ce.consul("/v1/kv/arbfleet/kill-switch", "PUT", "{}", token=token))
        ce.consul(f"/v1/session/destroy/{session}", "PUT", token=token)
    finally:
        ce.consul("/v1/acl/logout", "POST", token=token)


# Consul 1.14 answers a login whose JWT it cannot validate with HTTP 500 and the reason (an RPC
# error), one no binding rule matches with 403: each refusal is matched by its reason.
@pytest.mark.parametrize(
    ("job", "task", "audience", "reason"),
    [
        ("not-a-deployment", "engine", "consul.io", "HTTP 403"),  # a job the rule does not name
        (OTHER_JOB, "sidecar", "consul.io", "HTTP 403"),  # a deployment's other task
        (OTHER_JOB, "engine", "vault.io", "aud claim does not match"),  # the secrets store's
    ],
)
def test_other_identities_are_refused(
    signing_key: str, job: str, task: str, audience: str, reason: str
) -> None:
    with pytest.raises(StackError, match=reason):
        ce.login(consul_identity(signing_key, job, task=task, audience=audience))


def test_a_jwt_signed_by_another_key_is_refused(signing_key: str) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = other.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    with pytest.raises(StackError, match=r"HTTP 500 .*(signature|verify)"):
        ce.login(consul_identity(pem, OTHER_JOB))


def test_down_leaves_nothing(engine: Engine) -> None:
    cluster.down(say=print)
    assert cluster.leftovers() == {"namespaces": [], "links": [], "processes": []}
