"""Assemble a ``python3-<name>`` .deb from a verified wheel, the way dh-python would lay it out.

* files under ``/usr/lib/python3/dist-packages`` (Debian's system Python), entry points as
  ``/usr/bin`` scripts, byte-compilation left to ``py3compile`` in postinst (and
  ``py3clean`` in prerm), as dh-python does;
* libraries the wheel bundles (``torch/lib/*.so``, its own ``libgomp``) stay where the
  wheel's RUNPATHs expect them and satisfy its own NEEDED entries; every other NEEDED
  soname goes through dpkg-shlibdeps, so libc6, libstdc++6 and libgcc-s1 are depended on
  with the versions the binaries need. No ``shlibs`` file is written: a bundled copy must
  never be offered to other packages as the provider of a system soname;
* ``Requires-Dist`` become Depends; flavours of one framework share a virtual package.
"""

from __future__ import annotations

import calendar
import gzip
import re
import shutil
import subprocess
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from debian.changelog import Changelog
from debian.deb822 import Deb822

from deepdeb.debian.debpkg import (
    PACKAGE_NAME,
    AssembledPackage,
    build_deb,
    elf_files,
    installed_size_kib,
    write_control,
    write_md5sums,
)
from deepdeb.debian.elf import ElfInfo, read_elf
from deepdeb.debian.target import ARCHITECTURE, DIST_PACKAGES, GLIBC, PYTHON, SUITE
from deepdeb.errors import AssembleError, WheelError
from deepdeb.sources.wheelfile import Wheel
from deepdeb.util import run
from deepdeb.wheel.depends import Dependency
from deepdeb.wheel.layout import entry_point_script, extract
from deepdeb.wheel.releases import loadable_tags

MAINTAINER = "deepdeb <deepdeb@example.org>"  # the recipe sets its own
CHOICES = ("depend", "bundle", "package")


@dataclass(frozen=True)
class PackageSpec:
    """What to make of one wheel."""

    package: str  # python3-torch, python3-torch-cuda, ...
    version: str  # Debian version, revision included
    provides: tuple[str, ...] = ()  # e.g. ("python3-torch-api (= 2.13.0+cpu-1)",)
    conflicts: tuple[str, ...] = ()  # the other flavours
    depends: tuple[str, ...] = ()  # relations from Requires-Dist, already decided
    bundled: tuple[Wheel, ...] = ()  # dependency wheels shipped inside this package
    drop: tuple[str, ...] = ()  # wheel paths (globs) to leave out
    # entry-point scripts another package of the recipe owns (tensorflow declares
    # tensorboard's, whose module is in the tensorboard wheel)
    skip_scripts: tuple[str, ...] = ()
    maintainer: str = MAINTAINER
    section: str = "python"
    compress: tuple[str, ...] = ("-Zxz", "-z6")


@dataclass
class WheelPackage:
    """A .deb built from a wheel, with what was dropped, bundled or left uncompiled in it."""

    deb: AssembledPackage
    dropped: list[str] = field(default_factory=list)
    bundled_sonames: list[str] = field(default_factory=list)
    shlibs_depends: str = ""
    scripts: list[str] = field(default_factory=list)
    not_compiled: list[str] = field(default_factory=list)  # newer-Python syntax: left as .py
    seconds: float = 0.0
    # soname (or file name) -> the directory holding it: for the recipe's other packages
    libraries: dict[str, Path] = field(default_factory=dict)


@dataclass(frozen=True)
class Sibling:
    """A library another package of the same recipe ships (tensorflow-io-gcs-filesystem's
    plugin needs python3-tensorflow's ``libtensorflow_framework.so.2``)."""

    package: str
    version: str
    directory: Path


def sibling_needs(
    elves: dict[Path, ElfInfo], own: set[str], siblings: dict[str, Sibling]
) -> list[Sibling]:
    """The siblings that provide what these ELF files need and the package lacks."""
    needed = {n for info in elves.values() for n in info.needed} - own
    found = {siblings[n] for n in needed if n in siblings}
    return sorted(found, key=lambda s: (s.package, str(s.directory)))


def wheel_epoch(wheel: Wheel) -> int:
    """The newest file date in the wheel: a reproducible SOURCE_DATE_EPOCH for the .deb."""
    with zipfile.ZipFile(wheel.path) as zf:
        newest = max(i.date_time for i in zf.infolist())
    return calendar.timegm((*newest, 0, 0, 0))


def python_relations(wheel: Wheel) -> list[str]:
    """A wheel with compiled code must be one bookworm's Python loads (read from its tags
    by ``packaging``: cp311, the stable abi3 of an older CPython, an amd64 manylinux up to
    bookworm's glibc); a CPython-specific one then needs exactly Python 3.11, a pure one
    any python3."""
    tags = wheel.tag_set
    if wheel.purelib:
        return ["python3:any"]
    if not tags & loadable_tags():
        shown = ", ".join(sorted(map(str, tags))) or "no valid tag"
        raise WheelError(
            f"{wheel.path.name} is for {shown}; Debian {SUITE}'s Python {PYTHON} on "
            f"{ARCHITECTURE} (cp{PYTHON.replace('.', '')}, glibc "
            f"{'.'.join(map(str, GLIBC))}) loads none of them"
        )
    if any(t.interpreter.startswith("cp") for t in tags & loadable_tags()):
        nxt = f"3.{int(PYTHON.split('.')[1]) + 1}"
        return [f"python3 (>= {PYTHON}~)", f"python3 (<< {nxt})"]
    return ["python3:any"]


def relation_for(dep: Dependency, choice: str | None) -> str | None:
    """The Depends entry for a requirement, given the recipe's choice for it."""
    if choice == "bundle":
        return None  # shipped inside; this package Provides it instead
    if choice == "depend" and not dep.satisfiable:
        return dep.relation(with_versions=False)  # what the archive has, knowingly
    return dep.relation()


def _write_scripts(wheel: Wheel, root: Path, skip: tuple[str, ...] = ()) -> list[str]:
    made = []
    for group in ("console_scripts", "gui_scripts"):
        for name, target in wheel.entry_points.get(group, {}).items():
            script = root / "usr/bin" / name
            if script.exists() or name in skip:
                continue
            script.parent.mkdir(parents=True, exist_ok=True)
            script.write_text(entry_point_script(target))
            script.chmod(0o755)
            made.append(name)
    return made


def _write_docs(wheel: Wheel, spec: PackageSpec, root: Path, epoch: int) -> None:
    doc = root / "usr/share/doc" / spec.package
    doc.mkdir(parents=True, exist_ok=True)
    licence = str(wheel.metadata.get("License-Expression") or wheel.metadata.get("License") or "")
    home = str(wheel.metadata.get("Home-page") or "")
    for url in wheel.metadata.get_all("Project-URL") or []:
        if not home and "," in url:
            home = url.split(",", 1)[1].strip()
    files = sorted(
        p.relative_to(root / DIST_PACKAGES).as_posix()
        for p in (root / DIST_PACKAGES / wheel.dist_info).rglob("*")
        if p.is_file() and re.search(r"(LICEN[CS]E|COPYING|NOTICE)", p.name, re.I)
    )
    author = wheel.metadata.get("Author-email") or wheel.metadata.get("Author") or "upstream"
    texts = "\n".join(f" /{DIST_PACKAGES}/{f}" for f in files) or " (none shipped)"
    (doc / "copyright").write_text(
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n"
        f"Upstream-Name: {wheel.metadata['Name']}\n"
        f"Source: {home or wheel.path.name}\n"
        f"Comment: repacked from the upstream wheel {wheel.path.name} by deepdeb.\n"
        " The licence texts shipped in the wheel are:\n"
        f"{texts}\n\n"
        f"Files: *\nCopyright: {author}\n"
        f"License: {licence or 'unknown'}\n See the licence texts listed above.\n"
    )
    changelog = Changelog()
    changelog.new_block(
        package=spec.package,
        version=spec.version,
        distributions=SUITE,
        urgency="medium",
        author=spec.maintainer,
        date=time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime(epoch)),
    )
    changelog.add_change(f"  * Repacked from {wheel.path.name} by deepdeb.")
    with gzip.GzipFile(doc / "changelog.Debian.gz", "wb", mtime=epoch) as gz:
        gz.write(str(changelog).encode())


_CHECK_SYNTAX = """
import sys
for path in sys.stdin.read().splitlines():
    try:
        compile(open(path, "rb").read(), path, "exec", dont_inherit=True)
    except (SyntaxError, ValueError):
        print(path)
"""


def uncompilable(root: Path) -> list[str]:
    """Python files bookworm's Python cannot compile (wheels ship some for newer Pythons):
    py3compile must skip them, or postinst fails."""
    files = sorted(str(p) for p in (root / DIST_PACKAGES).rglob("*.py"))
    if not files:
        return []
    proc = subprocess.run(
        ["/usr/bin/python3", "-c", _CHECK_SYNTAX],
        input="\n".join(files), capture_output=True, text=True, check=True,
    )  # fmt: skip
    return ["/" + Path(p).relative_to(root).as_posix() for p in proc.stdout.splitlines()]


def _maintainer_scripts(spec: PackageSpec, root: Path, skip: list[str]) -> None:
    """py3compile/py3clean, as dh-python writes them (bytecode is not shipped).

    Files that bookworm's Python cannot compile are listed in the package's
    ``/usr/share/python3/bcep/`` file, which is how py3compile is told to skip public
    modules (its ``-X`` option only applies to private directories).
    """
    debian = root / "DEBIAN"
    if skip:
        bcep = root / "usr/share/python3/bcep" / spec.package
        bcep.parent.mkdir(parents=True, exist_ok=True)
        bcep.write_text(
            "# written by deepdeb: syntax newer than this Python, not byte-compiled\n"
            + "".join(f"file||{path}\n" for path in skip)
        )
    (debian / "postinst").write_text(
        '#!/bin/sh\nset -e\nif [ "$1" = configure ] && command -v py3compile >/dev/null; then\n'
        f"\tpy3compile -p {spec.package}\nfi\n"
    )
    (debian / "prerm").write_text(
        "#!/bin/sh\nset -e\nif command -v py3clean >/dev/null; then\n"
        f"\tpy3clean -p {spec.package}\nelse\n"
        f"\tdpkg -L {spec.package} | sed -n 's/\\.py$/.pyc/p' | xargs rm -f\n"
        "\tfind /usr/lib/python3/dist-packages -type d -name __pycache__ -empty -delete\nfi\n"
    )
    for name in ("postinst", "prerm"):
        (debian / name).chmod(0o755)


def bundled_sonames(elves: dict[Path, ElfInfo]) -> list[str]:
    """Shared libraries the package carries itself, by soname and by file name (NEEDED
    may name a file without SONAME)."""
    found: set[str] = set()
    for path, info in elves.items():
        names = (info.soname, path.name)
        found.update(n for n in names if n and n.startswith("lib") and ".so" in n)
    return sorted(found)


def shlibs_depends(
    root: Path, elves: list[Path], package: str, work: Path, also: list[Path] | None = None
) -> str:
    """dpkg-shlibdeps over every ELF file; the package's own libraries satisfy themselves.

    The directories holding bundled libraries are passed with ``-l`` so dpkg-shlibdeps
    resolves those NEEDED entries inside the package (no dependency), and only system
    sonames turn into Depends. ``also``: directories of the recipe's other packages, whose
    libraries some of these files need (the caller depends on those packages itself).
    """
    if not elves:
        return ""
    scratch = work / "shlibdeps"
    (scratch / "debian").mkdir(parents=True, exist_ok=True)
    (scratch / "debian" / "control").write_text(
        f"Source: {package}\n\nPackage: {package}\nArchitecture: any\n"
    )
    tree = scratch / "debian" / package
    if tree.is_symlink():
        tree.unlink()
    elif tree.exists():
        shutil.rmtree(tree)
    tree.symlink_to(root.resolve())
    libdirs = sorted({str(p.parent) for p in elves if ".so" in p.name})
    libdirs += [str(d) for d in also or [] if str(d) not in libdirs]
    cmd = ["dpkg-shlibdeps", "-O", f"-T{scratch / 'substvars'}", "--ignore-missing-info"]
    cmd += [f"-l{d}" for d in libdirs]
    proc = run([*cmd, *map(str, elves)], cwd=scratch, check=False)
    if proc.returncode != 0:
        raise AssembleError(f"dpkg-shlibdeps failed for {package}:\n{proc.stderr.strip()[-2000:]}")
    match = re.search(r"^shlibs:Depends=(.*)$", proc.stdout, re.M)
    return match.group(1).strip() if match else ""


def build_package(
    wheel: Wheel,
    spec: PackageSpec,
    work: Path,
    dest: Path,
    siblings: dict[str, Sibling] | None = None,
) -> WheelPackage:
    """Lay the wheel out as a Debian package and build the .deb into ``dest``.
    ``siblings``: the libraries of the recipe's packages built before this one; one that
    this package needs makes it depend on that package, at the version built."""
    start = time.monotonic()
    if not PACKAGE_NAME.fullmatch(spec.package) or not re.fullmatch(
        r"[A-Za-z0-9.+~:-]+", spec.version
    ):
        # both become paths below: never let a value leave ``work``
        raise WheelError(
            f"not a Debian package name and version: {spec.package!r} {spec.version!r}"
        )
    root = work / spec.package
    (root / "DEBIAN").mkdir(parents=True)  # a fresh directory: nothing is removed
    dropped = extract(wheel, root, list(spec.drop))
    for other in spec.bundled:
        extract(other, root)
        _installer(root, other)
    _installer(root, wheel)
    scripts = _write_scripts(wheel, root, spec.skip_scripts)
    epoch = wheel_epoch(wheel)
    _write_docs(wheel, spec, root, epoch)
    elves = {path: read_elf(path) for path in elf_files(root)}  # one readelf per file
    own = bundled_sonames(elves)
    others = sibling_needs(elves, set(own), siblings or {})
    shlibs = shlibs_depends(root, list(elves), spec.package, work, [s.directory for s in others])
    depends = [*python_relations(wheel), *spec.depends]
    for sib in dict.fromkeys((s.package, s.version) for s in others):
        relation = f"{sib[0]} (= {sib[1]})"
        if relation not in depends:
            depends.append(relation)
    if shlibs:
        depends.append(shlibs)
    summary = str(wheel.metadata.get("Summary") or wheel.name).strip().rstrip(".")
    control = Deb822()
    control["Package"] = spec.package
    control["Version"] = spec.version
    control["Architecture"] = "amd64" if elves else "all"
    control["Maintainer"] = spec.maintainer
    control["Installed-Size"] = str(installed_size_kib(root))
    control["Depends"] = ", ".join(depends)
    if spec.conflicts:
        control["Conflicts"] = ", ".join(spec.conflicts)
        control["Replaces"] = ", ".join(spec.conflicts)
    if spec.provides:
        control["Provides"] = ", ".join(spec.provides)
    control["Section"] = spec.section
    control["Priority"] = "optional"
    control["Description"] = (
        f"{summary[:70]}\n Python 3 package {wheel.metadata['Name']} {wheel.version}, repacked "
        f"by deepdeb\n from the upstream wheel {wheel.path.name}."
    )
    has_python = any((root / DIST_PACKAGES).rglob("*.py"))
    skipped = uncompilable(root) if has_python else []
    if has_python:
        _maintainer_scripts(spec, root, skipped)
    control["Installed-Size"] = str(installed_size_kib(root))
    write_control(root, control)
    write_md5sums(root)
    for path in [root, *root.rglob("*")]:
        if path.is_dir() and not path.is_symlink():
            path.chmod(0o755)
    dest.mkdir(parents=True, exist_ok=True)
    deb = build_deb(root, dest, "deb", epoch, spec.compress)
    return WheelPackage(
        deb=deb,
        dropped=dropped,
        bundled_sonames=own,
        shlibs_depends=shlibs,
        scripts=scripts,
        not_compiled=skipped,
        seconds=time.monotonic() - start,
        libraries=_libraries(elves),
    )


def _libraries(elves: dict[Path, ElfInfo]) -> dict[str, Path]:
    """Each shared library's soname and file name, with its directory."""
    found: dict[str, Path] = {}
    for path, info in elves.items():
        if info.is_shared_library:
            for name in (info.soname, path.name):
                if name:
                    found.setdefault(name, path.parent)
    return found


def _installer(root: Path, wheel: Wheel) -> None:
    info = root / DIST_PACKAGES / wheel.dist_info
    if info.is_dir():
        (info / "INSTALLER").write_text("debian\n")
