"""npm packages pinned in ``package-lock.json``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from deepdeb.inventory.inputs import Input, read


def scan_package_lock(root: Path, path: Path) -> Iterator[Input]:
    """The packages a package-lock.json (lockfile v1, v2 or v3) downloads, with their
    integrity hashes; linked and unresolved ones are left out."""
    rel = path.relative_to(root).as_posix()
    text = read(path)
    data = json.loads(text)
    lines = text.splitlines()

    def line_of(key: str) -> int:
        return next((i for i, t in enumerate(lines, 1) if f'"{key}"' in t), 1)

    packages = data.get("packages")
    if isinstance(packages, dict):  # lockfile v2 and v3
        entries = [(k.rsplit("node_modules/", 1)[-1], k, v) for k, v in packages.items() if k]
    else:  # v1: nested "dependencies"
        entries = []
        todo = list(data.get("dependencies", {}).items())
        while todo:
            name, value = todo.pop(0)
            entries.append((name, name, value))
            todo += list(value.get("dependencies", {}).items())
    for name, key, value in entries:
        if value.get("link") or not value.get("resolved"):
            continue
        integrity = value.get("integrity")
        yield Input(
            "npm",
            name,
            rel,
            line_of(key),
            urls=[value["resolved"]],
            version=value.get("version"),
            hash=f"integrity:{integrity}" if integrity else None,
        )
