"""Shared helpers: fixture paths, a build runner and an installed bookworm root."""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest
from rich.console import Console

from deepdeb.cpu.levels import BASELINE, LEVELS, LOADER, host_cpu, rank
from deepdeb.hermetic import cleanroom
from deepdeb.isa.pipeline import run_build
from deepdeb.isa.verify import hwcaps_mask_option, resolve_in_root
from deepdeb.recipe.load import load_recipe, with_levels
from deepdeb.recipe.model import SourceRecipe
from deepdeb.report.schema import BuildReport

FIXTURES = Path(__file__).parent / "fixtures"
# The tests' downloads and chroots (deepdeb's and pip's caches) stay in the checkout's
# .cache/, kept between runs and never in the invoking user's home.
os.environ["XDG_CACHE_HOME"] = str(Path(__file__).resolve().parent.parent / ".cache")


def build(
    recipe: str | Path,
    out: Path,
    layout: str = "fat",
    levels: list[str] | None = None,
    keep_work: bool = False,
    backend: str = "host",
) -> BuildReport:
    """Run the whole pipeline on a recipe, quietly."""
    parsed = load_recipe(FIXTURES / recipe if isinstance(recipe, str) else recipe)
    assert isinstance(parsed, SourceRecipe), "a Debian source recipe"
    if levels is not None:
        parsed = with_levels(parsed, levels)
    console = Console(file=open("/dev/null", "w"), width=120)  # noqa: SIM115
    return run_build(parsed, out, layout, console=console, keep_work=keep_work, backend=backend)


def vecmath_recipe(tmp_path: Path, benchmark: str) -> Path:
    """The gaining fixture's recipe with another benchmark command, written to tmp_path."""
    recipe = tmp_path / "r.toml"
    recipe.write_text(
        (FIXTURES / "vecmath.toml")
        .read_text()
        .replace('path = "vecmath-1.0"', f'path = "{FIXTURES / "vecmath-1.0"}"')
        .replace('command = "vecmath-bench 50000"', f"command = {benchmark!r}")
    )
    return recipe


def control(deb: Path) -> dict[str, str]:
    """Control fields of a .deb, read back with dpkg-deb."""
    from debian.deb822 import Deb822

    out = subprocess.run(["dpkg-deb", "-f", deb], check=True, capture_output=True, text=True)
    return dict(Deb822(out.stdout))


def contents(deb: Path) -> list[str]:
    """Paths in a .deb's data, as dpkg-deb lists them (./usr/... -> /usr/...)."""
    out = subprocess.run(["dpkg-deb", "-c", deb], check=True, capture_output=True, text=True)
    return [line.split()[5].lstrip(".") for line in out.stdout.splitlines()]


def installed_root(debs: list[Path], root: Path) -> Path:
    """A fresh bookworm root (from the clean-room chroot tarball) with ``debs`` installed
    by apt: dependencies from the archive, maintainer scripts and triggers run by dpkg."""
    cleanroom.unpack_chroot(cleanroom.runtime_chroot(), root)
    proc = cleanroom.install_packages(root, [d for d in debs if "-dbgsym_" not in d.name])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return root


def in_root(root: Path, *command: str, env: dict[str, str] | None = None) -> str:
    """Run a command inside an installed root, without network; returns its stdout."""
    proc = cleanroom.in_root(root, command, env=env or {}, check=False, network=False)
    assert proc.returncode == 0, f"{command}: {proc.stderr}"
    return proc.stdout


def host_levels() -> list[str]:
    """The levels this host can run (the baseline first)."""
    return [lv for lv in LEVELS if host_cpu().supports(lv)]


def expected_level(kept: list[str], cpu_level: str) -> str:
    """The variant the loader must pick on a CPU at ``cpu_level``: the highest kept level
    at or below it (the baseline if none)."""
    fitting = [lv for lv in kept if rank(lv) <= rank(cpu_level)]
    return max(fitting, key=rank) if fitting else BASELINE


def listed(root: Path, program: str, library: str, level: str) -> str:
    """The file ``ld.so --list`` resolves ``library`` to for ``program`` inside ``root``
    with the CPU masked to ``level``, symlinks followed inside the root."""
    out = in_root(root, LOADER, "--glibc-hwcaps-mask", hwcaps_mask_option(level), "--list", program)
    line = next(li for li in out.splitlines() if li.strip().startswith(library))
    return resolve_in_root(root, line.split("=>")[1].split("(")[0].strip())


@pytest.fixture(scope="session", autouse=True)
def scratch_under_pytest(tmp_path_factory: pytest.TempPathFactory) -> None:
    """deepdeb's work directories (kept after a failure, as the tests provoke on purpose)
    go below pytest's own temporary directory, which pytest prunes, not into /tmp."""
    scratch = tmp_path_factory.mktemp("deepdeb-scratch")
    tempfile.tempdir = str(scratch)
    os.environ["TMPDIR"] = str(scratch)


@pytest.fixture(scope="session")
def vecmath_fat(tmp_path_factory: pytest.TempPathFactory) -> BuildReport:
    """The gaining fixture, built once in the fat layout (kept work dir for comparisons)."""
    return build("vecmath.toml", tmp_path_factory.mktemp("vecmath-fat"), keep_work=True)


@pytest.fixture(scope="session")
def quick_build(tmp_path_factory: pytest.TempPathFactory) -> BuildReport:
    """The gaining fixture at x86-64-v2 only (every host runs it): the fast suite's whole
    pipeline, from build to the loader's checks on an installed root."""
    return build("vecmath.toml", tmp_path_factory.mktemp("vecmath-v2"), levels=["x86-64-v2"])


def pypi_reachable() -> bool:
    """Whether pypi.org answers: the live tests (marked slow) probe it when they run, not
    when they are collected, so a deselected test touches no network."""
    try:
        socket.create_connection(("pypi.org", 443), timeout=5).close()
    except OSError:
        return False
    return True
