"""Debian binary packages as files: unpack them, read and write their control data,
build them reproducibly. Every stage that handles .debs uses these, and nothing here knows
about ISA levels, wheels or sandboxes.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from debian.deb822 import Deb822

from deepdeb.debian.elf import is_elf
from deepdeb.util import run, sha256_file

# Debian Policy 5.6.1 (source and binary package names): they become file names, so a
# name is checked against this before it is used as one.
PACKAGE_NAME = re.compile(r"[a-z0-9][a-z0-9+.-]+")

# The version suffix of every package that may not be redistributed (a local-only licence
# verdict): such a .deb can never be mistaken for, or silently replace, a published one.
LOCAL_SUFFIX = "+local1"

RELATION_FIELDS = (
    "Pre-Depends",
    "Depends",
    "Recommends",
    "Suggests",
    "Enhances",
    "Breaks",
    "Conflicts",
    "Replaces",
    "Provides",
)


@dataclass
class AssembledPackage:
    """A .deb deepdeb built, as the build report records it."""

    package: str
    version: str
    architecture: str
    file: Path
    size: int = 0
    installed_size: int = 0
    sha256: str = ""
    hwcaps_files: list[str] = field(default_factory=list)  # paths inside the package
    stock: bool = False  # byte-identical to the stock build
    area: str = ""  # archive area from the licence audit
    redistributable: bool = False

    @classmethod
    def of(cls, deb: Path, control: Mapping[str, str], stock: bool = False) -> AssembledPackage:
        """The record of a .deb on disk, from its control fields."""
        return cls(
            package=control["Package"],
            version=control["Version"],
            architecture=control["Architecture"],
            file=deb,
            size=deb.stat().st_size,
            installed_size=int(control.get("Installed-Size", "0")),
            sha256=sha256_file(deb),
            stock=stock,
        )

    def to_json(self) -> dict[str, object]:
        return {
            "package": self.package,
            "version": self.version,
            "architecture": self.architecture,
            "file": self.file.name,
            "size": self.size,
            "installed_size_kib": self.installed_size,
            "sha256": self.sha256,
            "stock": self.stock,
            "area": self.area,
            "redistributable": self.redistributable,
            "hwcaps_files": self.hwcaps_files,
        }


def deb_filename(package: str, version: str, architecture: str, ext: str = "deb") -> str:
    """Debian's file name for a binary package: the epoch is not part of it."""
    return f"{package}_{version.split(':', 1)[-1]}_{architecture}.{ext}"


def installed_size_kib(root: Path) -> int:
    """Installed-Size as dpkg-gencontrol computes it: KiB per file rounded up, 1 per other."""
    total = 0
    for path in root.rglob("*"):
        if path.relative_to(root).parts[0] == "DEBIAN":
            continue
        if path.is_file() and not path.is_symlink():
            total += (path.stat().st_size + 1023) // 1024
        else:
            total += 1
    return total


def read_control(tree: Path) -> Deb822:
    """The control fields of an unpacked package tree (its ``DEBIAN/control``)."""
    with open(tree / "DEBIAN" / "control", encoding="utf-8") as f:
        return Deb822(f)


_FIELD_ORDER = (
    "Package",
    "Source",
    "Version",
    "Architecture",
    "Maintainer",
    "Installed-Size",
    *RELATION_FIELDS,
    "Section",
    "Priority",
    "Multi-Arch",
)


def write_control(tree: Path, control: Deb822) -> None:
    """Write control fields in dpkg-gencontrol's order, Description last."""
    ordered = Deb822()
    for name in [*_FIELD_ORDER, *control.keys(), "Description"]:
        if name in control and (name not in ordered or name == "Description"):
            ordered.pop(name, None)
            ordered[name] = control[name]
    (tree / "DEBIAN" / "control").write_text(ordered.dump(), encoding="utf-8")


def write_md5sums(tree: Path) -> None:
    """``DEBIAN/md5sums`` (what debsums and ``dpkg --verify`` check) for every regular file,
    in sorted order so that the package builds reproducibly."""
    lines = []
    for path in sorted(tree.rglob("*")):
        rel = path.relative_to(tree)
        if rel.parts[0] == "DEBIAN" or path.is_symlink() or not path.is_file():
            continue
        digest = hashlib.md5()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        lines.append(f"{digest.hexdigest()}  {rel.as_posix()}\n")
    (tree / "DEBIAN" / "md5sums").write_text("".join(lines), encoding="utf-8")


def build_deb(
    tree: Path, dest_dir: Path, ext: str, epoch: int, compress: tuple[str, ...] = ()
) -> AssembledPackage:
    """dpkg-deb --build, with every mtime clamped to the source's date (reproducible)."""
    control = read_control(tree)
    name = deb_filename(control["Package"], control["Version"], control["Architecture"], ext)
    dest = dest_dir / name
    for path in [tree, *tree.rglob("*")]:
        if path.lstat().st_mtime > epoch:
            os.utime(path, (epoch, epoch), follow_symlinks=False)
    env = dict(os.environ, SOURCE_DATE_EPOCH=str(epoch))
    run(["dpkg-deb", "--root-owner-group", *compress, "--build", tree, dest], env=env)
    return AssembledPackage.of(dest, control)


def extract(deb: Path, dest: Path) -> Path:
    """Unpack a .deb's data (not its control files) under ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    run(["dpkg-deb", "-x", deb, dest])
    return dest


def elf_files(root: Path) -> Iterator[Path]:
    """ELF files under an unpacked package, leaving out detached debug symbols."""
    for path in sorted(root.rglob("*")):
        if "usr/lib/debug" in path.relative_to(root).as_posix():
            continue
        if is_elf(path):
            yield path
