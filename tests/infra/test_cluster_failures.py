"""Failures under trading load on the multi-node cluster (issue #16, item 3).

One cluster for the module, the exchange simulator in this process on the bridge address (the one
address of this machine the namespaces reach), and one live engine deployment (signed orders to
the simulator with keys it reads from the cluster's OpenBao, exchanges/<venue>/<account>, through
the production path: the task's own token, the deployment's policy, HTTPS checked against the
cluster's CA; its config holds no key. Consul ACLs on, as in tests/infra/test_cluster_engines.py). The
simulator records every order with the address it came from, so each order is attributed to the
client whose engine sent it, and refuses (and counts) a client order id sent twice.

The tests run in order on the same deployment, each leaving it trading:

1. drain the client running the engine: the engine moves to the other client, takes its account
   lock only after the old session is gone, trades again (``cluster.drain_to_trading_s``);
2. cut the client now running it off from every other node (servers and the other client): its
   engine stops new orders within the lock session's TTL, the replacement on the other client
   does not trade the account before then (``cluster.partition_stop_s``);
3. kill -9 the Nomad leader, then the Consul leader: a new leader each
   (``cluster.leader_failover_s``, the longer of the two), trading continues or resumes;
4. kill -9 the whole node running the engine during an order burst: every order it sent is in
   its journal, the replacement trades (``cluster.node_kill_to_trading_s``).

Every one: no client order id reaches the simulator twice.

``ARBFLEET_CLUSTER_RESULTS=1`` merges the figures into bench/results.json.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
import redis

from runtime.config import ConsulConfig
from runtime.core.errors import StackError
from runtime.core.instruments import split_symbol
from runtime.core.orders import order_position, strategy_part
from runtime.devstack import cluster, netns
from runtime.devstack import cluster_engines as ce
from runtime.devstack.scratch import ScratchRedis
from runtime.devstack.simulator.background import SimulatorThread
from runtime.devstack.simulator.market import MarketParams
from runtime.devstack.simulator.server import ExchangeSimulator, Execution, SimulatorConfig
from runtime.persistence.journal import OrderJournal
from runtime.persistence.snapshots import SnapshotStore, StrategySnapshot

DEPLOYMENT = "fail"
JOB = ce.job_id(DEPLOYMENT)
ACCOUNTS = {"binance": "paper", "upbit": "paper"}
SESSION_TTL_S = float(ConsulConfig.model_fields["session_ttl_s"].default)
# In flight when the lock lapses: an order the engine released just before its session's TTL
# ran out reaches the simulator a moment later (one REST round trip on the bridge).
IN_FLIGHT_S = 1.0
# Trading load: dislocations (an opportunity for the cross-exchange strategy) four times as often
# as the simulator's default, a few orders a second.
LOAD = MarketParams(dislocations_per_s=4.0)
TRADING_S = 180.0  # a move or a recovery to trading again: start, imports, lock, an opportunity


@dataclass
class Load:
    """The deployment trading against the simulator, and what the tests measured."""

    sim: ExchangeSimulator
    thread: SimulatorThread
    redis: ScratchRedis
    figures: dict[str, float] = field(default_factory=dict)

    def executions(self) -> list[Execution]:
        async def copy() -> list[Execution]:
            return self.sim.executions()

        return asyncio.run_coroutine_threadsafe(copy(), self.thread.loop).result(10)

    def orders(self) -> list[tuple[str, int]]:
        """(sender address, receive time ns) of every order the simulator accepted, in order;
        copied in the simulator's own loop (it writes them there)."""

        async def copy() -> list[tuple[str, int]]:
            return sorted(self.sim.order_peers.values(), key=lambda o: o[1])

        return asyncio.run_coroutine_threadsafe(copy(), self.thread.loop).result(10)

    def from_(self, address: str, after_ns: int = 0) -> list[int]:
        return [t for peer, t in self.orders() if peer == address and t > after_ns]

    def duplicates(self) -> int:
        return int(self.sim.stats.duplicate_orders)


def node_named(name: str) -> cluster.Node:
    return next(n for n in cluster.nodes() if n.name == name)


def engine_node() -> cluster.Node:
    running = ce.running_allocations(JOB)
    if len(running) != 1:
        raise AssertionError(f"not one engine running: {allocation_states()}")
    return node_named(running[0]["NodeName"])


def allocation_states() -> list[tuple[str, str, str, list[str]]]:
    """(node, client status, desired status, the engine task's last events) per allocation."""
    states = []
    for alloc in ce.nomad(f"/v1/job/{JOB}/allocations") or []:
        task = (alloc.get("TaskStates") or {}).get("engine") or {}
        events = [f"{e['Type']}: {e.get('DisplayMessage', '')}" for e in task.get("Events") or []]
        states.append(
            (alloc["NodeName"], alloc["ClientStatus"], alloc["DesiredStatus"], events[-5:])
        )
    return states


def other_client(node: cluster.Node) -> cluster.Node:
    return next(n for n in cluster.nodes() if n.role == "client" and n != node)


def nomad_node_id(node: cluster.Node) -> str:
    return next(n["ID"] for n in ce.nomad("/v1/nodes") if n["Name"] == node.name)


def trading_from(load: Load, node: cluster.Node, after_ns: int, timeout_s: float) -> int:
    """Receive time of the first order from ``node``'s engine after ``after_ns``."""
    found = cluster.wait_for(
        f"an order from {node.name}", lambda: load.from_(node.address, after_ns), timeout_s
    )
    return int(found[0])


class LockWatch:
    """Samples the lock's holder every 0.1 s in a thread: (time ns, holding session, whether
    the session that held it at the start still exists)."""

    def __init__(self, old_session: str) -> None:
        self.old = old_session
        self.samples: list[tuple[int, str | None, bool]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(OSError, StackError):
                holder = ce.lock_holder("binance", "paper")
                old_alive = bool(ce.consul(f"/v1/session/info/{self.old}"))
                self.samples.append((time.time_ns(), holder, old_alive))
            self._stop.wait(0.1)

    def __enter__(self) -> LockWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


@pytest.fixture(scope="module")
def load() -> Iterator[Load]:
    bridge = str(next(cluster.SUBNET.hosts()))
    try:
        cluster.up(say=print)
        thread = SimulatorThread(SimulatorConfig(host=bridge, market=LOAD))
        # Redis outside the cluster (as a managed one would be), in its catalog: the snapshots
        # outlive every node the tests kill.
        with thread as sim, ScratchRedis(also_on=(bridge,)) as redis:
            ce.register_external("redis", bridge, redis.port, tags=["default"])
            ce.provision_consul_token(JOB, ce.apply_engine_acl(JOB, ACCOUNTS))
            ce.provision_exchange_keys(JOB, ACCOUNTS)
            # The engine's keys come from OpenBao only: its vars hold none.
            assert "sim-key" not in ce.engine_variables(DEPLOYMENT, "sim:1", live=ACCOUNTS)
            started = time.time_ns()
            ce.submit_engine(
                DEPLOYMENT, f"{bridge}:{sim.port}", live=ACCOUNTS, redis_service="redis"
            )
            state = Load(sim, thread, redis)
            first = cluster.wait_for(
                "the engine's first order",
                lambda: [t for _, t in state.orders() if t > started],
                TRADING_S,
            )[0]
            print(
                f"live engine on the cluster: submit to first order {(first - started) / 1e9:.1f} s"
            )
            yield state
            print(f"figures: {state.figures}; orders: {len(state.orders())}")
            if os.environ.get("ARBFLEET_CLUSTER_RESULTS") and state.figures:
                from bench.results import write_results

                write_results(state.figures, stamp=False)
    finally:
        cluster.down(say=print)


def test_drain_moves_the_engine_which_trades_after_the_old_session_is_gone(load: Load) -> None:
    node = engine_node()
    target = other_client(node)
    old_session = ce.lock_holder("binance", "paper")
    assert old_session
    with LockWatch(old_session) as watch:
        drained_ns = time.time_ns()
        ce.nomad(
            f"/v1/node/{nomad_node_id(node)}/drain",
            "PUT",
            {"NodeID": nomad_node_id(node), "DrainSpec": {"Deadline": 120 * 10**9}},
        )
        first_new = trading_from(load, target, drained_ns, TRADING_S)
    load.figures["cluster.drain_to_trading_s"] = (first_new - drained_ns) / 1e9
    print(f"drain to trading on {target.name}: {load.figures['cluster.drain_to_trading_s']:.1f} s")
    assert engine_node() == target
    # The old engine's last order came before the new one's first.
    assert max(load.from_(node.address)) < first_new
    # The new session held the lock only once the old one was gone (sampled every 0.1 s).
    new = [s for s in watch.samples if s[1] not in (None, old_session)]
    assert new, "the new engine's session never seen holding the lock"
    assert not [s for s in new if s[2]], "a new session held the lock while the old one lived"
    assert load.duplicates() == 0
    ce.nomad(  # the drained client takes work again (the partition test moves the engine back)
        f"/v1/node/{nomad_node_id(node)}/eligibility",
        "PUT",
        {"NodeID": nomad_node_id(node), "Eligibility": "eligible"},
    )


def _isolate(node: cluster.Node, add: bool) -> None:
    """Blackhole routes in ``node``'s namespace to every other node: cut off from the servers
    and the other client, the simulator on the bridge still reachable (so what stops the
    engine's orders is its lock, not a dead link to the venue)."""
    for other in cluster.nodes():
        if other != node:
            netns.ip(
                "-n", netns.namespace(node.name), "route", "add" if add else "del",
                "blackhole", f"{other.address}/32",
            )  # fmt: skip


def test_a_partitioned_engine_stops_within_the_session_ttl_and_the_replacement_waits(
    load: Load,
) -> None:
    node = engine_node()
    target = other_client(node)
    cut_ns = time.time_ns()
    _isolate(node, True)
    try:
        first_new = trading_from(load, target, cut_ns, TRADING_S)
        # Why the window is enough: from the TTL on, the cut-off engine holds no valid lock and
        # cannot get one back (its Consul agent reaches no server); the replacement trading shows
        # the lock is elsewhere. 5 s more covers orders in flight; after the heal the cut-off
        # engine is watched until its process is gone.
        watch_until = time.time_ns() + 5 * 10**9
        cluster.wait_for("the watch window", lambda: time.time_ns() >= watch_until, 10)
    finally:
        _isolate(node, False)
    old = load.from_(node.address, cut_ns)
    last_old = max(old) if old else cut_ns
    load.figures["cluster.partition_stop_s"] = (last_old - cut_ns) / 1e9
    window_s = (watch_until - cut_ns) / 1e9
    print(
        f"partition: cut-off engine's last order {load.figures['cluster.partition_stop_s']:.1f} s"
        f" after the cut, replacement's first {(first_new - cut_ns) / 1e9:.1f} s after;"
        f" watched {window_s:.0f} s"
    )
    assert last_old - cut_ns <= (SESSION_TTL_S + IN_FLIGHT_S) * 1e9
    assert first_new > last_old
    assert load.duplicates() == 0
    # Healed: the cut-off allocation is stopped (Nomad replaced it) and sends nothing.
    cluster.wait_for(
        "the cut-off engine stopped",
        lambda: not [p for p in netns.pids(netns.namespace(node.name)) if _is_engine(p)],
        120,
    )
    assert not load.from_(node.address, cut_ns + int((SESSION_TTL_S + IN_FLIGHT_S) * 1e9))


def _is_engine(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"runtime.cli.main" in f.read()
    except OSError:
        return False


def _leader(agent: str, exclude: cluster.Node | None = None) -> str | None:
    for node in cluster.servers():
        if node != exclude:
            with contextlib.suppress(OSError, StackError):
                found = cluster.api(node, agent, "/v1/status/leader")
                if found:
                    return str(found).split(":")[0]
    return None


def _kill_leader(agent: str) -> float:
    """kill -9 the leader's agent; seconds until another server names a new leader; the killed
    agent is started again afterwards."""
    address = _leader(agent)
    node = next(n for n in cluster.servers() if n.address == address)
    pid = cluster.agent_pid(node, agent)
    assert pid
    killed = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    cluster.wait_for(
        f"a new {agent} leader",
        lambda: (_leader(agent, exclude=node) or address) != address,
        120,
    )
    elapsed = time.monotonic() - killed
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)
    cluster.start_agent(node, agent)
    return elapsed


def test_killing_the_nomad_and_consul_leaders(load: Load) -> None:
    nomad_s = _kill_leader("nomad")
    consul_s = _kill_leader("consul")
    load.figures["cluster.leader_failover_s"] = max(nomad_s, consul_s)
    print(f"leader failover: nomad {nomad_s:.1f} s, consul {consul_s:.1f} s")
    cluster.wait_for("3 Nomad servers", lambda: len(cluster.nomad_servers()) == 3, 120)
    cluster.wait_for("5 Consul members", lambda: len(cluster.consul_members()) == 5, 120)
    after = time.time_ns()
    trading_from(load, engine_node(), after, TRADING_S)
    assert load.duplicates() == 0


def test_kill_9_of_the_engines_node_during_an_order_burst(load: Load) -> None:
    """The node's link down and every process in it SIGKILLed (agents and engine: a host lost),
    while its engine sends orders. Every order the simulator took from it is in its journal
    (written before sent: a restart there would know each one); the replacement on the other
    client trades again with no client order id sent twice. The journal stays on the dead node
    (Nomad cannot migrate an ephemeral disk from it): the replacement starts from the Redis
    snapshot and finds the orders sent after it in the venues' lists
    (runtime/persistence/lookback.py). Then the deployment stops, and its accounts, as its last
    snapshot holds them, are what the venue executed over the whole module: every fill of every
    engine counted once, whichever drain, partition, leader loss or node loss it lived through."""
    node = engine_node()
    (alloc,) = ce.running_allocations(JOB)
    target = other_client(node)
    ns = netns.namespace(node.name)
    burst_from = time.time_ns()
    cluster.wait_for("an order burst", lambda: len(load.from_(node.address, burst_from)) >= 3, 60)
    netns.ip("-n", ns, "link", "set", "eth0", "down")
    killed_ns = time.time_ns()
    for pid in netns.pids(ns):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    cluster.wait_for("nothing left running on the node", lambda: not netns.pids(ns), 30)
    first_new = trading_from(load, target, killed_ns, TRADING_S)
    load.figures["cluster.node_kill_to_trading_s"] = (first_new - killed_ns) / 1e9
    print(
        f"kill -9 of {node.name} to trading on {target.name}: {(first_new - killed_ns) / 1e9:.1f} s"
    )
    assert load.duplicates() == 0
    journal = cluster.node_root(node) / "opt/nomad/data/alloc" / alloc["ID"] / "alloc/data/journal"
    replay = OrderJournal(journal, fsync=False).replay()
    journaled = set(replay.open_orders) | {d.result.intent.client_order_id for d in replay.done}
    # This allocation's orders (an engine that ran on the node before had a journal of its own).
    started = int(alloc["CreateTime"])
    sent = {
        c for c, (peer, t) in load.sim.order_peers.items() if peer == node.address and t > started
    }
    assert sent and sent <= journaled, sorted(sent - journaled)[:5]
    print(
        f"killed engine: {len(sent)} orders at the simulator, all journaled;"
        f" {len(set(replay.open_orders) & sent)} taken by the venue but not yet done in the journal"
    )
    ce.nomad(f"/v1/job/{JOB}", "DELETE")  # a graceful stop: the last snapshot
    cluster.wait_for("the engine stopped", lambda: not ce.running_allocations(JOB), 120)
    assert load.duplicates() == 0
    assert_accounts_match_the_venue(load)


def assert_accounts_match_the_venue(load: Load) -> None:
    """The deployment's snapshot against the simulator's executions: fill count, base asset
    moved and fees per venue (the quote moved follows from these and the prices)."""
    client = redis.Redis.from_url(load.redis.url, decode_responses=True)
    (key,) = client.keys("arbfleet:default:*:snapshot")  # one strategy in the deployment
    client.close()
    environment, deployment, strategy = str(key).split(":")[1:4]

    async def last_snapshot() -> StrategySnapshot:
        store = SnapshotStore(load.redis.url, environment, deployment)
        try:
            return (await store.load([strategy])).snapshots[strategy]
        finally:
            await store.close()

    snapshot = asyncio.run(last_snapshot())
    ours = strategy_part(strategy)
    executions = [
        e for e in load.executions() if (order_position(e.client_order_id) or ("",))[0] == ours
    ]
    moved: dict[tuple[str, str], float] = defaultdict(float)
    fees: dict[str, float] = defaultdict(float)
    for e in executions:
        base, quote = split_symbol(e.symbol)
        moved[(e.venue, base)] += e.quantity if e.side == "buy" else -e.quantity
        fees[quote] += e.fee
    positions = {(venue, asset): x for venue, asset, x in snapshot.positions}
    print(f"accounts: {snapshot.fills} fills in the snapshot, {len(executions)} at the venue")
    assert snapshot.fills == len(executions)
    assert {k: positions.get(k, 0.0) for k in moved} == {
        k: pytest.approx(x, abs=1e-9) for k, x in moved.items()
    }
    assert snapshot.fees == {k: pytest.approx(x, rel=1e-9) for k, x in fees.items()}


def test_down_leaves_nothing(load: Load) -> None:
    cluster.down(say=print)
    assert cluster.leftovers() == {"namespaces": [], "links": [], "processes": []}
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    assert netns.NS_PREFIX not in out.stdout
