"""infra/terraform/ with the toolchain's OpenTofu (``toolchain.terraform_program()``: ``tofu``, or a
Terraform 1.10+ with ``ARBFLEET_TERRAFORM=terraform``) and the offline provider mirror:
formatting, validation of every directory (each needs only providers this machine has), the
modules' ``tofu test`` files (the cluster module's with a mocked Hetzner provider), and the
cloud-init bootstrap applied to a scratch root with the toolchain's agent binaries. Terraform
provisions servers only: platform state is the platform applier's (docs/adr/0005).

Our HCL is written for Terraform 1.10+ and OpenTofu 1.10+; only OpenTofu runs here, so what
Terraform alone would reject is kept out by a check of the sources (constructs only one of the
two CLIs accepts) besides the required_version of every root and module.

The CLI writes .terraform/ and lock files where it runs, so everything runs in a copy of
infra/terraform and infra/nomad (sources and test fixtures are relative paths, so the copy works
as the original).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from runtime.devstack import cloudinit, toolchain
from tests.infra import cloud_init_root as cir

TF_ROOT = cir.REPO / "infra" / "terraform"
# The providers this machine has (docs/toolchain.md): the built-in one (Terraform's and
# OpenTofu's, same address), and in the offline mirror only Hetzner's, which builds from Go
# modules; nomad, consul and vault are download-only.
OFFLINE_PROVIDERS = {"hetznercloud/hcloud", "terraform.io/builtin/terraform"}
# Directories with a versions.tf that cannot be validated here, because they need a provider
# the mirror lacks. Written out so the list cannot grow unnoticed: none since the platform module
# went (docs/adr/0005).
NOT_VALIDATED: set[str] = set()
# The configurations tests/integration/test_stack.py applies against the local stack.
INTEGRATION_CONFIGS = sorted(
    p.parent for p in (cir.REPO / "tests/integration/terraform").glob("*/main.tf")
)
# Stand-in ids for the users cloud-init creates (this machine has no consul or vault user).
IDS = {"root": 0, "consul": 60001, "vault": 60002}

VERSIONS_DIRS = sorted(
    str(p.parent.relative_to(TF_ROOT))
    for p in TF_ROOT.rglob("versions.tf")
    if ".terraform" not in p.parts
)


def providers(directory: str) -> set[str]:
    text = (TF_ROOT / directory / "versions.tf").read_text()
    return set(re.findall(r'source\s*=\s*"([^"]+)"', text))


VALIDATED = [d for d in VERSIONS_DIRS if providers(d) <= OFFLINE_PROVIDERS]
TESTED = sorted(
    str(p.parent.parent.relative_to(TF_ROOT)) for p in TF_ROOT.glob("**/tests/*.tftest.hcl")
)


def terraform(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    program = toolchain.terraform_program()
    proc = subprocess.run(
        [program, *args],
        cwd=cwd,
        env=toolchain.tool_env(),
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    if check:
        assert proc.returncode == 0, f"{program} {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def tf_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    infra = tmp_path_factory.mktemp("infra") / "infra"
    ignore = shutil.ignore_patterns(".terraform", "*.tfstate*")
    shutil.copytree(TF_ROOT, infra / "terraform", ignore=ignore)
    shutil.copytree(TF_ROOT.parent / "nomad", infra / "nomad")
    return infra / "terraform"


def test_formatted() -> None:
    proc = terraform(TF_ROOT, "fmt", "-check", "-recursive", "-diff", "-no-color", check=False)
    assert proc.returncode == 0, (
        f"not `{toolchain.terraform_program()} fmt`-formatted:\n{proc.stdout}"
    )


def test_directories_not_validated_are_exactly_those_needing_unavailable_providers() -> None:
    skipped = {d for d in VERSIONS_DIRS if d not in VALIDATED}
    assert skipped == NOT_VALIDATED
    for directory in skipped:
        assert providers(directory) - OFFLINE_PROVIDERS, f"{directory} could be validated here"


def test_discovery_finds_the_offline_directories() -> None:
    # Guards the globs themselves: one that found nothing would validate or test nothing.
    assert {
        "envs/production/cluster",
        "modules/cluster",
        "modules/cluster/examples/basic",
        "modules/cluster/modules/cloud-init",
    } <= set(VALIDATED)
    assert TESTED == ["modules/cluster"]


def test_runs_opentofu_at_the_pin_unless_told_otherwise() -> None:
    """The suite runs the toolchain's OpenTofu, a release build at the pin (not ``-dev``); with
    ``ARBFLEET_TERRAFORM=terraform`` the Terraform on PATH, which must be 1.10 or newer."""
    version = json.loads(terraform(TF_ROOT, "version", "-json").stdout)["terraform_version"]
    assert tuple(int(x) for x in version.split(".")[:2]) >= (1, 10), version
    first_line = terraform(TF_ROOT, "version").stdout.splitlines()[0]
    if toolchain.terraform_program() == "tofu":
        pin = next(t.version for t in toolchain.load_manifest().tools if t.name == "tofu")
        assert first_line == f"OpenTofu v{pin}"


def test_every_root_and_module_requires_terraform_or_opentofu_1_10() -> None:
    """One constraint both CLIs read alike: Terraform and OpenTofu 1.10+ (S3 lock file,
    mock_provider, provider-defined functions); the tests run OpenTofu, see the README."""
    dirs = {p.parent for p in TF_ROOT.rglob("*.tf") if ".terraform" not in p.parts}
    assert {str(d.relative_to(TF_ROOT)) for d in dirs} == set(VERSIONS_DIRS)
    for directory in [*(TF_ROOT / d for d in VERSIONS_DIRS), *INTEGRATION_CONFIGS]:
        text = "".join(p.read_text() for p in directory.glob("*.tf"))
        found = re.findall(r'required_version\s*=\s*"([^"]+)"', text)
        assert found == [">= 1.10"], f"{directory}: {found}"


# Constructs only one of the two CLIs accepts (within >= 1.10). Only OpenTofu runs here, so a
# Terraform-only one would pass unnoticed; an OpenTofu-only one breaks Terraform users.
ONE_CLI_ONLY = {
    r"\boverride_during\b": "Terraform 1.11+ only; `tofu test` rejects the whole file",
    r"^\s*ephemeral\b": "Terraform 1.10+, OpenTofu only from 1.11 (ephemeral values)",
    r'^action\s+"': "Terraform only (actions)",
    r"^\s*encryption\s*\{": "OpenTofu only (state encryption)",
    r'^provider\s+"[^"]*"\s*\{[^}]*^\s*for_each\s*=': "OpenTofu only (provider for_each)",
}
ONE_CLI_ONLY_FILES = ("*.tofu", "*.tofutest.hcl", "*.tfquery.hcl")  # read by one CLI only


def without_comments(hcl: str) -> str:
    return "\n".join(line for line in hcl.splitlines() if not line.lstrip().startswith(("#", "//")))


def test_no_construct_only_one_cli_accepts() -> None:
    roots = [TF_ROOT, *INTEGRATION_CONFIGS]
    sources = [
        p
        for root in roots
        for pattern in ("*.tf", "*.tftest.hcl")
        for p in root.rglob(pattern)
        if ".terraform" not in p.parts
    ]
    assert len(sources) > 15  # the cluster module, its example and root (the platform module went)
    found = [
        f"{p.relative_to(cir.REPO)}: {why}"
        for p in sources
        for pattern, why in ONE_CLI_ONLY.items()
        if re.search(pattern, without_comments(p.read_text()), re.M)
    ]
    found += [
        f"{p.relative_to(cir.REPO)}: read by one CLI only"
        for root in roots
        for pattern in ONE_CLI_ONLY_FILES
        for p in root.rglob(pattern)
    ]
    assert found == []


@pytest.mark.parametrize("directory", VALIDATED)
def test_validate(tf_copy: Path, directory: str) -> None:
    workdir = tf_copy / directory
    terraform(workdir, "init", "-input=false", "-backend=false", "-no-color")
    proc = terraform(workdir, "validate", "-no-color")
    assert "The configuration is valid." in proc.stdout


@pytest.mark.parametrize("directory", TESTED)
def test_terraform_test(tf_copy: Path, directory: str) -> None:
    module = tf_copy / directory
    runs = sum(
        len(re.findall(r'^run "', p.read_text(), re.M)) for p in module.glob("tests/*.tftest.hcl")
    )
    terraform(module, "init", "-input=false", "-backend=false", "-no-color")
    proc = terraform(module, "test", "-no-color", check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # Every run block ran and passed (none skipped after an earlier failure).
    assert runs > 0
    assert f"Success! {runs} passed, 0 failed." in proc.stdout


# --- cloud-init bootstrap ------------------------------------------------------------------


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    return cir.render(tmp_path_factory.mktemp("cloud-init"))


@pytest.mark.parametrize("kind", sorted(cir.KINDS))
def test_bootstrap_produces_expected_files(
    rendered: dict[str, dict[str, Any]], kind: str, tmp_path: Path
) -> None:
    bootstrap = rendered[kind]["bootstrap"]
    expected = cir.expected()[kind]
    root = tmp_path / "root"
    cir.apply(bootstrap, root, IDS)
    cir.install_agents(bootstrap, root)
    cir.push_keys(rendered[kind], root, IDS)
    try:
        found = cir.tree(root, IDS)
    finally:
        shutil.rmtree(root)  # the agent binaries are large
    assert bootstrap["users"] == expected["users"]
    assert {p: found.get(p) for p in expected["paths"]} == expected["paths"]
    # Anything else is a parent directory cloud-init made on the way: root's and 0755.
    extra = {p: v for p, v in found.items() if p not in expected["paths"]}
    assert all(
        v == {"owner": "root", "group": "root", "mode": "0755", "type": "directory"}
        for v in extra.values()
    ), extra


@pytest.mark.parametrize("kind", sorted(cir.KINDS))
def test_runcmd_sets_up_the_directories_applied(
    rendered: dict[str, dict[str, Any]], kind: str
) -> None:
    bootstrap = rendered[kind]["bootstrap"]
    installs = [c for c in bootstrap["runcmd"] if c.startswith("install -d ")]
    assert installs == [
        f"install -d -o {d['owner']} -g {d['group']} -m {d['mode']} {d['path']}"
        for d in bootstrap["directories"]
    ]
    assert bootstrap["runcmd"][-1] == f"systemctl enable {' '.join(rendered[kind]['services'])}"


@pytest.mark.parametrize("kind", sorted(cir.KINDS))
def test_agent_configs_pass_the_agents_validation(
    rendered: dict[str, dict[str, Any]], kind: str, tmp_path: Path
) -> None:
    """The pinned consul and nomad parse the rendered configs (a misspelt key or a wrong type in
    a template fails here, not at first boot); absolute paths are moved under the scratch root."""
    root = tmp_path / "root"
    cir.apply(rendered[kind]["bootstrap"], root, IDS)
    cir.push_keys(rendered[kind], root, IDS)
    for agent in ("consul", "nomad"):
        config = root / f"etc/{agent}.d/{agent}.hcl"
        config.write_text(cloudinit.rebase(config.read_text(), root))
    env = toolchain.tool_env()
    for argv in (["consul", "validate"], ["nomad", "config", "validate"]):
        config_dir = root / f"etc/{argv[0]}.d"
        proc = subprocess.run(
            [*argv, str(config_dir)], env=env, capture_output=True, text=True, check=False
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "Configuration is valid!" in proc.stdout


def test_secrets_are_not_world_readable(rendered: dict[str, dict[str, Any]]) -> None:
    for outputs in rendered.values():
        for f in outputs["bootstrap"]["files"] + outputs["key_files"]:
            if f["path"].endswith("-key.pem") or f["path"].endswith(".hcl"):
                assert int(f["mode"], 8) & 0o007 == 0, f["path"]


@pytest.mark.parametrize("kind", sorted(cir.KINDS))
def test_user_data_holds_no_private_key_and_no_gossip_key(
    rendered: dict[str, dict[str, Any]], kind: str
) -> None:
    """What a cloud's metadata service can hand back is the cloud-config itself: no private
    key and no gossip key in it; they reach the node after boot (runtime.ops.node_keys)."""
    user_data = rendered[kind]["user_data"]
    assert user_data.startswith("#cloud-config\n")
    assert not re.search(r"-----BEGIN [A-Z ]*PRIVATE KEY-----", user_data)
    assert cir.GOSSIP not in user_data
    # Any gossip key (32 bytes in base64), and the setting the agents take it in.
    assert not re.search(r"[A-Za-z0-9+/]{43}=", user_data)
    assert not re.search(r"\bencrypt\s*=", user_data)
    # ... while the key push has both to write.
    secrets = {f["secret"] for f in rendered[kind]["key_files"]}
    assert {"consul-gossip.key", f"{cir.KINDS[kind]['role']}-key.pem"} <= secrets
