"""What a Dask worker runs for a recipe built as one task (a wheel recipe): unpack the
bundle, build it as ``deepdeb build RECIPE --out`` would, and send every output file back
as bytes. Source recipes run as a graph of stage tasks instead (:mod:`deepdeb.stack.tasks`).

The worker's own cache and temporary directory hold what it downloads and builds.
"""

from __future__ import annotations

import io
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console

from deepdeb.cpu.levels import host_cpu
from deepdeb.errors import DeepdebError
from deepdeb.isa.pipeline import run_build
from deepdeb.recipe.load import load_recipe, with_levels
from deepdeb.recipe.model import IsaRecipe, WheelRecipe
from deepdeb.stack.bundle import Options, Outcome, unpack
from deepdeb.wheel.pipeline import run_wheel_build

# What a build's --out holds that travels back: packages, records, logs, report.json.
_MAX_RESULT_BYTES = 8 << 30


def build_bundle(data: bytes, member: str, label: str, options: Options) -> Outcome:
    """Build one bundled recipe on this worker. A deepdeb error (a failed build, a bad
    checksum, a missing build-dependency) is a failed outcome, not an exception: the
    stack goes on, and the client names the source with its error."""
    start = time.monotonic()
    print(f"deepdeb: building {label}", file=sys.stderr, flush=True)  # the worker's log
    cpu = host_cpu()
    worker = {
        "host": platform.node(),
        "cpu": cpu.microarchitecture,
        "level": cpu.level,
    }
    work = Path(tempfile.mkdtemp(prefix="deepdeb-stack-"))
    try:
        unpack(data, work / "recipe")
        out = work / "out"
        try:
            source, version = _build(work / "recipe" / member, out, options)
        except DeepdebError as e:
            return Outcome(label, False, error=str(e), seconds=_since(start), worker=worker)
        files = _collect(out)
        return Outcome(label, True, source, version, "", files, _since(start), worker)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def worker_level() -> str:
    """This worker's x86-64 level, as its builds will plan and measure with it (asked of
    every worker by the client, to place sources where the most levels can be measured)."""
    return host_cpu().level


def _build(recipe_path: Path, out: Path, options: Options) -> tuple[str, str]:
    quiet = Console(file=io.StringIO())
    recipe = load_recipe(recipe_path)
    if isinstance(recipe, WheelRecipe):
        wheels = run_wheel_build(recipe, out, quiet)
        first = wheels.packages[0].deb
        return first.package, first.version
    if options.levels and isinstance(recipe, IsaRecipe):  # stock recipes rebuild nothing
        recipe = with_levels(recipe, list(options.levels))
    report = run_build(
        recipe,
        out,
        options.layout,
        console=quiet,
        lintian=options.lintian,
        backend=options.backend,
    )
    return report.source_name, report.source_version


def _collect(out: Path) -> dict[str, bytes]:
    """Every regular file of a finished --out directory, by relative path."""
    files: dict[str, bytes] = {}
    total = 0
    for path in sorted(out.rglob("*")):
        if path.is_file() and not path.is_symlink():
            total += path.stat().st_size
            if total > _MAX_RESULT_BYTES:
                raise DeepdebError(f"{out}: more than {_MAX_RESULT_BYTES >> 30} GiB of results")
            files[path.relative_to(out).as_posix()] = path.read_bytes()
    return files


def _since(start: float) -> float:
    return round(time.monotonic() - start, 1)
