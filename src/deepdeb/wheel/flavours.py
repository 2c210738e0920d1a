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

``bundle`` and ``package`` replace the archive's package of that name: before anything is
built, :mod:`deepdeb.wheel.conflicts` checks every archive package that depends on it, and
a replacement that would break one (numpy 2 for every module compiled against numpy 1's
ABI) stops the build with the list. A replacement keeps the archive's epoch, so that it
sorts after the version it replaces, and provides the ABI virtual packages its version
keeps (``python3-numpy-abi9`` for a numpy 1.x).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

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


def plan(recipe: WheelRecipe) -> list[Planned]:
    """Every package the recipe makes: one per flavour, plus requirements it packages."""
    plans: list[Planned] = []
    unsatisfied: list[str] = []
    wheels = [(flavor, fetch_source(flavor)) for flavor in recipe.flavors]
    opened = [(f, fetched, open_wheel(fetched.path)) for f, fetched in wheels]
    names = {f.name: package_name(w, f) for f, _, w in opened}
    packaged: dict[str, Planned] = {}
    replacing: list[tuple[str, str, str, str]] = []  # (PyPI name, package, version, for)
    in_archive: set[str] = set()
    for flavor, fetched, whl in opened:
        version = debian_version(whl.version) + "-1"
        choices = dict(flavor.python.requires)
        deps = dependencies(whl, flavor.python.extras)
        check_archive(deps)
        relations: list[str] = []
        bundled: list[Wheel] = []
        bundled_names: list[str] = []
        provides = [f"{base_name(whl, flavor)}-api (= {version})"]
        rows = []
        for d in deps:
            choice = choices.get(d.pypi_name)
            if choice is None and not d.satisfiable:
                unsatisfied.append(
                    f"{d.requirement} ({names[flavor.name]}): {d.why_not()}; choose in [python] "
                    f'requires: {d.pypi_name} = "depend" | "bundle" | "package"'
                )
                continue
            who = f"{d.requirement} of {names[flavor.name]}"
            if choice == "bundle":
                inner, inner_provides, inner_relations = _bundle(d, flavor)
                bundled.append(inner)
                bundled_names.append(d.package)
                provides += inner_provides
                relations += inner_relations
                replacing.append((d.pypi_name, d.package, inner.version, who))
            elif choice == "package" and d.pypi_name not in packaged:
                for x, made in _plan_requirement(d, flavor, choices, packaged):
                    replacing.append((x.pypi_name, x.package, made.wheel.version, who))
                    in_archive.update([x.package] if x.archive_versions else [])
            if d.archive_versions:
                in_archive.add(d.package)
            relation = relation_for(d, choice)
            if relation:
                relations.append(relation)
            rows.append(_requirement_row(d, choice, relation))
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
        plans.append(Planned(whl, fetched, spec, flavor.name, rows))
    if unsatisfied:
        raise UnsatisfiedRequirements(
            "requirements Debian bookworm cannot satisfy:\n  " + "\n  ".join(unsatisfied)
        )
    check_replacements([r for r in replacing if r[1] in in_archive])
    planned = [*plans, *packaged.values()]
    pin_built(planned)
    return planned


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
    exact = re.fullmatch(r"(\S+) \(= [^)]+\)", relation)
    if exact and exact.group(1) in versions:
        return f"{exact.group(1)} (= {versions[exact.group(1)]})"
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
    fetched = fetch_wheel(d.requirement)
    whl = open_wheel(fetched.path)
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


def _plan_requirement(
    d: Dependency, flavor: Flavor, choices: dict[str, str], packaged: dict[str, Planned]
) -> list[tuple[Dependency, Planned]]:
    """A requirement built as its own package (``package``), added to ``packaged``, and
    with it, by the same choices, what it needs that the archive lacks (cuDNN needs
    cuBLAS, which needs NVRTC): every package planned here, with its requirement."""
    fetched, whl, deps = _requirement_wheel(d, flavor, choices)
    relations = [(x, relation_for(x, choices.get(x.pypi_name))) for x in deps]
    spec = PackageSpec(
        package=d.package,
        version=replacement_version(whl.version, d.archive_versions),
        provides=tuple(sorted(kept_virtuals(d.pypi_name, whl.version))),
        depends=tuple(r for _, r in relations if r),
        maintainer=flavor.python.maintainer or MAINTAINER,
    )
    rows = [_requirement_row(x, choices.get(x.pypi_name), r) for x, r in relations]
    packaged[d.pypi_name] = Planned(whl, fetched, spec, None, rows)
    planned = [(d, packaged[d.pypi_name])]
    for x in deps:
        if choices.get(x.pypi_name) == "package" and x.pypi_name not in packaged:
            planned += _plan_requirement(x, flavor, choices, packaged)
    return planned


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
            if areas.get(name := relation.split()[0].split(":")[0], "main") != "main"
        )
        if outside:
            p.area = "contrib"
            p.reasons.append(
                f"contrib: depends on {', '.join(outside)}, built by this recipe outside main"
            )
