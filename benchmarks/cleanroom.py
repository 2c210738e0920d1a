"""Clean room against host: what a clean-room build costs, and whether it is reproducible.

Runs ``deepdeb build`` on one recipe several times in one script, alternating backends
(host, cleanroom, host, cleanroom, ...), and records for each run the wall time, the time
spent preparing the chroot (unpacking it and installing the build-dependencies) and the
SHA-256 of every package and of the build record. It also times making the chroot tarball
from scratch, in an empty cache. Usage:

    python benchmarks/cleanroom.py examples/libvorbis/recipe.toml \\
        --json benchmarks/results/cleanroom.json --pairs 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from deepdeb.hermetic import cleanroom
from deepdeb.isa.pipeline import run_build
from deepdeb.recipe.load import load_recipe
from deepdeb.recipe.model import SourceRecipe
from deepdeb.util import atomic_write_text, sha256_file


def fresh_chroot_seconds() -> tuple[float, int]:
    """Make the chroot tarball in an empty cache: the first-use cost (download included)."""
    saved = os.environ.get("DEEPDEB_CACHE")
    with tempfile.TemporaryDirectory(prefix="deepdeb-chroot-") as tmp:
        os.environ["DEEPDEB_CACHE"] = tmp
        try:
            start = time.monotonic()
            chroot = cleanroom.ensure_chroot()
            seconds = time.monotonic() - start
            size = chroot.tarball.stat().st_size
        finally:
            if saved is None:
                del os.environ["DEEPDEB_CACHE"]
            else:
                os.environ["DEEPDEB_CACHE"] = saved
    return seconds, size


def one_build(recipe: Path, backend: str, out: Path) -> dict[str, object]:
    console = Console(file=open(os.devnull, "w"))  # noqa: SIM115
    start = time.monotonic()
    parsed = load_recipe(recipe)
    assert isinstance(parsed, SourceRecipe), f"{recipe}: not a Debian source recipe"
    report = run_build(parsed, out, console=console, backend=backend, lintian=False)
    seconds = time.monotonic() - start
    assert report.buildinfo is not None
    return {
        "backend": backend,
        "wall_s": round(seconds, 1),
        "chroot": report.chroot,
        "build_s": {lv: b["build_seconds"] for lv, b in report.build.items()},
        "shipped_levels": report.shipped_levels,
        "packages": {p.file.name: p.sha256 for p in report.packages},
        "buildinfo_sha256": sha256_file(report.buildinfo),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("recipe", type=Path)
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--pairs", type=int, default=2, help="host+cleanroom pairs to run")
    args = parser.parse_args()
    console = Console(stderr=True)
    console.print("making the chroot from scratch (empty cache) ...")
    created_s, tar_size = fresh_chroot_seconds()
    cleanroom.ensure_chroot()  # the regular cache, for the builds
    runs = []
    with tempfile.TemporaryDirectory(prefix="deepdeb-cleanroom-") as tmp:
        for i in range(args.pairs):
            for backend in ("host", "cleanroom"):
                console.print(f"run {i + 1}/{args.pairs}: {backend} ...")
                runs.append(one_build(args.recipe, backend, Path(tmp) / f"{backend}-{i}"))
    host = [r for r in runs if r["backend"] == "host"]
    clean = [r for r in runs if r["backend"] == "cleanroom"]
    host_wall = statistics.median(float(r["wall_s"]) for r in host)  # type: ignore[arg-type]
    clean_wall = statistics.median(float(r["wall_s"]) for r in clean)  # type: ignore[arg-type]
    prepare = statistics.median(
        float(r["chroot"]["prepare_seconds"])  # type: ignore[index]
        for r in clean
    )
    result = {
        "recipe": str(args.recipe),
        "host": {"machine": platform.machine(), "cores": os.cpu_count()},
        "chroot_creation_s": round(created_s, 1),
        "chroot_tarball_bytes": tar_size,
        "median_wall_s": {"host": host_wall, "cleanroom": clean_wall},
        "cleanroom_overhead_s": round(clean_wall - host_wall, 1),
        "cleanroom_overhead_ratio": round(clean_wall / host_wall, 3),
        "median_prepare_s": prepare,
        "cleanroom_builds_identical": all(r["packages"] == clean[0]["packages"] for r in clean)
        and all(r["buildinfo_sha256"] == clean[0]["buildinfo_sha256"] for r in clean),
        "host_builds_identical": all(r["packages"] == host[0]["packages"] for r in host),
        "host_equals_cleanroom": host[0]["packages"] == clean[0]["packages"],
        "runs": runs,
    }
    atomic_write_text(args.json, json.dumps(result, indent=2) + "\n")
    table = Table(title=f"{args.recipe}: host against clean room")
    for col in ("", "value"):
        table.add_column(col)
    table.add_row("chroot made from scratch", f"{created_s:.0f} s ({tar_size / 2**20:.0f} MiB)")
    table.add_row("median build, host", f"{host_wall:.0f} s")
    table.add_row("median build, clean room", f"{clean_wall:.0f} s (prepare {prepare:.0f} s)")
    table.add_row("clean-room builds identical", str(result["cleanroom_builds_identical"]))
    table.add_row("host builds identical", str(result["host_builds_identical"]))
    table.add_row("host = clean room, byte for byte", str(result["host_equals_cleanroom"]))
    Console().print(table)


if __name__ == "__main__":
    main()
