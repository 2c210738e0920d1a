"""What a wheel recipe makes: one package per flavour, plus the requirements it packages.

Each flavour (cpu, cuda, rocm) is one wheel and one package. Flavours of a framework are
interchangeable for their users, so they follow Debian's pattern for alternatives: every
flavour ``Provides: python3-<name>-api (= version)`` and ``Conflicts``/``Replaces`` the
others, and dependants depend on the virtual name.

Requirements the archive cannot satisfy are never shipped silently: the build stops and
names each one with what the archive has, and the recipe decides per requirement in
``[python] requires``: ``depend`` (depend on the archive's package anyway, the version
constraint dropped and reported), ``bundle`` (ship the requirement's wheel inside this
package, which then Provides/Conflicts/Replaces the Debian package) or ``package`` (build
the requirement's wheel as its own python3-* package, and depend on it with the version).

A packaged requirement has requirements of its own (TensorFlow's tensorboard needs
tensorboard-data-server, which bookworm lacks): they are checked against the archive the
same way, and the recipe's ``[python] requires`` decides for them too, so the whole
closure is packaged, breadth first, the framework's own requirements before theirs. What
no choice covers is listed with who needs it, every level the build could reach in one
message. One package per PyPI name: a second requirement on a name already packaged must
accept the version chosen for the first, or the build stops naming both.

``bundle`` and ``package`` replace the archive's package of that name: before anything is
built, :mod:`deepdeb.wheel.conflicts` checks every archive package that depends on it, and
a replacement that would break one (numpy 2 for every module compiled against numpy 1's
ABI) stops the build with the list. A replacement keeps the archive's epoch, so that it
sorts after the version it replaces, and provides the ABI virtual packages its version
keeps (``python3-numpy-abi9`` for a numpy 1.x).
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, field, replace

from packaging.requirements import Requirement

from deepdeb.debian.debpkg import LOCAL_SUFFIX
from deepdeb.errors import UnsatisfiedRequirements
from deepdeb.recipe.model import Flavor, WheelRecipe
from deepdeb.report.schema import RequirementRow
from deepdeb.sources.wheelfile import Wheel, open_wheel
from deepdeb.sources.wheels import Fetched, fetch_source, fetch_wheel
from deepdeb.wheel.conflicts import check_replacements, kept_virtuals, replacement_version
from deepdeb.wheel.depends import (
    Dependency,
    archive_epoch,
    check_archive,
    debian_version,
    dependencies,
    relation_name,
    with_epoch,
)
from deepdeb.wheel.package import MAINTAINER, PackageSpec, relation_for


@dataclass
class Planned:
    """One package to make from one wheel."""

    wheel: Wheel
    fetched: Fetched
    spec: PackageSpec
    flavor: str | None
    requirements: list[RequirementRow] = field(default_factory=list)
    area: str = "main"
    redistributable: bool = True
    reasons: list[str] = field(default_factory=list)
    clauses: list[dict[str, str]] = field(default_factory=list)  # cited by the audit
    asked_by: str = ""  # for a packaged requirement: the package that first needed it


def base_name(wheel: Wheel, flavor: Flavor) -> str:
    """The framework's package name: the cpu flavour's, and the stem of the others'."""
    return flavor.python.package or f"python3-{wheel.name}"


def package_name(wheel: Wheel, flavor: Flavor) -> str:
    """A flavour's package: the base name for cpu, ``<base>-<flavour>`` for the others."""
    base = base_name(wheel, flavor)
    return base if flavor.name == "cpu" else f"{base}-{flavor.name}"


def _requirement_row(d: Dependency, choice: str | None, relation: str | None) -> RequirementRow:
    return RequirementRow(
        requirement=d.requirement,
        package=d.package,
        archive_versions=d.archive_versions,
        satisfiable=d.satisfiable,
        choice=choice,
        depends=relation,
        dropped_specifiers=d.dropped_specifiers,
    )


def _unsatisfied(d: Dependency, who: str) -> str:
    return (
        f"{d.requirement} ({who}): {d.why_not()}; choose in [python] requires: "
        f'{d.pypi_name} = "depend" | "bundle" | "package"'
    )


@dataclass
class _Closure:
    """What planning collects across the flavours and the requirements they package."""

    packaged: dict[str, Planned] = field(default_factory=dict)
    # (requirement, flavour, who asks), breadth first: the framework's own requirements
    # are fetched before their requirements, so the framework's bounds pick the versions
    queue: deque[tuple[Dependency, Flavor, str]] = field(default_factory=deque)
    replacing: list[tuple[str, str, str, str]] = field(default_factory=list)  # PyPI, pkg, ver, for
    in_archive: set[str] = field(default_factory=set)
    unsatisfied: list[str] = field(default_factory=list)
    clashes: list[str] = field(default_factory=list)


def plan(recipe: WheelRecipe) -> list[Planned]:
    """Every package the recipe makes: one per flavour, plus requirements it packages
    (and theirs, as far as the recipe's choices reach)."""
    plans: list[Planned] = []
    wheels = [(flavor, fetch_source(flavor)) for flavor in recipe.flavors]
    opened = [(f, fetched, open_wheel(fetched.path)) for f, fetched in wheels]
    names = {f.name: package_name(w, f) for f, _, w in opened}
    closure = _Closure()
    for flavor, fetched, whl in opened:
        plans.append(_plan_flavour(flavor, fetched, whl, names, closure))
    while closure.queue:
        _plan_packaged(*closure.queue.popleft(), closure)
    if closure.unsatisfied:
        raise UnsatisfiedRequirements(
            "requirements Debian bookworm cannot satisfy:\n  "
            + "\n  ".join(closure.unsatisfied)
            + "\n(deepdeb resolve NAME lists a release's whole closure)"
        )
    if closure.clashes:
        raise UnsatisfiedRequirements(
            "requirements that the packaged versions do not meet:\n  "
            + "\n  ".join(closure.clashes)
        )
    check_replacements([r for r in closure.replacing if r[1] in closure.in_archive])
    planned = [*plans, *closure.packaged.values()]
    pin_built(planned)
    assign_scripts(planned)
    return planned


def assign_scripts(plans: list[Planned]) -> None:
    """An entry-point script two packages of the recipe would both install (dpkg refuses
    the second) goes to the package whose wheel holds the module it runs: tensorflow
    declares ``tensorboard = tensorboard.main:run_main``, which python3-tensorboard
    ships. Flavours of one framework conflict with each other, so they may share names."""
    owners: dict[str, list[Planned]] = {}
    for p in plans:
        for group in ("console_scripts", "gui_scripts"):
            for name in p.wheel.entry_points.get(group, {}):
                owners.setdefault(name, []).append(p)
    for name, claimants in owners.items():
        keeper = next((p for p in claimants if _holds(p.wheel, name)), None)
        if keeper is None or len({_group(p) for p in claimants}) < 2:
            continue
        for p in claimants:
            if _group(p) != _group(keeper):
                p.spec = replace(p.spec, skip_scripts=(*p.spec.skip_scripts, name))


def _group(p: Planned) -> str:
    """Packages that are never installed together (a framework's flavours) are one."""
    return " flavours" if p.flavor is not None else p.spec.package


def _holds(wheel: Wheel, script: str) -> bool:
    """Whether a wheel ships the top-level module its entry point ``script`` runs."""
    targets = [g[script] for g in wheel.entry_points.values() if script in g]
    top = targets[0].split(":")[0].split(".")[0] if targets else ""
    return bool(top) and any(m.split("/")[0] in (top, f"{top}.py") for m in wheel.record)


def _plan_flavour(
    flavor: Flavor, fetched: Fetched, whl: Wheel, names: dict[str, str], closure: _Closure
) -> Planned:
    """One flavour's package; its ``package`` requirements go on the closure's queue."""
    version = debian_version(whl.version) + "-1"
    choices = dict(flavor.python.requires)
    deps = dependencies(whl, flavor.python.extras)
    check_archive(deps)
    relations: list[str] = []
    bundled: list[Wheel] = []
    bundled_names: list[str] = []
    provides = [f"{base_name(whl, flavor)}-api (= {version})"]
    rows: list[RequirementRow] = []
    for d in deps:
        choice = choices.get(d.pypi_name)
        if choice is None and not d.satisfiable:
            closure.unsatisfied.append(_unsatisfied(d, names[flavor.name]))
            continue
        if choice == "bundle":
            inner, inner_provides, inner_relations = _bundle(d, flavor)
            bundled.append(inner)
            bundled_names.append(d.package)
            provides += inner_provides
            relations += inner_relations
            who = f"{d.requirement} of {names[flavor.name]}"
            closure.replacing.append((d.pypi_name, d.package, inner.version, who))
        elif choice == "package":
            closure.queue.append((d, flavor, names[flavor.name]))
        _decided(closure, d, choice, relations, rows)
    others = [n for name, n in names.items() if name != flavor.name]
    spec = PackageSpec(
        package=names[flavor.name],
        version=version,
        provides=tuple(provides),
        conflicts=tuple([*others, *bundled_names]),
        depends=tuple(relations),
        bundled=tuple(bundled),
        drop=flavor.python.drop,
        maintainer=flavor.python.maintainer or MAINTAINER,
    )
    return Planned(whl, fetched, spec, flavor.name, rows)


def _decided(
    closure: _Closure,
    d: Dependency,
    choice: str | None,
    relations: list[str],
    rows: list[RequirementRow],
) -> None:
    """A requirement decided: its relation (if any) and its row in the report; an archive
    package it names is one the conflict check must look at."""
    if d.archive_versions:
        closure.in_archive.add(d.package)
    relation = relation_for(d, choice)
    if relation:
        relations.append(relation)
    rows.append(_requirement_row(d, choice, relation))


def accepts(requirement: str, version: str) -> bool:
    """Whether a PEP 440 ``version`` meets a requirement's specifier (pre-releases too: a
    packaged pre-release was chosen on purpose)."""
    return Requirement(requirement).specifier.contains(version, prereleases=True)


def _plan_packaged(d: Dependency, flavor: Flavor, who: str, closure: _Closure) -> None:
    """A requirement built as its own package (``package``); its own requirements are
    decided by the same ``[python] requires`` table, and queued when packaged too."""
    done = closure.packaged.get(d.pypi_name)
    if done is not None:
        if not accepts(d.requirement, done.wheel.version):
            closure.clashes.append(
                f"{d.requirement} ({who}): {d.package} is packaged at {done.wheel.version} "
                f"for {done.asked_by}"
            )
        return
    fetched, whl = _fetch_requirement(d, flavor)
    deps = dependencies(whl)
    check_archive(deps)
    choices = dict(flavor.python.requires)
    chain = f"{whl.name} {whl.version} for {who}"
    inner_who = f"needed by {chain}"
    relations: list[str] = []
    rows: list[RequirementRow] = []
    for x in deps:
        choice = choices.get(x.pypi_name)
        if choice == "bundle":
            closure.unsatisfied.append(
                f"{x.requirement} ({inner_who}): bundle is for the framework's own "
                f'requirements; a packaged requirement\'s needs are "package" or "depend"'
            )
            continue
        if choice is None and not x.satisfiable:
            closure.unsatisfied.append(
                _unsatisfied(x, inner_who) + f", or pin an older {whl.name} in [python] versions"
            )
            continue
        if choice == "package":
            closure.queue.append((x, flavor, chain))
        _decided(closure, x, choice, relations, rows)
    spec = PackageSpec(
        package=d.package,
        version=replacement_version(whl.version, d.archive_versions),
        provides=tuple(sorted(kept_virtuals(d.pypi_name, whl.version))),
        depends=tuple(relations),
        maintainer=flavor.python.maintainer or MAINTAINER,
    )
    planned = Planned(whl, fetched, spec, None, rows, asked_by=who)
    closure.packaged[d.pypi_name] = planned
    if d.archive_versions:
        closure.in_archive.add(d.package)
    closure.replacing.append((d.pypi_name, d.package, whl.version, f"{d.requirement} of {who}"))


def _fetch_requirement(d: Dependency, flavor: Flavor) -> tuple[Fetched, Wheel]:
    """The wheel of a bundled or packaged requirement: at the recipe's ``[python] versions``
    pin when it has one (which must meet the requirement), else the newest that does."""
    pinned = dict(flavor.python.versions).get(d.pypi_name)
    fetched = fetch_wheel(f"{d.pypi_name}=={pinned}" if pinned else d.requirement)
    whl = open_wheel(fetched.path)
    if pinned and not accepts(d.requirement, whl.version):
        raise UnsatisfiedRequirements(
            f"[python] versions pins {d.pypi_name} {pinned}, which does not meet "
            f"{d.requirement} (for {flavor.name})"
        )
    return fetched, whl


def pin_built(plans: list[Planned]) -> None:
    """An exact relation (``== 9.20.0.48`` in Requires-Dist) on a package this recipe
    builds names the version it builds (``9.20.0.48-1~deepdeb1``, perhaps ``+local1``):
    the upstream version alone is never equal to a Debian version with a revision, and apt
    could not install the dependant."""
    versions = {p.spec.package: p.spec.version for p in plans}
    for p in plans:
        depends = tuple(_pinned(r, versions) for r in p.spec.depends)
        if depends != p.spec.depends:
            p.spec = replace(p.spec, depends=depends)


def _pinned(relation: str, versions: dict[str, str]) -> str:
    """``==V`` reads as ``(= V)`` or as the range of V's Debian revisions
    (``(>= V), (<< V.~)``, see :mod:`deepdeb.wheel.depends`); on a package built here,
    either is the exact version built."""
    exact = re.fullmatch(r"(\S+) \(= [^)]+\)", relation) or re.fullmatch(
        r"(\S+) \(>= ([^)]+)\), \1 \(<< \2\.~\)|(\S+) \(<< ([^)]+)\.~\), \3 \(>= \4\)",
        relation,
    )
    name = exact and (exact.group(1) or exact.group(3))
    if name and name in versions:
        return f"{name} (= {versions[name]})"
    return relation


def mark_local(plans: list[Planned]) -> None:
    """Packages that may not be redistributed get ``+local1`` in their version, as local
    source builds do, and the recipe's other packages depend on that version."""
    for p in plans:
        if p.redistributable or p.spec.version.endswith(LOCAL_SUFFIX):
            continue
        old, new = p.spec.version, p.spec.version + LOCAL_SUFFIX
        provides = tuple(x.replace(f"(= {old})", f"(= {new})") for x in p.spec.provides)
        p.spec = replace(p.spec, version=new, provides=provides)
        p.reasons.append(f"local-only: version {new}, built here and never published")
    pin_built(plans)


def _requirement_wheel(
    d: Dependency, flavor: Flavor, choices: dict[str, str] | None = None
) -> tuple[Fetched, Wheel, list[Dependency]]:
    """The wheel for a requirement that is bundled or packaged, and its own requirements,
    which must be satisfiable from the archive, or (for a packaged one) be decided in the
    recipe's ``[python] requires`` as ``package`` or ``depend``."""
    fetched, whl = _fetch_requirement(d, flavor)
    deps = dependencies(whl)
    check_archive(deps)
    decided = {n for n, c in (choices or {}).items() if c in ("package", "depend")}
    missing = [
        f"{x.requirement}: {x.why_not()}"
        for x in deps
        if not x.satisfiable and x.pypi_name not in decided
    ]
    if missing:
        raise UnsatisfiedRequirements(
            f"{d.requirement} (for {flavor.name}) needs what bookworm lacks:\n  "
            + "\n  ".join(missing)
        )
    return fetched, whl, deps


def _bundle(d: Dependency, flavor: Flavor) -> tuple[Wheel, list[str], list[str]]:
    """A requirement shipped inside the package: its wheel, what the package then provides
    in its place (the Debian package at its version, under the archive's epoch, and the ABI
    virtual packages it keeps), and the relations the bundled code needs itself."""
    _, inner, inner_deps = _requirement_wheel(d, flavor)
    version = with_epoch(debian_version(inner.version), archive_epoch(d.archive_versions))
    provides = [f"{d.package} (= {version})", *sorted(kept_virtuals(d.pypi_name, inner.version))]
    return inner, provides, [x.relation() for x in inner_deps]


def follow_packaged_areas(plans: list[Planned]) -> None:
    """A free package that depends on a non-free or local-only one it packages itself goes
    to contrib (Debian Policy 2.2.1: main must not depend on packages outside main). It
    stays redistributable: Debian's contrib carries packages that need software the user
    must obtain elsewhere (nvidia-cudnn, which only downloads cuDNN), and depending on a
    package is not distributing it."""
    areas = {p.spec.package: p.area for p in plans}
    for p in plans:
        if p.area not in ("main", "contrib"):  # contrib: say which of them are built here
            continue
        outside = sorted(
            f"{name} ({areas[name]})"
            for relation in p.spec.depends
            if areas.get(name := relation_name(relation), "main") != "main"
        )
        if outside:
            p.area = "contrib"
            p.reasons.append(
                f"contrib: depends on {', '.join(outside)}, built by this recipe outside main"
            )
