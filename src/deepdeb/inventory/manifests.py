"""Manifests of prebuilt downloads: ``deps.txt`` lists and NVIDIA's ``redistrib*.json``."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deepdeb.inventory.inputs import Input, hash_of, read

DEFAULT_PLATFORM = "linux-x86_64"


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


@dataclass(frozen=True)
class RedistArchive:
    """One archive an NVIDIA ``redistrib*.json`` lists, for one platform (and, for cuDNN,
    one CUDA variant)."""

    component: str
    version: str | None
    platform: str
    variant: str | None  # cuDNN's "cuda12": the same library built for each CUDA major
    path: str  # relative_path (to the manifest's directory) or full_path (a URL)
    full: bool  # path is a full URL (mirrored ``*_tar.json`` manifests)
    sha256: str | None
    size: int | None

    @property
    def where(self) -> str:
        return f"platform {self.platform}" + (f", {self.variant}" if self.variant else "")


def _size(value: Any) -> int | None:
    """Sizes are strings in NVIDIA's manifests ("1200412"); anything else is unknown."""
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _archive(
    component: str, entry: dict[str, Any], platform: str, variant: str | None, item: Any
) -> RedistArchive | None:
    if not isinstance(item, dict):
        return None
    full = "relative_path" not in item
    path = item.get("full_path" if full else "relative_path")
    if not isinstance(path, str):
        return None
    sha, version = item.get("sha256"), entry.get("version")
    return RedistArchive(
        component,
        version if isinstance(version, str) else None,
        platform,
        variant,
        path,
        full,
        sha if isinstance(sha, str) else None,
        _size(item.get("size")),
    )


def redist_archives(data: Any) -> Iterator[RedistArchive]:
    """The archives of a parsed manifest: ``component -> platform -> archive`` (CUDA) or
    ``component -> platform -> cudaNN -> archive`` (cuDNN); other keys (``release_date``,
    ``cuda_variant``, ...) are not archives."""
    for component, entry in data.items() if isinstance(data, dict) else []:
        if not isinstance(entry, dict):
            continue
        for platform, value in entry.items():
            if not isinstance(value, dict):
                continue
            if "relative_path" in value or "full_path" in value:
                candidates: list[tuple[str | None, Any]] = [(None, value)]
            else:
                candidates = [(str(k), v) for k, v in value.items()]
            for variant, item in candidates:
                found = _archive(str(component), entry, str(platform), variant, item)
                if found is not None:
                    yield found


def newest_variants(archives: list[RedistArchive]) -> dict[tuple[str, str], str]:
    """For each component and platform with CUDA variants, the newest (``cuda12`` over
    ``cuda11``): a build uses one, so only that one counts in the download total."""
    newest: dict[tuple[str, str], str] = {}
    for a in archives:
        if a.variant is None:
            continue
        key = (a.component, a.platform)
        if key not in newest or _rank(a.variant) > _rank(newest[key]):
            newest[key] = a.variant
    return newest


def _rank(variant: str) -> tuple[int, str]:
    digits = re.sub(r"\D", "", variant)
    return (int(digits) if digits else -1, variant)


def counted(archive: RedistArchive, platform: str, newest: dict[tuple[str, str], str]) -> bool:
    """Whether a build for ``platform`` downloads the archive (see :func:`newest_variants`)."""
    if archive.platform != platform:
        return False
    return archive.variant in (None, newest.get((archive.component, archive.platform)))


def scan_redistrib_json(
    root: Path, path: Path, platform: str = DEFAULT_PLATFORM
) -> Iterator[Input]:
    """NVIDIA-style manifests of redistributable archives in the tree: the sizes are known
    here. Every platform is listed; only ``platform``'s archives count in the total."""
    rel = path.relative_to(root).as_posix()
    text = read(path)
    try:
        data = json.loads(text)
    except ValueError:
        return
    lines = text.splitlines()
    archives = list(redist_archives(data))
    newest = newest_variants(archives)
    for a in archives:
        line = next((i for i, t in enumerate(lines, 1) if f'"{a.component}"' in t), 1)
        relative = "" if a.full else "; path relative to the manifest's base URL"
        yield Input(
            "redist_archive",
            a.component,
            rel,
            line,
            urls=[a.path],
            version=a.version,
            hash=f"sha256:{a.sha256}" if a.sha256 else None,
            size=a.size,
            note=a.where + relative,
            in_total=counted(a, platform, newest),
        )
