"""Assemble stage: Debian packages in which the loader picks the fastest variant.

Two layouts:

``fat``
    Every binary package that holds shared libraries also holds, for each kept level, a
    copy of each library that differs from the baseline under
    ``<libdir>/glibc-hwcaps/<level>/``, with its soname symlink. One package, every CPU.
``split``
    The stock packages stay byte for byte; each kept level becomes an add-on package
    (``libfoo1-x86-64-v3``) holding only its ``glibc-hwcaps/<level>/`` files.

The small pure functions below compute names, versions and control fields; the packaging
itself is done by ``dpkg-deb``.
"""

from __future__ import annotations

import filecmp
import os
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from debian.deb822 import Deb822, PkgRelation
from debian.debian_support import Version

from deepdeb.cpu.levels import BASELINE, MIN_GLIBC
from deepdeb.debian.debpkg import (
    LOCAL_SUFFIX,
    RELATION_FIELDS,
    AssembledPackage,
    build_deb,
    elf_files,
    extract,
    installed_size_kib,
    read_control,
    write_control,
    write_md5sums,
)
from deepdeb.debian.elf import read_elf
from deepdeb.errors import AssembleError
from deepdeb.isa.build import VariantBuild
from deepdeb.isa.reach import register_variants
from deepdeb.report.schema import ALTERNATIVE, HWCAPS, Reach
from deepdeb.util import run

# --- pure helpers -----------------------------------------------------------------------


def rewrite_relations(value: str, siblings: set[str], old: str, new: str) -> str:
    """Move exact-version relations between packages of one source to the new version.

    ``libfoo-dev: Depends: libfoo1 (= 1.0-1)`` must follow libfoo1 to ``1.0-1+hwcaps1``,
    or the -dev package would be uninstallable next to the rebuilt library.
    """
    relations = PkgRelation.parse_relations(value)
    for alternatives in relations:
        for rel in alternatives:
            if rel["name"] in siblings and rel.get("version") == ("=", old):
                rel["version"] = ("=", new)
    return str(PkgRelation.str(relations))


def require_glibc(depends: str | None) -> str:
    """Add ``libc6 (>= 2.33)`` (first loader with glibc-hwcaps) unless already implied."""
    relations = PkgRelation.parse_relations(depends) if depends and depends.strip() else []
    for alternatives in relations:
        if len(alternatives) == 1 and alternatives[0]["name"] == "libc6":
            version = alternatives[0].get("version")
            if (
                version
                and version[0] in (">=", ">>", "=")
                and Version(version[1]) >= Version(MIN_GLIBC)
            ):
                return str(PkgRelation.str(relations))
            alternatives[0]["version"] = (">=", MIN_GLIBC)
            return str(PkgRelation.str(relations))
    relations.append(
        [
            {
                "name": "libc6",
                "archqual": None,
                "version": (">=", MIN_GLIBC),
                "arch": None,
                "restrictions": None,
            }
        ]
    )
    return str(PkgRelation.str(relations))


def hwcaps_path(library: str, level: str) -> str:
    """Where a level's copy of ``usr/lib/x86_64-linux-gnu/libfoo.so.1`` goes."""
    directory, _, name = library.rpartition("/")
    return f"{directory}/{HWCAPS}/{level}/{name}"


# --- edges: files and dpkg-deb ---------------------------------------------------------


def check_no_isa_marker_outside_hwcaps(tree: Path, package: str) -> None:
    """A file with an ISA-needed marker above baseline outside glibc-hwcaps/ would make the
    loader stop with "CPU ISA level is lower than required" on older CPUs."""
    for path in elf_files(tree):
        rel = path.relative_to(tree).as_posix()
        if f"/{HWCAPS}/" in rel or rel.startswith("DEBIAN/"):
            continue
        needed = read_elf(path).isa_needed
        if needed != BASELINE:
            raise AssembleError(
                f"{package}: /{rel} requires {needed} (x86 ISA needed marker) but lies "
                "outside glibc-hwcaps/; the loader would refuse it on older CPUs"
            )


def source_date_epoch(changelog: Path) -> int:
    """The source's SOURCE_DATE_EPOCH, its changelog date, as dpkg-buildpackage used it.

    ``changelog`` is deepdeb's own copy of the source, never a build's (which the build
    could have replaced with anything).
    """
    out = run(["dpkg-parsechangelog", "-l", changelog, "-STimestamp"]).stdout
    return int(out.strip())


def _stock(deb: Path, dest_dir: Path) -> AssembledPackage:
    """Copy a stock package unchanged."""
    dest = dest_dir / deb.name
    shutil.copyfile(deb, dest)
    fields = Deb822(run(["dpkg-deb", "-f", deb]).stdout)
    return AssembledPackage.of(dest, fields, stock=True)


@dataclass(frozen=True)
class LevelCopy:
    """One variant library to ship: where it comes from and where it goes in the package."""

    level: str
    source: Path
    target: str  # path inside the package, under glibc-hwcaps/<level>/
    soname: str


def select_copies(
    package: str,
    libraries: Mapping[str, str],
    base_tree: Path,
    level_trees: Mapping[str, Path],
) -> list[LevelCopy]:
    """Variant libraries that differ from everything the loader would otherwise find.

    The loader on a v4 CPU searches v4, then v3, v2, then the normal directory, so a copy
    identical to the one a lower level (or the baseline) already ships is left out.
    """
    copies = []
    for rel, soname in sorted(libraries.items()):
        previous = base_tree / rel
        for level, tree in level_trees.items():
            candidate = tree / rel
            if not candidate.is_file():
                raise AssembleError(
                    f"{package}: /{rel} is in the baseline build but not in the {level} "
                    "build; the builds are not comparable"
                )
            if filecmp.cmp(candidate, previous, shallow=False):
                continue
            copies.append(LevelCopy(level, candidate, hwcaps_path(rel, level), soname))
            previous = candidate
    return copies


def _make_dirs(tree: Path, directory: str) -> None:
    """Create a directory in a package tree, every new level 0755 whatever the umask."""
    path = tree
    for part in Path(directory.strip("/")).parts:
        path = path / part
        if not path.is_dir():
            path.mkdir()
            path.chmod(0o755)


def _place(tree: Path, copy: LevelCopy) -> list[str]:
    """Put a copy and its soname symlink into a package tree; returns the paths added."""
    target = tree / copy.target
    _make_dirs(tree, str(Path(copy.target).parent))
    shutil.copy2(copy.source, target)
    added = [copy.target]
    if copy.soname != target.name:
        link = target.parent / copy.soname
        link.unlink(missing_ok=True)
        link.symlink_to(target.name)
        added.append(str(Path(copy.target).parent / copy.soname))
    return added


def _unpack_levels(
    name: str, variants: Mapping[str, VariantBuild], kept: Iterable[str], work: Path
) -> dict[str, Path]:
    """Each level's build of package ``name``, unpacked once under ``work``."""
    trees = {}
    for level in kept:
        deb = variants[level].debs.get(name)
        if deb is None:
            raise AssembleError(f"the {level} build produced no package {name}")
        dest = work / "levels" / level / name
        trees[level] = dest if dest.is_dir() else extract(deb, dest)
    return trees


@dataclass(frozen=True)
class _Plan:
    """What both layouts work from: the builds, the kept levels, naming, scratch space."""

    variants: Mapping[str, VariantBuild]
    kept: list[str]
    suffix: str
    source_name: str
    work: Path
    epoch: int  # SOURCE_DATE_EPOCH of the stock build, for reproducible mtimes
    reaches: Mapping[str, list[Reach]]  # package -> how the loader reaches its libraries

    def variant_libraries(self, package: str) -> dict[str, str]:
        """Libraries (path inside the package -> soname) whose variants can be loaded."""
        return {
            r.path.lstrip("/"): r.soname for r in self.reaches.get(package, []) if r.ships_variants
        }


def assemble(
    variants: Mapping[str, VariantBuild],
    kept: list[str],
    layout: str,
    suffix: str,
    source_name: str,
    work: Path,
    dest: Path,
    reaches: Mapping[str, list[Reach]],
    epoch: int,
    local: bool = False,
) -> list[AssembledPackage]:
    """Write the packages into ``dest`` (a staging directory the caller publishes).

    ``reaches`` says, per package, how the installed system's loader reaches each library
    (see :mod:`deepdeb.isa.reach`): only libraries it can reach get variants, and those behind
    update-alternatives get them as slave links of their provider.

    ``local`` marks a build that may not be redistributed: every package's version gets
    ``+local1``, so it can never be mistaken for, or silently replace, a published one
    (the caller builds such packages in the fat layout: they are only for this machine).
    """
    base = variants[BASELINE]
    dest.mkdir(parents=True, exist_ok=True)
    if local:
        suffix = (suffix if kept else "") + LOCAL_SUFFIX
    elif not kept:
        return [_stock(deb, dest) for deb in base.debs.values()]
    plan = _Plan(variants, kept, suffix, source_name, work, epoch, reaches)
    return (_assemble_split if layout == "split" else _assemble_fat)(plan, dest)


def _assemble_fat(plan: _Plan, dest: Path) -> list[AssembledPackage]:
    base = plan.variants[BASELINE]
    siblings = set(base.debs)
    shipped: dict[str, list[LevelCopy]] = {}  # package -> the variant copies it carries
    results = []
    # Libraries first, so that their -dbgsym packages know which variants were added.
    for name, deb in sorted(base.debs.items(), key=lambda item: _is_dbgsym(item[0])):
        tree = plan.work / "fat" / name
        tree.parent.mkdir(parents=True, exist_ok=True)
        run(["dpkg-deb", "-R", deb, tree])
        control = read_control(tree)
        old = control["Version"]
        added: list[str] = []
        libraries = plan.variant_libraries(name) if control["Architecture"] != "all" else {}
        if libraries:
            level_trees = _unpack_levels(name, plan.variants, plan.kept, plan.work)
            shipped[name] = select_copies(name, libraries, tree, level_trees)
            for copy in shipped[name]:
                added += _place(tree, copy)
            _register_alternatives(tree, plan.reaches.get(name, []), shipped[name])
        if _is_dbgsym(name) and shipped.get(name.removesuffix("-dbgsym")):
            added += _add_debug_files(
                plan, tree, control, shipped[name.removesuffix("-dbgsym")], name
            )
        check_no_isa_marker_outside_hwcaps(tree, name)
        new = old + plan.suffix
        control["Version"] = new
        for field_name in RELATION_FIELDS:
            if field_name in control:
                control[field_name] = rewrite_relations(control[field_name], siblings, old, new)
        source = control.get("Source", plan.source_name).split()[0]
        control["Source"] = f"{source} ({old})"
        if added:
            if not _is_dbgsym(name):
                control["Depends"] = require_glibc(control.get("Depends"))
            control["Installed-Size"] = str(installed_size_kib(tree))
            write_md5sums(tree)
        write_control(tree, control)
        package = build_deb(tree, dest, deb.suffix.lstrip("."), plan.epoch)
        package.hwcaps_files = [] if _is_dbgsym(name) else added
        results.append(package)
    return sorted(results, key=lambda p: p.file.name)


def _is_dbgsym(package: str) -> bool:
    return package.endswith("-dbgsym")


def _register_alternatives(tree: Path, reaches: list[Reach], copies: list[LevelCopy]) -> None:
    """Make the variants of alternative-reached libraries slave links of their provider.

    The package gets the directories the slave links live in (update-alternatives does not
    create directories; dpkg removes them with the package when they are empty) and a
    postinst whose ``update-alternatives --install`` also names the slaves.
    """
    by_path: dict[str, list[str]] = {}
    for r in reaches:
        if r.how != ALTERNATIVE:
            continue
        by_path[r.path] = [c.level for c in copies if "/" + c.target == r.copy_path(c.level)]
        for level in by_path[r.path]:
            _make_dirs(tree, r.search_path(level).rpartition("/")[0])
    if not any(by_path.values()):
        return
    postinst = tree / "DEBIAN" / "postinst"
    postinst.write_text(register_variants(postinst.read_text(), reaches, by_path))
    triggers = tree / "DEBIAN" / "triggers"
    existing = triggers.read_text() if triggers.is_file() else ""
    if "ldconfig" not in existing:  # the slave links are new names for ld.so.cache
        triggers.write_text(existing + "activate-noawait ldconfig\n")
        triggers.chmod(0o644)


def debug_file(build_id: str) -> str:
    """Where dh_strip puts the detached debug symbols of a binary, by its build-id."""
    return f"usr/lib/debug/.build-id/{build_id[:2]}/{build_id[2:]}.debug"


def _add_debug_files(
    plan: _Plan, tree: Path, control: Deb822, copies: list[LevelCopy], name: str
) -> list[str]:
    """Give the variant libraries their debug symbols, from each level's -dbgsym package.

    Every copy has its own build-id, so its symbols sit beside the baseline's without a
    clash; gdb and debuginfod find them by that id.
    """
    added = []
    ids = control.get("Build-Ids", "").split()
    for copy in copies:
        build_id = read_elf(copy.source).build_id
        if build_id is None or build_id in ids:
            continue
        rel = debug_file(build_id)
        level_tree = _unpack_levels(name, plan.variants, [copy.level], plan.work)[copy.level]
        if not (level_tree / rel).is_file():
            continue
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(level_tree / rel, tree / rel)
        ids.append(build_id)
        added.append(rel)
    if added:
        control["Build-Ids"] = " ".join(ids)
    return added


def _assemble_split(plan: _Plan, dest: Path) -> list[AssembledPackage]:
    base = plan.variants[BASELINE]
    results = [_stock(deb, dest) for deb in base.debs.values()]
    for name, deb in base.debs.items():
        if deb.suffix != ".deb":
            continue
        tree = plan.work / "split-base" / name
        extract(deb, tree)
        libraries = plan.variant_libraries(name)
        if not libraries:
            continue
        fields = Deb822(run(["dpkg-deb", "-f", deb]).stdout)
        level_trees = _unpack_levels(name, plan.variants, plan.kept, plan.work)
        copies = select_copies(name, libraries, tree, level_trees)
        for level in plan.kept:
            mine = [c for c in copies if c.level == level]
            if mine:
                results.append(
                    _addon(
                        fields,
                        level,
                        mine,
                        plan.suffix,
                        plan.source_name,
                        plan.work,
                        dest,
                        plan.epoch,
                    )
                )
    return results


def addon_control(base: Mapping[str, str], level: str, suffix: str, source_name: str) -> Deb822:
    """Control fields of the add-on package that carries one level for ``base``."""
    version = base["Version"]
    synopsis, _, _ = base.get("Description", base["Package"]).partition("\n")
    control = Deb822()
    control["Package"] = f"{base['Package']}-{level}"
    control["Source"] = f"{base.get('Source', source_name).split()[0]} ({version})"
    control["Version"] = version + suffix
    control["Architecture"] = base["Architecture"]
    control["Maintainer"] = base["Maintainer"]
    if "Multi-Arch" in base:
        control["Multi-Arch"] = "same"
    control["Section"] = base.get("Section", "libs")
    control["Priority"] = base.get("Priority", "optional")
    control["Depends"] = require_glibc(f"{base['Package']} (= {version})")
    control["Enhances"] = base["Package"]
    control["Description"] = (
        f"{synopsis} ({level} libraries)\n"
        f" This package adds builds of the shared libraries in {base['Package']} made for\n"
        f" {level} CPUs. They live in glibc-hwcaps/{level}/, where the dynamic loader\n"
        " picks them automatically on CPUs that support that level; other CPUs keep\n"
        " using the baseline libraries."
    )
    return control


def _addon(
    base: Mapping[str, str],
    level: str,
    copies: list[LevelCopy],
    suffix: str,
    source_name: str,
    work: Path,
    dest: Path,
    epoch: int,
) -> AssembledPackage:
    control = addon_control(base, level, suffix, source_name)
    tree = work / "split" / control["Package"]
    (tree / "DEBIAN").mkdir(parents=True)
    added = []
    for copy in copies:
        added += _place(tree, copy)
    doc = tree / "usr/share/doc"
    doc.mkdir(parents=True)
    # Policy 12.5: a package may point its doc directory at one it depends on.
    (doc / control["Package"]).symlink_to(base["Package"])
    (tree / "DEBIAN" / "triggers").write_text("activate-noawait ldconfig\n")
    control["Installed-Size"] = str(installed_size_kib(tree))
    write_md5sums(tree)
    write_control(tree, control)
    for path in tree.rglob("*"):  # modes must not depend on the caller's umask
        if not path.is_symlink():
            os.chmod(path, 0o755 if path.is_dir() else 0o644)
    package = build_deb(tree, dest, "deb", epoch)
    package.hwcaps_files = added
    return package
