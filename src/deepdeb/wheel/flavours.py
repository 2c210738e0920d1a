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

from dataclasses import dataclass, field

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
                packaged[d.pypi_name] = _plan_requirement(d, flavor)
                replacing.append((d.pypi_name, d.package, packaged[d.pypi_name].wheel.version, who))
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
    return [*plans, *packaged.values()]


def _requirement_wheel(d: Dependency, flavor: Flavor) -> tuple[Fetched, Wheel, list[Dependency]]:
    """The wheel for a requirement that is bundled or packaged, and its own requirements,
    which must be satisfiable from the archive."""
    fetched = fetch_wheel(d.requirement)
    whl = open_wheel(fetched.path)
    deps = dependencies(whl)
    check_archive(deps)
    missing = [f"{x.requirement}: {x.why_not()}" for x in deps if not x.satisfiable]
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


def _plan_requirement(d: Dependency, flavor: Flavor) -> Planned:
    """A requirement built as its own package (``package``)."""
    fetched, whl, deps = _requirement_wheel(d, flavor)
    spec = PackageSpec(
        package=d.package,
        version=replacement_version(whl.version, d.archive_versions),
        provides=tuple(sorted(kept_virtuals(d.pypi_name, whl.version))),
        depends=tuple(x.relation() for x in deps),
        maintainer=flavor.python.maintainer or MAINTAINER,
    )
    rows = [_requirement_row(x, None, x.relation()) for x in deps]
    return Planned(whl, fetched, spec, None, rows)


def follow_packaged_areas(plans: list[Planned]) -> None:
    """A free package that depends on a non-free one it packages itself goes to contrib
    (Debian Policy 2.2.1: main must not depend on packages outside main)."""
    areas = {p.spec.package: p.area for p in plans}
    for p in plans:
        if p.area != "main":
            continue
        outside = sorted(
            name
            for relation in p.spec.depends
            if areas.get(name := relation.split()[0].split(":")[0], "main") != "main"
        )
        if outside:
            p.area = "contrib"
            p.reasons.append(f"contrib: depends on {', '.join(outside)}, which is not in main")
