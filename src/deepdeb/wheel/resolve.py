"""Which release of a framework fits bookworm, and with what (``deepdeb resolve``).

For each release, newest first, every ``Requires-Dist`` (markers evaluated for bookworm's
Python 3.11 on x86-64 Linux, no extras) gets one of five answers, from best to worst:

``archive``
    bookworm's package meets it (the mapping and epoch-aware comparison of
    :mod:`deepdeb.wheel.depends`; ``!=`` specifiers, which Debian cannot express, are
    checked on the archive's upstream version).
``pure``
    not in the archive, or too old there, and the newest fitting release on PyPI has a
    ``py3-none-any`` wheel: a pure-Python addition.
``binary``
    likewise, but that release has only compiled wheels: a binary addition.
``conflict``
    every fitting release would replace an archive package and break archive packages
    that depend on it (:mod:`deepdeb.wheel.conflicts`: ``numpy>=1.26`` breaks
    ``python3-numba``'s ``python3-numpy (<< 1:1.25)``, numpy 2 every module compiled
    against ``python3-numpy-abi9``), or an addition's own requirements conflict.
``unavailable``
    no release on PyPI fits (none in range with a wheel for the target).

An addition's own requirements are answered the same way (``depth`` levels deep, 2 by
default), and the addition takes the worst of its own kind and theirs. Among an addition's
releases the newest one that neither breaks the archive nor has a conflicting requirement
is taken. A release's answer is the worst of its requirements'.

The decisions are pure: PyPI and apt come in through :class:`Index` and :class:`Archive`,
so the tests feed fixture metadata and a fake archive, and :mod:`deepdeb.wheel.pypi` with
:class:`AptArchive` are the only edges.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, Protocol

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from deepdeb.debian import apt
from deepdeb.debian.target import SUITE
from deepdeb.errors import PackageIndexError
from deepdeb.wheel.conflicts import Archived, Breakage, breakages, load_archived, replacement
from deepdeb.wheel.depends import Dependency, applies, dependency, target_environment
from deepdeb.wheel.releases import Metadata, Release, python_allows


class Kind(IntEnum):
    """What a requirement (or a release) needs beyond the archive, best first."""

    ARCHIVE = 0
    PURE = 1
    BINARY = 2
    CONFLICT = 3
    UNAVAILABLE = 4

    @property
    def label(self) -> str:
        """The word used in tables and JSON."""
        return self.name.lower()


class Index(Protocol):
    """Where releases and their metadata come from (PyPI, or fixtures)."""

    def releases(self, name: str) -> list[Release]:
        """The project's releases, newest first."""

    def metadata(self, release: Release) -> Metadata | None:
        """The release's core metadata, None when the index has none."""


class Archive(Protocol):
    """What the target's archive has (apt, or a fake)."""

    def versions(self, packages: list[str]) -> dict[str, list[str]]:
        """Versions of each binary package (empty: not in the archive)."""

    def archived(self, package: str) -> Archived | None:
        """The package and its reverse dependencies, for the conflict check."""


@dataclass
class Addition:
    """A distribution to add to the archive: the release chosen and what it needs."""

    name: str
    version: str
    pure: bool
    replaces: str | None  # the archive version it would replace, None: a new package
    needs: list[Need] = field(default_factory=list)
    followed: bool = True  # False: its requirements were beyond the depth limit

    def to_json(self) -> dict[str, Any]:
        """For ``--json``."""
        return {
            "name": self.name,
            "version": self.version,
            "wheel": "pure" if self.pure else "binary",
            "replaces": self.replaces,
            "requirements_followed": self.followed,
            "needs": [n.to_json() for n in self.needs],
        }


@dataclass
class Need:
    """One requirement's answer."""

    requirement: str
    package: str  # the Debian package it maps to
    kind: Kind
    detail: str  # one line, for people
    addition: Addition | None = None

    def additions(self) -> Iterator[Addition]:
        """The addition this need takes, then those its requirements take, depth first."""
        if self.addition is not None:
            yield self.addition
            for n in self.addition.needs:
                yield from n.additions()

    def to_json(self) -> dict[str, Any]:
        """For ``--json``."""
        return {
            "requirement": self.requirement,
            "package": self.package,
            "kind": self.kind.label,
            "detail": self.detail,
            "addition": self.addition.to_json() if self.addition else None,
        }


@dataclass
class Verdict:
    """One release of the framework: its answer and why."""

    name: str
    version: str
    kind: Kind
    reason: str
    needs: list[Need] = field(default_factory=list)
    chosen: dict[str, str] = field(default_factory=dict)  # addition name: the version kept

    def additions(self) -> list[Addition]:
        """Every addition the release needs, once per name (at the version every requirer
        accepts when they chose different ones), in order."""
        seen: dict[str, Addition] = {}
        for n in self.needs:
            for a in n.additions():
                if self.chosen.get(a.name, a.version) == a.version:
                    seen.setdefault(a.name, a)
        return list(seen.values())

    def to_json(self) -> dict[str, Any]:
        """For ``--json``."""
        return {
            "version": self.version,
            "kind": self.kind.label,
            "reason": self.reason,
            "additions": [f"{a.name}=={a.version}" for a in self.additions()],
            "needs": [n.to_json() for n in self.needs],
        }


@dataclass
class Resolution:
    """The releases looked at, newest first, and the newest that fit each way."""

    name: str
    target: str
    releases: list[Verdict]

    def newest(self, worst: Kind) -> Verdict | None:
        """The newest release whose answer is ``worst`` or better."""
        return next((v for v in self.releases if v.kind <= worst), None)

    def shown(self) -> list[Verdict]:
        """The rows worth a table: every release down to the newest that fits without a
        conflict (one line each on why the newer ones do not), and the newest that fit with
        pure-Python additions and with the archive alone, when they are older."""
        fit = self.newest(Kind.BINARY)
        upto = self.releases.index(fit) + 1 if fit else len(self.releases)
        rows = self.releases[:upto]
        for kind in (Kind.PURE, Kind.ARCHIVE):
            best = self.newest(kind)
            if best is not None and best not in rows:
                rows.append(best)
        return rows

    def summary(self) -> list[str]:
        """Three lines, the newest release that fits each way, and the additions of the
        newest that fits at all."""
        looked = f"none of the {len(self.releases)} newest releases"
        words = {
            Kind.ARCHIVE: "with the archive alone",
            Kind.PURE: "with pure-Python additions only",
            Kind.BINARY: "without breaking the archive (binary additions allowed)",
        }
        lines = []
        for kind, text in words.items():
            best = self.newest(kind)
            lines.append(f"newest {text}: {best.version if best else looked}")
        fit = self.newest(Kind.BINARY)
        for a in fit.additions() if fit else []:
            where = f"replaces bookworm's {a.replaces}" if a.replaces else "new"
            wheel = "pure-Python" if a.pure else "binary"
            lines.append(f"  {a.name} {a.version}: {wheel}, {where}")
        return lines

    def to_json(self) -> dict[str, Any]:
        """For ``--json``."""
        best = {k.label: self.newest(k) for k in (Kind.ARCHIVE, Kind.PURE, Kind.BINARY)}
        return {
            "name": self.name,
            "target": self.target,
            "newest": {k: (v.version if v else None) for k, v in best.items()},
            "releases": [v.to_json() for v in self.releases],
        }


def upstream_of(debian: str) -> Version | None:
    """The upstream release of a Debian version, as PEP 440 (``1:1.24.2-1+deb12u1`` is
    1.24.2, ``2.0.8+dfsg1-2`` is 2.0.8), for the ``!=`` specifiers Debian cannot express."""
    body = debian.split(":", 1)[-1].rsplit("-", 1)[0]
    m = re.match(r"\d+(?:\.\d+)*", body)
    try:
        return Version(m.group(0)) if m else None
    except InvalidVersion:
        return None


def archive_meets(dep: Dependency, req: Requirement) -> bool:
    """Whether an archive version meets the requirement: Debian's relations, and every
    specifier they had to drop checked on the upstream version."""
    if not dep.satisfiable:
        return False
    if not dep.dropped_specifiers:
        return True
    ups = [u for v in dep.archive_versions if (u := upstream_of(v)) is not None]
    return any(req.specifier.contains(u, prereleases=True) for u in ups)


def _why_breaks(name: str, release: Release, found: list[Breakage]) -> str:
    """One line: how many archive packages would break, with one example (a python3-*
    module first: the ones users notice)."""
    example = next((b for b in found if b.package.startswith("python3-")), found[0])
    count = len({b.package for b in found})
    more = f" and {count - 1} more" if count > 1 else ""
    return (
        f"{name} {release.version} would break {example.package} "
        f"({example.field}: {example.relation}){more}"
    )


def _worst(needs: Sequence[Need]) -> Kind:
    return max((n.kind for n in needs), default=Kind.ARCHIVE)


class Resolver:
    """Answers requirements against one index and one archive, remembering every answer
    (the same ``numpy>=1.23.5`` recurs in every release)."""

    def __init__(self, index: Index, archive: Archive, depth: int = 2, tries: int = 20) -> None:
        self.index = index
        self.archive = archive
        self.depth = depth  # levels of additions' requirements followed
        self.tries = tries  # releases of one addition whose metadata is read at most
        self._needs: dict[tuple[str, int], Need] = {}
        self._visiting: set[str] = set()
        self._envs = target_environment()

    def needs(self, requires: Sequence[str], depth: int) -> list[Need]:
        """Answers for a list of Requires-Dist at ``depth`` (0: the framework's own)."""
        reqs = []
        for text in requires:
            try:
                req = Requirement(text)
            except InvalidRequirement:
                continue  # a malformed line cannot be installed by pip either
            if applies(req, self._envs):
                reqs.append(req)
        deps = [dependency(r) for r in reqs]
        offered = self.archive.versions(sorted({d.package for d in deps}))
        for d in deps:
            d.archive_versions = offered.get(d.package, [])
        return [self._need(r, d, depth) for r, d in zip(reqs, deps, strict=True)]

    def _need(self, req: Requirement, dep: Dependency, depth: int) -> Need:
        key = (str(req), depth)
        if key not in self._needs:
            self._needs[key] = self._answer(req, dep, depth)
        return self._needs[key]

    def _answer(self, req: Requirement, dep: Dependency, depth: int) -> Need:
        name = canonicalize_name(req.name)
        if archive_meets(dep, req):
            return Need(
                str(req), dep.package, Kind.ARCHIVE, f"bookworm has {dep.archive_versions[0]}"
            )
        if name in self._visiting:
            return Need(str(req), dep.package, Kind.PURE, "a requirement cycle: not followed")
        try:
            found = self.index.releases(name)
        except PackageIndexError as e:
            return Need(str(req), dep.package, Kind.UNAVAILABLE, str(e))
        fits = [r for r in found if r.why_not() is None and req.specifier.contains(r.version)]
        if not fits:
            why = f"no release of {name} in '{req.specifier}' has a wheel for CPython 3.11 x86-64"
            return Need(str(req), dep.package, Kind.UNAVAILABLE, why)
        archived = self.archive.archived(dep.package) if dep.archive_versions else None
        self._visiting.add(name)
        try:
            return self._choose(req, dep, fits, archived, depth)
        finally:
            self._visiting.discard(name)

    def _choose(
        self,
        req: Requirement,
        dep: Dependency,
        fits: list[Release],
        archived: Archived | None,
        depth: int,
    ) -> Need:
        """The newest release that breaks nothing and whose own needs do not conflict."""
        name = canonicalize_name(req.name)
        refused: list[tuple[Kind, str]] = []
        read = 0
        for release in fits:
            if archived is not None:
                found = breakages(archived, replacement(archived, name, str(release.version)))
                if found:
                    refused.append((Kind.CONFLICT, _why_breaks(name, release, found)))
                    continue
            if read == self.tries:
                break
            read += 1
            addition, why = self._addition(release, archived, depth)
            if addition is None:
                refused.append(why)
                continue
            kind = max(Kind.PURE if addition.pure else Kind.BINARY, _worst(addition.needs))
            detail = self._detail(addition, dep)
            return Need(str(req), dep.package, kind, detail, addition)
        return self._refused(req, dep, refused)

    def _addition(
        self, release: Release, archived: Archived | None, depth: int
    ) -> tuple[Addition | None, tuple[Kind, str]]:
        """The release as an addition, or None with why it cannot be one."""
        label = f"{release.name} {release.version}"
        meta = self.index.metadata(release)
        if meta is None:
            return None, (Kind.UNAVAILABLE, f"{label}: no metadata on the index")
        if not python_allows(meta.requires_python):
            return None, (Kind.UNAVAILABLE, f"{label}: Requires-Python {meta.requires_python}")
        followed = depth < self.depth
        needs = self.needs(meta.requires_dist, depth + 1) if followed else []
        replaces = archived.version if archived else None
        addition = Addition(release.name, str(release.version), release.pure, replaces, needs,
                            followed)  # fmt: skip
        bad = [n for n in needs if n.kind >= Kind.CONFLICT]
        if bad:
            return None, (bad[0].kind, f"{label} needs {bad[0].requirement}: {bad[0].detail}")
        return addition, (Kind.ARCHIVE, "")

    @staticmethod
    def _detail(addition: Addition, dep: Dependency) -> str:
        kind = "pure-Python" if addition.pure else "binary"
        where = (
            f"replaces bookworm's {addition.replaces}"
            if addition.replaces
            else f"{dep.package} is not in bookworm"
        )
        extra = [a.name for n in addition.needs for a in n.additions()]
        also = f"; it needs {', '.join(dict.fromkeys(extra))}" if extra else ""
        return f"{addition.name} {addition.version} ({kind}; {where}){also}"

    @staticmethod
    def _refused(req: Requirement, dep: Dependency, refused: list[tuple[Kind, str]]) -> Need:
        """No release can be added: a conflict if any was refused for one, the oldest
        release's reason (even the oldest allowed release breaks something)."""
        if not refused:
            return Need(str(req), dep.package, Kind.UNAVAILABLE, "no release could be read")
        kind = Kind.CONFLICT if any(k == Kind.CONFLICT for k, _ in refused) else refused[-1][0]
        have = f"bookworm has {dep.archive_versions[0]}; " if dep.archive_versions else ""
        chosen = next((why for k, why in reversed(refused) if k == kind), refused[-1][1])
        return Need(str(req), dep.package, kind, have + chosen)

    def verdict(self, release: Release) -> Verdict:
        """One release of the framework, answered."""
        name, version = release.name, str(release.version)
        why = release.why_not()
        if why is not None:
            return Verdict(name, version, Kind.UNAVAILABLE, why)
        meta = self.index.metadata(release)
        if meta is None:
            return Verdict(name, version, Kind.UNAVAILABLE, "no metadata file on the index")
        if not python_allows(meta.requires_python):
            why = f"Requires-Python {meta.requires_python} excludes 3.11"
            return Verdict(name, version, Kind.UNAVAILABLE, why)
        needs = self.needs(meta.requires_dist, 0)
        kind = _worst(needs)
        chosen, problems = settle(f"{name} {version}", needs)
        if problems and kind < Kind.CONFLICT:
            return Verdict(name, version, Kind.CONFLICT, problems[0], needs, chosen)
        return Verdict(name, version, kind, reason(kind, needs), needs, chosen)


def _walk(needs: Sequence[Need], requirer: str) -> Iterator[tuple[str, Need]]:
    """Every need in the tree with who requires it."""
    for n in needs:
        yield requirer, n
        if n.addition is not None:
            yield from _walk(n.addition.needs, f"{n.addition.name} {n.addition.version}")


def settle(framework: str, needs: Sequence[Need]) -> tuple[dict[str, str], list[str]]:
    """One version per added distribution that every requirer in the tree accepts.

    Each requirement is answered on its own (``tensorflow-cpu`` pins ``ml-dtypes<0.5``,
    ``keras`` takes any), so two requirers can pick two versions of one distribution;
    only one can be installed. Keep the newest pick that meets every requirement on that
    name; a name where none does is a disagreement, reported as a conflict.
    """
    uses: dict[str, list[tuple[str, Need]]] = {}
    for requirer, n in _walk(needs, framework):
        uses.setdefault(canonicalize_name(Requirement(n.requirement).name), []).append(
            (requirer, n)
        )
    chosen: dict[str, str] = {}
    problems: list[str] = []
    for name, found in uses.items():
        picks = sorted({Version(n.addition.version) for _, n in found if n.addition}, reverse=True)
        if not picks:
            continue  # the archive's version, which met each of them
        specs = [(r, Requirement(n.requirement).specifier) for r, n in found]
        fit = next(
            (v for v in picks if all(s.contains(v, prereleases=True) for _, s in specs)), None
        )
        if fit is not None:
            chosen[name] = str(fit)
            continue
        wants = ", ".join(f"{r} needs '{s or 'any'}'" for r, s in specs)
        problems.append(f"no one {name} fits all: {wants}; picked {', '.join(map(str, picks))}")
    return chosen, problems


def reason(kind: Kind, needs: list[Need]) -> str:
    """One line: what the worst requirements are and why."""
    if kind == Kind.ARCHIVE:
        return "bookworm has everything it requires"
    if kind >= Kind.CONFLICT:
        worst = [n for n in needs if n.kind == kind]
        more = f"; {len(worst) - 1} more requirement(s) too" if len(worst) > 1 else ""
        return f"{worst[0].requirement}: {worst[0].detail}{more}"
    additions: dict[str, str] = {}
    for n in needs:
        for a in n.additions():
            additions.setdefault(a.name, f"{a.name} {a.version}" + ("" if a.pure else " (binary)"))
    return "adds " + ", ".join(additions.values())


def resolve(
    name: str, index: Index, archive: Archive, limit: int = 40, depth: int = 2
) -> Resolution:
    """The newest ``limit`` final releases of ``name``, answered, newest first; stops at the
    first that bookworm meets alone (older ones cannot do better than that)."""
    resolver = Resolver(index, archive, depth)
    finals = [
        r for r in index.releases(name) if not (r.version.is_prerelease or r.version.is_devrelease)
    ]
    verdicts: list[Verdict] = []
    for release in finals[:limit]:
        verdicts.append(resolver.verdict(release))
        if verdicts[-1].kind == Kind.ARCHIVE:
            break
    return Resolution(canonicalize_name(name), SUITE, verdicts)


class AptArchive:
    """The host's apt index as the resolver's :class:`Archive`, each answer asked once."""

    def __init__(self) -> None:
        self._versions: dict[str, list[str]] = {}
        self._archived: dict[str, Archived | None] = {}

    def versions(self, packages: list[str]) -> dict[str, list[str]]:
        """Versions per package, one ``apt-cache madison`` for those not asked before."""
        missing = [p for p in packages if p not in self._versions]
        if missing:
            self._versions.update(apt.versions(missing))
        return {p: self._versions[p] for p in packages}

    def archived(self, package: str) -> Archived | None:
        """The package and its reverse dependencies (:func:`conflicts.load_archived`)."""
        if package not in self._archived:
            self._archived[package] = load_archived(package)
        return self._archived[package]
