"""Verify stage: prove that the dynamic loader picks the right file at every level.

The assembled packages are unpacked into a scratch root. A small probe program dlopen()s
each library by its soname and prints the file the loader actually mapped. It runs once per
level with the CPU masked down to that level, in two independent ways: the
``glibc.cpu.hwcaps`` tunable (what a user on an older CPU sees) and the loader's own
``--glibc-hwcaps-mask`` option. A wrong pick fails the build.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

from .assemble import HWCAPS, AssembledPackage
from .build import elf_files, extract
from .elf import read_elf
from .errors import VerifyError
from .isa import BASELINE, LEVELS, LOADER, HostCpu, rank, tunables_mask
from .util import run


@dataclass(frozen=True)
class LoaderCheck:
    library: str  # soname
    level: str  # the level the CPU was masked down to
    method: str  # "tunables" or "ld.so-mask"
    expected: str  # path inside the package
    loaded: str
    ok: bool


def build_probe(work: Path) -> Path:
    source = resources.files("deepdeb").joinpath("data/loadprobe.c").read_text()
    (work / "loadprobe.c").write_text(source)
    probe = work / "loadprobe"
    run(["cc", "-O2", "-o", probe, work / "loadprobe.c"])
    return probe


def expected_file(soname_dir: str, soname: str, level: str, copies: set[str]) -> str:
    """The file the loader must pick for ``soname`` on a CPU at ``level``.

    It searches glibc-hwcaps/<level>/ and every lower level's directory, highest first,
    then the normal directory.
    """
    for candidate in reversed(LEVELS[1 : rank(level) + 1]):
        path = f"{soname_dir}/{HWCAPS}/{candidate}/{soname}"
        if path in copies:
            return path
    return f"{soname_dir}/{soname}"


def hwcaps_mask_option(level: str) -> str:
    """Value for ``ld.so --glibc-hwcaps-mask``: the subdirectories a CPU at ``level`` uses."""
    allowed = [lv for lv in LEVELS[1:] if rank(lv) <= rank(level)]
    return ":".join(allowed) if allowed else "none"


def _resolve_in_root(root: Path, loaded: str) -> str:
    """The loaded file as a path inside the package, with symlinks resolved."""
    real = Path(os.path.realpath(loaded))
    try:
        return "/" + real.relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(real)


def verify_loader(
    packages: list[AssembledPackage], host: HostCpu, work: Path
) -> tuple[list[LoaderCheck], list[str]]:
    """Run the loader checks; returns them with notes on levels this CPU cannot check."""
    root = work / "root"
    for package in packages:
        if package.file.suffix == ".deb":
            extract(package.file, root)
    probe = build_probe(work)
    libraries: dict[str, str] = {}  # soname -> directory inside the root
    copies: set[str] = set()  # /path/of/soname link or file inside glibc-hwcaps
    levels_shipped = {BASELINE}
    for path in elf_files(root):
        rel = "/" + path.relative_to(root).as_posix()
        info = read_elf(path)
        if not info.is_shared_library or info.soname is None:
            continue
        if f"/{HWCAPS}/" in rel:
            level_dir = path.parent
            copies.add(f"/{level_dir.relative_to(root).as_posix()}/{info.soname}")
            levels_shipped.add(level_dir.name)
        else:
            libraries[info.soname] = "/" + path.parent.relative_to(root).as_posix()
    library_path = ":".join(str(root / d.lstrip("/")) for d in sorted(set(libraries.values())))
    checks: list[LoaderCheck] = []
    notes: list[str] = []
    for level in sorted(levels_shipped, key=rank):
        if not host.supports(level):
            notes.append(f"{level}: not checked, this CPU ({host.level}) cannot run it")
            continue
        for soname, directory in sorted(libraries.items()):
            want = _resolve_in_root(
                root, str(root) + expected_file(directory, soname, level, copies)
            )
            for method, loaded in _probe(probe, soname, level, library_path).items():
                got = _resolve_in_root(root, loaded)
                checks.append(LoaderCheck(soname, level, method, want, got, got == want))
    bad = [c for c in checks if not c.ok]
    if bad:
        lines = [
            f"  {c.library} at {c.level} ({c.method}): expected {c.expected}, loaded {c.loaded}"
            for c in bad
        ]
        raise VerifyError("the loader picked the wrong file:\n" + "\n".join(lines))
    return checks, notes


def _probe(probe: Path, soname: str, level: str, library_path: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("LD_LIBRARY_PATH", "LD_PRELOAD")}
    results = {}
    tunables = dict(env, LD_LIBRARY_PATH=library_path)
    if tunables_mask(level):
        tunables["GLIBC_TUNABLES"] = tunables_mask(level)
    results["tunables"] = _loaded(run([probe, soname], env=tunables, check=False), soname, level)
    masked = run(
        [
            LOADER,
            "--glibc-hwcaps-mask",
            hwcaps_mask_option(level),
            "--library-path",
            library_path,
            probe,
            soname,
        ],
        env=env,
        check=False,
    )
    results["ld.so-mask"] = _loaded(masked, soname, level)
    return results


def _loaded(proc: subprocess.CompletedProcess[str], soname: str, level: str) -> str:
    if proc.returncode != 0:
        raise VerifyError(f"{soname} does not load at {level}: {proc.stderr.strip()}")
    return str(proc.stdout.strip().split("\t", 1)[1])


def checks_to_json(checks: list[LoaderCheck]) -> list[dict[str, object]]:
    return [asdict(c) for c in checks]


@dataclass(frozen=True)
class LintianResult:
    ran: bool
    errors: list[str]
    warnings: list[str]


def lintian_tags(debs: list[Path]) -> tuple[list[str], list[str]]:
    """lintian's errors and warnings for ``debs``; a lintian that fails to run is an error."""
    proc = run(["lintian", "--no-tag-display-limit", *debs], check=False)
    if proc.returncode not in (0, 1):
        raise VerifyError(f"lintian failed to run:\n{proc.stderr.strip()[-1500:]}")
    tags = re.findall(r"^([EW]): (.*)$", proc.stdout, flags=re.M)
    errors = [text for kind, text in tags if kind == "E"]
    warnings = [text for kind, text in tags if kind == "W"]
    return errors, warnings


def run_lintian(packages: list[AssembledPackage]) -> LintianResult:
    """lintian on every assembled .deb; its errors fail the build, warnings are reported."""
    if shutil.which("lintian") is None:
        return LintianResult(ran=False, errors=[], warnings=[])
    errors, warnings = lintian_tags([p.file for p in packages if p.file.suffix == ".deb"])
    if errors:
        raise VerifyError("lintian reports errors:\n  " + "\n  ".join(errors))
    return LintianResult(ran=True, errors=errors, warnings=warnings)
