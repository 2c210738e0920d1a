"""What containment costs: the unprivileged sandbox against the one it replaced.

Two measurements, each interleaved in one script:

* whole builds: ``deepdeb build RECIPE`` with this checkout's code and with the code of an
  earlier commit (``--before``, checked out with ``git worktree`` into a temporary
  directory), alternating (before, now, now, before, ...); the wall times' medians;
* one sandboxed job: a benchmark run of ``true`` as deepdeb starts it now (bubblewrap,
  cgroup, prlimit, setpriv as the build user) against ``true`` run directly, alternating,
  which is the per-run overhead every benchmark measurement carries, for every level alike.

Usage:

    python benchmarks/sandbox_cost.py examples/libvorbis/recipe.toml --before COMMIT \\
        --json benchmarks/results/sandbox_cost.json --pairs 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from deepdeb.cpu.levels import host_cpu
from deepdeb.hermetic import sandbox
from deepdeb.util import atomic_write_text

REPO = Path(__file__).resolve().parent.parent


def build_seconds(src: Path, recipe: Path, out: Path) -> float:
    """One ``deepdeb build`` with the package in ``src`` (no lintian: it is the same)."""
    env = dict(os.environ, PYTHONPATH=str(src))
    start = time.monotonic()
    subprocess.run(
        [sys.executable, "-m", "deepdeb", "build", str(recipe), "--out", str(out), "--no-lintian"],
        env=env, check=True, capture_output=True, cwd=REPO,
    )  # fmt: skip
    return time.monotonic() - start


def job_overhead(runs: int, scratch: Path) -> tuple[list[float], list[float]]:
    """Seconds of ``true`` in the benchmark sandbox and directly, interleaved."""
    scratch.mkdir(parents=True, exist_ok=True)
    sandbox.hand_over(scratch)
    env = sandbox.scrubbed_env(os.environ, home=Path(sandbox.HOME), tmp=scratch)
    jailed, direct = [], []
    with sandbox.run_limits():
        for _ in range(runs):
            jail = sandbox.wrap_benchmark(["true"], scratch, scratch, [], scratch.parent / "p")
            start = time.perf_counter()
            subprocess.run(jail.command, env=env, check=True)
            jailed.append(time.perf_counter() - start)
            start = time.perf_counter()
            subprocess.run(["true"], check=True)
            direct.append(time.perf_counter() - start)
    return jailed, direct


def cgroups_here() -> bool:
    """Can deepdeb make a cgroup here (memory limit in force)?"""
    group = sandbox.make_cgroup(sandbox.current_limits())
    if group is not None:
        sandbox.remove_cgroup(group)
    return group is not None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("recipe", type=Path)
    parser.add_argument("--before", required=True, help="the commit to compare against")
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument("--runs", type=int, default=50, help="sandboxed `true` runs")
    args = parser.parse_args()
    console = Console(stderr=True)
    times: dict[str, list[float]] = {"before": [], "now": []}
    with tempfile.TemporaryDirectory(prefix="deepdeb-sandbox-cost-") as tmp:
        work = Path(tmp)
        old = work / "before"
        subprocess.run(["git", "-C", REPO, "worktree", "add", "--detach", old, args.before],
                       check=True, capture_output=True)  # fmt: skip
        try:
            sources = {"before": old / "src", "now": REPO / "src"}
            for pair in range(args.pairs):
                order = ["before", "now"] if pair % 2 == 0 else ["now", "before"]
                for which in order:
                    seconds = build_seconds(sources[which], args.recipe, work / f"out-{which}")
                    times[which].append(seconds)
                    console.print(f"{which}: {seconds:.1f} s")
            jailed, direct = job_overhead(args.runs, work / "scratch")
        finally:
            subprocess.run(["git", "-C", REPO, "worktree", "remove", "--force", old],
                           capture_output=True)  # fmt: skip
    medians = {k: statistics.median(v) for k, v in times.items()}
    per_job_ms = (statistics.median(jailed) - statistics.median(direct)) * 1000
    result = {
        "recipe": str(args.recipe),
        "before": args.before,
        "host": {
            "cpu": host_cpu().microarchitecture,
            "level": host_cpu().level,
            "machine": platform.machine(),
            "cores": os.cpu_count(),
        },
        "build_s": {k: [round(t, 1) for t in v] for k, v in times.items()},
        "build_median_s": {k: round(v, 1) for k, v in medians.items()},
        "build_ratio_now_over_before": round(medians["now"] / medians["before"], 3),
        "sandboxed_true_median_ms": round(statistics.median(jailed) * 1000, 2),
        "direct_true_median_ms": round(statistics.median(direct) * 1000, 2),
        "per_job_overhead_ms": round(per_job_ms, 2),
        "cgroup": cgroups_here(),
    }
    atomic_write_text(args.json, json.dumps(result, indent=2) + "\n")
    table = Table(title=f"containment cost: {args.recipe}")
    for col in ("", "median", "runs"):
        table.add_column(col, justify="right" if col else "left")
    for which in ("before", "now"):
        table.add_row(f"deepdeb build ({which})", f"{medians[which]:.1f} s",
                      " ".join(f"{t:.1f}" for t in times[which]))  # fmt: skip
    table.add_row("sandboxed `true`", f"{result['sandboxed_true_median_ms']} ms", str(args.runs))
    table.add_row("direct `true`", f"{result['direct_true_median_ms']} ms", str(args.runs))
    Console().print(table)


if __name__ == "__main__":
    main()
