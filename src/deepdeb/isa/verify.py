"""Verify stage: prove, on an installed system, that the loader picks the right file.

The assembled packages are installed by apt into a fresh bookworm root unpacked from the
clean-room chroot tarball, so dpkg runs their maintainer scripts and triggers (ldconfig,
update-alternatives) exactly as on a user's machine; their dependencies come from the
archive. Inside that root a probe program ``dlopen()``s each library by soname, with no
``LD_LIBRARY_PATH``, once per level with the CPU masked down to that level, in two
independent ways: the ``glibc.cpu.hwcaps`` tunable (what a user on an older CPU sees) and
the loader's own ``--glibc-hwcaps-mask`` option. A library found through a RUNPATH is
checked through a file that has that RUNPATH (``ld.so --list``).

A library behind update-alternatives is checked with each of the source's providers
selected in turn, and then with a stand-in provider of higher priority, as an
administrator's OpenBLAS or MKL would be: the loader must then load the stand-in at every
level, never a variant of ours, before ldconfig runs and after. Any wrong pick fails the
build.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Iterable, Mapping, Sequence
from importlib import resources
from pathlib import Path

from debian.deb822 import Deb822, PkgRelation
from debian.debian_support import version_compare

from deepdeb.cpu.levels import LEVELS, LOADER, HostCpu, rank, tunables_mask
from deepdeb.debian.debpkg import AssembledPackage
from deepdeb.debian.lintian import lintian_tags
from deepdeb.errors import VerifyError
from deepdeb.hermetic import cleanroom
from deepdeb.report.schema import ALTERNATIVE, DIRECTORY, RUNPATH, LintianResult, LoaderCheck, Reach
from deepdeb.util import run

PROBE = "/deepdeb-probe"
STAND_IN = "/opt/deepdeb-stand-in"
METHODS = ("tunables", "ld.so-mask")


def build_probe(work: Path) -> Path:
    """Compile the load probe (``data/loadprobe.c``): it ``dlopen()``s each soname it is
    given and prints the file the loader chose."""
    source = resources.files("deepdeb").joinpath("data/loadprobe.c").read_text()
    work.mkdir(parents=True, exist_ok=True)
    (work / "loadprobe.c").write_text(source)
    probe = work / "loadprobe"
    run(["cc", "-O2", "-o", probe, work / "loadprobe.c"])
    return probe


def hwcaps_mask_option(level: str) -> str:
    """Value for ``ld.so --glibc-hwcaps-mask``: the subdirectories a CPU at ``level`` uses."""
    allowed = [lv for lv in LEVELS[1:] if rank(lv) <= rank(level)]
    return ":".join(allowed) if allowed else "none"


def resolve_in_root(root: Path, path: str) -> str:
    """``path`` inside ``root`` with every symlink followed as the root itself would
    (an absolute link target starts again from the root, not from the host's /)."""
    parts = [p for p in path.split("/") if p]
    resolved: list[str] = []
    for _ in range(256):
        if not parts:
            break
        part = parts.pop(0)
        if part == ".":
            continue
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = root.joinpath(*resolved, part)
        if candidate.is_symlink():
            target = os.readlink(candidate)
            if target.startswith("/"):
                resolved = []
            parts = [p for p in target.split("/") if p] + parts
        else:
            resolved.append(part)
    return "/" + "/".join(resolved)


def expected_file(reach: Reach, level: str, copies: set[str]) -> str:
    """The file (as packaged) that must serve ``reach`` on a CPU at ``level``: the copy of
    the highest level at or below it that was shipped, else the baseline library."""
    for candidate in reversed(LEVELS[1 : rank(level) + 1]):
        if reach.copy_path(candidate).lstrip("/") in copies:
            return reach.copy_path(candidate)
    return reach.path


def levels_to_check(host: HostCpu) -> tuple[list[str], list[str]]:
    """Levels the loader can be checked at here, and notes on those it cannot."""
    levels = [lv for lv in LEVELS if host.supports(lv)]
    notes = [f"{lv}: not checked, {host.why_not(lv)}" for lv in LEVELS if not host.supports(lv)]
    return levels, notes


class InstalledRoot:
    """A bookworm root with the packages installed, and the probe to ask its loader."""

    def __init__(self, path: Path, probe: Path) -> None:
        self.path = path
        self.binds = [("--ro-bind", str(probe), PROBE)]

    def run(
        self, command: Sequence[str], env: Mapping[str, str] | None = None, user: bool = False
    ) -> str:
        """Run a command offline in the root: as root (ldconfig, update-alternatives) or,
        ``user``, as the build user (anything that loads the packages' code)."""
        proc = cleanroom.in_root(
            self.path, command, self.binds, env=dict(env or {}), check=False, network=False,
            as_build_user=user,
        )  # fmt: skip
        if proc.returncode != 0:
            raise VerifyError(
                f"in the installed root, {' '.join(command)} failed:\n"
                f"{(proc.stderr or proc.stdout).strip()[-1500:]}"
            )
        return proc.stdout

    def dlopen(self, sonames: Sequence[str], level: str, method: str) -> dict[str, str]:
        """soname -> the file the loader mapped for it, symlinks resolved in the root."""
        if method == "tunables":
            mask = tunables_mask(level)
            out = self.run([PROBE, *sonames], {"GLIBC_TUNABLES": mask} if mask else {}, True)
        else:
            mask = hwcaps_mask_option(level)
            out = self.run([LOADER, "--glibc-hwcaps-mask", mask, PROBE, *sonames], user=True)
        found = dict(line.split("\t", 1) for line in out.splitlines() if "\t" in line)
        return {name: resolve_in_root(self.path, path) for name, path in found.items()}

    def listed(self, consumer: str, level: str, method: str) -> dict[str, str]:
        """soname -> file, as ``ld.so --list`` resolves the needs of ``consumer``."""
        if method == "tunables":
            mask = tunables_mask(level)
            env = {"GLIBC_TUNABLES": mask} if mask else {}
            out = self.run([LOADER, "--list", consumer], env, user=True)
        else:
            mask = hwcaps_mask_option(level)
            out = self.run([LOADER, "--glibc-hwcaps-mask", mask, "--list", consumer], user=True)
        found = re.findall(r"^\s*(\S+) => (\S+) \(0x", out, flags=re.M)
        return {name: resolve_in_root(self.path, path) for name, path in found}

    def real(self, path: str) -> str:
        return resolve_in_root(self.path, path)


def verify_installed(
    packages: list[AssembledPackage],
    reaches: Mapping[str, list[Reach]],
    host: HostCpu,
    work: Path,
) -> tuple[list[LoaderCheck], list[str]]:
    """Install the packages in a fresh bookworm root and check the loader's every pick.

    Returns the checks and notes (levels this CPU cannot check, how long it took).
    """
    start = time.monotonic()
    # Debug symbols change nothing the loader does.
    candidates = [
        p for p in packages if p.file.suffix == ".deb" and not p.package.endswith("-dbgsym")
    ]
    with_libraries = {name for name, rs in reaches.items() if rs}
    fields = {p.package: _control_fields(p.file) for p in candidates}
    chosen, left_out = installable_together(fields, with_libraries)
    debs = [p.file for p in candidates if p.package in chosen]
    root = work / "root"
    cleanroom.unpack_chroot(cleanroom.runtime_chroot(), root)
    proc = cleanroom.install_packages(root, debs)
    if proc.returncode != 0:
        raise VerifyError(
            "the packages do not install in a clean bookworm root:\n"
            + (proc.stdout[-1500:] + proc.stderr[-1500:]).strip()
        )
    installed = InstalledRoot(root, build_probe(work / "probe"))
    copies = {f for p in packages for f in p.hwcaps_files}
    levels, notes = levels_to_check(host)
    notes += [
        f"{name}: not installed for the loader checks, {why}" for name, why in left_out.items()
    ]
    all_reaches = [r for name in sorted(reaches) if name in chosen for r in reaches[name]]
    checks = _direct(installed, all_reaches, levels, copies)
    checks += _runpath(installed, all_reaches, levels, copies)
    checks += _alternatives(installed, all_reaches, levels, copies)
    notes.append(
        f"loader checked on the installed system: {len(debs)} package"
        f"{'s' if len(debs) != 1 else ''} installed by apt in a clean bookworm root "
        f"({time.monotonic() - start:.0f} s)"
    )
    bad = [c for c in checks if not c.ok]
    if bad:
        lines = [
            f"  {c.library} at {c.level} ({c.method}{', ' + c.context if c.context else ''}): "
            f"expected {c.expected}, loaded {c.loaded}"
            for c in bad
        ]
        raise VerifyError("the loader picked the wrong file:\n" + "\n".join(lines))
    return checks, notes


def _control_fields(deb: Path) -> Deb822:
    return Deb822(run(["dpkg-deb", "-f", deb]).stdout)


def installable_together(
    fields: Mapping[str, Mapping[str, str]], first: set[str]
) -> tuple[list[str], dict[str, str]]:
    """Packages of one source that can be installed side by side, those in ``first`` (the
    ones with libraries) chosen first; the others with the conflict that keeps them out.

    A source may build packages that conflict with each other (two flavours of one -dev
    package); one root holds one of them.
    """

    def clashes(package: str, other: str) -> bool:
        """Does ``package`` declare Conflicts or Breaks that hit ``other``'s version?"""
        for field_name in ("Conflicts", "Breaks"):
            value = fields[package].get(field_name, "")
            for alternative in PkgRelation.parse_relations(value) if value else []:
                for rel in alternative:
                    if rel["name"] == other and _applies(rel.get("version"), fields[other]):
                        return True
        return False

    chosen: list[str] = []
    left_out: dict[str, str] = {}
    for package in sorted(fields, key=lambda p: (p not in first, p)):
        clash = next(
            (other for other in chosen if clashes(package, other) or clashes(other, package)),
            None,
        )
        if clash is None:
            chosen.append(package)
        else:
            left_out[package] = f"it conflicts with {clash}"
    return chosen, left_out


def _applies(constraint: tuple[str, str] | None, other: Mapping[str, str]) -> bool:
    """Does a relation's version constraint match the other package's version?"""
    if constraint is None:
        return True
    op, version = constraint
    cmp = version_compare(other.get("Version", "0"), version)
    return {"<<": cmp < 0, "<=": cmp <= 0, "=": cmp == 0, ">=": cmp >= 0, ">>": cmp > 0}[op]


def _check(
    reach: Reach, level: str, method: str, want: str, loaded: Mapping[str, str], context: str
) -> LoaderCheck:
    got = loaded.get(reach.soname, "(not loaded)")
    return LoaderCheck(reach.soname, level, method, want, got, got == want, context)


def _direct(
    root: InstalledRoot, reaches: Iterable[Reach], levels: Sequence[str], copies: set[str]
) -> list[LoaderCheck]:
    """Libraries in the loader's own directories, found by soname."""
    direct = {r.soname: r for r in reaches if r.how == DIRECTORY}
    checks = []
    for level in levels:
        for method in METHODS:
            if not direct:
                continue
            loaded = root.dlopen(sorted(direct), level, method)
            for r in direct.values():
                want = root.real(expected_file(r, level, copies))
                checks.append(_check(r, level, method, want, loaded, ""))
    return checks


def _runpath(
    root: InstalledRoot, reaches: Iterable[Reach], levels: Sequence[str], copies: set[str]
) -> list[LoaderCheck]:
    """Libraries in a private directory, found through a RUNPATH of the same source."""
    checks = []
    for r in (r for r in reaches if r.how == RUNPATH and r.consumer):
        assert r.consumer is not None
        for level in levels:
            for method in METHODS:
                loaded = root.listed(r.consumer, level, method)
                want = root.real(expected_file(r, level, copies))
                checks.append(_check(r, level, method, want, loaded, f"via {r.consumer}"))
    return checks


def _alternatives(
    root: InstalledRoot, reaches: Iterable[Reach], levels: Sequence[str], copies: set[str]
) -> list[LoaderCheck]:
    """Libraries behind update-alternatives: each of our providers selected in turn, then
    a stand-in provider with a higher priority (the administrator's own BLAS)."""
    groups: dict[str, list[Reach]] = {}
    for r in reaches:
        if r.how == ALTERNATIVE and r.alternative is not None:
            groups.setdefault(r.alternative.group, []).append(r)
    checks: list[LoaderCheck] = []
    for group, members in sorted(groups.items()):
        choices = sorted({r.alternative.choice for r in members if r.alternative})
        for choice in choices:
            root.run(["update-alternatives", "--set", group, choice])
            root.run(["ldconfig"])
            context = f"{group} set to {choice}"
            checks += _provider(root, members, choice, levels, copies, context)
        root.run(["update-alternatives", "--auto", group])
        checks += _stand_in(root, group, members, levels)
        root.run(["ldconfig"])
        selected = _selected(root, group)
        context = f"{group} back in auto mode ({selected})"
        checks += _provider(root, members, selected, levels, copies, context)
    return checks


def _provider(
    root: InstalledRoot,
    members: Sequence[Reach],
    selected: str,
    levels: Sequence[str],
    copies: set[str],
    context: str,
) -> list[LoaderCheck]:
    """With provider ``selected`` chosen, its libraries load, variants per level."""
    mine = [r for r in members if r.alternative is not None and r.alternative.choice == selected]
    if not mine:
        return []
    checks = []
    for level in levels:
        for method in METHODS:
            loaded = root.dlopen(sorted({r.soname for r in mine}), level, method)
            for r in mine:
                want = root.real(expected_file(r, level, copies))
                checks.append(_check(r, level, method, want, loaded, context))
    return checks


def _selected(root: InstalledRoot, group: str) -> str:
    out = root.run(["update-alternatives", "--query", group])
    found = re.search(r"^Value: (.*)$", out, flags=re.M)
    return found.group(1).strip() if found else ""


def _stand_in(
    root: InstalledRoot, group: str, members: list[Reach], levels: Sequence[str]
) -> list[LoaderCheck]:
    """Select another provider (priority above all of ours) and check that the loader
    then loads it at every level, before and after ldconfig, never a variant of ours."""
    masters = [r for r in members if r.alternative and r.alternative.link == r.alternative.master]
    if not masters:
        return []
    master = masters[0]
    assert master.alternative is not None
    name = master.alternative.master.rpartition("/")[2]
    stand_in = f"{STAND_IN}/{group}/{name}"
    host_copy = root.path / stand_in.lstrip("/")
    host_copy.parent.mkdir(parents=True)
    shutil.copyfile(root.path / master.path.lstrip("/"), host_copy)
    priority = str(max(r.alternative.priority for r in members if r.alternative) + 100)
    root.run(
        ["update-alternatives", "--install", master.alternative.master, group, stand_in, priority]
    )
    checks = []
    for when in ("before ldconfig", "after ldconfig"):
        if when == "after ldconfig":
            root.run(["ldconfig"])
        for level in levels:
            for method in METHODS:
                loaded = root.dlopen([master.soname], level, method)
                context = f"another provider of {group} selected, {when}"
                checks.append(_check(master, level, method, stand_in, loaded, context))
    root.run(["update-alternatives", "--remove", group, stand_in])
    return checks


def run_lintian(packages: list[AssembledPackage]) -> LintianResult:
    """lintian on every assembled .deb; its errors fail the build, warnings are reported."""
    if shutil.which("lintian") is None:
        return LintianResult(ran=False, errors=[], warnings=[])
    errors, warnings = lintian_tags([p.file for p in packages if p.file.suffix == ".deb"])
    if errors:
        raise VerifyError("lintian reports errors:\n  " + "\n  ".join(errors))
    return LintianResult(ran=True, errors=errors, warnings=warnings)
