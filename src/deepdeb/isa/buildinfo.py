"""A ``.buildinfo`` record of what went into a build, written next to its packages.

Debian's .buildinfo files (dpkg-genbuildinfo) let anyone check that a binary package came
from the source it claims, built with the toolchain it lists. deepdeb's record has the same
deb822 shape and field names where they mean the same thing (Source, Version,
Checksums-Sha256, Installed-Build-Depends, Environment), and adds what a multi-level build
needs: the recipe, the backend and chroot, the flags of each level, the levels shipped.
Nothing in it depends on when or where the build ran, so two reproducible builds write the
same record.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

from debian.deb822 import Deb822

from deepdeb import __version__
from deepdeb.debian.debpkg import AssembledPackage
from deepdeb.errors import DeepdebError
from deepdeb.sources.fetch import SourcePackage
from deepdeb.util import read_regular, sha256_file


def tree_digest(tree: Path) -> str:
    """SHA-256 over a source tree's relative paths, modes and contents, in sorted order."""
    digest = hashlib.sha256()
    for path in sorted(tree.rglob("*")):
        if path.is_dir() and not path.is_symlink():
            continue
        rel = path.relative_to(tree).as_posix()
        digest.update(f"{rel}\0{path.lstat().st_mode & 0o777:o}\0".encode())
        if path.is_symlink():
            digest.update(str(path.readlink()).encode())
        else:
            digest.update(sha256_file(path).encode())
    return digest.hexdigest()


def source_inputs(package: SourcePackage) -> list[tuple[str, int, str]]:
    """(sha256, size, name) of every file the source came from."""
    if package.dsc is not None:
        with open(package.dsc, encoding="utf-8") as f:
            dsc = Deb822(f)
        files = [package.dsc] + [
            package.dsc.parent / line.split()[2]
            for line in dsc.get("Checksums-Sha256", "").strip().splitlines()
        ]
        return [(sha256_file(p), p.stat().st_size, p.name) for p in files]
    if package.archive is not None:
        a = package.archive
        return [(sha256_file(a), a.stat().st_size, a.name)]
    assert package.tree is not None
    return [(tree_digest(package.tree), 0, f"{package.tree.name}/ (tree digest)")]


def dpkg_buildinfo(directory: Path) -> Deb822 | None:
    """The .buildinfo dpkg-buildpackage wrote for a level's build, if any (the build could
    have put anything there: a regular file of at most 4 MiB is read, nothing followed)."""
    found = sorted(directory.glob("*.buildinfo"))
    if not found:
        return None
    try:
        text = read_regular(found[0], 4 << 20).decode("utf-8", "replace")
    except (OSError, DeepdebError):
        return None
    return Deb822(text.splitlines())


def _lines(rows: Sequence[str]) -> str:
    return "\n" + "\n".join(f" {row}" for row in rows)


def render(
    package: SourcePackage,
    recipe: Path,
    backend: str,
    chroot: dict[str, object] | None,
    flags: dict[str, str],
    shipped: Sequence[str],
    epoch: int,
    packages: Sequence[AssembledPackage],
    stock: Deb822 | None,
) -> str:
    """The record's text; ``stock`` is dpkg's own .buildinfo of the baseline build."""
    info = Deb822()
    info["Format"] = "1.0"
    info["Build-Tool"] = f"deepdeb {__version__}"
    info["Source"] = package.name
    info["Version"] = package.version
    info["Binary"] = " ".join(sorted({p.package for p in packages}))
    info["Architecture"] = " ".join(sorted({p.architecture for p in packages}))
    info["Backend"] = backend
    if chroot:
        info["Chroot"] = f"{chroot['suite']} {chroot['variant']} sha256:{chroot['sha256']}"
    info["Recipe-Sha256"] = sha256_file(recipe)
    info["Source-Date-Epoch"] = str(epoch)
    info["Checksums-Sha256"] = _lines([f"{s} {n} {name}" for s, n, name in source_inputs(package)])
    info["Levels-Shipped"] = " ".join(shipped)
    info["Level-Flags"] = _lines([f"{lv}: {flags[lv] or '(none)'}" for lv in flags])
    info["Binary-Checksums-Sha256"] = _lines(
        [f"{sha256_file(p.file)} {p.file.stat().st_size} {p.file.name}" for p in packages]
    )
    if stock is not None:
        for name in ("Build-Architecture", "Installed-Build-Depends", "Environment"):
            if name in stock:
                info[name] = stock[name]
    return str(info.dump())
