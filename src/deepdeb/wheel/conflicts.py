"""Would replacing an archive package break the archive? Decided before anything is built.

A requirement the recipe packages (or bundles) replaces bookworm's ``python3-X`` with a
newer upstream version. Every package of the archive that depends on ``python3-X`` keeps
its own relations, so the replacement is only safe when all of them still hold. What the
archive has is read from apt (:func:`load_archived`); the rule itself is pure
(:func:`breakages`), so it is tested on small fixtures and gives the same answer every time:

* a dependant **breaks** when one of its ``Depends``/``Pre-Depends`` groups held with the
  archive's version and holds no more with the new one: a versioned relation that excludes
  the new version (``python3-numba``: ``python3-numpy (<< 1:1.25)``), or a virtual package
  the archive's version provides and the new one does not, with no other provider;
* a dependant also breaks when its ``Breaks``/``Conflicts`` on ``python3-X`` starts to
  match with the new version;
* ``Recommends``/``Suggests`` never break anything: apt installs without them.

Virtual packages are the ABI of compiled modules. Debian's ``python3-numpy`` provides
``python3-numpy-abi9`` (the C ABI of every numpy 1.x) and ``python3-numpy-apiN`` (its C API
version), and ``dh_numpy3`` makes every compiled dependant depend on the ABI package
(``python3-scipy``: ``python3-numpy-abi9, python3-numpy (>= 1:1.22.0)``). numpy 2 changed
the C ABI: modules compiled against 1.x do not load, and Debian's numpy 2 packages provide
``python3-numpy2-abi0`` instead. So **numpy >= 2 does not provide python3-numpy-abi9**, and
a numpy 1.x keeps it (see :func:`numpy_virtuals`).

Upstream versions compare with the archive's under the archive's epoch: bookworm's numpy
is ``1:1.24.2``, so numpy 1.26.4 replaces it as ``1:1.26.4-1~deepdeb1``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from debian.deb822 import PkgRelation
from packaging.utils import canonicalize_name
from packaging.version import Version

from deepdeb.debian import apt
from deepdeb.errors import ArchiveConflict
from deepdeb.wheel.depends import archive_epoch, debian_version, satisfies, with_epoch

REVISION = "-1~deepdeb1"  # the Debian revision of a requirement deepdeb packages itself

# numpy's C API version per release line (numpy/_core/code_generators/cversions.txt):
# Debian's python3-numpy provides python3-numpy-api<N> for it.
NUMPY_C_API: dict[tuple[int, int], int] = {
    (1, 22): 15, (1, 23): 16, (1, 24): 16, (1, 25): 17, (1, 26): 17,
    (2, 0): 18, (2, 1): 19, (2, 2): 19, (2, 3): 20, (2, 4): 21,
}  # fmt: skip


def numpy_virtuals(version: Version) -> frozenset[str]:
    """The virtual packages a numpy release provides, named as Debian names them: the C ABI
    (``python3-numpy-abi9`` for 1.x, ``python3-numpy2-abi0`` for 2.x) and the C API."""
    found = set()
    if version.major == 1:
        found.add("python3-numpy-abi9")
    elif version.major == 2:
        found.add("python3-numpy2-abi0")
    api = NUMPY_C_API.get((version.major, version.minor))
    if api is not None:
        found.add(f"python3-numpy-api{api}")
    return frozenset(found)


# Projects whose Debian package provides ABI virtual packages, and the rule for a release.
VIRTUALS: dict[str, Callable[[Version], frozenset[str]]] = {"numpy": numpy_virtuals}


def kept_virtuals(pypi_name: str, version: str) -> frozenset[str]:
    """The virtual packages a replacement at ``version`` provides (none for most)."""
    rule = VIRTUALS.get(canonicalize_name(pypi_name))
    return rule(Version(version)) if rule else frozenset()


@dataclass(frozen=True)
class Archived:
    """What the archive has of a package a requirement would replace, and who needs it."""

    package: str
    version: str  # the candidate version, e.g. 1:1.24.2-1+deb12u1
    provides: frozenset[str]  # virtual names its candidate provides
    dependants: tuple[Mapping[str, str], ...]  # control fields of reverse dependencies
    other_providers: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class Replacement:
    """The package that would replace it: its Debian version and the virtuals it keeps."""

    package: str
    upstream: str  # PEP 440, for messages
    version: str  # Debian, the archive's epoch applied
    provides: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Breakage:
    """One archive package that would break, and the relation that would fail."""

    package: str
    version: str
    field: str  # Depends, Pre-Depends, Breaks or Conflicts
    relation: str  # the relation (group) as the archive writes it
    reason: str

    def line(self) -> str:
        """One line for people: who, the failing relation, and why."""
        return f"{self.package} {self.version}: {self.field}: {self.relation} ({self.reason})"


def replacement_version(pep440: str, archive_versions: list[str]) -> str:
    """The Debian version deepdeb gives a packaged requirement: upstream under the archive's
    epoch, so that it sorts after the archive's (``2.0.0`` alone sorts before ``1:1.24``)."""
    return with_epoch(debian_version(pep440), archive_epoch(archive_versions)) + REVISION


def replacement(archived: Archived, pypi_name: str, pep440: str) -> Replacement:
    """The replacement a ``package`` choice makes of ``pypi_name`` at ``pep440``."""
    version = replacement_version(pep440, [archived.version])
    return Replacement(archived.package, pep440, version, kept_virtuals(pypi_name, pep440))


if TYPE_CHECKING:
    Relation = PkgRelation.ParsedRelation  # one alternative, as python-debian parses it


def _constraint(rel: Relation) -> tuple[str, str] | None:
    return rel["version"]


def _holds(rel: Relation, have: str | None, provided: bool) -> bool:
    """Whether one alternative holds: on the package itself at ``have``, or on a virtual
    name that is ``provided`` (unversioned Provides meet only unversioned relations)."""
    constraint = _constraint(rel)
    if have is not None:
        return constraint is None or satisfies(have, *constraint)
    return provided and constraint is None


def _alternative(rel: Relation, archived: Archived, new: Replacement | None) -> bool | None:
    """Whether an alternative holds in the archive as is (``new`` None) or with the
    replacement; None when it is not about the replaced package at all."""
    name = rel["name"]
    if name == archived.package:
        return _holds(rel, archived.version if new is None else new.version, False)
    if name not in archived.provides:
        return None
    provided = new is None or name in new.provides or bool(archived.other_providers.get(name))
    return _holds(rel, None, provided)


def _group_breaks(group: list[Relation], archived: Archived, new: Replacement) -> bool:
    """A Depends group breaks when it held before and none of its alternatives holds after;
    an alternative on another package is untouched by the replacement, so it still holds."""
    before = [_alternative(r, archived, None) for r in group]
    if all(b is None for b in before):
        return False
    if not any(b is None or b for b in before):
        return False  # it did not hold in the archive either: not this replacement's doing
    return not any(a is None or a for a in (_alternative(r, archived, new) for r in group))


def _why(group: list[Relation], archived: Archived, new: Replacement) -> str:
    names = {r["name"] for r in group}
    lost = sorted((names & archived.provides) - new.provides)
    if lost:
        kept = ", ".join(sorted(new.provides)) or "none"
        return (
            f"{new.package} {new.upstream} would not provide {', '.join(lost)}; it provides: {kept}"
        )
    return f"{new.package} would be {new.version}"


@functools.cache
def _parsed(text: str) -> list[list[Relation]]:
    """A relation field as OR-groups (parsed once: 600 dependants are checked per version)."""
    if not text.strip():
        return []
    return PkgRelation.parse_relations(text)


def _text(group: list[Relation]) -> str:
    return PkgRelation.str([group])


def _negative_breaks(rel: Relation, archived: Archived, new: Replacement) -> bool:
    """A Breaks/Conflicts on the package that starts to match with the new version."""
    constraint = _constraint(rel)
    if rel["name"] != archived.package or constraint is None:
        return False
    return satisfies(new.version, *constraint) and not satisfies(archived.version, *constraint)


def _dependant_breakages(
    fields: Mapping[str, str], archived: Archived, new: Replacement
) -> list[Breakage]:
    name, version = fields.get("Package", "?"), fields.get("Version", "?")
    found: list[Breakage] = []
    for key in ("Pre-Depends", "Depends"):
        for group in _parsed(fields.get(key, "")):
            if _group_breaks(group, archived, new):
                why = _why(group, archived, new)
                found.append(Breakage(name, version, key, _text(group), why))
    for key in ("Breaks", "Conflicts"):
        for group in _parsed(fields.get(key, "")):
            for rel in group:
                if _negative_breaks(rel, archived, new):
                    why = f"{new.package} would be {new.version}"
                    found.append(Breakage(name, version, key, _text([rel]), why))
    return found


def breakages(archived: Archived, new: Replacement) -> list[Breakage]:
    """Every archive package the replacement would break, sorted by name (pure: the same
    archive and replacement always give the same list)."""
    found: list[Breakage] = []
    for fields in archived.dependants:
        if fields.get("Package") != archived.package:
            found += _dependant_breakages(fields, archived, new)
    return sorted(found, key=lambda b: (b.package, b.field, b.relation))


def describe(new: Replacement, archived: Archived, found: list[Breakage], why: str) -> str:
    """The refusal: what would be replaced, for what, and every package that would break,
    grouped by the relation that fails so that 178 ABI dependants take one paragraph."""
    groups: dict[tuple[str, str], list[str]] = {}
    for b in found:
        groups.setdefault((f"{b.field}: {b.relation}", b.reason), []).append(b.package)
    head = (
        f"replacing bookworm's {archived.package} {archived.version} with "
        f"{new.upstream} ({new.version}){why} would break {len({b.package for b in found})} "
        "archive packages:"
    )
    lines = [head]
    for (relation, reason), names in sorted(groups.items()):
        lines.append(f"  {relation} ({reason}): {', '.join(sorted(set(names)))}")
    return "\n".join(lines)


def provided(fields: Mapping[str, str]) -> frozenset[str]:
    """The virtual package names a control record provides."""
    return frozenset(rel["name"] for group in _parsed(fields.get("Provides", "")) for rel in group)


def archived_from(
    own: Mapping[str, str],
    records: list[Mapping[str, str]],
    reverse_provides: Mapping[str, list[str]] | None = None,
) -> Archived:
    """An :class:`Archived` from control records: the package's own, and those of the
    packages that may depend on it (the others are ignored); ``reverse_provides`` names
    the providers of each virtual name (default: whoever in ``records`` provides it)."""
    package = own["Package"]
    provides = provided(own)
    if reverse_provides is None:
        reverse_provides = {
            v: [r["Package"] for r in records if v in provided(r)] for v in provides
        }
    others = {
        v: tuple(p for p in reverse_provides.get(v, []) if p != package) for v in sorted(provides)
    }
    dependants = tuple(r for r in records if r.get("Package") != package)
    return Archived(package, own["Version"], provides, dependants, others)


def load_archived(package: str) -> Archived | None:
    """What apt's index has of ``package`` and of everything that depends on it, or on a
    virtual package it provides; None when the archive lacks it (nothing to break)."""
    own = apt.candidate_fields([package])
    if not own:
        return None
    reverse = apt.reverse_relations([package, *provided(own[0])])
    names = {n for rdeps, _ in reverse.values() for n in rdeps} - {package}
    providers = {name: prov for name, (_, prov) in reverse.items()}
    return archived_from(own[0], list(apt.candidate_fields(names)), providers)


def check_replacements(replacing: list[tuple[str, str, str, str]]) -> None:
    """Refuse, before anything is built, replacements that would break the archive.

    Each entry is (PyPI name, Debian package, PEP 440 version, who asks for it); raises
    :class:`ArchiveConflict` naming every package that would break.
    """
    problems: list[str] = []
    for pypi_name, package, version, who in replacing:
        archived = load_archived(package)
        if archived is None:
            continue
        new = replacement(archived, pypi_name, version)
        found = breakages(archived, new)
        if found:
            problems.append(describe(new, archived, found, f" (for {who})"))
    if problems:
        raise ArchiveConflict(
            "\n".join(problems)
            + "\nchoose a release whose requirements bookworm meets (deepdeb resolve NAME), "
            'or "depend" on the archive\'s package'
        )
