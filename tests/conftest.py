"""Shared helpers: fixture paths, a build runner and a scratch dpkg root."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from rich.console import Console

from deepdeb.pipeline import run_build
from deepdeb.recipe import load_recipe, with_levels
from deepdeb.report import BuildReport

FIXTURES = Path(__file__).parent / "fixtures"


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


def dpkg_install(debs: list[Path], root: Path) -> subprocess.CompletedProcess[str]:
    """``dpkg -i`` into a scratch root whose database starts as a copy of this system's.

    Dependencies are checked for real against the packages installed here, files land in
    the scratch root only.
    """
    admin = root / "var/lib/dpkg"
    for sub in ("info", "updates", "triggers"):
        (admin / sub).mkdir(parents=True, exist_ok=True)
    shutil.copyfile("/var/lib/dpkg/status", admin / "status")
    (admin / "available").touch()
    return subprocess.run(
        [
            "dpkg",
            f"--root={root}",
            "--force-script-chrootless",
            "--no-triggers",
            "-i",
            *map(str, debs),
        ],
        capture_output=True,
        text=True,
    )


@pytest.fixture(scope="session")
def vecmath_fat(tmp_path_factory: pytest.TempPathFactory) -> BuildReport:
    """The gaining fixture, built once in the fat layout (kept work dir for comparisons)."""
    return build("vecmath.toml", tmp_path_factory.mktemp("vecmath-fat"), keep_work=True)
