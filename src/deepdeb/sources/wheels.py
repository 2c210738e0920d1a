"""Wheels from PyPI or disk: pinned, content-addressed in the cache, checked by digest.

pip does the resolving and downloading (for bookworm's Python and platforms, binary only,
no dependencies); deepdeb only decides where the file lives and records its SHA-256, so a
wheel fetched once is reused offline and a changed file on PyPI is a new cache entry.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from packaging.utils import canonicalize_name

from deepdeb.debian.target import PLATFORMS, PYTHON, PYTHON_ABI
from deepdeb.errors import SourceError
from deepdeb.recipe.model import Flavor
from deepdeb.util import cache_root, sha256_file


@dataclass
class Fetched:
    """A wheel on disk, its SHA-256, and where it came from (its path or ``pypi:<what>``)."""

    path: Path
    sha256: str
    origin: str


def fetch_wheel(what: str, cache: Path | None = None, *, path: Path | None = None) -> Fetched:
    """A wheel on disk, or one pip downloads (``name==version`` or a requirement) into the
    content-addressed cache; its SHA-256 is recorded either way."""
    if path is not None:
        if not path.is_file():
            raise SourceError(f"{what}: wheel not found: {path}")
        return Fetched(path, sha256_file(path), str(path))
    cache = (cache or cache_root()) / "wheels"
    cache.mkdir(parents=True, exist_ok=True)
    cached = _cached_pin(what, cache)
    if cached is not None:
        return cached
    with tempfile.TemporaryDirectory(dir=cache, prefix=".pip-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--python-version", PYTHON, "--implementation", "cp", "--abi", PYTHON_ABI,
               "--abi", "abi3", "--abi", "none", "--dest", tmp, "--quiet"]  # fmt: skip
        for platform in pip_platforms():
            cmd += ["--platform", platform]
        proc = subprocess.run([*cmd, what], capture_output=True, text=True)
        found = sorted(Path(tmp).glob("*.whl"))
        if proc.returncode != 0 or len(found) != 1:
            raise SourceError(f"pip could not fetch a wheel for {what!r}:\n{proc.stderr[-1500:]}")
        digest = sha256_file(found[0])
        final = cache / digest / found[0].name
        final.parent.mkdir(exist_ok=True)
        os.replace(found[0], final)
    return Fetched(final, digest, f"pypi:{what}")


def pip_platforms() -> list[str]:
    """The platforms pip is asked for: given ``--platform`` it takes each tag literally, so
    every manylinux_2_X between the newest glibc in PLATFORMS and 2.17 is named (cuDNN's
    wheels since 9.6 are manylinux_2_27 only)."""
    minors = [
        int(m.group(1)) for p in PLATFORMS if (m := re.fullmatch(r"manylinux_2_(\d+)_x86_64", p))
    ]
    spelled = [f"manylinux_2_{minor}_x86_64" for minor in range(max(minors), 16, -1)]
    return [*spelled, *(p for p in PLATFORMS if p not in spelled)]


def _cached_pin(what: str, cache: Path) -> Fetched | None:
    """A pinned ``name==version`` already in the cache, still matching its digest."""
    name, sep, version = what.partition("==")
    if not sep or any(c in version for c in "*,;<>=!~"):
        return None
    # "torch==2.13.0" also matches a local version such as 2.13.0+cpu (PEP 440)
    pattern = re.compile(
        rf"{re.escape(canonicalize_name(name).replace('-', '_'))}-{re.escape(version)}[-+]", re.I
    )
    for path in sorted(cache.glob("*/*.whl")):
        if pattern.match(path.name) and sha256_file(path) == path.parent.name:
            return Fetched(path, path.parent.name, f"pypi:{what}")
    return None


def fetch_source(flavor: Flavor) -> Fetched:
    """A flavour's wheel: the recipe's own file, or the one pip downloads from PyPI."""
    if flavor.source.wheel is not None:
        return fetch_wheel(f"flavour {flavor.name}", path=flavor.source.wheel)
    assert flavor.source.pypi is not None
    return fetch_wheel(flavor.source.pypi)
