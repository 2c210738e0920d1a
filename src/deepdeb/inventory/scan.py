"""``deepdeb inventory``: every external download a source tree's build declares.

A static scan: no build, nothing executed, no network (unless the caller allows manifests
to be fetched). Each input is reported with what
it is, where it comes from, whether it is pinned by a hash or commit, the file and line
that declares it, and the Debian source package that already ships it, if any. Given the
second-level manifests the build would download (:mod:`deepdeb.inventory.expand`), their
archives are listed too, and the summary says how many bytes the build would fetch.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from packaging.utils import InvalidWheelFilename, parse_wheel_filename

from deepdeb.inventory.bazel import scan_bazel
from deepdeb.inventory.cargo import scan_cargo_lock
from deepdeb.inventory.cmake import scan_cmake
from deepdeb.inventory.configured import BuildConfig, configure, mark_unused
from deepdeb.inventory.debmatch import SourceIndex
from deepdeb.inventory.expand import ManifestSource, expand
from deepdeb.inventory.git import scan_gitmodules
from deepdeb.inventory.go import scan_go_sum
from deepdeb.inventory.inputs import UNPARSEABLE, Input
from deepdeb.inventory.manifests import DEFAULT_PLATFORM, scan_deps_txt, scan_redistrib_json
from deepdeb.inventory.npm import scan_package_lock
from deepdeb.inventory.python import scan_pyproject, scan_requirements

SKIP_DIRS = {".git", ".hg", ".svn", "node_modules", "__pycache__", ".tox", ".venv"}


# Files larger than this are not declarations anyone writes by hand: not read.


# --- the walk ----------------------------------------------------------------------------

Scanner = Callable[[Path, Path], Iterator[Input]]
_BY_NAME: dict[str, Scanner] = {
    ".gitmodules": scan_gitmodules,
    "Cargo.lock": scan_cargo_lock,
    "go.sum": scan_go_sum,
    "package-lock.json": scan_package_lock,
    "pyproject.toml": scan_pyproject,
    "deps.txt": scan_deps_txt,
}
_BAZEL = ("WORKSPACE", "WORKSPACE.bazel", "WORKSPACE.bzlmod", "MODULE.bazel")


def _per_file_scanner(name: str, platform: str) -> Scanner | None:
    if name in _BY_NAME:
        return _BY_NAME[name]
    if re.fullmatch(r".*requirements.*\.(txt|in)", name):  # nvidia-requirements.txt too
        return scan_requirements
    if re.fullmatch(r"redistrib.*\.json", name):
        return partial(scan_redistrib_json, platform=platform)
    return None


@dataclass
class Inventory:
    """What ``deepdeb inventory`` found in a tree: every declared input, and how it looked."""

    root: Path
    inputs: list[Input]
    files_scanned: int
    debian_index: bool  # whether apt's source index was available for matching
    configuration: BuildConfig = field(default_factory=BuildConfig)

    def summary(self) -> dict[str, int]:
        return {
            "inputs": len(self.inputs),
            "pinned": sum(i.pinned for i in self.inputs),
            "matched_in_debian": sum(i.debian is not None for i in self.inputs),
            "second_level": sum(i.second_level for i in self.inputs),
            "files_scanned": self.files_scanned,
        }

    def sizes(self) -> dict[str, Any]:
        """What the listed inputs would download: bytes by kind where sizes are known, and
        how many inputs have no known size (so the bytes are a lower bound). Inputs a
        build for the chosen platform would not fetch (``in_total`` false) and files that
        could not be read are left out."""
        by_kind: dict[str, dict[str, int]] = {}
        for item in self.inputs:
            if item.kind == "unparsed" or not item.in_total:
                continue
            row = by_kind.setdefault(item.kind, {"inputs": 0, "bytes": 0, "unsized": 0})
            row["inputs"] += 1
            if item.size is None:
                row["unsized"] += 1
            else:
                row["bytes"] += item.size
        return {
            "download_bytes": sum(r["bytes"] for r in by_kind.values()),
            "unsized": sum(r["unsized"] for r in by_kind.values()),
            "by_kind": dict(sorted(by_kind.items())),
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "root": str(self.root),
            "summary": {**self.summary(), **self.sizes()},
            "debian_index": self.debian_index,
            "configuration": self.configuration.to_json(),
            "inputs": [i.to_json() for i in self.inputs],
        }


_LINUX = ("manylinux", "musllinux", "linux")
_MACHINES = {"x86_64": "x86_64", "sbsa": "aarch64"}  # NVIDIA's platform name -> wheel's


def for_this_machine(filename: str, platform: str) -> bool:
    """Whether a wheel (by its file name's tags, read by ``packaging``) installs on a Linux
    build for NVIDIA's ``platform``: pure, or a Linux platform tag of the same machine. A
    name that is no valid wheel name is given the benefit of the doubt."""
    try:
        tags = parse_wheel_filename(filename)[3]
    except InvalidWheelFilename:
        return True
    machine = _MACHINES["sbsa" if platform.endswith(("sbsa", "aarch64")) else "x86_64"]
    return any(
        t.platform == "any" or (t.platform.startswith(_LINUX) and t.platform.endswith(machine))
        for t in tags
    )


def _not_in_total(item: Input, platform: str) -> str:
    """Why an input is listed but not counted in what a build for ``platform`` downloads:
    a repository rule's own download whose URL it is given (the URLs are the inputs
    listed where they are declared), or a wheel built for another machine."""
    if item.kind == "repository_rule_download" and not item.urls:
        return "not counted: the machinery behind inputs listed where they are declared"
    name = item.urls[0].split("#")[0].split("?")[0].rsplit("/", 1)[-1] if item.urls else ""
    if item.kind == "wheel" and not for_this_machine(name, platform):
        return f"not counted: a wheel for another machine than {platform}"
    return ""


def _mark_totals(inputs: list[Input], platform: str) -> None:
    for item in inputs:
        why = _not_in_total(item, platform)
        if why:
            item.in_total = False
            item.note = f"{item.note}; {why}" if item.note else why


def scan(
    root: Path,
    index: SourceIndex | None = None,
    *,
    manifests: ManifestSource | None = None,
    platform: str = DEFAULT_PLATFORM,
    versions: Mapping[str, str] | None = None,
) -> Inventory:
    """Scan a tree; ``index`` (apt's Sources) adds Debian matches when given; ``manifests``
    expands second-level manifests into their archives for ``platform``. The tree's
    ``.bazelrc`` (or ``versions``: library -> version) says which hermetic CUDA versions
    a build uses; the others are listed, not counted, nor expanded."""
    root = root.resolve()
    bazel: list[Path] = []
    cmake_files: list[Path] = []
    inputs: list[Input] = []
    count = 0
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
        for name in sorted(filenames):
            count += 1
            path = Path(dirpath) / name
            if not stat.S_ISREG(path.lstat().st_mode):
                continue  # links, FIFOs, devices: no declarations to read
            if name in _BAZEL or name.endswith(".bzl"):
                bazel.append(path)
            elif name == "CMakeLists.txt" or name.endswith(".cmake"):
                cmake_files.append(path)
            else:
                scanner = _per_file_scanner(name, platform)
                if scanner is not None:
                    try:
                        inputs.extend(scanner(root, path))
                    except (OSError, KeyError, TypeError, AttributeError, *UNPARSEABLE) as e:
                        inputs.append(
                            Input(
                                "unparsed",
                                name,
                                path.relative_to(root).as_posix(),
                                0,
                                note=f"could not be read: {e}",
                            )
                        )
    inputs.extend(scan_bazel(root, bazel))
    inputs.extend(scan_cmake(root, cmake_files))
    inputs.sort(key=lambda i: (i.file, i.line, i.name))
    config = configure(root, bazel, versions)
    mark_unused(inputs, config)
    if manifests is not None:
        inputs = expand(inputs, manifests, platform)
        mark_unused(inputs, config)  # the archives of components without a template
    _mark_totals(inputs, platform)
    if index is not None:
        for item in inputs:
            found = index.match(item.kind, item.name, item.urls)
            if found is not None:
                item.debian, item.debian_match = found.package, found.via
    return Inventory(root, inputs, count, index is not None and not index.empty, config)
