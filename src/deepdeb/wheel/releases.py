"""A project's releases as the target can install them, from PyPI's Simple API (pure).

The Simple API's JSON (PEP 691) lists every file of every release. For bookworm only
wheels count that CPython 3.11 on x86-64 Linux can load, and only those pip would fetch for
a build (:data:`deepdeb.debian.target.PLATFORMS`: manylinux up to glibc 2.28), so that what
``deepdeb resolve`` says fits is what ``deepdeb build`` can fetch. A release is *pure* when
one of its wheels is ``py3-none-any``: such an addition needs no compiler and no ABI.
Per-release metadata (Requires-Dist, Requires-Python) comes from each wheel's PEP 658
``.metadata`` file, read by :func:`parse_metadata`.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from email.parser import HeaderParser
from typing import Any

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.tags import Tag, compatible_tags, cpython_tags
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
from packaging.version import Version

from deepdeb.debian.target import GLIBC, PLATFORMS, PYTHON_ABI

PYTHON_FULL = "3.11.2"  # bookworm's python3, for Requires-Python
_PY = (3, 11)


@functools.cache
def _platforms(top: int | None = None) -> list[str]:
    """manylinux tags from the newest glibc (``top``, by default the newest pip is asked
    for) down to the oldest, then the legacy aliases (manylinux2014 is glibc 2.17) and
    plain linux."""
    if top is None:
        top = max(int(m) for p in PLATFORMS if (m := _glibc_minor(p)) is not None)
    found = [f"manylinux_2_{minor}_x86_64" for minor in range(top, 4, -1)]
    return [*found, "manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64",
            "linux_x86_64"]  # fmt: skip


def _glibc_minor(platform: str) -> str | None:
    m = re.fullmatch(r"manylinux_2_(\d+)_x86_64", platform)
    return m.group(1) if m else None


def _tags(platforms: list[str]) -> list[Tag]:
    return list(
        dict.fromkeys(
            [
                *cpython_tags(_PY, abis=[PYTHON_ABI], platforms=platforms),
                *compatible_tags(_PY, PYTHON_ABI, platforms),
            ]
        )
    )


@functools.cache
def target_tags() -> dict[Tag, int]:
    """Wheel tags bookworm's CPython 3.11 on amd64 loads, best first (rank 0), up to the
    manylinux level pip is asked to download (:data:`PLATFORMS`)."""
    return {t: i for i, t in enumerate(_tags(_platforms()))}


@functools.cache
def loadable_tags() -> frozenset[Tag]:
    """Every wheel tag bookworm's CPython 3.11 on amd64 can load: its ABI, the stable
    ``abi3`` of older CPythons, pure Python, and manylinux up to its own glibc (a wheel
    given by hand may be newer than what deepdeb downloads)."""
    return frozenset(_tags(_platforms(GLIBC[1])))


def is_pure(tags: frozenset[Tag]) -> bool:
    """A wheel with no compiled code: ABI ``none``, platform ``any``."""
    return any(t.abi == "none" and t.platform == "any" for t in tags)


def python_allows(requires_python: str | None) -> bool:
    """Whether bookworm's Python 3.11 meets a Requires-Python (unparsable: assume not)."""
    if not requires_python:
        return True
    try:
        return SpecifierSet(requires_python).contains(PYTHON_FULL, prereleases=True)
    except InvalidSpecifier:
        return False


@dataclass(frozen=True)
class WheelFile:
    """One wheel of a release that the target can install."""

    filename: str
    url: str
    sha256: str
    pure: bool
    rank: int  # position of its best tag in target_tags(): lower is better
    size: int = 0  # bytes, as the index states it (0: unknown)


@dataclass
class Release:
    """One version of a project: the wheel to read its metadata from (None: nothing the
    target can install), and whether a pure-Python wheel exists."""

    name: str
    version: Version
    wheel: WheelFile | None = None
    pure: bool = False
    yanked: bool = False
    excluded_by: str | None = None  # a Requires-Python that keeps 3.11 off a fitting wheel

    def why_not(self) -> str | None:
        """Why the target cannot use this release, or None."""
        if self.yanked:
            return "yanked"
        if self.wheel is None and self.excluded_by:
            return f"Requires-Python {self.excluded_by} excludes 3.11"
        if self.wheel is None:
            return "no wheel for CPython 3.11 on x86-64 Linux (glibc <= 2.28)"
        return None


def _wheel(entry: dict[str, Any]) -> WheelFile | str | None:
    """A Simple API file entry as a wheel the target can install; the Requires-Python that
    excludes 3.11 from an otherwise fitting wheel; else None."""
    filename = str(entry.get("filename", ""))
    if not filename.endswith(".whl"):
        return None
    try:
        tags = parse_wheel_filename(filename)[3]
    except InvalidWheelFilename:
        return None
    ranks = [r for t in tags if (r := target_tags().get(t)) is not None]
    if not ranks:
        return None
    if not python_allows(entry.get("requires-python")):
        return str(entry.get("requires-python"))
    sha = str((entry.get("hashes") or {}).get("sha256", ""))
    size = entry.get("size")
    return WheelFile(
        filename, str(entry.get("url", "")), sha, is_pure(tags), min(ranks),
        size if isinstance(size, int) else 0,
    )  # fmt: skip


def _version_of(filename: str) -> Version | None:
    """The version in a wheel's or sdist's file name, when it can be read."""
    if filename.endswith(".whl"):
        try:
            return parse_wheel_filename(filename)[1]
        except InvalidWheelFilename:
            return None
    return None


def releases(page: dict[str, Any]) -> list[Release]:
    """A Simple API JSON page as releases, newest first. A release's wheel is its pure one
    when it has one (what an addition would ship), else its best-ranked binary one; files
    the index marks yanked are left out (PEP 592), and a release with only yanked files is
    marked yanked."""
    name = canonicalize_name(str(page.get("name", "")))
    found: dict[Version, Release] = {}
    for entry in page.get("files", []):
        version = _version_of(str(entry.get("filename", "")))
        if version is None:
            continue
        release = found.setdefault(version, Release(name, version, yanked=True))
        if entry.get("yanked"):
            continue
        release.yanked = False
        parsed = _wheel(entry)
        if isinstance(parsed, str):
            release.excluded_by = parsed
        elif parsed is not None:
            release.wheel = _better(release.wheel, parsed)
            release.pure = release.pure or parsed.pure
    return sorted(found.values(), key=lambda r: r.version, reverse=True)


def _better(old: WheelFile | None, new: WheelFile) -> WheelFile:
    if old is None:
        return new
    return min(old, new, key=lambda w: (not w.pure, w.rank, w.filename))


@dataclass(frozen=True)
class Metadata:
    """What the resolver reads of a release's core metadata."""

    name: str
    version: str
    requires_dist: tuple[str, ...] = ()
    requires_python: str | None = None


def parse_metadata(text: str) -> Metadata:
    """A METADATA file (RFC 822 headers; the long description after them is ignored)."""
    msg = HeaderParser().parsestr(text, headersonly=True)
    return Metadata(
        name=str(msg.get("Name", "")),
        version=str(msg.get("Version", "")),
        requires_dist=tuple(str(r) for r in msg.get_all("Requires-Dist") or []),
        requires_python=str(msg["Requires-Python"]) if msg["Requires-Python"] else None,
    )
