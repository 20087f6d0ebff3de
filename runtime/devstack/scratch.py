"""Throwaway PostgreSQL and Redis servers, each in a temporary directory on a port of its own.

For tests that stop and start a server (database outages) and for benchmarks, without touching
the shared local stack. The same Debian binaries the stack uses; PostgreSQL runs as the
``postgres`` user (``initdb`` refuses root), through ``runuser`` as ``stack`` does. Each server is
stopped by ``stop()`` or by leaving the ``with`` block, and its directory removed by
``destroy()``; only processes started here are ever signalled.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Self

from runtime.core.errors import StackError
from runtime.devstack.stack import _pg_bin, _pg_ready, _redis_pong

HOST = "127.0.0.1"
START_TIMEOUT_S = 60.0


def free_port() -> int:
    with contextlib.closing(socket.socket()) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def _as_postgres(argv: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *argv] if os.getuid() == 0 else argv


def _chown_postgres(*paths: Path) -> None:
    if os.getuid() == 0:
        for path in paths:
            shutil.chown(path, "postgres", "postgres")


class ScratchPostgres:
    """A PostgreSQL cluster of its own; ``dsn`` connects as ``postgres`` with a password."""

    def __init__(self, port: int | None = None, settings: dict[str, str] | None = None) -> None:
        self.port = port or free_port()
        self.settings = settings or {}
        """Server settings (``-c name=value``), e.g. WAL archiving for the backup benchmark."""
        self.root = Path(tempfile.mkdtemp(prefix="arbfleet-scratch-pg-"))
        self.root.chmod(0o711)  # the postgres user must reach its data directory inside
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self.password = secrets.token_urlsafe(16)
        self._initialized = False

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres:{self.password}@{HOST}:{self.port}/postgres"

    def _initdb(self) -> None:
        pwfile = self.root / "pwfile"
        pwfile.write_text(self.password)
        self.log.touch()
        _chown_postgres(self.root, pwfile, self.log)
        initdb = [
            str(_pg_bin() / "initdb"), "-D", str(self.data), "-U", "postgres",
            "--auth=scram-sha-256", f"--pwfile={pwfile}", "--encoding=UTF8", "--no-sync",
        ]  # fmt: skip
        proc = subprocess.run(_as_postgres(initdb), capture_output=True, text=True, check=False)
        pwfile.unlink()
        if proc.returncode != 0:
            raise StackError(f"initdb failed: {proc.stderr.strip()[-500:]}")
        self._initialized = True

    def start(self) -> None:
        if not self._initialized:
            self._initdb()
        options = f"-p {self.port} -h {HOST} -k {self.root}"
        # pg_ctl hands the options to a shell
        options += "".join(f" -c {shlex.quote(f'{k}={v}')}" for k, v in self.settings.items())
        self._pg_ctl(
            "start", "-w", "-t", str(int(START_TIMEOUT_S)), "-o", options, "-l", str(self.log)
        )
        if not _pg_ready(self.port):
            raise StackError(f"scratch postgres on port {self.port} did not become ready")

    def stop(self, mode: str = "fast") -> None:
        """``fast``: sessions are ended and the server shuts down cleanly."""
        if (self.data / "postmaster.pid").exists():
            self._pg_ctl("stop", "-w", "-m", mode)

    def _pg_ctl(self, *args: str) -> None:
        argv = _as_postgres([str(_pg_bin() / "pg_ctl"), "-D", str(self.data), *args])
        proc = subprocess.run(argv, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise StackError(f"pg_ctl {args[0]} failed: {proc.stderr.strip()[-500:]}")

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.destroy()


class ScratchRedis:
    """A redis-server of its own, with an append-only file, so data survives ``stop``/``start``;
    on loopback and the addresses in ``also_on`` (e.g. the local cluster's bridge)."""

    def __init__(self, port: int | None = None, also_on: tuple[str, ...] = ()) -> None:
        self.port = port or free_port()
        self.addresses = (HOST, *also_on)
        self.root = Path(tempfile.mkdtemp(prefix="arbfleet-scratch-redis-"))
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def start(self) -> None:
        argv = ["redis-server", "--bind", *self.addresses, "--port", str(self.port),
                "--dir", str(self.root), "--appendonly", "yes", "--save", "",
                "--daemonize", "no"]  # fmt: skip
        if len(self.addresses) > 1:
            # Without a password Redis answers only loopback; the other addresses are ones only
            # this machine's namespaces reach (the local cluster's bridge has no route out).
            argv += ["--protected-mode", "no"]
        log = (self.root / "redis.log").open("ab")
        self._process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _redis_pong(self.port):
            if self._process.poll() is not None or time.monotonic() > deadline:
                raise StackError(f"scratch redis on port {self.port} did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            self._process.wait(timeout=30)
        self._process = None

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.destroy()
