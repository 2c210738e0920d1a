"""The ``deepdeb build`` pipeline: fetch -> build -> measure -> assemble -> verify -> report.

Work happens in a scratch directory; the output directory only ever receives finished
files, each moved into place with a rename, report.json last. A failed or interrupted run
leaves the output directory as it was and keeps the scratch directory for its logs.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from deepdeb.cpu.levels import BASELINE, BuildPlan, HostCpu, host_cpu, plan_builds
from deepdeb.debian.debpkg import deb_filename
from deepdeb.debian.target import SUITE
from deepdeb.errors import UsageError
from deepdeb.hermetic import cleanroom, sandbox
from deepdeb.isa import buildinfo, reach
from deepdeb.isa.assemble import assemble, source_date_epoch
from deepdeb.isa.build import (
    VariantBuild,
    architecture_dependent,
    build_all,
    check_build_deps,
    check_flags_applied,
    run_tests,
    uses_dh,
)
from deepdeb.isa.measure import (
    ALPHA,
    SECOND_LOOK_ALPHA,
    Runtime,
    decide,
    look_alpha,
    plan_levels,
    run_benchmarks,
    undecided,
    unpack_runtime,
)
from deepdeb.isa.verify import run_lintian, verify_installed
from deepdeb.licence import audit
from deepdeb.licence.verdict import Verdict
from deepdeb.recipe.model import STOCK, Benchmark, Isa, IsaRecipe, SourceRecipe
from deepdeb.report.schema import BuildReport, LevelResult, Reach
from deepdeb.sources.fetch import SourcePackage, obtain, unpack
from deepdeb.util import atomic_write_text, read_regular

LAYOUTS = ("fat", "split")
BACKENDS = ("host", "cleanroom")


def _progress(console: Console) -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.fields[level]:<10}"),
        BarColumn(bar_width=20),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


@contextlib.contextmanager
def _level_progress(
    console: Console, levels: list[str], first: str
) -> Iterator[Callable[[str, str], None]]:
    """A progress line per level, and the function that moves one on ("done", "tests
    failed" and "failed (reported)" end a line)."""
    with _progress(console) as progress:
        tasks = {lv: progress.add_task(first, total=None, level=lv) for lv in levels}

        def update(level: str, what: str) -> None:
            done = what in ("done", "tests failed", "failed (reported)")
            progress.update(
                tasks[level],
                description=what,
                total=1 if done else None,
                completed=1 if done else 0,
            )

        yield update


_OWNER = ".deepdeb-pid"  # in every scratch directory: the process it belongs to


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _owner(directory: Path) -> int | None:
    try:
        return int((directory / _OWNER).read_text())
    except (OSError, ValueError):
        return None


def leftovers(parent: Path, prefix: str) -> list[Path]:
    """Directories ``prefix*`` in ``parent`` left by runs that are no longer running (killed,
    or whose machine rebooted)."""
    found = []
    for directory in sorted(parent.glob(f"{prefix}*")):
        owner = _owner(directory)
        if directory.is_dir() and not directory.is_symlink() and owner and not _alive(owner):
            found.append(directory)
    return found


def _scratch(prefix: str, parent: Path | None = None) -> Path:
    directory = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    (directory / _OWNER).write_text(f"{os.getpid()}\n")
    return directory


@contextlib.contextmanager
def _workdir(name: str, keep: bool, console: Console) -> Iterator[Path]:
    for old in leftovers(Path(tempfile.gettempdir()), "deepdeb-"):
        console.print(
            f"[yellow]note: {old} was left by an interrupted run; remove it when done with "
            "it[/yellow]"
        )
    work = _scratch(f"deepdeb-{name}-")
    try:
        yield work
    except BaseException:
        console.print(f"[yellow]work directory kept for inspection: {work}[/yellow]")
        raise
    if keep:
        console.print(f"work directory kept: {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)


@dataclass
class SourcePlan:
    """What a source's audit and plan decided, made once per source: small and plain, so
    that every later stage can get it, in this process or on another Dask worker."""

    name: str
    version: str
    host: HostCpu  # the CPU the plan was made for (the measuring machine's, in a stack)
    plan: BuildPlan
    verdict: Verdict
    layout: str  # as asked, or fat for a source that may not be redistributed
    backend: str
    epoch: int
    defer: bool  # levels build with nocheck; their tests run only if they would be kept
    notes: list[str] = field(default_factory=list)
    chroot: dict[str, object] | None = None  # the clean room's record (backend cleanroom)

    @property
    def levels(self) -> list[str]:
        """Every level built: the baseline and the planned ones."""
        return [BASELINE, *self.plan.levels]


@dataclass
class Measured:
    """What the measurement stage found: the report with every level's verdict, the times
    of every round (to decide again once tests have run) and what measuring each cost."""

    report: BuildReport
    times: dict[str, list[float]]
    spent: dict[str, float]
    reaches: dict[str, list[Reach]]


def run_build(
    recipe: SourceRecipe,
    out: Path,
    layout: str = "fat",
    console: Console | None = None,
    keep_work: bool = False,
    lintian: bool = True,
    backend: str = "host",
) -> BuildReport:
    """Build a recipe's packages into ``out``, which gets them only once all were built,
    verified and checked: a failed run leaves it as it was and keeps the scratch directory.

    The stages run in sequence here; a stack runs the same stages as Dask tasks (one per
    level build, one measurement, one per test run, one to finish; see
    :mod:`deepdeb.stack.graph`)."""
    console = console or Console(stderr=True)
    check_options(layout, backend)
    if out.is_dir():
        for stale in leftovers(out, ".staging-"):  # what a killed run had not yet published
            console.print(f"removing {stale}, left by an interrupted run")
            shutil.rmtree(stale, ignore_errors=True)
    package = obtain(recipe.source)
    with _workdir(package.name, keep_work, console) as work, sandbox.run_limits():
        planned, clean = plan_source(recipe, package, layout, backend, work, console)
        variants = build_levels(package, recipe, planned, planned.levels, work, console, clean)
        measured = measure_levels(recipe, planned, variants, work, console)
        run_kept_tests(
            measured.report, variants, measured.times,
            lambda untested: run_tests_of(untested, console, clean),
        )  # fmt: skip
        report = finish(recipe, package, planned, variants, measured, out, work, console, lintian)
        report.work_dir = work if keep_work else None
    return report


def plan_source(
    recipe: SourceRecipe,
    package: SourcePackage,
    layout: str,
    backend: str,
    work: Path,
    console: Console,
    host: HostCpu | None = None,
) -> tuple[SourcePlan, cleanroom.CleanRoot | None]:
    """Stage 1: check the build-dependencies (or make the clean room), audit the licences
    and plan the levels for ``host`` (this machine's CPU by default)."""
    check_options(layout, backend)
    host = host or host_cpu()
    tree = unpack(package, work / "depcheck")
    clean = prepare_backend(tree, package.name, backend, work, console)
    console.print("auditing licences ...")
    verdict = audit.audit_recipe(recipe, package, tree)
    notes = []
    if not verdict.redistributable and layout != "fat":
        notes.append("not redistributable: built in the fat layout, for this machine")
        layout = "fat"
    plan = _plan(recipe, tree, host)
    console.print(
        f"host: {host.microarchitecture} ({host.vendor}), level {host.level}; "
        f"levels to build: {', '.join(plan.levels) or 'none (stock build)'}"
    )
    for level, why in plan.not_built.items():
        console.print(f"  {level}: {why}")
    planned = SourcePlan(
        package.name,
        package.version,
        host,
        plan,
        verdict,
        layout,
        backend,
        source_date_epoch(tree / "debian" / "changelog"),
        uses_dh(tree) and "nocheck" not in _build_options(),
        notes,
        cleanroom.record(clean) if clean else None,
    )
    return planned, clean


def check_options(layout: str, backend: str) -> None:
    """Refuse an unknown layout or backend before anything is fetched."""
    if layout not in LAYOUTS:
        raise UsageError(f"unknown layout {layout!r}; expected one of {', '.join(LAYOUTS)}")
    if backend not in BACKENDS:
        raise UsageError(f"unknown backend {backend!r}; expected one of {', '.join(BACKENDS)}")


def prepare_backend(
    tree: Path, source: str, backend: str, work: Path, console: Console
) -> cleanroom.CleanRoot | None:
    """The clean room to build in (``cleanroom``), or None once the host is known to have
    the build-dependencies (``host``). Every machine that builds a level needs it."""
    if backend == "cleanroom":
        return _clean_room(tree, source, work, console)
    check_build_deps(tree, source)
    return None


def finish(
    recipe: SourceRecipe,
    package: SourcePackage,
    planned: SourcePlan,
    variants: dict[str, VariantBuild],
    measured: Measured,
    out: Path,
    work: Path,
    console: Console,
    lintian: bool = True,
) -> BuildReport:
    """The last stage, once every kept level has passed its tests: assemble the packages,
    install them in a clean root, run lintian, and publish them into ``out``."""
    report, reaches = measured.report, measured.reaches
    _record_times(report, variants, measured.spent)
    if planned.defer and len(variants) > 1:
        report.notes.append(
            "levels were measured before their tests ran; the package's tests then ran "
            "only for the levels that would be kept (a level is never shipped untested)"
        )
    report.notes[:0] = planned.notes
    report.licence = planned.verdict
    report.backend = planned.backend
    report.chroot = planned.chroot
    report.layout = planned.layout
    report.libraries = [r for name in sorted(reaches) for r in reaches[name]]
    kept = [lv for lv in report.shipped_levels if lv != BASELINE]
    local = not planned.verdict.redistributable
    staging = _scratch(".staging-", _ensure(out))
    try:
        report.packages = assemble(
            variants,
            kept,
            planned.layout,
            recipe.version_suffix,
            package.name,
            work,
            staging,
            reaches,
            planned.epoch,
            local=local,
        )
        for built in report.packages:
            built.area, built.redistributable = (
                planned.verdict.area,
                planned.verdict.redistributable,
            )
        with console.status("installing the packages in a clean bookworm root ..."):
            report.loader_checks, report.loader_notes = verify_installed(
                report.packages, reaches, report.host, work / "verify"
            )
        if lintian:
            console.print("running lintian ...")
            report.lintian = run_lintian(report.packages)
        _write_buildinfo(staging, recipe, package, report, variants, planned.epoch)
        _publish(staging, out, report, variants)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return report


def _plan(recipe: SourceRecipe, tree: Path, host: HostCpu) -> BuildPlan:
    """Which levels this build rebuilds: none for a stock recipe or an all-``all`` source,
    else the recipe's (or --levels') levels as this host can run them."""
    if not isinstance(recipe, IsaRecipe):
        return BuildPlan(())
    if not architecture_dependent(tree):
        why = "the source builds only Architecture: all packages: nothing to rebuild per level"
        return BuildPlan((), dict.fromkeys(recipe.isa.levels, why))
    return plan_builds(recipe.isa.levels, host, recipe.isa.explicit)


def _isa(recipe: SourceRecipe) -> Isa:
    """The recipe's levels and flags; a stock recipe rebuilds nothing."""
    return recipe.isa if isinstance(recipe, IsaRecipe) else STOCK


def _ensure(out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    return out


def _clean_room(tree: Path, source: str, work: Path, console: Console) -> cleanroom.CleanRoot:
    with console.status(f"clean room: the {SUITE} chroot (made once, then cached) ..."):
        chroot = cleanroom.ensure_chroot()
    if chroot.created_seconds is not None:
        console.print(f"made the chroot in {chroot.created_seconds:.0f} s: {chroot.tarball}")
    with console.status("clean room: unpacking the chroot, installing build-dependencies ..."):
        clean = cleanroom.prepare(chroot, work / "chroot", tree, source)
    console.print(
        f"clean room ready in {clean.prepare_seconds:.1f} s "
        f"({len(clean.installed)} packages installed)"
    )
    return clean


def _write_buildinfo(
    staging: Path,
    recipe: SourceRecipe,
    package: SourcePackage,
    report: BuildReport,
    variants: dict[str, VariantBuild],
    epoch: int,
) -> None:
    base = variants[BASELINE]
    arch = next((p.architecture for p in report.packages if p.architecture != "all"), "all")
    name = deb_filename(package.name, package.version, arch, "deepdeb.buildinfo")
    text = buildinfo.render(
        package,
        recipe.path,
        report.backend,
        report.chroot,
        {level: v.flags for level, v in variants.items()},
        report.shipped_levels,
        epoch,
        report.packages,
        buildinfo.dpkg_buildinfo(base.directory),
    )
    (staging / name).write_text(text)
    report.buildinfo = staging / name


def build_levels(
    package: SourcePackage,
    recipe: SourceRecipe,
    planned: SourcePlan,
    levels: list[str],
    work: Path,
    console: Console,
    clean: cleanroom.CleanRoot | None = None,
) -> dict[str, VariantBuild]:
    """Stage 2: build some of the planned levels (all of them in one process, side by
    side; one per Dask task in a stack), with nocheck where the tests wait for the
    measurement, and prove from the binaries that each level's flags were applied."""
    with _level_progress(console, levels, "waiting") as update:
        variants = build_all(
            package, _isa(recipe), planned.plan, work / "builds", update, clean=clean,
            defer_tests=planned.defer, levels=levels,
        )  # fmt: skip
    for variant in variants.values():
        check_flags_applied(variant, work / "flagcheck" / variant.level)
    return variants


def measure_levels(
    recipe: SourceRecipe,
    planned: SourcePlan,
    variants: dict[str, VariantBuild],
    work: Path,
    console: Console,
) -> Measured:
    """Stage 3: time every level on this machine (speedups are ratios within one
    machine's runs) and decide which would be kept, before any deferred test has run."""
    reaches = reach.plan(variants[BASELINE].debs, planned.layout, work / "reach")
    host = host_cpu()
    report, times, spent = _measure(
        recipe, planned, variants, planned.plan, reaches, host, work, console
    )
    return Measured(report, times, spent, reaches)


def _measure(
    recipe: SourceRecipe,
    package: SourcePlan,
    variants: dict[str, VariantBuild],
    plan: BuildPlan,
    reaches: dict[str, list[Reach]],
    host: HostCpu,
    work: Path,
    console: Console,
) -> tuple[BuildReport, dict[str, list[float]], dict[str, float]]:
    """Time the levels and decide which to keep; returns the report, the times of every
    round and what measuring each level cost."""
    isa = _isa(recipe)
    results = plan_levels(variants, isa.levels, host, plan.not_built)
    notes = []
    if not isinstance(recipe, IsaRecipe):
        notes.append("stock build: the recipe has no [isa], so no level was rebuilt")
    if "nocheck" in _build_options():
        notes.append(
            "DEB_BUILD_OPTIONS=nocheck: the package's tests did not run at any level, so "
            "levels were kept on the benchmark alone"
        )
    runtimes = _runtimes(results, variants, reaches, work, notes)
    bench = recipe.benchmark if isinstance(recipe, IsaRecipe) else None
    times: dict[str, list[float]] = {}
    spent: dict[str, float] = {}
    failed: dict[str, str] = {}
    before = copy.deepcopy(results)  # where a second look decides again from
    if bench is not None and len(runtimes) > 1:
        times = _timed(bench, runtimes, recipe, work, console, spent, failed)
    _drop_failed(results, failed)
    decide(results, times, isa.min_speedup)
    more = undecided(results, isa.min_speedup)
    if more and bench is not None and bench.most_rounds > bench.repeat:
        # Every measured level runs the extra rounds, so that rounds stay paired.
        extra = replace(bench, repeat=bench.most_rounds - bench.repeat, warmup=0)
        again = {level: runtimes[level] for level in times}
        added = _timed(extra, again, recipe, work, console, spent, failed)
        times = {level: times[level] + added[level] for level in added}
        notes.append(
            f"{', '.join(more)}: faster in the median but not in enough of "
            f"{bench.repeat} rounds; {extra.repeat} more rounds run, decided on "
            f"{bench.most_rounds} at p <= {SECOND_LOOK_ALPHA:g}"
        )
        results = before
        _drop_failed(results, failed)
        decide(results, times, isa.min_speedup, SECOND_LOOK_ALPHA)
    notes += [f"{level}: {error.splitlines()[0]}" for level, error in failed.items()]
    report = BuildReport(
        recipe=recipe.path,
        source_name=package.name,
        source_version=package.version,
        source_origin=recipe.source.label,
        host=host,
        layout="fat",
        isa=isa,
        benchmark=bench,
        levels=results,
        notes=notes,
    )
    return report, times, spent


def _timed(
    bench: Benchmark,
    runtimes: dict[str, Runtime],
    recipe: SourceRecipe,
    work: Path,
    console: Console,
    spent: dict[str, float],
    failed: dict[str, str],
) -> dict[str, list[float]]:
    """The benchmark's interleaved rounds over ``runtimes``, with a progress bar."""
    with _progress(console) as progress:
        total = (bench.warmup + bench.repeat) * len(runtimes)
        task = progress.add_task("benchmark", total=total, level="measure")

        def tick(level: str, done: int, rounds: int) -> None:
            progress.update(task, advance=1, description=f"{bench.command} [{level}]")

        return run_benchmarks(
            bench, runtimes, recipe.directory, work / "bench-tmp", tick, spent=spent,
            failed=failed,
        )  # fmt: skip


def _drop_failed(results: list[LevelResult], failed: dict[str, str]) -> None:
    """Levels whose benchmark failed are dropped, with the error as their reason."""
    for result in results:
        if result.level in failed:
            result.reason = "dropped: its benchmark failed; " + failed[result.level]


def _build_options() -> list[str]:
    return os.environ.get("DEB_BUILD_OPTIONS", "").split()


def run_kept_tests(
    report: BuildReport,
    variants: dict[str, VariantBuild],
    times: dict[str, list[float]],
    run: Callable[[list[VariantBuild]], None],
) -> None:
    """Stage 4: run the tests of the levels the measurement would keep, dropping those
    that fail and deciding again without them, until every kept level has passed its
    tests. ``run`` runs some levels' tests and records the outcome in their
    :class:`VariantBuild` (here, side by side; in a stack, one Dask task per level, each
    on the worker that holds the level's built tree)."""
    while True:
        untested = [r for r in report.levels if r.kept and not variants[r.level].tests_run]
        if not untested:
            break
        run([variants[r.level] for r in untested])
        if all(variants[r.level].tests_passed for r in untested):
            continue
        for result in report.levels:  # decide again among the measured levels
            if result.level == BASELINE or not result.measured:
                continue
            result.kept, result.reason = False, ""
            tested = variants[result.level]
            if tested.tests_run and not tested.tests_passed:
                result.tests_passed = False
                result.reason = tested.failure or "the package's tests fail at this level"
        alpha = ALPHA
        if report.benchmark is not None:
            alpha = look_alpha(len(times.get(BASELINE, [])), report.benchmark.repeat)
        decide(report.levels, times, report.isa.min_speedup, alpha)
    for result in report.levels:
        variant = variants.get(result.level)
        if variant is not None and variant.built and not variant.tests_run:
            result.tests_passed = None  # never run: the level was dropped before them


def run_tests_of(
    variants: list[VariantBuild], console: Console, clean: cleanroom.CleanRoot | None
) -> None:
    """The deferred tests of some levels, side by side, the cores shared among them."""
    cpus = os.cpu_count() or 1
    jobs = max(1, cpus // len(variants))
    with (
        _level_progress(console, [v.level for v in variants], "tests") as update,
        ThreadPoolExecutor(max_workers=len(variants)) as pool,
    ):
        for future in [pool.submit(run_tests, v, update, clean, jobs) for v in variants]:
            future.result()


def _record_times(
    report: BuildReport, variants: dict[str, VariantBuild], spent: dict[str, float]
) -> None:
    """Where each level's time went, and why a level's tests failed, for the report."""
    for level, variant in variants.items():
        report.network_attempts += [
            {"level": level, **asdict(attempt)} for attempt in variant.network_attempts
        ]
        report.build[level] = {  # where the time went: build, its tests, measuring it
            "flags": variant.flags,
            "build_seconds": round(variant.seconds, 1),
            "test_seconds": variant.test_seconds,
            "tests_run": variant.tests_run,
            "measure_seconds": round(spent.get(level, 0.0), 1),
        }
        if not variant.tests_passed:  # why the level was dropped, without opening the log
            report.build[level]["tests_log_tail"] = variant.tests_tail


def _runtimes(
    results: list[LevelResult],
    variants: dict[str, VariantBuild],
    reaches: dict[str, list[Reach]],
    work: Path,
    notes: list[str],
) -> dict[str, Runtime]:
    """The unpacked variants to measure: the baseline and every level still in the running.

    A level's copy of a library the installed system's loader would never load (see
    :mod:`deepdeb.isa.reach`) is replaced by the baseline's, so that the measurement credits a
    level only with what its packages can deliver.
    """
    candidates = [r for r in results[1:] if not r.reason]
    if not candidates:
        return {}
    base = unpack_runtime(variants[BASELINE], work / "runtime" / BASELINE)
    reachable = [r for rs in reaches.values() for r in rs if r.ships_variants]
    why = ""
    if not base.library_dirs:
        why = "the package has no shared libraries: glibc-hwcaps cannot apply"
    elif not reachable:
        why = "the loader reaches none of the package's libraries by name (see libraries)"
    if why:
        notes.append(why)
        for result in candidates:
            result.reason = why
        return {BASELINE: base}
    runtimes = {BASELINE: base}
    for result in candidates:
        runtime = unpack_runtime(variants[result.level], work / "runtime" / result.level)
        for r in (r for rs in reaches.values() for r in rs if not r.ships_variants):
            own = runtime.root / r.path.lstrip("/")
            if own.is_file():
                shutil.copyfile(base.root / r.path.lstrip("/"), own)
        runtimes[result.level] = runtime
    return runtimes


def _publish(
    staging: Path, out: Path, report: BuildReport, variants: dict[str, VariantBuild]
) -> None:
    """Move finished files into ``out``; remove what an earlier run left that is now stale."""
    logs = staging / "logs"
    logs.mkdir()
    for level, variant in variants.items():  # deepdeb's own logs: the last 64 MiB of each
        (logs / f"{level}.log").write_bytes(read_regular(variant.log, 64 << 20))
    previous = _previous_outputs(out)
    for package in report.packages:
        os.replace(package.file, out / package.file.name)
        package.file = out / package.file.name
    if report.buildinfo is not None:
        os.replace(report.buildinfo, out / report.buildinfo.name)
        report.buildinfo = out / report.buildinfo.name
    (out / "logs").mkdir(exist_ok=True)
    for log in logs.iterdir():
        os.replace(log, out / "logs" / log.name)
    current = {p.file.name for p in report.packages}
    if report.buildinfo is not None:
        current.add(report.buildinfo.name)
    for stale in previous - current:
        (out / stale).unlink(missing_ok=True)
    atomic_write_text(out / "report.json", report.dumps())


def _previous_outputs(out: Path) -> set[str]:
    try:
        old = json.loads((out / "report.json").read_text())
        files = {p["file"] for p in old.get("packages", []) if "/" not in p["file"]}
        if isinstance(old.get("buildinfo"), str) and "/" not in old["buildinfo"]:
            files.add(old["buildinfo"])
        return files
    except (OSError, ValueError, AttributeError, TypeError):
        return set()
