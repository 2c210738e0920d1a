"""x86-64 ISA levels: names, compiler flags, loader masks and what this CPU supports.

The levels are the psABI micro-architecture levels that glibc's loader knows as
``glibc-hwcaps`` subdirectories (glibc >= 2.33). The baseline, ``x86-64``, is what Debian's
amd64 port targets; it is never given a subdirectory, since the normal library directory
already holds it.
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field

from deepdeb.errors import UsageError

BASELINE = "x86-64"
LEVELS: tuple[str, ...] = (BASELINE, "x86-64-v2", "x86-64-v3", "x86-64-v4")
OPTIONAL_LEVELS: tuple[str, ...] = LEVELS[1:]

LOADER = "/lib64/ld-linux-x86-64.so.2"
# Treat this machine as being at most at this level (tests simulate v2 and v3 hosts on any
# CPU with it; a user can keep deepdeb from building and measuring what a fleet lacks).
HOST_LEVEL_ENV = "DEEPDEB_HOST_LEVEL"
# First glibc whose loader searches glibc-hwcaps subdirectories.
MIN_GLIBC = "2.33"

# GLIBC_TUNABLES masks that make the loader believe the CPU is at most at a level. Each
# level needs the CPU features of the one below plus its own, so switching off one feature
# the level adds is enough: SSE4.2 (v2), AVX2 (v3), AVX512F (v4).
_MASK_FEATURE = {"x86-64-v2": "SSE4_2", "x86-64-v3": "AVX2", "x86-64-v4": "AVX512F"}

# archspec names of the generic micro-architectures that stand for each level.
_ARCHSPEC_NAME = {
    BASELINE: "x86_64",
    "x86-64-v2": "x86_64_v2",
    "x86-64-v3": "x86_64_v3",
    "x86-64-v4": "x86_64_v4",
}


def rank(level: str) -> int:
    """Position of a level in LEVELS (baseline is 0); ValueError for unknown names."""
    return LEVELS.index(level)


def tunables_mask(level: str) -> str:
    """GLIBC_TUNABLES value that caps the loader's view of this CPU at ``level``."""
    off = [feature for name, feature in _MASK_FEATURE.items() if rank(name) > rank(level)]
    return "glibc.cpu.hwcaps=" + ",".join("-" + f for f in off) if off else ""


def compiler_flags(level: str, tune: str, profile: str, *, gcc_version: str) -> str:
    """Flags appended to the package's own C/C++/Fortran flags for a rebuilt level.

    The ``-march`` part is archspec's (``optimization_flags``): it knows which spelling
    each GCC release understands (``-march=x86-64-v3`` from GCC 11, the list of feature
    flags before). ``tune`` replaces archspec's ``-mtune=generic``. ``-mneeded`` makes GCC
    record the level as an "x86 ISA needed" ELF property. That gives deepdeb a proof,
    readable from the binaries, that the flags reached the compiler, and it makes the
    loader refuse the file with a clear message if it is ever copied to a CPU below that
    level (the copies only live under glibc-hwcaps/, where that cannot happen).
    """
    if level == BASELINE:
        return ""
    import archspec.cpu

    target = archspec.cpu.TARGETS[_ARCHSPEC_NAME[level]]
    try:
        march = target.optimization_flags("gcc", gcc_version).split()
    except ValueError as e:  # archspec: this GCC cannot target the level
        raise UsageError(f"{level}: {e}") from None
    parts = [f for f in march if not f.startswith("-mtune=")]
    parts += [f"-mtune={tune}", "-mneeded"]
    if profile:
        parts.append(profile)
    return " ".join(parts)


@dataclass(frozen=True)
class HostCpu:
    """What deepdeb knows about the machine it runs on."""

    microarchitecture: str
    vendor: str
    level: str
    loader_levels: tuple[str, ...]  # glibc-hwcaps levels this loader reports as supported
    features: tuple[str, ...]
    # What lowered the level below the CPU's own: "" (nothing), "loader" (a GLIBC_TUNABLES
    # mask or a virtual CPU) or HOST_LEVEL_ENV.
    capped_by: str = ""

    def supports(self, level: str) -> bool:
        return level == BASELINE or level in self.loader_levels

    def why_not(self, level: str) -> str:
        """Why this host cannot run ``level``, for reports: what the CPU lacks, or what
        made deepdeb treat it as lower than it is."""
        missing = missing_features(level, self.features)
        where = f"this CPU is {self.microarchitecture}, {self.level}"
        if missing:
            return f"needs {', '.join(f.upper() for f in missing)}; {where}"
        if self.capped_by == HOST_LEVEL_ENV:
            return f"above {self.level}, the level {HOST_LEVEL_ENV} sets for this host"
        return f"the loader does not use {level} here (a GLIBC_TUNABLES mask?); {where}"


def loader_supported_levels(loader: str = LOADER, env: dict[str, str] | None = None) -> list[str]:
    """Ask the dynamic loader which glibc-hwcaps subdirectories it would search here.

    The loader is the authority: it is what picks the variant at run time, with any
    GLIBC_TUNABLES mask applied.
    """
    out = subprocess.run(
        [loader, "--help"], capture_output=True, text=True, check=True, env=env
    ).stdout
    return re.findall(r"^\s+(x86-64-v[234]) \(supported, searched\)", out, flags=re.M)


@functools.cache
def host_cpu() -> HostCpu:
    """Detect the host CPU with archspec and cross-check the level with the loader.

    ``DEEPDEB_HOST_LEVEL`` lowers the result further; it cannot raise it, since deepdeb
    must never plan to run code the CPU would die on.
    """
    import archspec.cpu

    host = archspec.cpu.host()
    level = BASELINE
    for name in OPTIONAL_LEVELS:
        target = archspec.cpu.TARGETS[_ARCHSPEC_NAME[name]]
        if host == target or target in host.ancestors:
            level = name
    loader_levels = tuple(loader_supported_levels())
    capped_by = ""
    # Trust the loader over archspec when they disagree (e.g. a masked or virtual CPU):
    # it is the loader's view that decides which variant runs.
    best_loader = max(loader_levels, key=rank, default=BASELINE)
    if rank(best_loader) < rank(level):
        level, capped_by = best_loader, "loader"
    wanted = os.environ.get(HOST_LEVEL_ENV, "").strip()
    if wanted:
        level, capped_by = cap_level(level, capped_by, wanted)
        loader_levels = tuple(lv for lv in loader_levels if rank(lv) <= rank(level))
    return HostCpu(
        microarchitecture=host.name,
        vendor=host.vendor,
        level=level,
        loader_levels=loader_levels,
        features=tuple(sorted(host.features)),
        capped_by=capped_by,
    )


def cap_level(level: str, capped_by: str, wanted: str) -> tuple[str, str]:
    """The host level after ``DEEPDEB_HOST_LEVEL=wanted``: only ever lower."""
    if wanted not in LEVELS:
        raise UsageError(
            f"{HOST_LEVEL_ENV}={wanted!r} is not a level; expected one of {', '.join(LEVELS)}"
        )
    if rank(wanted) > rank(level):
        raise UsageError(
            f"{HOST_LEVEL_ENV}={wanted} is above what this machine runs ({level}): it can "
            "only lower the host level"
        )
    if rank(wanted) < rank(level):
        return wanted, HOST_LEVEL_ENV
    return level, capped_by


def missing_features(level: str, features: Sequence[str]) -> list[str]:
    """Features (archspec names) that ``level`` and the levels below it need and that
    ``features`` lacks, lowest level first."""
    have = set(features)
    missing: list[str] = []
    for name in LEVELS[1 : rank(level) + 1]:
        # the level's defining feature (SSE4.2, AVX2, AVX-512F) first, then the rest
        needed = sorted(level_features(name), key=lambda f: f.upper() != _MASK_FEATURE[name])
        missing += [f for f in needed if f not in have]
    return missing


@dataclass(frozen=True)
class BuildPlan:
    """Which levels to build, and why the others are not built."""

    levels: tuple[str, ...]  # optional levels to build, ascending (the baseline is implied)
    not_built: dict[str, str] = field(default_factory=dict)  # level -> why
    may_fail: frozenset[str] = frozenset()  # levels whose failure is reported, not fatal


def plan_builds(requested: Sequence[str], host: HostCpu, explicit: bool) -> BuildPlan:
    """Levels to build on this host.

    A level the CPU cannot run is left out unless it was named explicitly: its build may
    execute its own code (configure's test programs, the package's test suite) and die of
    an illegal instruction, and it could be neither tested nor measured here, so it would
    never be shipped. Named explicitly, it is built, and a failure is reported, not fatal.
    """
    build: list[str] = []
    not_built: dict[str, str] = {}
    above: set[str] = set()
    for level in sorted(requested, key=rank):
        if host.supports(level):
            build.append(level)
        elif explicit:
            build.append(level)
            above.add(level)
        else:
            not_built[level] = (
                f"not built: {host.why_not(level)} (name it with --levels to build it anyway)"
            )
    return BuildPlan(tuple(build), not_built, frozenset(above))


def level_features(level: str) -> tuple[str, ...]:
    """CPU features (archspec names) that a level adds over the one below it."""
    import archspec.cpu

    if level == BASELINE:
        return tuple(sorted(archspec.cpu.TARGETS["x86_64"].features))
    below = LEVELS[rank(level) - 1]
    mine = archspec.cpu.TARGETS[_ARCHSPEC_NAME[level]].features
    lower = archspec.cpu.TARGETS[_ARCHSPEC_NAME[below]].features
    return tuple(sorted(set(mine) - set(lower)))
