"""The one entry point for people: demo, toolchain, stack, tests, bench, lint.

nox -s demo                    the engine on embedded defaults, against the exchange simulator
nox -s toolchain               the pinned OpenTofu, OpenBao, Nomad, Consul, Prometheus, providers
nox -s stack -- up|down|status the local Nomad/Consul/OpenBao/PostgreSQL/Redis stack
nox -s tests                   every test, against real services started by the session
nox -s bench [-- --quick]      benchmarks; figures in bench/results.json
nox -s lint                    ruff, mypy, the import contracts, the monitoring drift check
"""

from __future__ import annotations

import nox

nox.options.sessions = ["demo"]
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = True

PYTHON = "3.11"


def _install(session: nox.Session, *extras: str) -> None:
    target = f".[{','.join(extras)}]" if extras else "."
    session.install("-q", "-e", target)


@nox.session(python=PYTHON)
def demo(session: nox.Session) -> None:
    """Run the engine with the shipped strategies in paper mode against the simulator."""
    _install(session)
    session.run("arbfleet", "demo", *session.posargs)


@nox.session(python=PYTHON)
def toolchain(session: nox.Session) -> None:
    """Make the pinned HashiCorp toolchain and providers available (idempotent)."""
    session.run("python", "-m", "runtime.devstack", "toolchain", *(session.posargs or ["install"]))


@nox.session(python=PYTHON)
def stack(session: nox.Session) -> None:
    """Manage the local stack: `nox -s stack -- up`, `-- down`, `-- status`, `-- env`."""
    session.run("python", "-m", "runtime.devstack", "toolchain", "install")
    session.run("python", "-m", "runtime.devstack", "dev", *(session.posargs or ["status"]))


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """Every test: unit, integration and infra, against real services (none is skipped)."""
    _install(session, "test")
    session.run("python", "-m", "runtime.devstack", "toolchain", "install")
    session.run("python", "-m", "runtime.devstack", "dev", "packages")
    session.run("pytest", *session.posargs)


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Every benchmark (`-- --quick` for the short version); writes bench/results.json.

    Installs what the tests session does for the stack (the toolchain, the stack's packages),
    which the rotation, Consul and fleet benchmarks start, and the `bench` extra: the peer
    (NautilusTrader) and matplotlib for the cost-curve plot."""
    _install(session, "bench")
    session.run("python", "-m", "runtime.devstack", "toolchain", "install")
    session.run("python", "-m", "runtime.devstack", "dev", "packages")
    session.run("python", "-m", "bench", *session.posargs)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff over everything; mypy --strict over runtime/ and strategies/; the import contracts;
    the generated monitoring files against a fresh generation."""
    _install(session, "test", "lint")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("mypy")
    session.run("lint-imports")
    session.run("python", "-m", "monitoring.generate", "--check")
