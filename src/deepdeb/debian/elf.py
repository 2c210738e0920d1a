"""Reading the few ELF facts deepdeb needs, through binutils' readelf."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from deepdeb.cpu.levels import BASELINE, LEVELS, rank
from deepdeb.util import run


@dataclass(frozen=True)
class ElfInfo:
    """What readelf says about one ELF file: its kind, soname, ISA marker and dependencies."""

    type: str  # "DYN" or "EXEC" (or "REL" ...)
    soname: str | None
    isa_needed: str  # highest "x86 ISA needed" level, BASELINE when there is no marker
    build_id: str | None
    runpath: tuple[str, ...] = ()  # DT_RUNPATH, or DT_RPATH when there is no RUNPATH
    needed: tuple[str, ...] = ()  # DT_NEEDED sonames

    @property
    def is_shared_library(self) -> bool:
        """A shared object the loader finds by name (only those can use glibc-hwcaps)."""
        return self.type == "DYN" and self.soname is not None


def is_elf(path: Path) -> bool:
    """A regular file (not a link) that starts with the ELF magic number."""
    if path.is_symlink() or not path.is_file():
        return False
    with open(path, "rb") as f:
        return f.read(4) == b"\x7fELF"


def read_elf(path: Path) -> ElfInfo:
    """The ELF facts of a file, from one ``readelf`` run over its header, dynamic section
    and notes."""
    out = run(["readelf", "-W", "-h", "-d", "-n", path]).stdout
    type_match = re.search(r"^\s*Type:\s+(\w+)", out, flags=re.M)
    soname = re.search(r"\(SONAME\)\s+Library soname: \[([^\]]+)\]", out)
    build_id = re.search(r"Build ID: ([0-9a-f]+)", out)
    runpath = re.search(r"\(RUNPATH\)\s+Library runpath: \[([^\]]*)\]", out) or re.search(
        r"\(RPATH\)\s+Library rpath: \[([^\]]*)\]", out
    )
    return ElfInfo(
        type=type_match.group(1) if type_match else "?",
        soname=soname.group(1) if soname else None,
        isa_needed=isa_needed(out),
        build_id=build_id.group(1) if build_id else None,
        runpath=tuple(d for d in runpath.group(1).split(":") if d) if runpath else (),
        needed=tuple(re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", out)),
    )


def isa_needed(notes: str) -> str:
    """Highest level in ``readelf -n`` output's "x86 ISA needed" property."""
    best = BASELINE
    for line in re.findall(r"x86 ISA needed: (.*)", notes):
        for name in re.findall(r"x86-64-(?:baseline|v[234])", line):
            level = BASELINE if name.endswith("baseline") else name
            if level in LEVELS and rank(level) > rank(best):
                best = level
    return best
