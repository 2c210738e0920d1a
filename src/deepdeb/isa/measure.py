"""Measure stage: time the benchmark against every variant and decide which levels pay.

What is measured is what would be shipped: the baseline's executables and data with one
level's shared libraries in front of the loader's search path. A level whose speed lives in
an executable rather than a library gains nothing from glibc-hwcaps, and its measurement
says so instead of crediting it with a speedup the package could never deliver.

Runs are interleaved (base, v2, v3, v4, v4, v3, ...) so that a machine getting slower or
faster during the measurement (thermal limits, another job) affects every level alike;
the median of the runs is compared.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import statistics
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from deepdeb.cpu import quiet
from deepdeb.cpu.levels import BASELINE, HostCpu, rank
from deepdeb.debian.debpkg import elf_files, extract
from deepdeb.debian.elf import read_elf
from deepdeb.errors import BenchmarkError
from deepdeb.hermetic import sandbox
from deepdeb.isa.build import VariantBuild
from deepdeb.recipe.model import Benchmark
from deepdeb.report.schema import LevelResult


@dataclass(frozen=True)
class Runtime:
    """An unpacked variant: where its files are and which directories hold its libraries."""

    root: Path
    library_dirs: tuple[Path, ...]


def unpack_runtime(variant: VariantBuild, dest: Path) -> Runtime:
    """A built level's packages, unpacked under ``dest`` to be run from there."""
    return runtime_from_debs(list(variant.debs.values()), dest)


def runtime_from_debs(debs: list[Path], dest: Path) -> Runtime:
    """Unpack packages into ``dest`` and find the directories that hold their libraries."""
    for deb in debs:
        extract(deb, dest)
    dirs = sorted({p.parent for p in elf_files(dest) if read_elf(p).is_shared_library})
    return Runtime(root=dest, library_dirs=tuple(dirs))


def benchmark_env(
    level: str,
    runtimes: Mapping[str, Runtime],
    base_env: Mapping[str, str],
    own_programs: bool = False,
) -> dict[str, str]:
    """Environment for one run: baseline programs, this level's libraries first.

    With ``own_programs``, each runtime is a whole build of its own (a flat rebuild, the
    archive's packages): its own programs and only its own libraries.
    """
    base = runtimes[level] if own_programs else runtimes[BASELINE]
    env = dict(base_env)
    bins = [base.root / d for d in ("usr/bin", "usr/sbin", "bin", "sbin")]
    env["PATH"] = os.pathsep.join([*map(str, bins), env.get("PATH", "/usr/bin:/bin")])
    # The level's libraries shadow the baseline's; the baseline's directories follow for
    # anything the level does not have.
    libs = [*runtimes[level].library_dirs] if level != BASELINE and not own_programs else []
    libs += base.library_dirs
    previous = [env["LD_LIBRARY_PATH"]] if env.get("LD_LIBRARY_PATH") else []
    env["LD_LIBRARY_PATH"] = os.pathsep.join([*map(str, libs), *previous])
    env["DEEPDEB_ROOT"] = str(base.root)
    env["DEEPDEB_LEVEL"] = level
    return env


def run_benchmarks(
    benchmark: Benchmark,
    runtimes: Mapping[str, Runtime],
    cwd: Path,
    scratch: Path,
    progress: Callable[[str, int, int], None] = lambda level, done, total: None,
    *,
    own_programs: bool = False,
    spent: dict[str, float] | None = None,
    failed: dict[str, str] | None = None,
) -> dict[str, list[float]]:
    """Interleaved timed runs of the benchmark command; returns wall seconds per level
    (warm-up runs left out). ``spent``, when given, receives each level's whole time,
    warm-up and sandbox start included: what measuring it cost.

    ``failed``, when given, receives the levels other than the baseline whose run failed
    (a crash, a timeout), with the error; they are not run again and have no times. A
    level that crashes where the baseline does not (an optimiser's bug, code that is
    wrong only when vectorised) is one to drop, not a reason to give up on the others.
    Without it, any failure raises :class:`BenchmarkError`.

    The command is recipe code, so it runs sandboxed as the build user (no network,
    read-only system, a scrubbed environment) with ``scratch`` as its writable TMPDIR,
    shared by all runs. ``own_programs``: see :func:`benchmark_env`. It runs with the
    machine to itself (:func:`deepdeb.cpu.quiet.measuring`): builds wait until it is done.
    """
    levels = list(runtimes)
    scratch.mkdir(parents=True, exist_ok=True)
    sandbox.hand_over(scratch)
    base_env = sandbox.scrubbed_env(os.environ, home=Path(sandbox.HOME), tmp=scratch)
    envs = {level: benchmark_env(level, runtimes, base_env, own_programs) for level in levels}
    visible = [r.root for r in runtimes.values()]
    private = scratch.parent / f".{scratch.name}-sandbox"
    times: dict[str, list[float]] = {level: [] for level in levels}
    with quiet.measuring():
        _rounds(benchmark, envs, cwd, scratch, visible, private, progress, spent, times, failed)
    return {level: runs for level, runs in times.items() if level not in (failed or {})}


def _rounds(
    benchmark: Benchmark,
    envs: Mapping[str, dict[str, str]],
    cwd: Path,
    scratch: Path,
    visible: list[Path],
    private: Path,
    progress: Callable[[str, int, int], None],
    spent: dict[str, float] | None,
    times: dict[str, list[float]],
    failed: dict[str, str] | None,
) -> None:
    levels = list(envs)
    rounds = benchmark.warmup + benchmark.repeat
    for round_no in range(rounds):
        for level in round_order(levels, round_no):
            if failed is not None and level in failed:
                continue
            started = time.perf_counter()
            try:
                seconds = _timed_run(benchmark, envs[level], cwd, level, scratch, visible, private)
            except BenchmarkError as e:
                if failed is None or level == BASELINE:
                    raise
                failed[level] = str(e)
                continue
            if spent is not None:
                spent[level] = spent.get(level, 0.0) + time.perf_counter() - started
            if round_no >= benchmark.warmup:
                times[level].append(seconds)
            progress(level, round_no + 1, rounds)


def round_order(levels: list[str], round_no: int) -> list[str]:
    """Serpentine interleaving: base, v2, v3, v4, then v4, v3, v2, base, ...

    Runs of one level are spread over the whole measurement, so drift (a warming machine,
    another job) hits every level alike; alternating the direction also evens out any
    advantage or penalty of running right after a particular other level.
    """
    return list(levels) if round_no % 2 == 0 else list(reversed(levels))


def _timed_run(
    benchmark: Benchmark,
    env: dict[str, str],
    cwd: Path,
    level: str,
    scratch: Path,
    visible: list[Path],
    private: Path,
) -> float:
    jail = sandbox.wrap_benchmark(
        ["/bin/sh", "-c", benchmark.command], scratch, cwd, visible, private
    )
    start = time.perf_counter()
    proc = subprocess.Popen(
        jail.command,
        cwd="/",
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        _, err = proc.communicate(timeout=benchmark.timeout)
    except subprocess.TimeoutExpired:
        sandbox.stop(proc.pid)
        proc.communicate()
        raise BenchmarkError(
            f"benchmark at level {level} ran longer than {benchmark.timeout:g}s: "
            f"{benchmark.command}"
        ) from None
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        message = err.decode("utf-8", "replace").strip()[-1500:]
        raise BenchmarkError(
            f"benchmark command failed at level {level} ({exit_status(proc.returncode)}): "
            f"{benchmark.command}\n{message}"
        )
    return seconds


def exit_status(code: int) -> str:
    """A command's exit status as a person reads it: the sandbox reports a child killed by
    a signal as 128 + its number (the shell's way), Python as minus the number."""
    number = -code if code < 0 else code - 128 if 128 < code < 128 + 65 else 0
    with contextlib.suppress(ValueError):
        if number:
            return f"exit {code}: {signal.Signals(number).name}"
    return f"exit {code}"


# A level must beat its reference in enough interleaved rounds that chance is an unlikely
# explanation: a one-sided sign test at this level. With 5 rounds that means all 5.
ALPHA = 0.05


def sign_test(reference: list[float], candidate: list[float]) -> tuple[int, float]:
    """In how many paired rounds ``candidate`` was faster than ``reference``, and the
    one-sided sign-test p-value of doing at least that well if neither were faster.

    Rounds are paired because they were interleaved: round i of both ran within seconds of
    each other, under the same machine load. Ties count as losses, which only makes the
    test stricter.
    """
    n = min(len(reference), len(candidate))
    wins = sum(1 for r, c in zip(reference, candidate, strict=False) if c < r)
    p = sum(math.comb(n, k) for k in range(wins, n + 1)) / 2**n if n else 1.0
    return wins, p


def rounds_needed(alpha: float = ALPHA) -> int:
    """The fewest rounds in which winning every one is significant at ``alpha``."""
    n = 1
    while 0.5**n > alpha:
        n += 1
    return n


def decide(
    results: list[LevelResult],
    times: Mapping[str, list[float]],
    min_speedup: float,
    alpha: float = ALPHA,
) -> None:
    """Fill in medians, speedups and the keep/drop verdict of every level, in place.

    A level is kept when it beats the baseline by ``min_speedup`` *and* beats the highest
    kept level below it by the same factor, both in the median and in enough of the paired
    rounds (:func:`sign_test`) that the gain is not the machine's noise: a gain that shows
    in 3 rounds of 5 is one that users' machines may not see, and every kept level costs
    its size in every package. The second rule matters because the loader always picks the
    highest level the CPU supports: a v4 copy that is no faster than the v3 one would cost
    its size for nothing, and one that is slower would make v4 machines slower.
    """
    for result in results:
        if times.get(result.level):
            result.times = list(times[result.level])
            result.median = statistics.median(result.times)
            result.measured = True
    base = next(r for r in results if r.level == BASELINE)
    base.kept = True
    base.speedup = 1.0
    base.reason = "baseline (always shipped)"
    if base.median is None:
        return
    below = base
    for result in results:
        if result.level == BASELINE or result.reason:
            continue
        if result.median is None:
            result.reason = result.reason or "not measured"
            continue
        result.speedup = base.median / result.median
        result.gain_over_lower = result.speedup / (below.speedup or 1.0)
        result.faster_rounds, result.p_value = sign_test(base.times, result.times)
        result.reason = _why_not(result, below, min_speedup, alpha)
        if not result.reason:
            result.kept = True
            result.reason = (
                f"{result.speedup:.2f}x faster than the baseline, in "
                f"{result.faster_rounds} of {len(result.times)} rounds"
            )
            below = result


def _why_not(result: LevelResult, below: LevelResult, min_speedup: float, alpha: float) -> str:
    """Why a measured level is not kept, or "" if it is."""
    assert result.speedup is not None and result.gain_over_lower is not None
    n = len(result.times)
    if result.speedup < min_speedup:
        return f"speedup {result.speedup:.2f}x is below min_speedup {min_speedup:g}"
    if result.gain_over_lower < min_speedup:
        return (
            f"only {result.gain_over_lower:.2f}x over the level below it that is kept "
            f"(needs {min_speedup:g}x to pay for its size)"
        )
    if n < rounds_needed():
        return (
            f"{n} rounds cannot tell a gain from noise: the benchmark's repeat must be at "
            f"least {rounds_needed()} for a level to be kept"
        )
    wins, p = (result.faster_rounds or 0, result.p_value or 1.0)
    if below.level != BASELINE:
        wins, p = sign_test(below.times, result.times)
    if p > alpha:
        than = "the baseline" if below.level == BASELINE else below.level
        return (
            f"{result.speedup:.2f}x in the median but faster than {than} in only {wins} of "
            f"{n} rounds (sign test p={p:.2f} > {alpha:g}): not beyond the noise"
        )
    return ""


def undecided(results: list[LevelResult], min_speedup: float) -> list[str]:
    """The levels that gain enough in the median, over the baseline and over the kept
    level below, but not yet in enough paired rounds: the ones more rounds could decide.
    A level that is slower, or gains less than ``min_speedup``, is decided already."""
    return [
        r.level
        for r in results
        if not r.kept
        and r.speedup is not None
        and r.gain_over_lower is not None
        and min(r.speedup, r.gain_over_lower) >= min_speedup
    ]


# The second look, after more rounds, is held to half the significance level: together
# the two looks keep a level that is not faster at most ALPHA + ALPHA / 2 of the time,
# and at the defaults (5 rounds, then 15) 0.031 + 0.018 = 0.049.
SECOND_LOOK_ALPHA = ALPHA / 2


def look_alpha(rounds: int, repeat: int) -> float:
    """The significance level a decision on ``rounds`` rounds is held to: the first look's
    when they are the benchmark's ``repeat``, the second look's when more were run."""
    return SECOND_LOOK_ALPHA if rounds > repeat else ALPHA


def plan_levels(
    variants: Mapping[str, VariantBuild],
    requested: tuple[str, ...],
    host: HostCpu,
    not_built: Mapping[str, str],
) -> list[LevelResult]:
    """One result per level, with a reason already set for those that cannot be measured."""
    results = [LevelResult(level=BASELINE)]
    for level in sorted(requested, key=rank):
        result = LevelResult(level=level)
        variant = variants.get(level)
        if variant is None or not variant.built:
            result.built = result.tests_passed = False
            result.reason = not_built.get(level) or (
                variant.failure if variant is not None else "not built"
            )
            if variant is not None and not host.supports(level):
                result.reason += f" ({host.why_not(level)}; not fatal)"
        elif not variant.tests_passed:
            result.tests_passed = False
            result.reason = variant.failure or "the package's tests fail at this level"
            if not host.supports(level):
                result.reason += f" ({host.why_not(level)})"
        elif not host.supports(level):
            result.reason = f"cannot run here: {host.why_not(level)}; not shipped unmeasured"
        results.append(result)
    return results
