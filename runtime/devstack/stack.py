"""The local development stack: Consul, OpenBao and Nomad in dev mode, PostgreSQL and Redis.

Everything binds to 127.0.0.1 and lives in one state directory (``$ARBFLEET_STACK_DIR``,
default ``/tmp/arbfleet-stack-<uid>``): data, logs, one pid file per service and the secrets a
developer needs (the secrets store's root token, PostgreSQL password), each in a file of mode
0600. The secrets store is OpenBao (Vault's open-source fork, same API): everything that says
"vault" here (addresses, variables, hvac) speaks to it.

``up`` starts what is not already running and healthy and waits until every service is healthy.
How Nomad hands tasks their secrets-store token depends on its generation (``vault_identity``):
Nomad 1.7 and later sign a workload identity that the store's JWT auth method trusts, as in
production; Nomad 1.6 and earlier (the open-source 1.6.1 of the toolchain) use the legacy
integration, a token of Nomad's own from which its servers create one per task. Either way the
JWT auth method and the templated per-job policy are set up, so the workload-identity path is
also tested against the real store with JWTs signed by the stack's own key (``jwt_signing_key``).
``down`` stops exactly the processes ``up`` started (by pid, process group and state directory)
and leaves none behind. A port that is already taken is reported with the process holding it.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runtime.core.errors import PortInUseError, StackError
from runtime.devstack import toolchain
from runtime.ops.platform import desired
from runtime.ops.platform.applier import Absent, HttpApi, apply
from runtime.platform.vault import Layout

HOST = "127.0.0.1"
START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 20.0
# binary -> the Debian package that provides it; installed on demand, never started as services
APT_PACKAGES = {
    "redis-server": "redis-server",
    "postgres": "postgresql",
    "amtool": "prometheus-alertmanager",
    "prometheus-alertmanager": "prometheus-alertmanager",
    "pgbackrest": "pgbackrest",  # the backup job, the server's WAL archive, `arbfleet db restore`
    "faketime": "faketime",  # the backup retention test's clock
    "pg_partman": "postgresql-15-partman",  # bench.persistence's comparison (docs/adr/0001)
    # The multi-node cluster's PostgreSQL with a standby (infra/nomad/ha): Patroni with its Consul
    # client (the package depends on one of etcd's, Consul's, ZooKeeper's or Kubernetes' clients).
    "patroni": "patroni",
    "python3-consul": "python3-consul",
}
STACK_TOOLS = ("consul", "bao", "nomad")  # what `up` runs from the toolchain
# Workload identity: the JWT auth mount and role names `arbfleet platform apply` uses too.
WI_AUTH_PATH = Layout.jwt_auth_mount
WI_ROLE = desired.WORKLOAD_ROLE
WI_AUDIENCE = Layout.jwt_audience
# The first Nomad that signs workload identities for the secrets store (and serves its JWKS).
WORKLOAD_IDENTITY_SINCE = (1, 7)
# Nomad <= 1.6's legacy integration: the token role its servers create task tokens from, and
# the policy of Nomad's own token (both as Nomad's documentation has them).
LEGACY_TOKEN_ROLE = "nomad-cluster"  # noqa: S105 - a role name, not a token
LEGACY_SERVER_POLICY = "nomad-server"


def state_dir() -> Path:
    default = Path(tempfile.gettempdir()) / f"arbfleet-stack-{os.getuid()}"
    return Path(os.environ.get("ARBFLEET_STACK_DIR", default))


@dataclass(frozen=True)
class Ports:
    """Every port the stack binds; ``offset`` shifts them all, for a second stack beside one."""

    offset: int = 0

    def _at(self, port: int) -> int:
        return port + self.offset

    @property
    def consul(self) -> dict[str, int]:
        names = ("http", "grpc", "grpc-tls", "dns", "server", "serf-lan", "serf-wan")
        return {
            name: self._at(port)
            for name, port in zip(names, (8500, 8502, 8503, 8600, 8300, 8301, 8302), strict=True)
        }

    @property
    def vault(self) -> int:
        return self._at(8200)

    @property
    def nomad(self) -> tuple[int, int, int]:
        return (self._at(4646), self._at(4647), self._at(4648))

    @property
    def postgres(self) -> int:
        return self._at(15432)

    @property
    def redis(self) -> int:
        return self._at(16379)


def default_ports() -> Ports:
    return Ports(offset=int(os.environ.get("ARBFLEET_STACK_PORT_OFFSET", "0")))


@dataclass(frozen=True)
class Endpoints:
    """Where the running stack answers, and where its secrets are kept."""

    consul: str
    vault: str
    nomad: str
    postgres_dsn_file: Path
    redis_url: str
    vault_token_file: Path

    def vault_token(self) -> str:
        return self.vault_token_file.read_text().strip()

    def postgres_dsn(self) -> str:
        return self.postgres_dsn_file.read_text().strip()

    def env(self) -> dict[str, str]:
        """The variables the HashiCorp CLIs and Arbfleet read (no secret values)."""
        return {
            "CONSUL_HTTP_ADDR": self.consul,
            "VAULT_ADDR": self.vault,
            "NOMAD_ADDR": self.nomad,
            "ARBFLEET_REDIS_URL": self.redis_url,
            "ARBFLEET_POSTGRES_DSN_FILE": str(self.postgres_dsn_file),
            "ARBFLEET_VAULT_TOKEN_FILE": str(self.vault_token_file),
        }


def endpoints(ports: Ports | None = None) -> Endpoints:
    ports = ports or default_ports()
    root = state_dir()
    return Endpoints(
        consul=f"http://{HOST}:{ports.consul['http']}",
        vault=f"http://{HOST}:{ports.vault}",
        nomad=f"http://{HOST}:{ports.nomad[0]}",
        postgres_dsn_file=root / "secrets" / "postgres.dsn",
        redis_url=f"redis://{HOST}:{ports.redis}/0",
        vault_token_file=root / "secrets" / "vault-root-token",
    )


def nomad_version() -> tuple[int, ...]:
    """The version of the toolchain's Nomad (the one ``up`` runs)."""
    found = toolchain.installed_version(toolchain.bin_dir() / "nomad")
    if found is None:
        raise StackError("nomad is not installed: run `nox -s toolchain`")
    return tuple(int(part) for part in found.split("."))


def vault_identity() -> str:
    """How the local Nomad gives tasks their secrets-store token: the ``vault_identity`` value
    of the job specs (infra/nomad/), decided by the Nomad the stack runs."""
    if nomad_version()[:2] >= WORKLOAD_IDENTITY_SINCE:
        return "workload_identity"
    return "legacy_token"


def jwt_signing_key_file() -> Path:
    """The stack's own JWT signing key (PEM, mode 0600): the JWT auth method trusts it, so tests
    log in with JWTs shaped like Nomad's workload identities (Nomad 1.6.1 signs none)."""
    return state_dir() / "secrets" / "jwt-signing-key.pem"


@dataclass
class Service:
    """One process of the stack: how to start it and how to know it is healthy."""

    name: str
    ports: tuple[int, ...]
    argv: Callable[[], list[str]]
    healthy: Callable[[], bool]
    prepare: Callable[[], None] = lambda: None
    run_as: str | None = None
    env: Callable[[], dict[str, str]] = dict

    @property
    def pid_file(self) -> Path:
        return state_dir() / "run" / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return state_dir() / "log" / f"{self.name}.log"

    def pid(self) -> int | None:
        """The pid from the pid file if that process is still alive and still ours, else None.

        A pid file can outlive its process (a reboot, a killed session) and the pid be reused by
        an unrelated process: only a process running this service's executable counts.
        """
        try:
            pid = int(self.pid_file.read_text())
        except (OSError, ValueError):
            return None
        return pid if pid_alive(pid) and self._runs_executable(pid) else None

    def _runs_executable(self, pid: int) -> bool:
        try:
            # split on spaces too: redis-server rewrites its argv into one "name address" title
            words = Path(f"/proc/{pid}/cmdline").read_text(errors="replace").replace("\0", " ")
        except OSError:
            return False
        executable = Path(self.argv()[0]).name
        return any(Path(word).name == executable for word in words.split())


Say = Callable[[str], None]


def _say(message: str) -> None:
    print(f"[stack] {message}", flush=True)


# --- health probes -------------------------------------------------------------------------


def http_ok(url: str, token: str | None = None) -> bool:
    request = urllib.request.Request(url, headers={"X-Vault-Token": token} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            return bool(200 <= response.status < 300)
    except (OSError, urllib.error.HTTPError):
        return False


def http_json(url: str, method: str = "GET", body: object = None, token: str | None = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    if token:
        headers["X-Vault-Token"] = token
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            raw = response.read()
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")
        raise StackError(f"{method} {url} failed: HTTP {exc.code} {detail}") from exc
    return json.loads(raw) if raw else None


def _nomad_node_ready(ep: Endpoints) -> bool:
    if not http_ok(f"{ep.nomad}/v1/agent/health"):
        return False
    try:
        nodes = http_json(f"{ep.nomad}/v1/nodes")
    except (StackError, OSError):
        return False
    return isinstance(nodes, list) and any(n.get("Status") == "ready" for n in nodes)


def _consul_leader(ep: Endpoints) -> bool:
    try:
        return bool(http_json(f"{ep.consul}/v1/status/leader"))
    except (StackError, OSError):
        return False


def _redis_pong(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=1) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _pg_ready(port: int) -> bool:
    isready = _pg_bin() / "pg_isready"
    proc = subprocess.run(
        [str(isready), "-h", HOST, "-p", str(port), "-q"], check=False, capture_output=True
    )
    return proc.returncode == 0


# --- processes and ports -------------------------------------------------------------------


def pid_alive(pid: int) -> bool:
    """True while ``pid`` runs; a zombie (exited, not yet reaped by its parent) counts as gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(") ", 1)[1].startswith("Z"))


def port_owner(port: int) -> str | None:
    """``"pid N (cmdline)"`` of the process listening on ``port``, "unknown" or None if free."""
    inodes = _listening_inodes(port)
    if not inodes:
        with contextlib.closing(socket.socket()) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((HOST, port))
            except OSError:
                return "an unknown process"
        return None
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in (proc / "fd").iterdir():
                if os.readlink(fd) in inodes:
                    cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
                    return f"pid {proc.name} ({cmdline[:120]})"
    return "an unknown process"


def _listening_inodes(port: int) -> set[str]:
    found: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6", "/proc/net/udp", "/proc/net/udp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                cols = line.split()
                local_port = int(cols[1].rsplit(":", 1)[1], 16)
                listening = cols[3] == "0A" or table.startswith("/proc/net/udp")
                if local_port == port and listening:
                    found.add(f"socket:[{cols[9]}]")
    return found


def _spawn(service: Service) -> int:
    service.log_file.parent.mkdir(parents=True, exist_ok=True)
    service.pid_file.parent.mkdir(parents=True, exist_ok=True)
    argv = service.argv()
    if service.run_as and os.getuid() == 0:
        argv = ["runuser", "-u", service.run_as, "--", *argv]
    log = service.log_file.open("ab")
    proc = subprocess.Popen(
        argv,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        cwd=state_dir(),
        env=toolchain.tool_env(dict(os.environ, **service.env())),
        start_new_session=True,  # own process group: `down` signals the whole group
    )
    service.pid_file.write_text(str(proc.pid))
    return proc.pid


def _stop_pid(pid: int, name: str, say: Say) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while pid_alive(pid) and time.monotonic() < deadline:
        _reap(pid)
        time.sleep(0.2)
    if pid_alive(pid):
        say(f"{name} (pid {pid}) did not stop in {STOP_TIMEOUT_S:.0f} s: killing it")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    _reap(pid)


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def stray_processes() -> list[int]:
    """Processes still running out of the state directory (Nomad tasks, forked daemons)."""
    root = str(state_dir())
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            cwd = os.readlink(proc / "cwd")
            if root in cmdline or cwd.startswith(root):
                found.append(int(proc.name))
    return found


# --- installation on demand ----------------------------------------------------------------


def _pg_bin() -> Path:
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name))
    if not versions:
        raise StackError("PostgreSQL is not installed (apt-get install postgresql)")
    return versions[-1]


def ensure_packages(say: Say) -> None:
    """Install Debian's redis-server and postgresql when absent, without starting them."""
    missing = sorted({pkg for binary, pkg in APT_PACKAGES.items() if not _have(binary)})
    if not missing:
        return
    if os.getuid() != 0 or shutil.which("apt-get") is None:
        raise StackError(f"missing packages {missing}: install them (apt-get install {missing})")
    say(f"installing {' '.join(missing)} from Debian's packages")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    policy = Path("/usr/sbin/policy-rc.d")
    had_policy = policy.exists()
    if not had_policy:  # keep the packages' own init scripts from starting system services
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
    try:
        subprocess.run(["apt-get", "update", "-qq"], env=env, check=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", *missing], env=env, check=True)
    finally:
        if not had_policy:
            policy.unlink()


def _have(binary: str) -> bool:
    if binary == "postgres":
        return any(Path("/usr/lib/postgresql").glob("*/bin/postgres"))
    if binary == "pg_partman":  # an extension, not a program
        return any(Path("/usr/share/postgresql").glob("*/extension/pg_partman.control"))
    if binary == "python3-consul":  # a library of the system's Python, which runs Patroni
        return Path("/usr/lib/python3/dist-packages/consul").is_dir()
    return shutil.which(binary) is not None


# --- the services --------------------------------------------------------------------------


def _write_secret(path: Path, value: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(value + "\n")
    path.chmod(0o600)


def _nomad_config(ports: Ports, ep: Endpoints) -> str:
    data = state_dir() / "nomad"
    return f"""
data_dir  = "{data}"
bind_addr = "{HOST}"
ports {{
  http = {ports.nomad[0]}
  rpc  = {ports.nomad[1]}
  serf = {ports.nomad[2]}
}}
client {{
  enabled = true
  # Not a cloud VM: probing metadata services only slows the start (and the AWS one fails
  # outright when AWS_CA_BUNDLE is set, as on CI machines).
  options = {{
    "fingerprint.denylist" = "env_aws,env_gce,env_azure,env_digitalocean"
  }}
  host_volume "arbfleet-data" {{
    path      = "{state_dir() / "volumes"}"
    read_only = false
  }}
}}
plugin "raw_exec" {{
  config {{
    enabled = true
  }}
}}
consul {{
  address = "{ep.consul.removeprefix("http://")}"
}}
{_nomad_vault_block(ep)}"""


def _nomad_vault_block(ep: Endpoints) -> str:
    if vault_identity() == "workload_identity":
        # As in production: Nomad signs a JWT for each task and the store's JWT auth method at
        # {WI_AUTH_PATH}/ trusts Nomad's JWKS; no token is given to Nomad itself.
        return f"""
vault {{
  enabled               = true
  address               = "{ep.vault}"
  jwt_auth_backend_path = "{WI_AUTH_PATH}"
  default_identity {{
    aud = ["{WI_AUDIENCE}"]
    ttl = "1h"
  }}
}}
"""
    # Legacy integration: Nomad's own token (VAULT_TOKEN in its environment, never in a file it
    # reads) creates each task's token from the token role, with the policies the job names.
    return f"""
vault {{
  enabled          = true
  address          = "{ep.vault}"
  create_from_role = "{LEGACY_TOKEN_ROLE}"
}}
"""


def build_services(ports: Ports | None = None) -> list[Service]:
    ports = ports or default_ports()
    ep = endpoints(ports)
    root = state_dir()
    bins = toolchain.bin_dir()

    def prepare_vault() -> None:
        if not ep.vault_token_file.exists():
            # No "hvs."/"s." prefix: the store refuses a custom root token id like its own.
            _write_secret(ep.vault_token_file, f"dev-{secrets.token_urlsafe(24)}")

    def prepare_nomad() -> None:
        (root / "volumes").mkdir(parents=True, exist_ok=True)
        (root / "nomad.hcl").write_text(_nomad_config(ports, ep))
        configure_secrets_store(ep)

    def nomad_env() -> dict[str, str]:
        if vault_identity() == "workload_identity":
            return {}
        return {"VAULT_TOKEN": nomad_server_token_file().read_text().strip()}

    def prepare_postgres() -> None:
        _prepare_postgres(ports, ep)

    def prepare_redis() -> None:
        (root / "redis").mkdir(parents=True, exist_ok=True)

    return [
        Service(
            "consul",
            tuple(ports.consul.values()),
            lambda: [
                str(bins / "consul"),
                "agent",
                "-dev",
                "-bind",
                HOST,
                "-client",
                HOST,
                "-log-level",
                "warn",
                *(f"-{name}-port={port}" for name, port in ports.consul.items()),
            ],
            lambda: _consul_leader(ep),
        ),
        Service(
            "openbao",
            (ports.vault, ports.vault + 1),
            lambda: [
                # The binary itself (resolved link), so the pid file names the server's process.
                str((bins / "bao").resolve()),
                "server",
                "-dev",
                f"-dev-listen-address={HOST}:{ports.vault}",
                "-dev-no-store-token",
            ],
            lambda: http_ok(f"{ep.vault}/v1/sys/health"),
            prepare=prepare_vault,
            # through the environment, not argv: argv is world-readable in /proc
            # (VAULT_ for a HashiCorp Vault standing in, with ARBFLEET_TOOLCHAIN=path)
            env=lambda: {
                "BAO_DEV_ROOT_TOKEN_ID": ep.vault_token(),
                "VAULT_DEV_ROOT_TOKEN_ID": ep.vault_token(),
            },
        ),
        Service(
            "nomad",
            ports.nomad,
            lambda: [str(bins / "nomad"), "agent", "-dev", f"-config={root / 'nomad.hcl'}"],
            lambda: _nomad_node_ready(ep),
            prepare=prepare_nomad,
            env=nomad_env,
        ),
        Service(
            "postgres",
            (ports.postgres,),
            lambda: [
                str(_pg_bin() / "postgres"),
                "-D",
                str(root / "postgres" / "data"),
                "-h",
                HOST,
                "-p",
                str(ports.postgres),
                "-k",
                str(root / "postgres" / "socket"),
            ],
            lambda: _pg_ready(ports.postgres),
            prepare=prepare_postgres,
            run_as="postgres",
        ),
        Service(
            "redis",
            (ports.redis,),
            lambda: [
                "redis-server",
                "--bind",
                HOST,
                "--port",
                str(ports.redis),
                "--dir",
                str(root / "redis"),
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
                "--save",
                "",
                "--daemonize",
                "no",
            ],
            lambda: _redis_pong(ports.redis),
            prepare=prepare_redis,
        ),
    ]


def _prepare_postgres(ports: Ports, ep: Endpoints) -> None:
    base = state_dir() / "postgres"
    data = base / "data"
    if (data / "PG_VERSION").exists():
        return
    password = secrets.token_urlsafe(24)
    (base / "socket").mkdir(parents=True, exist_ok=True)
    pwfile = base / "pwfile"
    _write_secret(pwfile, password)
    if os.getuid() == 0:
        shutil.chown(base, "postgres", "postgres")
        for path in (base / "socket", pwfile):
            shutil.chown(path, "postgres", "postgres")
    initdb = [
        str(_pg_bin() / "initdb"),
        "-D",
        str(data),
        "-U",
        "postgres",
        "--auth=scram-sha-256",
        f"--pwfile={pwfile}",
        "--encoding=UTF8",
        "--no-sync",
    ]
    if os.getuid() == 0:
        initdb = ["runuser", "-u", "postgres", "--", *initdb]
    proc = subprocess.run(initdb, capture_output=True, text=True, check=False)
    pwfile.unlink()
    if proc.returncode != 0:
        raise StackError(f"initdb failed: {proc.stderr.strip()[-500:]}")
    _write_secret(
        ep.postgres_dsn_file, f"postgresql://postgres:{password}@{HOST}:{ports.postgres}/postgres"
    )


# --- commands ------------------------------------------------------------------------------


def _state_dir_ready() -> None:
    root = state_dir()
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o711)  # the postgres user must reach its own data directory inside
    if os.getuid() == 0:
        closed = [p for p in root.parents if not p.stat().st_mode & 0o001]
        if closed:
            raise StackError(
                f"state directory {root} is not reachable by the postgres user: {closed[0]} "
                f"is mode {closed[0].stat().st_mode & 0o777:o}; choose another ARBFLEET_STACK_DIR"
            )


def _check_ports(service: Service) -> None:
    for port in service.ports:
        owner = port_owner(port)
        if owner:
            raise PortInUseError(
                f"cannot start {service.name}: port {HOST}:{port} is already in use by {owner}"
            )


def _wait_healthy(service: Service, pid: int) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if service.healthy():
            return
        if not pid_alive(pid):
            tail = service.log_file.read_text(errors="replace").strip().splitlines()[-15:]
            raise StackError(f"{service.name} exited during start; log tail:\n" + "\n".join(tail))
        time.sleep(0.3)
    raise StackError(
        f"{service.name} not healthy after {START_TIMEOUT_S:.0f} s: see {service.log_file}"
    )


def up(say: Say = _say, ports: Ports | None = None) -> Endpoints:
    """Start every service that is not already running and healthy; configure Vault."""
    began = time.monotonic()
    _state_dir_ready()
    ensure_packages(say)
    present = toolchain.status()
    missing = [name for name in STACK_TOOLS if not present[name]]
    if missing:
        raise StackError(f"toolchain incomplete ({', '.join(missing)}): run `nox -s toolchain`")
    ep = endpoints(ports)
    started: list[Service] = []
    try:
        for service in build_services(ports):
            if service.name == "nomad" and any(s.name == "openbao" for s in started):
                # A new dev OpenBao knows nothing of the running Nomad's token and roles.
                _stop(service, say)
            if _start(service, say):
                started.append(service)
    except BaseException:
        for service in reversed(started):  # a failed `up` leaves nothing of its own running
            _stop(service, say)
        raise
    say(f"healthy in {time.monotonic() - began:.1f} s")
    for key, value in ep.env().items():
        say(f"  {key}={value}")
    return ep


def _start(service: Service, say: Say) -> bool:
    """Start ``service`` unless it already runs healthy; True if this call started it."""
    pid = service.pid()
    if pid and service.healthy():
        say(f"{service.name}: already running (pid {pid})")
        return False
    if pid:
        _stop_pid(pid, service.name, say)
    _check_ports(service)
    service.prepare()
    pid = _spawn(service)
    try:
        _wait_healthy(service, pid)
    except StackError:
        _stop(service, say)
        raise
    say(f"{service.name}: running (pid {pid})")
    return True


def _stop(service: Service, say: Say) -> None:
    pid = service.pid()
    if pid:
        _stop_pid(pid, service.name, say)
        say(f"{service.name}: stopped (pid {pid})")
    service.pid_file.unlink(missing_ok=True)


def down(say: Say = _say) -> None:
    """Stop exactly what ``up`` started, in reverse order, and any task it left behind."""
    services = build_services()
    nomad = next(s for s in services if s.name == "nomad")
    if nomad.pid():
        _stop_nomad_jobs(endpoints(), say)
    for service in reversed(services):
        _stop(service, say)
    for pid in stray_processes():
        say(f"stopping leftover process {pid}")
        _stop_pid(pid, f"pid {pid}", say)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _stop_nomad_jobs(ep: Endpoints, say: Say) -> None:
    try:
        jobs = http_json(f"{ep.nomad}/v1/jobs")
    except (StackError, OSError):
        return
    for job in jobs if isinstance(jobs, list) else []:
        if job.get("Status") != "dead":
            say(f"stopping nomad job {job['ID']}")
            with contextlib.suppress(StackError, OSError):
                http_json(f"{ep.nomad}/v1/job/{job['ID']}?purge=true", method="DELETE")
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while time.monotonic() < deadline:
        allocs = http_json(f"{ep.nomad}/v1/allocations")
        if not any(a.get("ClientStatus") == "running" for a in allocs or []):
            return
        time.sleep(0.5)


def status() -> dict[str, str]:
    """Each service's state: ``running (pid N, healthy)``, ``running (pid N, unhealthy)``,
    or ``stopped``."""
    result = {}
    for service in build_services():
        pid = service.pid()
        if pid is None:
            result[service.name] = "stopped"
        else:
            health = "healthy" if service.healthy() else "unhealthy"
            result[service.name] = f"running (pid {pid}, {health})"
    return result


def nomad_server_token_file() -> Path:
    return state_dir() / "secrets" / "nomad-vault-token"


def configure_secrets_store(ep: Endpoints) -> None:
    """What Nomad needs from the secrets store before it starts, for its generation; and the
    workload-identity auth method either way. Idempotent (every call writes the desired state)."""
    configure_workload_identity(ep)
    if vault_identity() == "legacy_token":
        configure_legacy_integration(ep)


def vault_api(ep: Endpoints) -> HttpApi:
    """The stack's secrets store, with its root token, for the platform applier."""
    return HttpApi("vault", ep.vault, ep.vault_token())


def configure_workload_identity(ep: Endpoints) -> None:
    """The store trusts workload identities: JWT auth, one role with a templated per-job policy
    (``arbfleet platform apply``'s resources, as production gets them).

    With Nomad 1.7+ the keys are Nomad's (its JWKS); with an older Nomad, which signs none, the
    stack's own key (``jwt_signing_key_file``), so the same role and policy are still tested
    with JWTs shaped like Nomad's.
    """
    api = vault_api(ep)
    apply(lambda _service: api, desired.workload_identity(Layout(), workload_identity_keys(ep)))


def workload_identity_keys(ep: Endpoints) -> dict[str, Any]:
    """What the store's JWT auth trusts here: Nomad's JWKS, or the stack's own key."""
    if vault_identity() == "workload_identity":
        return {"jwks_url": f"{ep.nomad}/.well-known/jwks.json"}
    return {"jwt_validation_pubkeys": [_jwt_public_key()]}


def _jwt_public_key() -> str:
    """The public half of the stack's JWT signing key, made on first use (openssl, RSA 2048)."""
    key = jwt_signing_key_file()
    if not key.exists():
        key.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        pem = subprocess.run(
            ["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
            capture_output=True,
            check=True,
        ).stdout.decode()
        _write_secret(key, pem.strip())
    public = subprocess.run(
        ["openssl", "pkey", "-in", str(key), "-pubout"], capture_output=True, check=True
    )
    return public.stdout.decode().strip()  # as the store keeps it, so a re-apply finds no change


def configure_legacy_integration(ep: Endpoints) -> None:
    """Nomad <= 1.6: the token role Nomad creates task tokens from, and Nomad's own token.

    The role may grant any policy but Nomad's own; a job names its policies (``vault_policies``)
    and ``legacy_vault_policies`` gives the same ones the job's workload-identity role would.
    """
    role = {
        "disallowed_policies": [LEGACY_SERVER_POLICY],
        "orphan": True,
        "token_period": 72 * 3600,
        "renewable": True,
        "token_explicit_max_ttl": 0,
    }
    api = vault_api(ep)
    apply(
        lambda _service: api,
        [
            desired.vault_policy(LEGACY_SERVER_POLICY, legacy_server_policy()),
            desired.token_role(LEGACY_TOKEN_ROLE, role),
        ],
    )
    token = ep.vault_token()
    if nomad_server_token_file().exists() and _token_valid(ep, nomad_server_token_file()):
        return
    created = http_json(
        f"{ep.vault}/v1/auth/token/create-orphan",
        "POST",
        {"policies": [LEGACY_SERVER_POLICY], "period": "72h", "display_name": "nomad-server"},
        token,
    )
    _write_secret(nomad_server_token_file(), created["auth"]["client_token"])


def _token_valid(ep: Endpoints, token_file: Path) -> bool:
    return http_ok(f"{ep.vault}/v1/auth/token/lookup-self", token_file.read_text().strip())


def legacy_server_policy() -> str:
    """Nomad's servers: create task tokens from the role, and look up, renew and revoke them."""
    rules = {
        f"auth/token/create/{LEGACY_TOKEN_ROLE}": "update",
        f"auth/token/roles/{LEGACY_TOKEN_ROLE}": "read",
        "auth/token/lookup-self": "read",
        "auth/token/lookup": "update",
        "auth/token/revoke-accessor": "update",
        "sys/capabilities-self": "update",
        "auth/token/renew-self": "update",
    }
    return "".join(
        f'path "{path}" {{\n  capabilities = ["{cap}"]\n}}\n' for path, cap in rules.items()
    )


def legacy_vault_policies(job_id: str) -> list[str]:
    """The policies a job's legacy token gets: those the workload-identity role bound to its
    job id grants (``arbfleet secrets apply`` makes one per deployment), else the generic role's.

    The generic role's policy is templated on the identity's claims, which a legacy token lacks:
    the job gets a policy of its own with the same paths for its job id, made here (in any
    namespace: Nomad 1.6's tokens say nothing of the job's namespace either).
    """
    api = vault_api(endpoints())
    try:
        listing = api("LIST", f"/v1/auth/{WI_AUTH_PATH}/role")
    except Absent:  # no role yet
        listing = None
    for role in (listing or {}).get("data", {}).get("keys", []):
        spec = api("GET", f"/v1/auth/{WI_AUTH_PATH}/role/{role}")["data"]
        if (spec.get("bound_claims") or {}).get("nomad_job_id") == job_id:
            return list(spec["token_policies"])
    name = f"{WI_ROLE}-{job_id}"
    policy = desired.workload_policy_for(namespace="+", job_id=job_id)
    apply(lambda _service: api, [desired.vault_policy(name, policy)])
    return [name]
