"""The tasks of one source's graph, as a Dask worker runs them: plan, one build per
level, one measurement, one test run per level that would be kept, and the last stage.

Each task calls one stage of :mod:`deepdeb.isa.pipeline`, the very function a one-recipe
``deepdeb build`` calls; only what travels between them differs. Workers may share no
filesystem with the client or with each other, so a task gets the recipe as its bundle
(unpacked once per worker process) and the built levels as bytes (:class:`Built`, whose
packages Dask moves to the worker that needs them). A level's built tree, where its tests
run, stays on the worker that built it (:data:`_HELD`); a test task finds it there, or
builds the level again first when Dask had to run it elsewhere (its worker died).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import platform
import shutil
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from rich.console import Console

from deepdeb.cpu.levels import host_cpu
from deepdeb.errors import DeepdebError
from deepdeb.hermetic import sandbox
from deepdeb.hermetic.cleanroom import CleanRoot
from deepdeb.isa.build import VariantBuild
from deepdeb.isa.pipeline import (
    Measured,
    SourcePlan,
    build_levels,
    finish,
    measure_levels,
    plan_source,
    prepare_backend,
    run_tests_of,
)
from deepdeb.recipe.load import load_recipe, with_levels
from deepdeb.recipe.model import IsaRecipe, SourceRecipe, WheelRecipe
from deepdeb.sources.fetch import SourcePackage, obtain, unpack
from deepdeb.stack.bundle import Options, Outcome
from deepdeb.stack.bundle import unpack as unpack_bundle
from deepdeb.util import read_regular


class StageError(Exception):
    """A stage failed for a reason of the source's (a build error, a checksum...): the
    message of deepdeb's error, in an exception that always travels back to the client."""


@dataclass(frozen=True)
class Job:
    """What every task of one source gets: the recipe's bundle and how to build it."""

    key: str  # the source's cache key: names its tasks and its directories on workers
    data: bytes
    member: str
    label: str
    options: Options


@dataclass
class Built:
    """A built level, as it travels: its record, its packages and .buildinfo as bytes,
    its log, and which worker built it (where its tree stays)."""

    variant: VariantBuild  # its paths are the builder's
    files: dict[str, bytes]
    log: bytes
    worker: dict[str, str]


@dataclass
class Measurement:
    """The measurement stage's result, with what the client needs to run the tests."""

    measured: Measured
    variants: dict[str, VariantBuild]  # as measured: tests_run, tests_passed, failure
    digests: dict[str, str]  # level -> digest of the packages measured
    worker: dict[str, str]
    builders: dict[str, dict[str, str]]  # level -> the worker that built it


@dataclass
class Tested:
    """A level's deferred tests, run: the record with their outcome, and the log."""

    variant: VariantBuild
    log: bytes
    worker: dict[str, str]
    rebuilt: bool = False  # its tree was not on this worker: built here again first
    notes: list[str] = field(default_factory=list)


# Trees built on this worker process, kept for their tests: (source key, level) -> build.
_HELD: dict[tuple[str, str], tuple[VariantBuild, CleanRoot | None]] = {}
_SPACES: dict[str, Path] = {}
_LOCK = threading.Lock()


def worker_info() -> dict[str, str]:
    """Which worker runs this: its Dask name and address, host name, CPU and level."""
    cpu = host_cpu()
    info = {"host": platform.node(), "cpu": cpu.microarchitecture, "level": cpu.level}
    with contextlib.suppress(ValueError, ImportError):
        from dask.distributed import get_worker

        worker = get_worker()
        info["name"], info["address"] = str(worker.name), str(worker.address)
    return info


def _say(job: Job, what: str) -> None:
    """A line in the worker's log for each task it starts (what ``dask worker`` shows)."""
    print(f"deepdeb: {what} {job.label}", file=sys.stderr, flush=True)


def _space(job: Job) -> Path:
    """This worker's directory for a source: its recipe, unpacked once, and one scratch
    directory per task (two tasks of a source may run here side by side)."""
    with _LOCK:
        space = _SPACES.get(job.key)
        if space is None or not space.is_dir():
            space = Path(tempfile.mkdtemp(prefix=f"deepdeb-stack-{job.key[:12]}-"))
            unpack_bundle(job.data, space / "recipe")
            _SPACES[job.key] = space
        return space


def _scratch(job: Job, stage: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=f"{stage}-", dir=_space(job)))


def _source(job: Job) -> tuple[SourceRecipe, SourcePackage]:
    """The recipe as this worker sees it (with --levels applied) and its source, fetched
    into this worker's cache."""
    recipe = load_recipe(_space(job) / "recipe" / job.member)
    if isinstance(recipe, WheelRecipe):
        raise StageError(f"{job.label}: a wheel recipe has no level stages")
    if job.options.levels and isinstance(recipe, IsaRecipe):  # stock recipes rebuild nothing
        recipe = with_levels(recipe, list(job.options.levels))
    return recipe, obtain(recipe.source)


def _quiet() -> Console:
    return Console(file=io.StringIO())


@contextlib.contextmanager
def _stage() -> Iterator[None]:
    """The run's limits around a stage, and deepdeb's errors as :class:`StageError`."""
    try:
        with sandbox.run_limits():
            yield
    except DeepdebError as e:
        raise StageError(str(e)) from None


def plan_task(job: Job) -> SourcePlan:
    """Audit the source and plan its levels for this worker's CPU (the client places it
    on a worker of the cluster's highest level: the one that can measure the most)."""
    _say(job, "planning")
    with _stage():
        recipe, package = _source(job)
        opts = job.options
        planned, _ = plan_source(
            recipe, package, opts.layout, opts.backend, _scratch(job, "plan"), _quiet()
        )
    return planned


def build_task(job: Job, planned: SourcePlan, level: str) -> Built:
    """Build one level (with nocheck when its tests wait for the measurement); its tree
    stays on this worker for its tests."""
    _say(job, f"building {level} of")
    with _stage():
        recipe, package = _source(job)
        work = _scratch(job, f"build-{level}")
        variant, clean = _build_here(job, recipe, package, planned, level, work)
        with _LOCK:
            _HELD[(job.key, level)] = (variant, clean)
        return Built(variant, _files(variant), _log(variant), worker_info())


def _build_here(
    job: Job,
    recipe: SourceRecipe,
    package: SourcePackage,
    planned: SourcePlan,
    level: str,
    work: Path,
) -> tuple[VariantBuild, CleanRoot | None]:
    tree = unpack(package, work / "depcheck")
    clean = prepare_backend(tree, package.name, job.options.backend, work, _quiet())
    variants = build_levels(package, recipe, planned, [level], work, _quiet(), clean)
    return variants[level], clean


def measure_task(job: Job, planned: SourcePlan, *builts: Built) -> Measurement:
    """Time every level on this one worker, from the packages the build tasks sent."""
    _say(job, "measuring")
    with _stage():
        recipe, _ = _source(job)
        work = _scratch(job, "measure")
        variants = {b.variant.level: rehydrate(b, work / "levels") for b in builts}
        measured = measure_levels(recipe, planned, variants, work, _quiet())
    return Measurement(
        measured,
        variants,
        {b.variant.level: digest(b.files) for b in builts},
        worker_info(),
        {b.variant.level: b.worker for b in builts},
    )


def run_tests_task(job: Job, planned: SourcePlan, built: Built, measured_digest: str) -> Tested:
    """Run a level's deferred tests in the tree its build left on this worker; if the
    tree is not here, build the level again first, and ship it only if it is the very
    packages that were measured."""
    level = built.variant.level
    _say(job, f"testing {level} of")
    with _stage():
        with _LOCK:
            held = _HELD.get((job.key, level))
        tree = held[0].tree if held is not None else None
        rebuilt = held is None or tree is None or not tree.is_dir()
        notes = []
        if held is None or rebuilt:
            _say(job, f"building {level} again, for its tests, of")
            recipe, package = _source(job)
            variant, clean = _build_here(
                job, recipe, package, planned, level, _scratch(job, f"rebuild-{level}")
            )
            notes.append(f"{level}: built again on {platform.node()} for its tests")
        else:
            variant, clean = held
        if rebuilt and digest(_files(variant)) != measured_digest:
            variant.tests_run, variant.tests_passed = True, False
            variant.failure = (
                f"{level} was built again for its tests (its worker was lost) and the "
                "packages differ from those measured: not shipped untested"
            )
        else:
            run_tests_of([variant], _quiet(), clean)
        return Tested(variant, _log(variant), worker_info(), rebuilt, notes)


def finish_task(
    job: Job,
    planned: SourcePlan,
    measured: Measured,
    digests: dict[str, str],
    builts: list[Built],
    testeds: list[Tested],
) -> Outcome:
    """Assemble, verify, lintian and report, from the levels' packages and test runs;
    the files of ``--out`` go back to the client as bytes."""
    _say(job, "assembling")
    with _stage():
        recipe, package = _source(job)
        work = _scratch(job, "finish")
        variants = {}
        for built in builts:
            level = built.variant.level
            if level in digests and digest(built.files) != digests[level]:
                raise DeepdebError(
                    f"{level} was built again (its worker was lost) and differs from the "
                    "packages measured: run the stack again"
                )
            variants[level] = rehydrate(built, work / "levels")
        for tested in testeds:
            record_tests(variants[tested.variant.level], tested)
            variants[tested.variant.level].log.write_bytes(tested.log)  # tests included
        out = work / "out"
        report = finish(
            recipe, package, planned, variants, measured, out, work, _quiet(),
            job.options.lintian,
        )  # fmt: skip
        files = _collect(out)
    return Outcome(
        job.label, True, report.source_name, report.source_version, "", files,
        worker=worker_info(),
    )  # fmt: skip


def forget(key: str) -> None:
    """Remove what this worker holds for a source (run on every worker once it is done)."""
    with _LOCK:
        for held in [k for k in _HELD if k[0] == key]:
            del _HELD[held]
        space = _SPACES.pop(key, None)
    if space is not None:
        shutil.rmtree(space, ignore_errors=True)


def record_tests(variant: VariantBuild, tested: Tested) -> None:
    """A level's record, updated with the outcome of its test run."""
    done = tested.variant
    variant.tests_run, variant.tests_passed = done.tests_run, done.tests_passed
    variant.failure, variant.tests_tail = done.failure, done.tests_tail
    variant.test_seconds, variant.seconds = done.test_seconds, done.seconds
    variant.network_attempts = list(done.network_attempts)


_KINDS = (".deb", ".ddeb", ".buildinfo")


def _files(variant: VariantBuild) -> dict[str, bytes]:
    """A built level's packages and dpkg's .buildinfo, by file name."""
    if not variant.built or not variant.directory.is_dir():
        return {}
    return {
        path.name: read_regular(path, 8 << 30)
        for path in sorted(variant.directory.iterdir())
        if path.name.endswith(_KINDS) and path.is_file() and not path.is_symlink()
    }


def _log(variant: VariantBuild) -> bytes:
    try:
        return read_regular(variant.log, 64 << 20)
    except (OSError, DeepdebError):
        return b""


def digest(files: dict[str, bytes]) -> str:
    """One digest of a level's files: whether a build made again is the one measured."""
    h = hashlib.sha256()
    for name in sorted(files):
        if name.endswith((".deb", ".ddeb")):  # .buildinfo records the build's own times
            h.update(name.encode() + b"\0" + hashlib.sha256(files[name]).digest())
    return h.hexdigest()


def rehydrate(built: Built, root: Path) -> VariantBuild:
    """A level that was built elsewhere, its files written under ``root``: a record whose
    paths are this worker's, as the measurement and the last stage read them."""
    level = built.variant.level
    directory = root / level
    directory.mkdir(parents=True)
    debs = {}
    for name, data in sorted(built.files.items()):
        if "/" in name or name.startswith("."):
            raise DeepdebError(f"level {level}: a worker sent a file named {name!r}")
        (directory / name).write_bytes(data)
        if name.endswith((".deb", ".ddeb")):
            debs[name.split("_", 1)[0]] = directory / name
    log = root / "logs" / f"{level}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_bytes(built.log)
    return replace(built.variant, directory=directory, log=log, debs=debs, tree=None, private=None)


def _collect(out: Path) -> dict[str, bytes]:
    """Every regular file of a finished --out directory, by relative path."""
    files: dict[str, bytes] = {}
    for path in sorted(out.rglob("*")):
        if path.is_file() and not path.is_symlink():
            files[path.relative_to(out).as_posix()] = path.read_bytes()
    return files


def is_level_recipe(path: Path) -> bool:
    """Whether a recipe runs as level stages (a source), rather than as one task (a
    wheel)."""
    return not isinstance(load_recipe(path), WheelRecipe)
