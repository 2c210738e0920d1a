"""``deepdeb build`` for recipes whose source is a prebuilt wheel: plan the flavours
(:mod:`deepdeb.wheel.flavours`), audit each wheel, build the packages, run the sanity test,
and move the packages and report.json into ``--out`` only when all of them were built."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from rich.console import Console

from deepdeb.licence.audit import audit_wheel
from deepdeb.licence.verdict import Verdict
from deepdeb.recipe.model import WheelRecipe
from deepdeb.report.schema import (
    SanityResult,
    WheelOrigin,
    WheelPackageEntry,
    WheelReport,
)
from deepdeb.sources.wheels import Fetched
from deepdeb.util import atomic_write_text
from deepdeb.wheel.depends import relation_name
from deepdeb.wheel.flavours import Planned, follow_packaged_areas, mark_local, plan
from deepdeb.wheel.package import Sibling, WheelPackage, build_package
from deepdeb.wheel.sanity import run_sanity


def _audit(fetched: Fetched, depends: list[str], work: Path) -> Verdict:
    """The wheel's licence verdict, read as ``deepdeb audit`` reads it (METADATA and licence
    files, vendored ones included), with its Debian dependencies for the area."""
    alternatives = [[relation_name(d)] for d in depends]
    return audit_wheel(fetched.path, work / "audit" / fetched.sha256[:16], alternatives)


def _sanity(
    recipe: WheelRecipe, built: list[tuple[Planned, WheelPackage]], work: Path, console: Console
) -> dict[str, SanityResult]:
    """The sanity test once per flavour (flavours conflict: each gets its own clean root,
    with the requirement packages built alongside)."""
    assert recipe.sanity is not None
    s = recipe.sanity
    shared = [r.deb.file for p, r in built if p.flavor is None]
    results: dict[str, SanityResult] = {}
    for p, r in built:
        if p.flavor is None:
            continue
        what = (
            f"sanity ({p.flavor}): clean root, {s.framework} training on {s.dataset} "
            f"for {s.seconds:.0f} s"
        )
        with console.status(what + " ..."):
            sane = run_sanity(
                [r.deb.file, *shared], work / "sanity" / p.flavor, s.dataset, s.seconds,
                s.min_accuracy, s.framework,
            )  # fmt: skip
        results[p.flavor] = sane
    return results


def run_wheel_build(recipe: WheelRecipe, out: Path, console: Console) -> WheelReport:
    """Plan, audit and build every package; results move into ``out`` only when all built."""
    start = time.monotonic()
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="deepdeb-wheel-"))
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=out))
    try:
        with console.status("reading wheels, checking requirements against the archive ..."):
            plans = plan(recipe)
        built: list[tuple[Planned, WheelPackage]] = []
        own = {p.spec.package for p in plans}
        for p in plans:
            # what the recipe builds itself is judged here, not looked up in the archive
            # (it is not there); follow_packaged_areas then carries its area over
            archive_depends = [d for d in p.spec.depends if relation_name(d) not in own]
            verdict = _audit(p.fetched, archive_depends, work)
            p.area, p.redistributable = verdict.area, verdict.redistributable
            p.reasons = verdict.redistributable_reasons + verdict.area_reasons
            p.clauses = [
                {"file": f.path, **asdict(c), "cite": c.cite()} for f in verdict.files
                for c in f.clauses
            ]  # fmt: skip
        follow_packaged_areas(plans)
        mark_local(plans)
        siblings: dict[str, Sibling] = {}
        for p in plans:
            with console.status(f"building {p.spec.package} {p.spec.version} ..."):
                made = build_package(p.wheel, p.spec, work / "pkg", staging, siblings)
            built.append((p, made))
            for name, directory in made.libraries.items():
                siblings.setdefault(name, Sibling(p.spec.package, p.spec.version, directory))
            console.print(f"built {made.deb.file.name} in {made.seconds:.0f} s")
        report = _report(recipe, built, time.monotonic() - start)
        if recipe.sanity is not None:
            report.sanity = _sanity(recipe, built, work, console)
        for _, result in built:
            os.replace(result.deb.file, out / result.deb.file.name)
        atomic_write_text(out / "report.json", report.dumps())
        return report
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)


def _report(
    recipe: WheelRecipe, built: list[tuple[Planned, WheelPackage]], seconds: float
) -> WheelReport:
    packages = [
        WheelPackageEntry(
            deb=result.deb,
            area=p.area,
            redistributable=p.redistributable,
            licence_reasons=p.reasons,
            flavor=p.flavor,
            wheel=WheelOrigin(p.fetched.path.name, p.fetched.sha256, p.fetched.origin),
            depends=", ".join(p.spec.depends),
            shlibs_depends=result.shlibs_depends,
            provides=list(p.spec.provides),
            conflicts=list(p.spec.conflicts),
            dropped=result.dropped,
            bundled_sonames=result.bundled_sonames,
            scripts=result.scripts,
            not_byte_compiled=result.not_compiled,
            requirements=p.requirements,
            build_seconds=round(result.seconds, 1),
            licence_clauses=p.clauses,
        )
        for p, result in built
    ]
    return WheelReport(recipe.path, [f.name for f in recipe.flavors], seconds, packages)
