"""Every question deepdeb asks the host's apt: what the archive has, in which area, at
which version, and where its index files are. (apt inside a root, to install packages
there, is the business of :mod:`deepdeb.hermetic.cleanroom`.)

apt's answers come from the host's own configuration and signed indices; deepdeb never
reads the archive some other way.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from debian.deb822 import Deb822

from deepdeb.util import run


def area_of(section: str) -> str:
    """The archive area of a Section field (``contrib/libs`` is contrib, ``libs`` main)."""
    area = section.split("/", 1)[0] if "/" in section else "main"
    return "non-free" if area.startswith("non-free") else area


def sections(names: Iterable[str]) -> dict[str, str]:
    """Archive area of binary packages apt knows (the candidate version of each)."""
    wanted = sorted(set(names))
    if not wanted:
        return {}
    out = run(["apt-cache", "show", "--no-all-versions", *wanted], check=False).stdout
    return {p["Package"]: area_of(p.get("Section", "")) for p in Deb822.iter_paragraphs(out)}


def providers(name: str) -> list[str]:
    """Packages that provide a virtual package (``Reverse Provides`` of apt-cache)."""
    out = run(["apt-cache", "showpkg", name], check=False).stdout
    return re.findall(r"^(\S+) \S+", out.split("Reverse Provides:", 1)[-1], re.M)


def source_area(name: str, version: str) -> str | None:
    """The archive area of a source package at this version, None if apt does not know it."""
    out = run(["apt-cache", "showsrc", "--only-source", name], check=False).stdout
    for para in Deb822.iter_paragraphs(out):
        if para.get("Package") == name and para.get("Version") == version:
            return area_of(para.get("Section", ""))
    return None


def versions(packages: list[str]) -> dict[str, list[str]]:
    """Versions the binary indices have of each package (empty list: not in the archive)."""
    proc = run(["apt-cache", "madison", *packages], check=False)
    found: dict[str, list[str]] = {p: [] for p in packages}
    for line in proc.stdout.splitlines():
        parts = [p.strip() for p in line.split("|")]
        known = len(parts) >= 3 and parts[0] in found and "Packages" in parts[2]
        if known and parts[1] not in found[parts[0]]:
            found[parts[0]].append(parts[1])
    return found


def source_index_files() -> list[Path]:
    """apt's Sources index files on this machine (compressed or not)."""
    out = run(
        ["apt-get", "indextargets", "--format", "$(FILENAME)", "Identifier: Sources"],
        check=False,
    ).stdout
    return [Path(f) for f in out.split() if Path(f).exists()]


def read_index(path: Path) -> str:
    """An index file's text, decompressed the way apt stores it."""
    return run(["/usr/lib/apt/apt-helper", "cat-file", path]).stdout


def download_source(spec: str, dest: Path) -> tuple[int, str]:
    """``apt-get source --download-only`` into ``dest``: (exit status, apt's output)."""
    proc = run(["apt-get", "source", "--download-only", spec], cwd=dest, check=False)
    return proc.returncode, proc.stderr + proc.stdout


def _showpkg(names: Iterable[str]) -> dict[str, str]:
    """``apt-cache showpkg`` of several packages in one run (each run loads apt's cache),
    split into one block per package."""
    wanted = sorted(set(names))
    if not wanted:
        return {}
    out = run(["apt-cache", "showpkg", *wanted], check=False).stdout
    blocks = re.split(r"^Package: ", out, flags=re.M)[1:]
    return {b.split("\n", 1)[0].strip(): b for b in blocks}


def reverse_relations(names: Iterable[str]) -> dict[str, tuple[list[str], list[str]]]:
    """For each package, real or virtual: the packages whose relations name it (``Reverse
    Depends``: Depends, Pre-Depends, Breaks, Conflicts, Recommends, ...) and the packages
    that provide it (``Reverse Provides``), without architecture qualifiers, each once.
    A name apt does not know has neither."""
    found: dict[str, tuple[list[str], list[str]]] = {n: ([], []) for n in names}
    for name, block in _showpkg(found).items():
        rdeps = block.split("Reverse Depends:", 1)[-1].split("\nDependencies:", 1)[0]
        rprov = block.split("Reverse Provides:", 1)[-1] if "Reverse Provides:" in block else ""
        found[name] = (
            _unique(re.findall(r"^\s+([^\s,]+),", rdeps, re.M)),
            _unique(re.findall(r"^(\S+) \S+", rprov, re.M)),
        )
    return found


def _unique(names: list[str]) -> list[str]:
    return list(dict.fromkeys(n.split(":", 1)[0] for n in names))


def candidate_fields(packages: Iterable[str]) -> list[dict[str, str]]:
    """The control fields of the candidate version of each package apt knows (unknown and
    purely virtual names are left out), one record per package."""
    wanted = sorted(set(packages))
    if not wanted:
        return []
    out = run(["apt-cache", "show", "--no-all-versions", *wanted], check=False).stdout
    return control_records(out)


def control_records(text: str) -> list[dict[str, str]]:
    """Paragraphs of ``apt-cache show`` output (or a Packages file) as field dictionaries,
    the first paragraph of each package only."""
    records: dict[str, dict[str, str]] = {}
    for para in Deb822.iter_paragraphs(text):
        name = para.get("Package")
        if name and name not in records:
            records[name] = {str(k): str(v) for k, v in para.items()}
    return list(records.values())
