"""Alternatives on the installed system: which BLAS the loader takes, and how fast it is.

Installs a deepdeb build of Debian's lapack (libblas3, liblapack3 with their glibc-hwcaps
variants) next to Debian's OpenBLAS in a fresh bookworm root, with apt, and there:

* asks the loader which libblas.so.3 it maps for liblapack.so.3 with the CPU masked to
  each level, with OpenBLAS selected (auto mode, priority 100) and with the reference BLAS
  selected by the administrator (``update-alternatives --set``, then ldconfig);
* times the recipe's benchmark (dgemm and dgetrf through ctypes) as the build user, with
  ``ld.so --glibc-hwcaps-mask`` choosing the baseline or the x86-64-v3 variant (glibc's own
  string functions stay the same, unlike with a GLIBC_TUNABLES mask), interleaved, and
  with OpenBLAS for comparison.

Usage (after ``deepdeb build examples/stack/lapack/recipe.toml --out out/lapack``):

    python benchmarks/installed_alternatives.py out/lapack \\
        --json benchmarks/results/lapack_installed.json --rounds 9
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from deepdeb.hermetic import cleanroom
from deepdeb.isa.verify import resolve_in_root
from deepdeb.util import atomic_write_text

LIBDIR = "/usr/lib/x86_64-linux-gnu"
LOADER = "/lib64/ld-linux-x86-64.so.2"
MASKS = {"x86-64": "none", "x86-64-v3": "x86-64-v2:x86-64-v3"}
BENCH = Path(__file__).resolve().parent.parent / "examples" / "lapack" / "bench.py"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path, help="the deepdeb build of lapack")
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    debs = sorted(args.out.glob("libblas3_*.deb")) + sorted(args.out.glob("liblapack3_*.deb"))
    with tempfile.TemporaryDirectory(prefix="deepdeb-alternatives-") as tmp:
        root = Path(tmp) / "root"
        cleanroom.unpack_chroot(cleanroom.runtime_chroot(), root)
        proc = cleanroom.install_packages(root, debs, ["python3", "libopenblas0-pthread"])
        if proc.returncode != 0:
            raise SystemExit(proc.stdout[-2000:] + proc.stderr[-2000:])
        shutil.copy(BENCH, root / "bench.py")

        def run(*cmd: str, user: bool = False) -> str:
            proc = cleanroom.in_root(root, cmd, check=True, network=False, as_build_user=user)
            return proc.stdout

        def blas(level: str) -> str:
            listing = run(LOADER, "--glibc-hwcaps-mask", MASKS[level], "--list",
                          f"{LIBDIR}/lapack/liblapack.so.3", user=True)  # fmt: skip
            line = next(li for li in listing.splitlines() if "libblas.so.3 =>" in li)
            return resolve_in_root(root, line.split("=>")[1].split("(")[0].strip())

        def bench(level: str) -> float:
            start = time.perf_counter()
            run(LOADER, "--glibc-hwcaps-mask", MASKS[level], "/usr/bin/python3", "/bench.py",
                "256", "8", user=True)  # fmt: skip
            return time.perf_counter() - start

        picks: dict[str, dict[str, str]] = {"openblas (auto)": {}, "reference (set)": {}}
        picks["openblas (auto)"] = {lv: blas(lv) for lv in MASKS}
        openblas = [bench("x86-64") for _ in range(args.rounds)]
        for group, provider in (("libblas.so.3", "blas"), ("liblapack.so.3", "lapack")):
            alternative = f"{group}-x86_64-linux-gnu"
            run("update-alternatives", "--set", alternative, f"{LIBDIR}/{provider}/{group}")
        run("ldconfig")
        picks["reference (set)"] = {lv: blas(lv) for lv in MASKS}
        times: dict[str, list[float]] = {lv: [] for lv in MASKS}
        for round_no in range(args.rounds):
            order = list(MASKS) if round_no % 2 == 0 else list(reversed(MASKS))
            for level in order:
                times[level].append(bench(level))
    medians = {lv: statistics.median(t) for lv, t in times.items()}
    openblas_median = statistics.median(openblas)
    result = {
        "packages": [d.name for d in debs],
        "loader_picks": picks,
        "times_s": times,
        "median_s": medians,
        "speedup_v3": medians["x86-64"] / medians["x86-64-v3"],
        "openblas_times_s": openblas,
        "openblas_median_s": openblas_median,
    }
    atomic_write_text(args.json, json.dumps(result, indent=2) + "\n")
    table = Table(title="lapack on the installed system (libblas.so.3 for liblapack.so.3)")
    for col in ("selected", "CPU level", "loader maps"):
        table.add_column(col)
    for selected, levels in picks.items():
        for level, path in levels.items():
            table.add_row(selected, level, path)
    Console().print(table)
    Console().print(
        f"benchmark medians: reference baseline {medians['x86-64'] * 1000:.1f} ms, reference "
        f"x86-64-v3 {medians['x86-64-v3'] * 1000:.1f} ms "
        f"({medians['x86-64'] / medians['x86-64-v3']:.2f}x), "
        f"OpenBLAS {openblas_median * 1000:.1f} ms"
    )


if __name__ == "__main__":
    main()
