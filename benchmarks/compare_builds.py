"""Compare, in one interleaved run, four builds of a recipe's source package:

* ``stock``      the binary packages from the Debian archive (apt-get download);
* ``x86-64``     deepdeb's baseline rebuild (the stock flags, rebuilt here);
* ``assembled``  deepdeb's fat packages, the loader picking the variant for this CPU;
* ``native``     a ``-march=native`` rebuild with the recipe's profile flags, the upper
                 bound of what a single-machine build could reach.

Every variant runs the recipe's benchmark command with the baseline's programs and its own
libraries, in serpentine order; ratios are stock median / variant median. Results go to a
JSON file. Usage:

    python benchmarks/compare_builds.py examples/libvorbis/recipe.toml \\
        --json benchmarks/results/libvorbis.json --repeat 9
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import tempfile
from dataclasses import replace
from pathlib import Path

from rich.console import Console
from rich.table import Table

from deepdeb.cpu.levels import BASELINE, host_cpu
from deepdeb.isa.build import FLAG_VARIABLES, failed_in_tests
from deepdeb.isa.measure import run_benchmarks, runtime_from_debs
from deepdeb.isa.pipeline import run_build
from deepdeb.recipe.load import load_recipe
from deepdeb.recipe.model import IsaRecipe
from deepdeb.sources.fetch import obtain, unpack
from deepdeb.util import atomic_write_text, run


def native_build(recipe_path: Path, work: Path, profile: str) -> tuple[list[Path], str]:
    """A -march=native build, with the package's tests; returns its packages and status."""
    package = obtain(load_recipe(recipe_path).source)
    tree = unpack(package, work / "native" / "src")
    flags = f"-march=native {profile}".strip()
    env = dict(os.environ, DEB_BUILD_OPTIONS=f"parallel={os.cpu_count()}")
    env.update({f"DEB_{var}_APPEND": flags for var in FLAG_VARIABLES})
    proc = subprocess.run(
        ["dpkg-buildpackage", "-B", "--no-sign", "--no-pre-clean"],
        cwd=tree,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    log = proc.stdout
    (work / "native" / "build.log").write_text(log)
    if proc.returncode != 0:
        what = "fails its own test suite" if failed_in_tests(log) else "fails to build"
        crash = " (segmentation fault)" if "Segmentation fault" in log else ""
        return [], f"{flags}: {what}{crash}"
    return sorted((work / "native").glob("*.deb")), "ok"


def stock_debs(names: list[str], version: str, work: Path) -> list[Path]:
    dest = work / "stock"
    dest.mkdir()
    run(["apt-get", "download", *(f"{n}={version}" for n in names)], cwd=dest)
    return sorted(dest.glob("*.deb"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("recipe", type=Path)
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--repeat", type=int, default=9)
    args = parser.parse_args()
    console = Console(stderr=True)
    recipe = load_recipe(args.recipe)
    if not isinstance(recipe, IsaRecipe):
        parser.error(f"{args.recipe} has no [benchmark]: nothing to compare")
    benchmark = recipe.benchmark
    with tempfile.TemporaryDirectory(prefix="deepdeb-compare-") as tmp:
        work = Path(tmp)
        report = run_build(recipe, work / "out", console=console, keep_work=True, lintian=False)
        assert report.work_dir is not None
        try:
            base_dir = report.work_dir / "builds" / BASELINE
            base_debs = sorted(p for p in base_dir.glob("*.deb") if "-dbgsym_" not in p.name)
            arch_names = [
                p.package
                for p in report.packages
                if p.architecture != "all" and not p.package.endswith("-dbgsym")
            ]
            assembled = [p.file for p in report.packages if p.file.suffix == ".deb"]
            runtimes = {
                BASELINE: runtime_from_debs(base_debs, work / "rt" / "baseline"),
                "stock": runtime_from_debs(
                    stock_debs(arch_names, report.source_version, work), work / "rt" / "stock"
                ),
                "assembled": runtime_from_debs(assembled, work / "rt" / "assembled"),
            }
            native_debs, native_status = native_build(args.recipe, work, recipe.isa.profile)
            if native_debs:
                runtimes["native"] = runtime_from_debs(native_debs, work / "rt" / "native")
            else:
                console.print(f"[yellow]native build left out: {native_status}[/yellow]")
            console.print("benchmarking stock, baseline, assembled and native side by side ...")
            bench = replace(benchmark, repeat=args.repeat)
            times = run_benchmarks(bench, runtimes, recipe.directory, work / "bench-tmp")
        finally:
            shutil.rmtree(report.work_dir, ignore_errors=True)
    medians = {name: statistics.median(t) for name, t in times.items()}
    result = {
        "recipe": str(args.recipe),
        "source": f"{report.source_name} {report.source_version}",
        "host": {
            "cpu": host_cpu().microarchitecture,
            "level": host_cpu().level,
            "machine": platform.machine(),
            "cores": os.cpu_count(),
        },
        "benchmark": benchmark.command,
        "repeat": args.repeat,
        "shipped_levels": report.shipped_levels,
        "native_build": native_status,
        "times_s": times,
        "median_s": medians,
        "speedup_vs_stock": {name: medians["stock"] / m for name, m in medians.items()},
    }
    atomic_write_text(args.json, json.dumps(result, indent=2) + "\n")
    table = Table(title=f"{result['source']}: {benchmark.command}")
    for col in ("build", "median", "vs stock"):
        table.add_column(col, justify="left" if col == "build" else "right")
    for name in medians:
        table.add_row(
            name, f"{medians[name] * 1000:.1f} ms", f"{result['speedup_vs_stock'][name]:.2f}x"
        )
    Console().print(table)
    Console().print(f"shipped levels: {', '.join(report.shipped_levels)}; json: {args.json}")


if __name__ == "__main__":
    main()
