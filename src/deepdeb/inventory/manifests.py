"""Manifests of prebuilt downloads: ``deps.txt`` lists and NVIDIA's ``redistrib*.json``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from deepdeb.inventory.inputs import Input, hash_of, read


def scan_deps_txt(root: Path, path: Path) -> Iterator[Input]:
    """``name;url;hash`` manifests (as onnxruntime's cmake/deps.txt)."""
    rel = path.relative_to(root).as_posix()
    for number, line in enumerate(read(path).splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split(";")
        if len(fields) >= 2 and "://" in fields[1]:
            yield Input(
                "manifest",
                fields[0],
                rel,
                number,
                urls=[fields[1]],
                hash=hash_of(fields[2]) if len(fields) > 2 else None,
            )


def scan_redistrib_json(root: Path, path: Path) -> Iterator[Input]:
    """NVIDIA-style manifests of redistributable archives: the sizes are known here."""
    rel = path.relative_to(root).as_posix()
    try:
        data = json.loads(read(path))
    except ValueError:
        return
    lines = read(path).splitlines()
    for component, entry in data.items() if isinstance(data, dict) else []:
        if not isinstance(entry, dict):
            continue
        for platform, archive in entry.items():
            if not (isinstance(archive, dict) and "relative_path" in archive):
                continue
            line = next((i for i, t in enumerate(lines, 1) if f'"{component}"' in t), 1)
            yield Input(
                "redist_archive",
                component,
                rel,
                line,
                urls=[archive["relative_path"]],
                version=entry.get("version"),
                hash=f"sha256:{archive['sha256']}" if "sha256" in archive else None,
                size=int(archive["size"]) if "size" in archive else None,
                note=f"platform {platform}; path relative to the manifest's base URL",
            )
