"""Rust crates pinned in ``Cargo.lock``."""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from pathlib import Path

from deepdeb.inventory.inputs import Input, read


def scan_cargo_lock(root: Path, path: Path) -> Iterator[Input]:
    """The crates a Cargo.lock pins from crates.io or git, with their checksums or commits
    (the workspace's own members have no source and are left out)."""
    rel = path.relative_to(root).as_posix()
    text = read(path)
    starts = [i for i, t in enumerate(text.splitlines(), 1) if t.strip() == "[[package]]"]
    for line, pkg in zip(starts, tomllib.loads(text).get("package", []), strict=False):
        source = pkg.get("source")
        if not source:
            continue  # a member of this workspace
        name, version = pkg["name"], pkg["version"]
        if not isinstance(name, str) or not isinstance(version, str):
            raise ValueError(f"package at line {line}: name and version must be strings")
        if source.startswith("git+"):
            url, _, commit = source[4:].partition("#")
            hash_ = f"commit:{commit}" if commit else None
        else:
            url = f"https://crates.io/api/v1/crates/{name}/{version}/download"
            hash_ = f"sha256:{pkg['checksum']}" if "checksum" in pkg else None
        yield Input("cargo", name, rel, line, urls=[url], version=version, hash=hash_)
