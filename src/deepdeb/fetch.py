"""Fetch stage: turn a recipe's ``[source]`` into a Debian source tree, via a cache.

Sources from the Debian archive are downloaded once with ``apt-get source`` (apt checks them
against the signed Sources index) into the cache, keyed by name and version, and unpacked
afresh for every variant so that no build can see another's leftovers.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from debian.changelog import Changelog
from debian.deb822 import Dsc

from .errors import SourceError
from .recipe import Source
from .util import cache_root, run


@dataclass(frozen=True)
class SourcePackage:
    """A source package ready to be unpacked into build directories."""

    name: str
    version: str
    tree: Path | None = None  # a local source tree, copied per build
    dsc: Path | None = None  # a .dsc in the cache, unpacked per build

    @property
    def upstream_version(self) -> str:
        version = self.version.split(":", 1)[-1]
        return version.rsplit("-", 1)[0] if "-" in version else version


def read_changelog(tree: Path) -> tuple[str, str]:
    """Source name and version from a tree's debian/changelog."""
    path = tree / "debian" / "changelog"
    try:
        with open(path, encoding="utf-8") as f:
            changelog = Changelog(f, max_blocks=1, strict=True)
    except OSError as e:
        raise SourceError(f"{tree}: not a Debian source tree ({path}: {e.strerror})") from None
    except Exception as e:  # python-debian raises its own ChangelogParseError
        raise SourceError(f"{path}: cannot parse: {e}") from None
    return str(changelog.package), str(changelog.version)


def obtain(source: Source, cache: Path | None = None) -> SourcePackage:
    """Locate or download the source package a recipe names."""
    if source.path is not None:
        if not (source.path / "debian" / "control").is_file():
            raise SourceError(f"{source.path}: not a Debian source tree (no debian/control)")
        name, version = read_changelog(source.path)
        return SourcePackage(name=name, version=version, tree=source.path)
    assert source.debian is not None
    return _download(source.debian, (cache or cache_root()) / "debian")


def _download(spec: str, cache: Path) -> SourcePackage:
    name, _, pinned = spec.partition("=")
    if pinned:
        cached = _cached_dsc(cache, name, pinned)
        if cached is not None:
            return SourcePackage(name=name, version=pinned, dsc=cached)
    cache.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=cache, prefix=".download-"))
    try:
        proc = run(["apt-get", "source", "--download-only", spec], cwd=tmp, check=False)
        if proc.returncode != 0:
            raise SourceError(_explain_apt_failure(spec, proc.stderr + proc.stdout))
        dscs = sorted(tmp.glob("*.dsc"))
        if len(dscs) != 1:
            raise SourceError(f"apt-get source {spec}: expected one .dsc, got {len(dscs)}")
        with open(dscs[0], encoding="utf-8") as f:
            dsc = Dsc(f)
        version = dsc["Version"]
        final = cache / _cache_key(name, version)
        if not final.exists():
            os.replace(tmp, final)  # atomic: the cache entry appears complete or not at all
        return SourcePackage(name=name, version=version, dsc=final / dscs[0].name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _cache_key(name: str, version: str) -> str:
    return f"{name}_{version.replace(':', '%3a')}"


def _cached_dsc(cache: Path, name: str, version: str) -> Path | None:
    entry = cache / _cache_key(name, version)
    dscs = sorted(entry.glob("*.dsc")) if entry.is_dir() else []
    return dscs[0] if dscs else None


def _explain_apt_failure(spec: str, output: str) -> str:
    if "deb-src" in output:
        return (
            f"cannot fetch source package {spec}: apt has no deb-src entries.\n"
            "Add 'deb-src' to the 'Types:' line of /etc/apt/sources.list.d/debian.sources "
            "(or a deb-src line to /etc/apt/sources.list), then run apt-get update."
        )
    if "Unable to find a source package" in output or "Can not find version" in output:
        return f"unknown source package {spec}: not in apt's source index.\n{output.strip()}"
    return f"apt-get source {spec} failed:\n{output.strip()[-2000:]}"


def unpack(package: SourcePackage, dest: Path) -> Path:
    """Put a fresh copy of the source tree at ``dest`` (which must not exist)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if package.tree is not None:
        shutil.copytree(package.tree, dest, symlinks=True)
    else:
        assert package.dsc is not None
        proc = run(["dpkg-source", "-x", package.dsc, dest], check=False)
        if proc.returncode != 0:
            raise SourceError(f"dpkg-source -x {package.dsc} failed:\n{proc.stderr.strip()}")
    return dest
