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

import shutil
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from debian.deb822 import Deb822, PkgRelation

from deepdeb.errors import AuditError
from deepdeb.licence import models
from deepdeb.licence.mlpolicy import MlVerdict, ml_verdict
from deepdeb.licence.scan import Finding, is_licence_file, scan
from deepdeb.licence.verdict import Verdict, control_dependencies, decide, source_area
from deepdeb.recipe.load import load_recipe
from deepdeb.recipe.model import SourceRecipe, WheelRecipe
from deepdeb.sources.fetch import SourcePackage, obtain, unpack
from deepdeb.sources.wheelfile import open_wheel
from deepdeb.sources.wheels import fetch_source
from deepdeb.util import run


@dataclass
class AuditResult:
    """What ``deepdeb audit`` reports for one target: its verdict, name and origin."""

    target: str
    verdict: Verdict
    upstream_name: str
    source: str

    def to_json(self) -> dict[str, Any]:
        return {"target": self.target, **self.verdict.to_json()}


def audit_recipe(
    recipe: SourceRecipe, package: SourcePackage, tree: Path, deep: bool = False
) -> Verdict:
    """The verdict on a recipe's unpacked source: its files, its declared models and
    datasets, its dependencies, and the archive's own area for Debian sources."""
    ml = [ml_verdict("model", m) for m in recipe.models]
    ml += [ml_verdict("dataset", d) for d in recipe.datasets]
    declared = {m.get("path", "") for m in [*recipe.models, *recipe.datasets]}
    deps = control_dependencies(tree) + [[d] for d in recipe.depends]
    reviewed = source_area(package.name, package.version) if recipe.source.debian else None
    return _decide(tree, deep, ml, deps, reviewed, declared)


def _decide(
    tree: Path,
    deep: bool,
    ml: list[MlVerdict],
    deps: list[list[str]],
    reviewed: str | None = None,
    declared: frozenset[str] | set[str] = frozenset(),
) -> Verdict:
    """The verdict on an unpacked tree: its files, the models and datasets declared for it
    and those found in it, and code that fetches more."""
    return _with_models(scan(tree, deep), tree, ml, deps, reviewed, declared)


def _with_models(
    files: list[Finding],
    root: Path,
    ml: list[MlVerdict],
    deps: list[list[str]],
    reviewed: str | None = None,
    declared: frozenset[str] | set[str] = frozenset(),
) -> Verdict:
    """The verdict on ``files``, with the models and datasets found under ``root``
    (:mod:`deepdeb.licence.models`) and the code there that fetches more."""
    found = models.verdicts(models.find_artifacts(root, files), declared)
    fetches = [f"{d.path}:{d.line}: {d.call}()" for d in models.find_runtime_downloads(root)]
    return decide(files, ml + found, deps, reviewed, fetches)


def audit_wheel(
    path: Path, tree: Path, depends: Sequence[Sequence[str]] = (), *, deep: bool = False
) -> Verdict:
    """The verdict on a wheel, unpacked into ``tree`` once its structure, paths and size
    are checked. ``deepdeb build`` and ``deepdeb audit`` both call this, so they cannot
    disagree: they read the licence evidence (:func:`licence_evidence`), not every file,
    because a binary wheel's headers are not its sources and torch's would take minutes
    to scan. ``deep`` (``deepdeb audit --deep``) reads everything with scancode-toolkit."""
    open_wheel(path)
    if tree.exists():
        shutil.rmtree(tree)
    with zipfile.ZipFile(path) as wheel:
        names = wheel.namelist()
        wheel.extractall(tree, [n for n in names if deep or licence_evidence(n)])
        evidence = tree.parent / f"{tree.name}-models"  # not scanned for licences
        if evidence.exists():
            shutil.rmtree(evidence)
        wheel.extractall(evidence, [n for n in names if models.MODEL_NAMES.search(n)])
    return _with_models(scan(tree, deep), evidence, [], [list(alts) for alts in depends])


def licence_evidence(member: str) -> bool:
    """Whether a wheel member says what the wheel's licence is: its METADATA, and licence
    files, in the .dist-info or anywhere else (a vendored library's LICENSE counts)."""
    top, _, rest = member.partition("/")
    if top.endswith(".dist-info") and rest == "METADATA":
        return True
    return is_licence_file(member)


def audit_target(target: Path, work: Path, deep: bool = False) -> AuditResult:
    """Audit a recipe, a source tree, a .deb or a wheel (unpacked under ``work``)."""
    if target.suffix == ".toml":
        recipe = load_recipe(target)
        if isinstance(recipe, WheelRecipe):  # the (first flavour's) wheel, file by file
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
            _decide(target, deep, [], control_dependencies(target)),
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
            str(target), _decide(tree, deep, [], deps), fields["Package"], target.name
        )
    if target.suffix == ".whl":
        verdict = audit_wheel(target, work / "wheel", deep=deep)
        return AuditResult(str(target), verdict, target.name.split("-")[0], target.name)
    raise AuditError(f"{target}: expected a recipe (.toml), a directory, a .deb or a .whl")
