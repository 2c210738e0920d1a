"""Measure again the levels of a kept build (``deepdeb build --keep-work``).

A measurement is only as good as the machine was quiet: when something else ran alongside a
long build, its interleaved runs are still fair between levels, but noisier. This runs the
recipe's benchmark again, deepdeb's own way (sandboxed, serpentine order, medians), on the
variants the build unpacked, without building anything. Usage:

    python benchmarks/remeasure.py WORKDIR examples/stack/lapack/recipe.toml \\
        --json benchmarks/results/lapack_remeasured.json --repeat 9
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
from pathlib import Path

from rich.console import Console

from deepdeb.debian.debpkg import elf_files
from deepdeb.debian.elf import read_elf
from deepdeb.hermetic import sandbox
from deepdeb.isa.measure import Runtime, run_benchmarks
from deepdeb.recipe.load import load_recipe
from deepdeb.recipe.model import IsaRecipe
from deepdeb.util import atomic_write_text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("work", type=Path, help="the kept work directory")
    parser.add_argument("recipe", type=Path)
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--repeat", type=int, default=9)
    args = parser.parse_args()
    recipe = load_recipe(args.recipe)
    if not isinstance(recipe, IsaRecipe):
        parser.error(f"{args.recipe} has no [benchmark]")
    runtimes = {}
    for root in sorted((args.work / "runtime").iterdir()):
        dirs = sorted({p.parent for p in elf_files(root) if read_elf(p).is_shared_library})
        runtimes[root.name] = Runtime(root, tuple(dirs))
    bench = dataclasses.replace(recipe.benchmark, repeat=args.repeat)
    with sandbox.run_limits():
        times = run_benchmarks(bench, runtimes, recipe.directory, args.work / "remeasure")
    medians = {level: statistics.median(t) for level, t in times.items()}
    base = medians["x86-64"]
    result = {
        "recipe": str(args.recipe),
        "benchmark": bench.command,
        "times_s": times,
        "median_s": medians,
        "speedup": {level: base / m for level, m in medians.items()},
    }
    atomic_write_text(args.json, json.dumps(result, indent=2) + "\n")
    for level, median in medians.items():
        Console().print(f"{level}: {median * 1000:.1f} ms, {base / median:.2f}x")


if __name__ == "__main__":
    main()
