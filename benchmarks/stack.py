"""The bundled stack, measured: what ISA-level rebuilds gain, per source, on this machine.

First ``deepdeb build`` builds every recipe as a stack (on the embedded Dask cluster, or
``--scheduler``): its packages, report.json per source, stack.json and report.html go to
``--out``. Then, for every source that built, five builds of it run the recipe's
benchmark in one interleaved (serpentine) run, on this machine:

* ``stock``          the binary packages from the Debian archive;
* ``flat-v3-O2``     everything rebuilt with ``-march=x86-64-v3`` at Debian's -O2, programs
                     included (what a distribution that raises its baseline ships);
* ``flat-v3-O3``     the same at -O3;
* ``deepdeb``        deepdeb's packages, the loader picking the variant for this CPU;
* ``native-O3``      ``-march=native -O3``: the limit of a build for this one machine.

Every build runs its own programs with its own libraries. The comparison builds skip the
package's own tests unless ``--check`` is given (deepdeb's levels are always tested); a
build that fails, or whose tests fail, is reported and not measured. Ratios
are stock median / build median; the summary gives geometric means over the sources
where the build was measured. Each source's result is kept in ``--results`` and reused
on a rerun while its packages and recipe are the same. Usage:

    python benchmarks/stack.py [RECIPE_OR_DIR ...] --out out/stack \\
        --json benchmarks/results/stack.json --html benchmarks/results/stack.html
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import statistics
import subprocess
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from deepdeb.cpu.levels import compiler_flags, host_cpu
from deepdeb.debian.target import GCC_VERSION
from deepdeb.errors import BenchmarkError, DeepdebError
from deepdeb.hermetic import sandbox
from deepdeb.isa.build import VariantBuild, build_with_flags
from deepdeb.isa.measure import ALPHA, Runtime, run_benchmarks, runtime_from_debs, sign_test
from deepdeb.recipe.load import load_recipe
from deepdeb.recipe.model import Benchmark, IsaRecipe
from deepdeb.report.html import comparison_section, render_stack
from deepdeb.report.schema import StackRow
from deepdeb.sources.fetch import obtain
from deepdeb.stack.bundle import Options, recipes_from
from deepdeb.stack.run import run_stack
from deepdeb.util import atomic_write_text, run

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_RECIPES = [ROOT / "examples" / "stack", ROOT / "examples" / "libvorbis"]
BUILDS = ("stock", "flat-v3-O2", "flat-v3-O3", "deepdeb", "native-O3")


def flat_flags() -> dict[str, str]:
    """The comparison builds' flags, appended to Debian's own (-O2 -g ... hardening)."""
    v3 = compiler_flags("x86-64-v3", "generic", "", gcc_version=GCC_VERSION)
    return {
        "flat-v3-O2": v3,
        "flat-v3-O3": f"{v3} -O3",
        "native-O3": "-march=native -O3",
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("recipes", type=Path, nargs="*", help="default: the bundled stack")
    parser.add_argument("--out", type=Path, default=Path("out/stack"))
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks/results/stack.json")
    parser.add_argument("--html", type=Path, default=ROOT / "benchmarks/results/stack.html")
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks/results/stack")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--scheduler", default=None)
    parser.add_argument(
        "--check",
        action="store_true",
        help="run the package's own tests in the comparison builds too (hours for some "
        "sources: lz4's fuzzers, opus' test vectors); deepdeb's levels are always tested",
    )
    parser.add_argument(
        "--build-deps",
        action="store_true",
        help="first install the build-dependencies of every source (apt-get build-dep)",
    )
    args = parser.parse_args()
    console = Console(stderr=True)
    recipes = recipes_from(args.recipes or DEFAULT_RECIPES)
    if args.build_deps:
        _install_build_deps(recipes)
    started = time.monotonic()
    stack = run_stack(recipes, args.out, Options(), console, args.scheduler, args.workers)
    stack_seconds = time.monotonic() - started
    results = []
    for row in stack.rows:
        if row.status != "ok":
            results.append({"recipe": row.recipe, "status": "failed", "error": row.error})
            continue
        results.append(_compare_cached(row, args, console))
    summary = _summary(results)
    data = {
        "host": {
            "cpu": host_cpu().microarchitecture,
            "level": host_cpu().level,
            "machine": platform.machine(),
            "cores": os.cpu_count(),
        },
        "repeat": args.repeat,
        "flags": flat_flags(),
        "stack_run": {
            "seconds": round(stack_seconds, 1),
            "scheduler": stack.scheduler,
            "workers": args.workers or max(1, (os.cpu_count() or 1) // 2),
            "built": sum(1 for r in stack.rows if r.ran and r.status == "ok"),
            "cached": sum(1 for r in stack.rows if not r.ran and r.status == "ok"),
        },
        "summary": summary,
        "sources": results,
    }
    atomic_write_text(args.json, json.dumps(data, indent=2) + "\n")
    html = render_stack(stack, args.out, extra=comparison_section(results, summary))
    atomic_write_text(args.html, html)
    _print(results, summary, Console())
    Console().print(f"json: {args.json}; html: {args.html}; stack: {args.out / 'stack.json'}")
    return 1 if stack.failed else 0


def _install_build_deps(recipes: list[Path]) -> None:
    """apt-get build-dep for every archive source of the stack, in one transaction."""
    names = []
    for path in recipes:
        source = load_recipe(path).source
        if source.debian is not None:
            names.append(source.debian.split("=", 1)[0])
    if names:
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "build-dep", "-y", "-q", *names], check=True, env=env)


def _compare_cached(row: StackRow, args: argparse.Namespace, console: Console) -> dict[str, Any]:
    """One source's comparison, reused from ``--results`` while its inputs are the same."""
    key = _key(row, args)
    saved = args.results / f"{row.directory}.json"
    try:
        old = json.loads(saved.read_text())
        if old.get("key") == key:
            console.print(f"{row.source}: compared before with the same packages, reused")
            return dict(old)
    except (OSError, ValueError):
        pass
    console.print(f"[bold]{row.source} {row.version}[/bold]: comparison builds and measurement")
    try:
        result = compare(row, args.out / row.directory, args.repeat, console, args.check)
    except (DeepdebError, subprocess.CalledProcessError, OSError) as e:  # the others go on
        console.print(f"[red]{row.source}: comparison failed: {e}[/red]")
        return {"recipe": row.recipe, "source": row.source, "status": "failed", "error": str(e)}
    result["key"] = key
    atomic_write_text(saved, json.dumps(result, indent=2) + "\n")
    return result


def _key(row: StackRow, args: argparse.Namespace) -> str:
    """What a comparison depends on: the recipe's directory, deepdeb's packages, the
    repeat count, the flags and this CPU."""
    digest = hashlib.sha256()
    recipe_dir = Path(row.recipe).parent
    for path in sorted(p for p in recipe_dir.rglob("*") if p.is_file()):
        digest.update(path.relative_to(recipe_dir).as_posix().encode() + path.read_bytes())
    for deb in sorted((args.out / row.directory).glob("*.deb")):
        digest.update(deb.name.encode() + deb.read_bytes())
    settings = [args.repeat, args.check, flat_flags(), host_cpu().microarchitecture]
    digest.update(json.dumps(settings).encode())
    return digest.hexdigest()


def compare(
    row: StackRow, built: Path, repeat: int, console: Console, check: bool
) -> dict[str, Any]:
    """Build the comparison builds of one source and measure all five side by side."""
    recipe = load_recipe(Path(row.recipe))
    assert isinstance(recipe, IsaRecipe), f"{row.recipe}: a stack recipe needs [benchmark]"
    report = json.loads((built / "report.json").read_text())
    ours = [built / p["file"] for p in report["packages"] if _runtime_package(p)]
    result: dict[str, Any] = {
        "recipe": row.recipe,
        "source": row.source,
        "version": row.version,
        "status": "ok",
        "benchmark": recipe.benchmark.command,
        "kept_levels": row.kept_levels,
        "level_speedups": row.speedups,
        "builds": {},
    }
    with tempfile.TemporaryDirectory(prefix="deepdeb-stack-bench-") as tmp:
        work = Path(tmp)
        package = obtain(recipe.source)
        variants: dict[str, VariantBuild] = {}
        with sandbox.run_limits():
            for name, flags in flat_flags().items():
                console.print(f"  building {name}: {flags}")
                variant = build_with_flags(package, name, flags, work / "builds", check=check)
                variants[name] = variant
                result["builds"][name] = _build_record(variant)
                result["builds"][name]["tests"] = "run" if check else "not run (nocheck)"
        names = [p["package"] for p in report["packages"] if _runtime_package(p)]
        stock = _stock(
            names, _stock_version(variants, report, recipe.version_suffix), work / "stock"
        )
        runtimes: dict[str, Runtime] = {"stock": runtime_from_debs(stock, work / "rt" / "stock")}
        result["builds"]["stock"] = {"status": "ok", "bytes": _bytes(stock)}
        result["builds"]["deepdeb"] = {
            "status": "ok",
            "bytes": _bytes(ours),
            "layout": report.get("layout"),
        }
        for name in BUILDS:
            if name == "stock":
                continue
            if name == "deepdeb":
                runtimes[name] = runtime_from_debs(ours, work / "rt" / name)
            elif result["builds"][name]["status"] == "ok":
                debs = [d for n, d in sorted(variants[name].debs.items()) if n in names]
                runtimes[name] = runtime_from_debs(debs, work / "rt" / name)
        for name in list(runtimes)[1:]:  # a build that crashes is reported, not measured
            why = _smoke(recipe.benchmark, runtimes[name], recipe.directory, work, name)
            if why:
                result["builds"][name]["status"] = f"benchmark fails: {why}"
                del runtimes[name]
        console.print(f"  measuring {', '.join(runtimes)} ({repeat} interleaved rounds)")
        bench = replace(recipe.benchmark, repeat=repeat)
        times = run_benchmarks(
            bench, runtimes, recipe.directory, work / "bench-tmp", own_programs=True
        )
    medians = {name: statistics.median(t) for name, t in times.items()}
    for name, runs in times.items():
        record = result["builds"][name]
        record["times_s"] = [round(t, 5) for t in runs]
        record["median_s"] = round(medians[name], 5)
        record["speedup_vs_stock"] = round(medians["stock"] / medians[name], 4)
        record.update(_versus("stock", times["stock"], runs))
    if "flat-v3-O2" in times and "deepdeb" in times:
        result["builds"]["deepdeb"].update(
            _versus("flat-v3-O2", times["flat-v3-O2"], times["deepdeb"])
        )
    return result


def _versus(name: str, reference: list[float], runs: list[float]) -> dict[str, Any]:
    """How the paired rounds compare with ``name``'s: a difference counts only when a
    sign test finds it beyond the noise (p <= ALPHA), in either direction."""
    wins, p_faster = sign_test(reference, runs)
    losses, p_slower = sign_test(runs, reference)
    return {
        f"faster_rounds_vs_{name}": wins,
        f"slower_rounds_vs_{name}": losses,
        f"faster_beyond_noise_vs_{name}": p_faster <= ALPHA,
        f"slower_beyond_noise_vs_{name}": p_slower <= ALPHA,
    }


def _smoke(benchmark: Benchmark, runtime: Runtime, cwd: Path, work: Path, name: str) -> str | None:
    """One untimed run of the benchmark with one build: why it fails, or None. Without
    the package's tests (nocheck), this is where a miscompiled build shows (libvorbis at
    -march=native -O3 dies of a segmentation fault)."""
    try:
        run_benchmarks(
            replace(benchmark, repeat=1, warmup=0),
            {name: runtime},
            cwd,
            work / f"smoke-{name}",
            own_programs=True,
        )
    except BenchmarkError as e:
        return str(e).splitlines()[-1] if str(e).strip() else "failed"
    return None


def _bytes(files: list[Path]) -> int:
    return sum(f.stat().st_size for f in files)


def _runtime_package(p: dict[str, Any]) -> bool:
    """A package the benchmark may run: architecture-dependent, not debug symbols."""
    name = str(p.get("package", ""))
    return p.get("architecture") != "all" and not name.endswith("-dbgsym")


def _build_record(variant: VariantBuild) -> dict[str, Any]:
    status = "ok"
    if not variant.built:
        status = f"fails to build: {variant.failure}"
    elif not variant.tests_passed:
        status = f"fails its own tests: {variant.failure}"
    return {
        "status": status,
        "flags": variant.flags,
        "build_seconds": round(variant.seconds, 1),
        "test_seconds": variant.test_seconds,
        "bytes": sum(d.stat().st_size for d in variant.debs.values() if d.suffix == ".deb"),
    }


def _stock_version(
    variants: dict[str, VariantBuild], report: dict[str, Any], suffix: str
) -> dict[str, str]:
    """Each binary package's version in the archive: what a comparison build (stock
    versions, whatever its flags) says, else deepdeb's version less its suffix."""
    versions: dict[str, str] = {}
    built = next((v for v in variants.values() if v.debs), None)  # all three agree
    for name, deb in (built.debs if built else {}).items():
        if deb.suffix == ".deb":
            versions[name] = run(["dpkg-deb", "-f", str(deb), "Version"]).stdout.strip()
    for p in report["packages"]:
        versions.setdefault(str(p["package"]), str(p["version"]).removesuffix(suffix))
    return versions


def _stock(names: list[str], versions: dict[str, str], dest: Path) -> list[Path]:
    """The archive's packages of this source version: the same version, or a binNMU of it
    (``1.0.8-5+b1``, rebuilt by the archive without a source change)."""
    dest.mkdir(parents=True)
    for name in names:
        madison = run(["apt-cache", "madison", name], check=False).stdout
        known = [  # binary packages only: a source of the same name is listed too
            line.split("|")[1].strip()
            for line in madison.splitlines()
            if line.count("|") == 2 and line.rstrip().endswith("Packages")
        ]
        wanted = versions[name]
        binnmus = sorted(v for v in known if v.startswith(wanted + "+b"))
        version = wanted if wanted in known or not binnmus else binnmus[-1]
        subprocess.run(
            ["apt-get", "download", "-q", f"{name}={version}"],
            cwd=dest,
            check=True,
            stdout=subprocess.DEVNULL,
        )
    return sorted(dest.glob("*.deb"))


def _summary(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Geometric mean of each build's speedup over stock, over the sources where it was
    measured; how often deepdeb beats flat-v3 and how close it comes to native."""
    summary: dict[str, Any] = {"geomean_vs_stock": {}, "sources_measured": {}}
    good = [r for r in results if r.get("status") == "ok"]
    for name in BUILDS:
        values = [
            r["builds"][name]["speedup_vs_stock"]
            for r in good
            if "speedup_vs_stock" in r["builds"].get(name, {})
        ]
        if values:
            summary["geomean_vs_stock"][name] = round(statistics.geometric_mean(values), 4)
        summary["sources_measured"][name] = len(values)
    pairs = [
        (r["source"], r["builds"]["deepdeb"], r["builds"].get("flat-v3-O2", {}))
        for r in good
        if "median_s" in r["builds"].get("flat-v3-O2", {})
    ]
    summary["deepdeb_faster_than_flat_v3_O2"] = [
        s for s, d, _ in pairs if d.get("faster_beyond_noise_vs_flat-v3-O2")
    ]
    summary["deepdeb_slower_than_flat_v3_O2"] = [
        s for s, d, _ in pairs if d.get("slower_beyond_noise_vs_flat-v3-O2")
    ]
    summary["deepdeb_slower_than_stock_beyond_noise"] = [
        r["source"] for r in good if r["builds"]["deepdeb"].get("slower_beyond_noise_vs_stock")
    ]
    summary["deepdeb_faster_than_stock_beyond_noise"] = [
        r["source"] for r in good if r["builds"]["deepdeb"].get("faster_beyond_noise_vs_stock")
    ]
    native = [
        r["builds"]["native-O3"]["median_s"] / r["builds"]["deepdeb"]["median_s"]
        for r in good
        if "median_s" in r["builds"].get("native-O3", {})
    ]
    if native:
        summary["deepdeb_share_of_native_speed_geomean"] = round(
            statistics.geometric_mean(native), 4
        )
    sizes = [(r["builds"]["stock"]["bytes"], r["builds"]["deepdeb"]["bytes"]) for r in good]
    summary["bytes"] = {
        "stock": sum(s for s, _ in sizes),
        "deepdeb": sum(d for _, d in sizes),
    }
    return summary


def _print(results: list[dict[str, Any]], summary: dict[str, Any], console: Console) -> None:
    table = Table(title="speedup over the stock Debian packages (median of interleaved runs)")
    table.add_column("source")
    table.add_column("kept")
    for name in BUILDS[1:]:
        table.add_column(name, justify="right")
    table.add_column("size", justify="right")
    table.add_column("deepdeb vs stock")
    for r in results:
        if r.get("status") != "ok":
            table.add_row(str(r["recipe"]), "[red]failed[/red]", *["-"] * (len(BUILDS) - 1), "", "")
            continue
        cells = []
        for name in BUILDS[1:]:
            b = r["builds"].get(name, {})
            cells.append(f"{b['speedup_vs_stock']:.2f}x" if "speedup_vs_stock" in b else "n/a")
        stock, ours = r["builds"]["stock"]["bytes"], r["builds"]["deepdeb"]["bytes"]
        kept = ", ".join(lv.removeprefix("x86-64-") for lv in r["kept_levels"]) or "-"
        table.add_row(r["source"], kept, *cells, f"{ours / max(stock, 1):.2f}x", _verdict(r))
    geo = summary["geomean_vs_stock"]
    table.add_row(
        "[bold]geometric mean[/bold]",
        "",
        *[f"{geo[n]:.3f}x" if n in geo else "-" for n in BUILDS[1:]],
        f"{summary['bytes']['deepdeb'] / max(summary['bytes']['stock'], 1):.2f}x",
        "",
    )
    console.print(table)


def _verdict(result: dict[str, Any]) -> str:
    """deepdeb against stock, as the paired rounds have it (sign test)."""
    ours = result["builds"]["deepdeb"]
    rounds = len(ours.get("times_s", []))
    if ours.get("faster_beyond_noise_vs_stock"):
        return f"faster ({ours['faster_rounds_vs_stock']}/{rounds} rounds)"
    if ours.get("slower_beyond_noise_vs_stock"):
        return f"[red]slower[/red] ({ours['slower_rounds_vs_stock']}/{rounds} rounds)"
    return "within noise"


if __name__ == "__main__":
    raise SystemExit(main())
