"""Audit stage: the licence verdict of a source tree or package, and where it may go.

Per file, the licence comes from (in this order) Debian's ``licensecheck``, the texts
licensecheck does not name (fingerprints in ``data/licenses.toml``), the maintainer's
DEP-5 ``debian/copyright``, the nearest LICENSE/COPYING file, and package-wide
declarations (a wheel's METADATA, an unpacked .deb's copyright file). Every licence is
normalised to an SPDX expression and classified with the table in ``data/licenses.toml``;
what the table does not know is "unknown" and needs a human, never silently free.

The archive area follows Debian Policy 2.2: main (all free, needs nothing outside main),
contrib (free, needs something outside main), non-free (not DFSG-free but may be
redistributed), and local-only (may not be redistributed at all: build it on the
user's machine from the recipe, never publish the .deb).
"""

from __future__ import annotations

import email.parser
import functools
import json
import os
import re
import shutil
import stat
import tempfile
import tomllib
import zipfile
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from debian.copyright import Copyright, FilesParagraph, License, LicenseParagraph
from debian.deb822 import Deb822, PkgRelation
from license_expression import ExpressionError, get_spdx_licensing

from deepdeb.errors import DeepdebError
from deepdeb.recipe.load import Recipe, load_recipe
from deepdeb.sources.fetch import SourcePackage, obtain, unpack
from deepdeb.util import run
from deepdeb.wheel.read import open_wheel

SEVERITY = ("free", "non-free", "unknown", "not-redistributable")
AREA_ORDER = ("main", "contrib", "non-free", "local-only")
_DECLARATION = re.compile(r"^(LICEN[CS]E|COPYING|COPYRIGHT)([._-].*)?$", re.I)
_CHUNKS = 8  # licensecheck runs per core
# Files per licensecheck run at least: starting its Perl costs 0.7 s, as much as reading
# a few hundred small files, so a small tree is one run, not one per file.
_MIN_CHUNK = 256


@dataclass(frozen=True)
class Fingerprint:
    scope: str  # "license" (licence-like files) or "header" (top of any file)
    pattern: re.Pattern[str]
    requires: re.Pattern[str] | None
    spdx: str


@dataclass(frozen=True)
class LicenseTable:
    classes: dict[str, tuple[str, str]]  # SPDX id -> (class, reason)
    debian: dict[str, str]  # Debian short name -> SPDX id
    fingerprints: list[Fingerprint]


@functools.cache
def table() -> LicenseTable:
    data = tomllib.loads(resources.files("deepdeb").joinpath("data/licenses.toml").read_text())
    return LicenseTable(
        classes={k: (v["class"], v["reason"]) for k, v in data["license"].items()},
        debian=dict(data["debian"]),
        fingerprints=[
            Fingerprint(
                f["scope"],
                re.compile(f["pattern"], re.I),
                re.compile(f["requires"], re.I) if "requires" in f else None,
                f["spdx"],
            )
            for f in data["fingerprint"]
        ],
    )


# --- expressions -------------------------------------------------------------------------


@functools.cache
def _licensing() -> Any:
    """license-expression's SPDX index (building it takes a while: once per process)."""
    return get_spdx_licensing()


@functools.lru_cache(maxsize=4096)
def normalise(text: str | None) -> str | None:
    """An SPDX expression from licensecheck's, DEP-5's or a metadata field's wording."""
    if not text or text.strip().upper() in ("UNKNOWN", "NONE", "GENERATED FILE"):
        return None
    expr = text.strip()
    expr = re.sub(r"\s+and/or\s+|\s+or\s+", " OR ", expr)
    expr = re.sub(r"\s+and\s+", " AND ", expr)
    expr = re.sub(r",\s*", " AND ", expr)
    names = table().debian
    expr = " ".join(names.get(token, token) for token in expr.split())
    try:
        return str(_licensing().parse(expr).render())
    except ExpressionError:
        return None


@functools.lru_cache(maxsize=4096)
def classify(expression: str | None) -> tuple[str, str]:
    """(class, reason) of an SPDX expression: OR takes the best choice, AND the worst."""
    if expression is None:
        return "unknown", "no licence found: needs human review"
    try:
        parsed = _licensing().parse(expression)
    except ExpressionError:
        return "unknown", f"cannot parse {expression!r}: needs human review"
    return _evaluate(parsed)


def _evaluate(node: Any) -> tuple[str, str]:
    name = type(node).__name__
    if name in ("AND", "OR"):
        parts = [_evaluate(arg) for arg in node.args]
        pick = max if name == "AND" else min
        return pick(parts, key=lambda p: SEVERITY.index(p[0]))
    if name == "LicenseWithExceptionSymbol":
        # An exception only adds permissions (Autoconf, GCC runtime, ...): the licence
        # it is attached to decides.
        return _evaluate(node.license_symbol)
    key = str(getattr(node, "key", node))
    if key in table().classes:
        return table().classes[key]
    return "unknown", f"{key} is not in deepdeb's licence table: needs human review"


# --- scanning ----------------------------------------------------------------------------


@dataclass
class Finding:
    path: str
    spdx: str | None
    classification: str
    source: str  # licensecheck, fingerprint, debian-copyright, license-file, package
    copyright: str = ""
    reason: str = ""


_LICENSE_LIKE = re.compile(
    r"^(LICEN[CS]E|COPYING|COPYRIGHT|NOTICE|README|MODEL[_-]?CARD)([._-].*)?$", re.I
)


def _fingerprint(path: Path) -> str | None:
    """A licence licensecheck does not name, from the texts in the licence table."""
    license_like = _LICENSE_LIKE.match(path.name) is not None or (
        path.parent.name == "licenses" and path.parent.parent.name.endswith(".dist-info")
    )
    try:
        with open(path, "rb") as f:
            text = f.read(65536 if license_like else 4096).decode("utf-8", "replace")
    except OSError:
        return None
    for fp in table().fingerprints:
        if fp.scope == "license" and not license_like:
            continue
        match = fp.pattern.search(text)
        if match and (fp.requires is None or fp.requires.search(text)):
            return normalise(match.expand(r"\1") if fp.spdx == "$1" else fp.spdx)
    return None


def _licensecheck(root: Path, files: list[str]) -> dict[str, tuple[str | None, str]]:
    """licensecheck over the files, split across all cores (it is single-threaded Perl)."""
    cpus = os.cpu_count() or 1
    size = max(_MIN_CHUNK, -(-len(files) // (cpus * _CHUNKS)))
    chunks = [files[i : i + size] for i in range(0, len(files), size)]
    cmd = ["licensecheck", "--machine", "--copyright", "--shortname-scheme=spdx", "--check=."]

    def one(chunk: list[str]) -> str:
        proc = run([*cmd, "--", *chunk], cwd=root, check=False)
        if proc.returncode not in (0, 1) and not proc.stdout:
            raise DeepdebError(f"licensecheck failed: {proc.stderr.strip()[-500:]}")
        return proc.stdout

    results = {}
    with ThreadPoolExecutor(max_workers=cpus) as pool:
        for out in pool.map(one, chunks):
            for line in out.splitlines():
                parts = line.split("\t")
                if len(parts) >= 2:
                    holder = parts[2] if len(parts) > 2 and not parts[2].startswith("*No") else ""
                    results[os.path.normpath(parts[0])] = (normalise(parts[1]), holder)
    return results


def _dep5(path: Path) -> Copyright | None:
    try:
        with open(path, encoding="utf-8") as f:
            return Copyright(f, strict=False)
    except (OSError, ValueError, Exception):  # python-debian raises its own errors
        return None


def _dep5_license(copyright_: Copyright, rel: str) -> str | None:
    paragraph = copyright_.find_files_paragraph(rel)
    license_ = getattr(paragraph, "license", None) if paragraph is not None else None
    return normalise(getattr(license_, "synopsis", None)) if license_ is not None else None


def _metadata_license(path: Path) -> str | None:
    message = email.parser.Parser().parsestr(path.read_text(errors="replace"))
    for field_name in ("License-Expression", "License"):
        value = message.get(field_name)
        found = normalise(value) if value else None
        if found and classify(found)[0] != "unknown":
            return found
    return None


def _files(root: Path) -> list[str]:
    """Regular files below ``root`` (also through links that stay inside it): a FIFO, a
    device or a link to one would hang or flood the scan, and is no licence text."""
    found = []
    real_root = os.path.realpath(root)
    for directory, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if d not in (".git", ".svn", ".hg")]
        for name in names:
            path = os.path.join(directory, name)
            target = os.path.realpath(path)
            if os.path.commonpath([real_root, target]) != real_root:
                continue
            try:
                regular = stat.S_ISREG(os.stat(target).st_mode)
            except OSError:
                continue
            if regular:
                found.append(os.path.relpath(path, root))
    return sorted(found)


def _scancode(root: Path, files: list[str]) -> dict[str, tuple[str | None, str]]:
    """scancode-toolkit's detections (``--deep``): slower, but reads whole licence texts."""
    if shutil.which("scancode") is None:
        raise DeepdebError(
            "--deep needs scancode-toolkit, which is not installed (pip install "
            "scancode-toolkit); the default scan does not need it"
        )
    with tempfile.TemporaryDirectory(prefix="deepdeb-scancode-") as tmp:
        out = Path(tmp) / "scan.json"
        run(
            [
                "scancode",
                "--license",
                "--quiet",
                "--processes",
                str(os.cpu_count() or 1),
                "--json",
                out,
                root,
            ]
        )
        data = json.loads(out.read_text())
    found: dict[str, tuple[str | None, str]] = {}
    for entry in data.get("files", []):
        rel = os.path.relpath(os.path.join(os.path.dirname(str(root)), entry["path"]), root)
        expr = entry.get("detected_license_expression_spdx")
        if rel in files and expr:
            found[rel] = (normalise(expr), "")
    return found


def scan(root: Path, deep: bool = False) -> list[Finding]:
    """Per-file licence findings for every file under ``root``.

    ``deep`` adds scancode-toolkit's reading for what licensecheck leaves unknown.
    """
    root = root.resolve()
    files = _files(root)
    checked = _licensecheck(root, files)
    if deep:
        for rel, value in _scancode(root, files).items():
            if checked.get(rel, (None, ""))[0] is None:
                checked[rel] = (value[0], checked.get(rel, (None, ""))[1])
    declarations: dict[str, str] = {}  # directory -> expression of its LICENSE/COPYING
    package_wide: list[tuple[str, str]] = []  # (expression, where it comes from)
    source_dep5 = _dep5(root / "debian" / "copyright")
    for rel in files:
        name, directory = os.path.basename(rel), os.path.dirname(rel)
        if _DECLARATION.match(name):
            # A licence file is read as a whole: a known text (an EULA that quotes
            # third-party notices) beats licensecheck's reading of the notices in it.
            expr = _fingerprint(root / rel) or checked.get(rel, (None, ""))[0]
            if expr and directory not in declarations:
                declarations[directory] = expr
        if name == "METADATA" and directory.endswith(".dist-info"):
            expr = _metadata_license(root / rel)
            if expr:
                package_wide.append((expr, rel))
        if name == "copyright" and re.fullmatch(r"usr/share/doc/[^/]+", directory):
            dep5 = _dep5(root / rel)
            expr = _dep5_license(dep5, "*") if dep5 else None
            if expr:
                package_wide.append((expr, rel))
    findings = []
    for rel in files:
        expr, holder = checked.get(rel, (None, ""))
        source = "licensecheck"
        if _DECLARATION.match(os.path.basename(rel)) and (text := _fingerprint(root / rel)):
            expr, source = text, "fingerprint"
        if expr is None and (expr := _fingerprint(root / rel)):
            source = "fingerprint"
        if expr is None and source_dep5 is not None and (expr := _dep5_license(source_dep5, rel)):
            source = "debian-copyright"
        if expr is None:
            directory = os.path.dirname(rel)
            while True:
                if directory in declarations:
                    expr, source = declarations[directory], "license-file"
                    break
                if not directory:
                    break
                directory = os.path.dirname(directory)
        if expr is None and package_wide:
            expr, source = package_wide[0][0], "package"
        cls, reason = classify(expr)
        findings.append(Finding(rel, expr, cls, source if expr else "none", holder, reason))
    return findings


# --- models, datasets, dependencies ------------------------------------------------------

UNAVAILABLE = {"", "unknown", "private", "undisclosed", "none", "proprietary"}


@dataclass
class MlVerdict:
    kind: str  # "model" or "dataset"
    name: str
    license: str | None
    category: str  # Free Model / ToxicCandy / non-free; free dataset / non-free dataset
    classification: str
    missing: list[str] = field(default_factory=list)


def ml_verdict(kind: str, entry: dict[str, str]) -> MlVerdict:
    """Debian ML-Policy: Free Model needs a free licence, free and public training data,
    and the free training program; free licence without those is ToxicCandy."""
    license_ = normalise(entry.get("license"))
    cls, reason = classify(license_)
    name = entry.get("name", "?")
    if kind == "dataset":
        if cls == "free":
            return MlVerdict(kind, name, license_, "free dataset", "free")
        return MlVerdict(kind, name, license_, "non-free dataset", cls, [f"licence: {reason}"])
    if cls != "free":
        return MlVerdict(kind, name, license_, "non-free", cls, [f"licence: {reason}"])
    missing = []
    data = entry.get("training_data", "").strip()
    if data.lower() in UNAVAILABLE:
        missing.append(f"training data is not public (declared: {data or 'nothing'})")
    else:
        data_cls = classify(normalise(entry.get("training_data_license")))[0]
        if data_cls != "free":
            missing.append("training data licence is not free or not declared")
    if entry.get("training_program", "").strip().lower() in UNAVAILABLE:
        missing.append("training program is not available")
    if missing:
        return MlVerdict(kind, name, license_, "ToxicCandy", "non-free", missing)
    return MlVerdict(kind, name, license_, "Free Model", "free")


def package_areas(names: Iterable[str]) -> dict[str, str | None]:
    """Archive area of Debian binary packages (None: not in the archive)."""
    wanted = sorted(set(names))
    areas: dict[str, str | None] = dict.fromkeys(wanted)
    if not wanted:
        return areas
    areas.update(_sections(wanted))
    # Virtual packages (debhelper-compat, ...) have no record of their own: a virtual
    # package is as available as the best real package that provides it.
    for name in [n for n, a in areas.items() if a is None]:
        out = run(["apt-cache", "showpkg", name], check=False).stdout
        providers = re.findall(r"^(\S+) \S+", out.split("Reverse Provides:", 1)[-1], re.M)
        found = [a for a in _sections(providers).values() if a is not None] if providers else []
        if found:
            areas[name] = min(found, key=AREA_ORDER.index)
    return areas


def _sections(names: list[str]) -> dict[str, str | None]:
    if not names:
        return {}
    out = run(["apt-cache", "show", "--no-all-versions", *names], check=False).stdout
    areas: dict[str, str | None] = {}
    for para in Deb822.iter_paragraphs(out):
        section = para.get("Section", "")
        area = section.split("/", 1)[0] if "/" in section else "main"
        areas[para["Package"]] = "non-free" if area.startswith("non-free") else area
    return areas


def source_area(name: str, version: str) -> str | None:
    """The archive area of a Debian source package at this version, from apt's index."""
    out = run(["apt-cache", "showsrc", "--only-source", name], check=False).stdout
    for para in Deb822.iter_paragraphs(out):
        if para.get("Package") == name and para.get("Version") == version:
            section = para.get("Section", "")
            area = section.split("/", 1)[0] if "/" in section else "main"
            return "non-free" if area.startswith("non-free") else area
    return None


def control_dependencies(tree: Path) -> list[list[str]]:
    """Build-Depends and Depends of a Debian source tree, as lists of alternatives."""
    path = tree / "debian" / "control"
    if not path.is_file():
        return []
    own = set()
    relations: list[list[str]] = []
    paragraphs = list(Deb822.iter_paragraphs(path.read_text()))
    for para in paragraphs:
        if "Package" in para:
            own.add(para["Package"])
    for para in paragraphs:
        for field_name in ("Build-Depends", "Build-Depends-Arch", "Depends", "Pre-Depends"):
            value = re.sub(r"\([^)]*\$\{[^}]+\}[^)]*\)", "", para.get(field_name, ""))
            value = re.sub(r"\$\{[^}]+\}", "", value)  # substitution variables
            value = ", ".join(p.strip() for p in value.split(",") if p.strip())
            for alternatives in PkgRelation.parse_relations(value) if value else []:
                names = [a["name"] for a in alternatives if a["name"]]
                if names and not set(names) & own:
                    relations.append(names)
    return relations


# --- the verdict -------------------------------------------------------------------------


@dataclass
class Verdict:
    area: str
    redistributable: bool
    area_reasons: list[str]
    redistributable_reasons: list[str]
    files: list[Finding]
    ml: list[MlVerdict] = field(default_factory=list)
    dependencies: dict[str, str | None] = field(default_factory=dict)
    files_excluded: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "area": self.area,
            "redistributable": self.redistributable,
            "area_reasons": self.area_reasons,
            "redistributable_reasons": self.redistributable_reasons,
            "models": [asdict(m) for m in self.ml if m.kind == "model"],
            "datasets": [asdict(m) for m in self.ml if m.kind == "dataset"],
            "dependencies": self.dependencies,
            "files_excluded": self.files_excluded,
            "files": [asdict(f) for f in self.files],
            "summary": {c: sum(f.classification == c for f in self.files) for c in SEVERITY},
        }


def _listing(paths: list[str], limit: int = 5) -> str:
    more = f" and {len(paths) - limit} more" if len(paths) > limit else ""
    return ", ".join(paths[:limit]) + more


def decide(
    files: list[Finding],
    ml: list[MlVerdict] | None = None,
    dependencies: list[list[str]] | None = None,
    archive_area: str | None = None,
) -> Verdict:
    """The archive area and redistributability, each with the reasons that decided it.

    ``archive_area`` is the area the Debian archive already carries this very source in.
    Its ftp team has reviewed every file of it, so licences deepdeb's table does not know
    (an RFC's terms, an unusual permissive licence) do not make such a source local-only:
    they are listed, and the archive's decision stands.
    """
    ml = ml or []
    by_class: dict[str, list[str]] = {c: [] for c in SEVERITY}
    for f in files:
        by_class[f.classification].append(f.path)
    if not files and not ml:  # nothing says what the licence is: never silently free
        by_class["unknown"].append("(no files at all)")
    for m in ml:
        by_class[m.classification].append(f"{m.kind} {m.name}")
    area_reasons: list[str] = []
    redis_reasons: list[str] = []
    if by_class["not-redistributable"]:
        area = "local-only"
        why = {f.reason for f in files if f.classification == "not-redistributable"}
        why |= {"; ".join(m.missing) for m in ml if m.classification == "not-redistributable"}
        redis_reasons.append(
            "may not be redistributed: "
            f"{_listing(by_class['not-redistributable'])} ({'; '.join(sorted(why))})"
        )
    unknown_note = ""
    if by_class["unknown"] and archive_area is not None and not by_class["not-redistributable"]:
        unknown_note = (
            f"deepdeb cannot classify {_listing(by_class['unknown'])}; the Debian archive "
            f"carries this source in {archive_area}, as reviewed by its ftp team"
        )
    elif by_class["unknown"]:
        area = "local-only"
        redis_reasons.append(
            f"licence unknown, needs human review: {_listing(by_class['unknown'])}"
        )
    redistributable = not redis_reasons
    if not redistributable:
        area_reasons.append(
            "local-only: the .deb may be built from the recipe on the user's "
            "machine but never published"
        )
    elif by_class["non-free"]:
        area = "non-free"
        because = sorted(
            {f.reason for f in files if f.classification == "non-free"}
            | {
                f"{m.name} is {m.category}: " + "; ".join(m.missing)
                for m in ml
                if m.classification == "non-free"
            }
        )
        area_reasons.append(
            f"not DFSG-free: {_listing(by_class['non-free'])} ({'; '.join(because)})"
        )
        redis_reasons.append("non-free but redistributable")
    else:
        area = "main"
        redis_reasons.append(
            "every licence deepdeb knows is DFSG-free, the rest is accepted by the archive"
            if unknown_note
            else "every licence is DFSG-free"
        )
    if unknown_note:
        area_reasons.append(unknown_note)
        if AREA_ORDER.index(archive_area or "main") > AREA_ORDER.index(area):
            area = archive_area or area
    deps = package_areas(n for alts in dependencies or [] for n in alts)
    if redistributable and area == "main":
        outside = []
        for alts in dependencies or []:
            best = min((AREA_ORDER.index(deps[n] or "local-only") for n in alts), default=0)
            if best > 0:
                outside.append(" | ".join(f"{n} ({deps[n] or 'not in the archive'})" for n in alts))
        if outside:
            area = "contrib"
            area_reasons.append(f"free, but needs packages outside main: {_listing(outside)}")
        else:
            area_reasons.append("all free, and everything it needs is in main")
    return Verdict(
        area,
        redistributable,
        area_reasons,
        redis_reasons,
        files,
        ml,
        deps,
        files_excluded=sorted(by_class["not-redistributable"]),
    )


# --- DEP-5 ---------------------------------------------------------------------------------

_COMMON = {
    "Apache-2.0": "Apache-2.0",
    "GPL-2.0-only": "GPL-2",
    "GPL-2.0-or-later": "GPL-2",
    "GPL-3.0-only": "GPL-3",
    "GPL-3.0-or-later": "GPL-3",
    "LGPL-2.1-only": "LGPL-2.1",
    "LGPL-2.1-or-later": "LGPL-2.1",
    "LGPL-3.0-only": "LGPL-3",
    "LGPL-3.0-or-later": "LGPL-3",
    "MPL-2.0": "MPL-2.0",
    "CC0-1.0": "CC0-1.0",
}


def _dep5_name(spdx: str) -> str:
    reverse = {v: k for k, v in table().debian.items() if k != v}
    for key, short in sorted(reverse.items(), key=lambda kv: -len(kv[0])):
        spdx = re.sub(rf"(?<![\w.+-]){re.escape(key)}(?![\w.+-])", short, spdx)
    return spdx.replace(" OR ", " or ").replace(" AND ", " and ")


def copyright_file(verdict: Verdict, upstream_name: str, source: str) -> str:
    """A DEP-5 debian/copyright draft: files grouped by licence and copyright holder."""
    copyright_ = Copyright()
    header: Any = copyright_.header  # python-debian's typed properties are descriptors
    header.upstream_name = upstream_name
    header.source = source
    disclaimers = [
        f"{m.name} is a {m.category} model under Debian's ML-Policy: " + "; ".join(m.missing)
        for m in verdict.ml
        if m.kind == "model" and m.missing
    ]
    if verdict.area != "main" or disclaimers:
        lines = [f"This package is not part of Debian's main area ({verdict.area}).", *disclaimers]
        header.disclaimer = "\n ".join(lines)  # continuation lines start with a space
    if verdict.files_excluded:
        header.files_excluded = verdict.files_excluded
    groups: dict[tuple[str, str], list[str]] = {}
    for f in verdict.files:
        if f.path in verdict.files_excluded:
            continue
        key = (_dep5_name(f.spdx) if f.spdx else "UNKNOWN", f.copyright or "UNKNOWN")
        groups.setdefault(key, []).append(f.path.replace(" ", "?"))
    for (license_, holder), paths in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        copyright_.add_files_paragraph(
            FilesParagraph.create(paths, holder, _license(license_, None))
        )
    for license_ in sorted({k[0] for k in groups}):
        spdx = next(
            (f.spdx for f in verdict.files if f.spdx and _dep5_name(f.spdx) == license_), None
        )
        copyright_.add_license_paragraph(LicenseParagraph.create(_license(license_, spdx)))
    return str(copyright_.dump())


def _license(name: str, spdx: str | None) -> License:
    if spdx is None:
        return License(name)
    common = _COMMON.get(spdx.split()[0])
    if common:
        text = (
            f"On Debian systems, the full text of this licence is in\n"
            f"/usr/share/common-licenses/{common}."
        )
    else:
        reason = classify(spdx)[1]
        text = f"{reason}.\nThe full text is in the upstream sources."
    return License(name, text)


# --- what `deepdeb audit` is pointed at -----------------------------------------------------


@dataclass
class AuditResult:
    target: str
    verdict: Verdict
    upstream_name: str
    source: str

    def to_json(self) -> dict[str, Any]:
        return {"target": self.target, **self.verdict.to_json()}


def audit_recipe(recipe: Recipe, package: SourcePackage, tree: Path, deep: bool = False) -> Verdict:
    """The verdict on a recipe's unpacked source: its files, its declared models and
    datasets, its dependencies, and the archive's own area for Debian sources."""
    ml = [ml_verdict("model", m) for m in recipe.models]
    ml += [ml_verdict("dataset", d) for d in recipe.datasets]
    deps = control_dependencies(tree) + [[d] for d in recipe.depends]
    reviewed = source_area(package.name, package.version) if recipe.source.debian else None
    return decide(scan(tree, deep), ml, deps, reviewed)


def audit_target(target: Path, work: Path, deep: bool = False) -> AuditResult:
    """Audit a recipe, a source tree, a .deb or a wheel (unpacked under ``work``)."""
    if target.suffix == ".toml":
        recipe = load_recipe(target)
        if recipe.source.is_wheel:  # the (first flavour's) wheel, scanned file by file
            from deepdeb.wheel.pipeline import fetch_source

            return audit_target(fetch_source(recipe.flavors[0]).path, work, deep)
        package = obtain(recipe.source)
        tree = unpack(package, work / "src")
        return AuditResult(
            str(target),
            audit_recipe(recipe, package, tree, deep),
            package.name,
            recipe.source.label,
        )
    if target.is_dir():
        return AuditResult(
            str(target),
            decide(scan(target, deep), [], control_dependencies(target)),
            target.resolve().name,
            str(target),
        )
    if target.suffix == ".deb":
        tree = work / "deb"
        run(["dpkg-deb", "-x", target, tree])
        fields = Deb822(run(["dpkg-deb", "-f", target]).stdout)
        depends = fields.get("Depends", "").strip()
        deps = [
            [a["name"] for a in alts]
            for alts in (PkgRelation.parse_relations(depends) if depends else [])
        ]
        return AuditResult(
            str(target), decide(scan(tree, deep), [], deps), fields["Package"], target.name
        )
    if target.suffix == ".whl":
        open_wheel(target)  # a wheel: structure, paths and size checked before extracting
        tree = work / "wheel"
        with zipfile.ZipFile(target) as wheel:
            wheel.extractall(tree)
        return AuditResult(
            str(target), decide(scan(tree, deep)), target.name.split("-")[0], target.name
        )
    raise DeepdebError(f"{target}: expected a recipe (.toml), a directory, a .deb or a .whl")
