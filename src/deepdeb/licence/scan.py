"""Per-file licence findings: licensecheck, the table's fingerprints for texts it does not
name, the maintainer's DEP-5 file, licence files and package-wide declarations."""

from __future__ import annotations

import email.parser
import json
import os
import re
import shutil
import stat
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from debian import copyright as copyright_errors
from debian.copyright import Copyright

from deepdeb.errors import AuditError, UnsafeFileError
from deepdeb.licence import clauses
from deepdeb.licence.clauses import Citation
from deepdeb.licence.table import classify, normalise, table
from deepdeb.util import read_regular, run

# One rule for what a file says by its name. DECLARATION: it states the licence of its
# directory (LICENSE, COPYING, COPYRIGHT, and anything under a licenses/ directory, as
# PEP 639 puts them in .dist-info). NOTICE: attributions that travel with a licence.
# DOCUMENT: may quote a licence (a README, a model card's "license:" line).
DECLARATION, NOTICE, DOCUMENT = "declaration", "notice", "document"
_NAMED = re.compile(
    r"^(?:(?P<declaration>LICEN[CS]ES?|COPYING|COPYRIGHT)|(?P<notice>NOTICE)"
    r"|(?P<document>README|MODEL[_-]?CARD))(?:[._-].*)?$",
    re.I,
)

_CODE = re.compile(r"\.(py[ci]?|c|h|cc|cpp|cxx|hpp|js|ts|go|rs|java|sh|pl|rb|so)$", re.I)


def licence_role(relpath: str) -> str | None:
    """What a file is to the audit, by its path: DECLARATION, NOTICE, DOCUMENT or None."""
    directory, _, name = relpath.rpartition("/")
    if re.search(r"(^|/)licen[cs]es$", directory, re.I):
        return DECLARATION
    if _CODE.search(name):  # license_check.py is code about licences, not a licence
        return None
    match = _NAMED.match(name)
    return match.lastgroup if match else None


def is_licence_file(relpath: str) -> bool:
    """A file that states a licence (a declaration or a notice): what a wheel carries
    besides METADATA to say what it may be used for."""
    return licence_role(relpath) in (DECLARATION, NOTICE)


_CHUNKS = 8  # licensecheck runs per core


# Files per licensecheck run at least: starting its Perl costs 0.7 s, as much as reading
# a few hundred small files, so a small tree is one run, not one per file.
_MIN_CHUNK = 256


@dataclass
class Finding:
    """One file's licence, and which source of evidence named it."""

    path: str
    spdx: str | None
    classification: str
    source: str  # licensecheck, fingerprint, debian-copyright, license-file, package
    copyright: str = ""
    reason: str = ""
    clauses: list[Citation] = field(default_factory=list)  # those the class relies on


def _fingerprint(root: Path, rel: str) -> str | None:
    """A licence licensecheck does not name, from the texts in the licence table. Whole
    licence texts are matched only in files whose name says they may hold one."""
    path = root / rel
    license_like = licence_role(rel) is not None
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
            raise AuditError(f"licensecheck failed: {proc.stderr.strip()[-500:]}")
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


MAX_DEP5_BYTES = 16 << 20


def _dep5(path: Path) -> Copyright | None:
    """``path`` read as a machine-readable (DEP-5) copyright file; None when there is none,
    or when it is free-form text, which Policy 12.5 allows.

    A file that declares the DEP-5 ``Format:`` but does not parse is an error, not a file
    to skip: skipping it would audit the source without its maintainer's statements.
    """
    try:
        raw = read_regular(path, MAX_DEP5_BYTES, tail=False)
    except FileNotFoundError:
        return None
    except (OSError, UnsafeFileError) as e:
        raise AuditError(f"{path}: cannot be read as a copyright file: {e}") from None
    if not re.match(r"\s*Format:", raw.decode("utf-8", errors="replace"), flags=re.I):
        return None
    try:
        return Copyright(raw.decode("utf-8").splitlines(keepends=True), strict=False)
    except UnicodeDecodeError as e:
        raise AuditError(f"{path}: a DEP-5 file must be UTF-8 (bad byte at {e.start})") from None
    except copyright_errors.Error as e:
        raise AuditError(f"{path}: declares the DEP-5 format but does not parse: {e}") from None


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
        raise AuditError(
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
    declared = _declarations(root, files, checked)
    findings = []
    for rel in files:
        expr, source = _resolve(root, rel, checked.get(rel, (None, ""))[0], declared)
        cls, reason = classify(expr)
        holder = checked.get(rel, (None, ""))[1]
        finding = Finding(rel, expr, cls, source if expr else "none", holder, reason)
        if licence_role(rel) == DECLARATION:
            _read_clauses(root / rel, finding)
        findings.append(finding)
    return findings


MAX_LICENCE_TEXT = 1 << 20


def _read_clauses(path: Path, finding: Finding) -> None:
    """A proprietary licence text decides by its clauses (:mod:`deepdeb.licence.clauses`):
    the finding takes their class, and a reason that cites them."""
    try:
        text = read_regular(path, MAX_LICENCE_TEXT, tail=False).decode("utf-8", "replace")
    except (OSError, UnsafeFileError):
        return
    reading = clauses.read(text, finding.classification)
    if reading is None:
        return
    named = finding.spdx or "this licence text"
    finding.classification = reading.classification
    finding.reason = f"{named}, as its text reads: {reading.reason}"
    finding.clauses = list(reading.citations)


@dataclass
class _Declared:
    """What a tree says about licences beyond each file's own header."""

    directories: dict[str, str]  # directory -> expression of its LICENSE/COPYING
    package_wide: list[tuple[str, str]]  # (expression, the file that says it)
    dep5: Copyright | None  # the maintainer's debian/copyright


def _declarations(
    root: Path, files: list[str], checked: dict[str, tuple[str | None, str]]
) -> _Declared:
    declared = _Declared({}, [], _dep5(root / "debian" / "copyright"))
    for rel in files:
        name, directory = os.path.basename(rel), os.path.dirname(rel)
        if licence_role(rel) == DECLARATION:
            # A licence file is read as a whole: a known text (an EULA that quotes
            # third-party notices) beats licensecheck's reading of the notices in it.
            expr = _fingerprint(root, rel) or checked.get(rel, (None, ""))[0]
            if expr and directory not in declared.directories:
                declared.directories[directory] = expr
        expr = None
        if name == "METADATA" and directory.endswith(".dist-info"):
            expr = _metadata_license(root / rel)
        elif name == "copyright" and re.fullmatch(r"usr/share/doc/[^/]+", directory):
            dep5 = _dep5(root / rel)
            expr = _dep5_license(dep5, "*") if dep5 else None
        if expr:
            declared.package_wide.append((expr, rel))
    return declared


def _metadata_says(rel: str, declared: _Declared) -> tuple[str, str] | None:
    """A wheel's METADATA: the licence its field declares (``License-Expression:
    Apache-2.0``), not licensecheck's reading of the long description under it ("the
    Apache license": Apache); with no field (namex names only its License-File;
    tensorflow-io's says "Apache Software License" in a classifier), the licence files
    of its .dist-info."""
    own = [e for e, where in declared.package_wide if where == rel]
    if own:
        return own[0], "metadata"
    info = os.path.dirname(rel)
    for directory in (info, f"{info}/licenses"):
        if directory in declared.directories:
            return declared.directories[directory], "license-file"
    return None


def _resolve(root: Path, rel: str, expr: str | None, declared: _Declared) -> tuple[str | None, str]:
    """A file's licence and who says so, in order of trust: a known licence text, the
    file's own header, the maintainer's DEP-5, the nearest licence file above it, and last
    what the package as a whole declares."""
    if licence_role(rel) == DECLARATION and (text := _fingerprint(root, rel)):
        return text, "fingerprint"
    if rel.endswith(".dist-info/METADATA") and (said := _metadata_says(rel, declared)):
        return said
    if expr is not None:
        return expr, "licensecheck"
    if expr := _fingerprint(root, rel):
        return expr, "fingerprint"
    if declared.dep5 is not None and (expr := _dep5_license(declared.dep5, rel)):
        return expr, "debian-copyright"
    directory = os.path.dirname(rel)
    while True:
        if directory in declared.directories:
            return declared.directories[directory], "license-file"
        if not directory:
            break
        directory = os.path.dirname(directory)
    if declared.package_wide:
        return declared.package_wide[0][0], "package"
    return None, "licensecheck"
