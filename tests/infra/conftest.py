"""A monitored workload on the local stack: the exchange simulator (in this process), the
prometheus job and the local paper engine deployment, deployed by ``runtime.devstack.fleet`` in a
Nomad namespace and data directory of their own, and removed after the module that uses them
(so the engine and the simulator's ticks do not load the rest of the session).

Used by test_prometheus_scrapes_engine.py and by the local profile of servers/ (engine health,
Prometheus targets): the local stack runs no job by itself.

Also ``cluster_up``: the multi-node cluster (runtime/devstack/cluster.py) up for one module, as
the modules that only look at it use it (test_cluster.py, test_cluster_profiles.py).
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import nomad
import pytest

from runtime.devstack import cluster, fleet, stack
from runtime.devstack.simulator.background import SimulatorThread
from tests.stack_plugin import Consul, wait_for

ENGINE_DEPLOYMENT = "cross-exchange-paper"


@dataclass(frozen=True)
class Workload:
    namespace: str
    prometheus: str
    """Base URL of the Prometheus API, from its Consul service."""
    engine: str
    """Base URL of the engine's health and metrics server, from its Consul service."""


def service_url(consul: Consul, service: str, api: nomad.Nomad, job: str) -> str | None:
    """``http://address:port`` of the passing instance of ``service`` that a running allocation
    of ``job`` registered (Nomad puts the allocation id in the Consul service id), else None."""
    allocs = [a["ID"] for a in api.job.get_allocations(job) if a["ClientStatus"] == "running"]
    for entry in consul.get(f"health/service/{service}", passing="true"):
        if any(alloc in entry["Service"]["ID"] for alloc in allocs):
            return f"http://{entry['Service']['Address']}:{entry['Service']['Port']}"
    return None


@pytest.fixture(scope="module")
def local_workload(
    local_stack: stack.Endpoints, consul: Consul, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Workload]:
    """Prometheus and the paper engine (without stores: no timescaledb or redis job here)."""
    namespace = f"arbfleet-test-{uuid.uuid4().hex[:8]}"
    data_dir = stack.state_dir() / "volumes" / f"test-{uuid.uuid4().hex[:8]}"
    tmp = tmp_path_factory.mktemp("workload")
    api = fleet.api_for(namespace)
    try:
        with SimulatorThread() as simulator:
            units = fleet.local_units(
                tmp, data_dir, simulator.port, {"prometheus", ENGINE_DEPLOYMENT}
            )
            up = fleet.up(namespace, units)
            assert [o.status for o in up.outcomes] == ["successful", "successful"], up.outcomes
            yield Workload(
                namespace=namespace,
                prometheus=wait_for(
                    lambda: service_url(consul, "prometheus", api, "prometheus"),
                    60,
                    "prometheus in Consul",
                ),
                engine=wait_for(
                    lambda: service_url(consul, "arbfleet-engine", api, ENGINE_DEPLOYMENT),
                    60,
                    "the engine in Consul",
                ),
            )
    finally:
        if namespace in {n["Name"] for n in api.namespaces.get_namespaces()}:
            fleet.down(namespace)
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster_up() -> Iterator[float]:
    """The cluster from nothing; the seconds ``up`` took. Down after the module, whatever it did."""
    try:
        yield cluster.up(say=print)
    finally:
        cluster.down(say=print)
