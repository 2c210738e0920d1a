"""The verdict: archive area and redistributability, each with the reasons that decided it
(Debian Policy 2.2: main, contrib, non-free; and local-only, never published)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from debian.deb822 import Deb822, PkgRelation

from deepdeb.debian import apt
from deepdeb.licence.mlpolicy import MlVerdict
from deepdeb.licence.scan import Finding
from deepdeb.licence.table import SEVERITY

AREA_ORDER = ("main", "contrib", "non-free", "local-only")


def package_areas(names: Iterable[str]) -> dict[str, str | None]:
    """Archive area of Debian binary packages (None: not in the archive)."""
    wanted = sorted(set(names))
    areas: dict[str, str | None] = dict.fromkeys(wanted)
    if not wanted:
        return areas
    areas.update(apt.sections(wanted))
    # Virtual packages (debhelper-compat, ...) have no record of their own: a virtual
    # package is as available as the best real package that provides it.
    for name in [n for n, a in areas.items() if a is None]:
        found = list(apt.sections(apt.providers(name)).values())
        if found:
            areas[name] = min(found, key=AREA_ORDER.index)
    return areas


def source_area(name: str, version: str) -> str | None:
    """The archive area of a Debian source package at this version, from apt's index."""
    return apt.source_area(name, version)


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


@dataclass
class Verdict:
    """The audit's decision: the archive area and whether the result may be redistributed,
    each with the reasons a maintainer needs to check it."""

    area: str
    redistributable: bool
    area_reasons: list[str]
    redistributable_reasons: list[str]
    files: list[Finding]
    ml: list[MlVerdict] = field(default_factory=list)
    dependencies: dict[str, str | None] = field(default_factory=dict)
    files_excluded: list[str] = field(default_factory=list)
    runtime_downloads: list[str] = field(default_factory=list)  # "path:line: call"

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
            "runtime_downloads": self.runtime_downloads,
            "files": [asdict(f) for f in self.files],
            "summary": {c: sum(f.classification == c for f in self.files) for c in SEVERITY},
        }


def _by_class(files: list[Finding], ml: list[MlVerdict]) -> dict[str, list[str]]:
    """What falls in each licence class: file paths, and "model NAME" / "dataset NAME"."""
    by_class: dict[str, list[str]] = {c: [] for c in SEVERITY}
    for f in files:
        by_class[f.classification].append(f.path)
    if not files and not ml:  # nothing says what the licence is: never silently free
        by_class["unknown"].append("(no files at all)")
    for m in ml:
        by_class[m.classification].append(f"{m.kind} {m.name}")
    return by_class


def _redistribution(
    by_class: dict[str, list[str]],
    files: list[Finding],
    ml: list[MlVerdict],
    archive_area: str | None,
) -> tuple[list[str], str]:
    """Why the result may not be redistributed (empty: it may), and the note that stands
    instead when only the archive's review vouches for licences deepdeb cannot classify."""
    reasons: list[str] = []
    if by_class["not-redistributable"]:
        why = {f.reason for f in files if f.classification == "not-redistributable"}
        why |= {"; ".join(m.missing) for m in ml if m.classification == "not-redistributable"}
        reasons.append(
            "may not be redistributed: "
            f"{_listing(by_class['not-redistributable'])} ({'; '.join(sorted(why))})"
        )
    if by_class["unknown"] and archive_area is not None and not by_class["not-redistributable"]:
        note = (
            f"deepdeb cannot classify {_listing(by_class['unknown'])}; the Debian archive "
            f"carries this source in {archive_area}, as reviewed by its ftp team"
        )
        return reasons, note
    if by_class["unknown"]:
        reasons.append(f"licence unknown, needs human review: {_listing(by_class['unknown'])}")
    return reasons, ""


def _area(
    redistributable: bool,
    by_class: dict[str, list[str]],
    files: list[Finding],
    ml: list[MlVerdict],
) -> tuple[str, list[str]]:
    """The archive area the licences alone allow (Debian Policy 2.2), with the reason."""
    if not redistributable:
        why = "local-only: the .deb may be built from the recipe on the user's machine but never"
        return "local-only", [why + " published"]
    if not by_class["non-free"]:
        return "main", []
    because = sorted(
        {f.reason for f in files if f.classification == "non-free"}
        | {f"{m.name} is {m.category}: " + "; ".join(m.missing) for m in ml
           if m.classification == "non-free"}
    )  # fmt: skip
    return "non-free", [f"not DFSG-free: {_listing(by_class['non-free'])} ({'; '.join(because)})"]


def _area_of_dependencies(
    dependencies: list[list[str]], areas: dict[str, str | None]
) -> tuple[str, str]:
    """main, or contrib when a free package needs something outside main (Policy 2.2.1):
    each dependency is met by its best alternative."""
    outside = []
    for alts in dependencies:
        best = min((AREA_ORDER.index(areas[n] or "local-only") for n in alts), default=0)
        if best > 0:
            outside.append(" | ".join(f"{n} ({areas[n] or 'not in the archive'})" for n in alts))
    if outside:
        return "contrib", f"free, but needs packages outside main: {_listing(outside)}"
    return "main", "all free, and everything it needs is in main"


def _listing(paths: list[str], limit: int = 5) -> str:
    more = f" and {len(paths) - limit} more" if len(paths) > limit else ""
    return ", ".join(paths[:limit]) + more


def decide(
    files: list[Finding],
    ml: list[MlVerdict] | None = None,
    dependencies: list[list[str]] | None = None,
    archive_area: str | None = None,
    runtime_downloads: list[str] | None = None,
) -> Verdict:
    """The archive area and redistributability, each with the reasons that decided it.

    ``archive_area`` is the area the Debian archive already carries this very source in.
    Its ftp team has reviewed every file of it, so licences deepdeb's table does not know
    (an RFC's terms, an unusual permissive licence) do not make such a source local-only:
    they are listed, and the archive's decision stands.
    """
    ml = ml or []
    by_class = _by_class(files, ml)
    redis_reasons, unknown_note = _redistribution(by_class, files, ml, archive_area)
    redistributable = not redis_reasons
    area, area_reasons = _area(redistributable, by_class, files, ml)
    if redistributable:
        redis_reasons.append(
            "non-free but redistributable"
            if area == "non-free"
            else "every licence deepdeb knows is DFSG-free, the rest is accepted by the archive"
            if unknown_note
            else "every licence is DFSG-free"
        )
    if unknown_note:
        area_reasons.append(unknown_note)
        if AREA_ORDER.index(archive_area or "main") > AREA_ORDER.index(area):
            area = archive_area or area
    deps = package_areas(n for alts in dependencies or [] for n in alts)
    if redistributable and area == "main":
        area, why = _area_of_dependencies(dependencies or [], deps)
        area_reasons.append(why)
    if runtime_downloads:
        area_reasons.append(
            "its code fetches models or data at run time, which no verdict here covers: "
            f"{_listing(runtime_downloads, 3)}; if the package needs them to work, it "
            "belongs in contrib (Policy 2.2.2)"
        )
    return Verdict(
        area,
        redistributable,
        area_reasons,
        redis_reasons,
        files,
        ml,
        deps,
        files_excluded=sorted(by_class["not-redistributable"]),
        runtime_downloads=list(runtime_downloads or []),
    )
