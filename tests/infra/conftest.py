"""A monitored workload on the local stack: the exchange simulator (in this process), the
prometheus job and the local paper engine deployment, deployed through ``runtime.deploy`` in a
Nomad namespace and data directory of their own, and removed after the module that uses them
(so the engine and the simulator's ticks do not load the rest of the session).

Used by test_prometheus_scrapes_engine.py and by the local profile of servers/ (engine health,
Prometheus targets): the local stack runs no job by itself.
"""

from __future__ import annotations

import asyncio
import shutil
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import nomad
import pytest

from runtime import deploy
from runtime.devstack import stack
from runtime.simulator import ExchangeSimulator
from tests.stack_plugin import Consul, wait_for

ENGINE_DEPLOYMENT = "cross-exchange-paper"
# Where infra/nomad/vars/local/engine/cross-exchange-paper.hcl expects the simulator.
SIMULATOR_IN_VARS = "127.0.0.1:18900"


@dataclass(frozen=True)
class Workload:
    namespace: str
    prometheus: str
    """Base URL of the Prometheus API, from its Consul service."""
    engine: str
    """Base URL of the engine's health and metrics server, from its Consul service."""


class SimulatorThread:
    """The exchange simulator on a free port of 127.0.0.1, in an event loop of its own thread
    (the tests are synchronous)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.simulator = ExchangeSimulator()

    def __enter__(self) -> ExchangeSimulator:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.simulator.start(), self.loop).result(timeout=10)
        return self.simulator

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.simulator.stop(), self.loop).result(timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


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
    name = f"arbfleet-test-{uuid.uuid4().hex[:8]}"
    api = nomad.Nomad(address=local_stack.nomad, namespace=name, timeout=10)
    api.namespace.create_namespace({"Name": name, "Description": "a test's own"})
    data_dir = stack.state_dir() / "volumes" / f"test-{uuid.uuid4().hex[:8]}"
    tmp = tmp_path_factory.mktemp("workload")
    try:
        with SimulatorThread() as simulator:
            overrides = tmp / "host-volume.hcl"
            overrides.write_text(f"host_volume_path = {deploy.hcl_string(str(data_dir))}\n")
            base = deploy.unit("prometheus", deploy.LOCAL_ENV)
            prometheus = deploy.Unit(base.name, base.env, base.spec, (*base.var_files, overrides))
            outcome = deploy.deploy(api, prometheus, timeout_s=240)
            assert outcome.status == "successful", outcome

            base = deploy.unit(ENGINE_DEPLOYMENT, deploy.LOCAL_ENV)
            text = base.var_files[1].read_text()
            assert SIMULATOR_IN_VARS in text
            engine_vars = tmp / base.var_files[1].name
            engine_vars.write_text(text.replace(SIMULATOR_IN_VARS, f"127.0.0.1:{simulator.port}"))
            engine = deploy.Unit(base.name, base.env, base.spec, (base.var_files[0], engine_vars))
            outcome = deploy.deploy(api, engine, timeout_s=240)
            assert outcome.status == "successful", outcome

            yield Workload(
                namespace=name,
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
        for job in api.jobs.get_jobs():
            api.job.deregister_job(job["ID"], purge=True)
        wait_for(
            lambda: (
                not [
                    a
                    for a in api.allocations.get_allocations()
                    if a["ClientStatus"] in ("running", "pending")
                ]
            ),
            timeout=60,
            what=f"the allocations of {name} to stop",
        )
        api.system.initiate_garbage_collection()
        api.namespace.delete_namespace(name)
        shutil.rmtree(data_dir, ignore_errors=True)
