"""Many recipes in one run, on Dask: ``deepdeb build R1 R2 ... --out DIR``.

Each source is a graph of ``dask.distributed`` tasks (:mod:`deepdeb.stack.graph`: one
build per level, one measurement, one test run per level that would be kept, one to
finish; a wheel recipe is one task), run by the workers of an embedded local cluster
(the default) or of an existing one (``--scheduler tcp://HOST:PORT``).
Inputs go to the workers as bundles and results come back as bytes, so workers need no
filesystem in common with the client. Dask reruns a task whose worker died on another.

Results are cached by content (:func:`deepdeb.stack.bundle.cache_key`) in deepdeb's cache:
a rerun builds only what is missing, changed or failed before, and says so. ``DIR``
gets ``<source>/`` per source (what a one-recipe build writes), ``stack.json`` with one
row per source, ``report.html`` with its plots, and an exit status that says whether
anything failed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from deepdeb.cpu.levels import rank
from deepdeb.debian.debpkg import PACKAGE_NAME
from deepdeb.errors import DeepdebError
from deepdeb.report.html import render_stack
from deepdeb.report.schema import StackReport, StackRow
from deepdeb.stack.bundle import Bundle, Options, Outcome, cache_key, pack
from deepdeb.stack.graph import run_source, task_key
from deepdeb.stack.tasks import Job, is_level_recipe
from deepdeb.stack.worker import build_bundle, worker_level
from deepdeb.util import atomic_write_bytes, atomic_write_text, cache_root


def run_stack(
    recipes: list[Path],
    out: Path,
    options: Options,
    console: Console,
    scheduler: str | None = None,
    workers: int | None = None,
) -> StackReport:
    """Build every recipe; one failing (a build error, a checksum, a missing
    build-dependency) never stops the others."""
    start = time.monotonic()
    out.mkdir(parents=True, exist_ok=True)
    failed: dict[int, StackRow] = {}
    keys: dict[int, str] = {}
    todo: dict[int, tuple[Bundle, str]] = {}
    ran: set[int] = set()
    for i, recipe in enumerate(recipes):
        label = _label(recipe)
        try:
            bundle = pack(recipe, exclude=(out,))
        except DeepdebError as e:
            failed[i] = StackRow(label, "failed", error=str(e), ran=False)
            continue
        keys[i] = cache_key(bundle, options)
        if _cached(keys[i]) is not None:
            console.print(f"{label}: unchanged since the last run (cached), not rebuilt")
        else:
            todo[i] = (bundle, keys[i])
    address = scheduler or "embedded local cluster"
    levels: dict[str, str] = {}
    if todo:
        with _client(scheduler, workers) as client:
            address = scheduler or str(client.scheduler.address)
            levels = dict(client.run(worker_level))
            for i, outcome in _run(client, todo, options, console, levels):
                ran.add(i)
                if outcome.ok:
                    _store(keys[i], outcome)  # the files wait on disk, not in memory
                else:
                    failed[i] = _failed_row(outcome)
    good = {i: _cached(key) for i, key in keys.items() if i not in failed}
    names = _directories({i: o.source for i, o in good.items() if o is not None}, recipes)
    rows = dict(failed)
    for i, result in good.items():
        if result is None:  # the cache entry vanished meanwhile
            rows[i] = StackRow(_label(recipes[i]), "failed", error="result lost from the cache")
            continue
        result.recipe = _label(recipes[i])  # a cached result names the recipe as given now
        try:
            rows[i] = _place(result, out, names[i], ran=i in ran)
        except DeepdebError as e:
            rows[i] = StackRow(_label(recipes[i]), "failed", error=str(e))
    report = StackReport(
        [rows[i] for i in range(len(recipes))], time.monotonic() - start, address, levels
    )
    atomic_write_text(out / "stack.json", json.dumps(report.to_json(), indent=2) + "\n")
    atomic_write_text(out / "report.html", render_stack(report, out))
    return report


def _directories(sources: dict[int, str], recipes: list[Path]) -> dict[int, str]:
    """DIR/<source> for each good result; when two recipes build one source (a stock and
    a per-level build of it, say), each gets DIR/<source>-<recipe name> instead, so
    neither overwrites the other whatever order they finish in."""
    counts: dict[str, int] = {}
    for source in sources.values():
        counts[source] = counts.get(source, 0) + 1
    names = {}
    for i, source in sources.items():
        stem = recipes[i].parent.name if recipes[i].name == "recipe.toml" else recipes[i].stem
        stem = re.sub(r"[^a-z0-9+.-]+", "-", stem.lower()).strip("-.") or str(i)
        names[i] = source if counts[source] == 1 else f"{source}-{stem}"
    return names


def _label(recipe: Path) -> str:
    """How stack.json names a recipe: its path relative to the working directory."""
    try:
        return str(recipe.relative_to(Path.cwd()))
    except ValueError:
        return str(recipe)


@contextmanager
def _client(scheduler: str | None, workers: int | None) -> Iterator[Any]:
    """A Dask client of the given scheduler, or of a local cluster sized to this machine:
    one worker per two cores (a build already runs its compilers in parallel), one
    thread each."""
    from dask.distributed import Client, LocalCluster

    if scheduler is not None:
        with Client(scheduler, timeout="30s") as client:  # type: ignore[no-untyped-call]
            yield client
        return
    count = workers or max(1, (os.cpu_count() or 1) // 2)
    with (
        LocalCluster(  # type: ignore[no-untyped-call]
            n_workers=count,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
        ) as cluster,
        Client(cluster) as client,  # type: ignore[no-untyped-call]
    ):
        yield client


def preferred_workers(levels: dict[str, str]) -> list[str] | None:
    """The workers a source should go to: those whose CPU runs the highest x86-64 level
    of the cluster, so that every level the recipe asks for is built, tested and measured
    where possible. None when all are alike (any worker will do).

    A source is planned there, and measured on one worker that can run every level it
    measures, so its speedups are ratios within one machine; the levels no worker can
    run are reported as not built, with the reason.
    """
    if not levels:
        return None
    top = max(rank(level) for level in levels.values())
    best = sorted(address for address, level in levels.items() if rank(level) == top)
    return None if len(best) == len(levels) else best


def _run(
    client: Any,
    todo: dict[int, tuple[Bundle, str]],
    options: Options,
    console: Console,
    levels: dict[str, str],
) -> Iterator[tuple[int, Outcome]]:
    """Run every source; yield outcomes as they finish. A source recipe is a graph of
    tasks (:mod:`deepdeb.stack.graph`), driven from a thread of this client; a wheel
    recipe is one task. Dask reruns a task whose worker died elsewhere (its inputs are
    part of the task or results Dask can compute again); one that raised is a failed
    outcome.

    Placement is a preference, not a restriction: should the preferred workers all
    leave, the work goes to the others (at the levels those can run) rather than wait."""
    top = preferred_workers(levels)
    progress = Progress(
        TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(), console=console
    )
    # Not a with-block: interrupted (Ctrl-C), the run must not wait for every source's
    # thread; closing the client then cancels their futures, and they end.
    pool = ThreadPoolExecutor(max_workers=max(1, len(todo)), thread_name_prefix="source")
    try:
        with progress:
            task = progress.add_task(f"building {len(todo)} sources on Dask", total=len(todo))
            futures = {
                pool.submit(_one, client, bundle, key, options, levels, top): i
                for i, (bundle, key) in todo.items()
            }
            for future in as_completed(futures):
                i = futures[future]
                outcome = future.result()
                state = (
                    "ok"
                    if outcome.ok
                    else "FAILED: " + (outcome.error.strip().splitlines() or ["?"])[0]
                )
                progress.console.print(f"{outcome.recipe}: {state} ({outcome.seconds:.0f} s)")
                progress.advance(task)
                yield i, outcome
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def _one(
    client: Any,
    bundle: Bundle,
    key: str,
    options: Options,
    levels: dict[str, str],
    top: list[str] | None,
) -> Outcome:
    """One source's outcome: its graph of level tasks, or a wheel recipe's one task."""
    label = _label(bundle.recipe)
    job = Job(key, bundle.data, bundle.member, label, options)
    try:
        if is_level_recipe(bundle.recipe):
            return run_source(client, job, levels, top)
        future = client.submit(
            build_bundle, bundle.data, bundle.member, label, options,
            key=task_key("wheel", bundle.recipe.stem, "", key), pure=False, retries=0,
            workers=top, allow_other_workers=top is not None,
        )  # fmt: skip
        outcome: Outcome = future.result()
        return outcome
    except Exception as e:  # a bug, or a worker that kept dying: the source fails
        return Outcome(label, False, error=f"{type(e).__name__}: {e}")


def _cache_dir() -> Path:
    return cache_root() / "stack"


def _cached(key: str) -> Outcome | None:
    """A good result of an earlier run with the same key, if its files are all there."""
    directory = _cache_dir() / key
    meta = directory / "outcome.json"
    if not meta.is_file():
        return None
    try:
        data = json.loads(meta.read_text())
        files = {name: (directory / "files" / name).read_bytes() for name in data["files"]}
    except (OSError, ValueError, KeyError, TypeError):
        return None  # half there or damaged: build again
    return Outcome(
        data["recipe"],
        True,
        data["source"],
        data["version"],
        "",
        files,
        data["seconds"],
        data["worker"],
        data.get("tasks", []),
    )


def _store(key: str, outcome: Outcome) -> None:
    """Cache a good result: written under a temporary name, then renamed into place."""
    final = _cache_dir() / key
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{key[:16]}-", dir=final.parent))
    try:
        for name, data in outcome.files.items():
            atomic_write_bytes(tmp / "files" / name, data)
        meta = {
            "recipe": outcome.recipe,
            "source": outcome.source,
            "version": outcome.version,
            "seconds": outcome.seconds,
            "worker": outcome.worker,
            "tasks": outcome.tasks,
            "files": sorted(outcome.files),
        }
        atomic_write_text(tmp / "outcome.json", json.dumps(meta, indent=2) + "\n")
        shutil.rmtree(final, ignore_errors=True)
        os.rename(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _failed_row(outcome: Outcome) -> StackRow:
    return StackRow(
        outcome.recipe, "failed", error=outcome.error, seconds=outcome.seconds,
        worker=outcome.worker,
    )  # fmt: skip


def _place(outcome: Outcome, out: Path, name: str, ran: bool) -> StackRow:
    """Write a good outcome's files to ``out/<name>/`` (replacing an earlier one only
    once the new one is complete) and make its row."""
    if not PACKAGE_NAME.fullmatch(name):
        return StackRow(outcome.recipe, "failed", error=f"bad source name {outcome.source!r}")
    staging = Path(tempfile.mkdtemp(prefix=f".staging-{name}-", dir=out))
    try:
        for file, data in outcome.files.items():
            if file.startswith("/") or ".." in file.split("/"):
                raise DeepdebError(f"{outcome.recipe}: a worker sent a file named {file!r}")
            atomic_write_bytes(staging / file, data)
        final = out / name
        if final.exists():
            old = Path(tempfile.mkdtemp(prefix=f".old-{name}-", dir=out))
            os.rename(final, old / "x")
            os.rename(staging, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(staging, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return _row(outcome, name, ran)


_TIMES = ("build_seconds", "test_seconds", "measure_seconds")


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _row(outcome: Outcome, name: str, ran: bool) -> StackRow:
    """The row of a good outcome, from the report.json its build wrote."""
    report = outcome.report
    levels = [lv for lv in _list(report.get("levels")) if isinstance(lv, dict) and "level" in lv]
    speedups = {str(lv["level"]): lv.get("speedup") for lv in levels}
    times = {
        str(lv["level"]): {k: float(lv[k]) for k in _TIMES if isinstance(lv.get(k), int | float)}
        for lv in levels
    }
    packages = [p for p in _list(report.get("packages")) if isinstance(p, dict)]
    shipped = _list(report.get("shipped_levels"))
    return StackRow(
        outcome.recipe,
        "ok",
        outcome.source,
        outcome.version,
        ran=ran,
        seconds=outcome.seconds,
        worker=outcome.worker,
        kept_levels=[str(lv) for lv in shipped if lv != "x86-64"],
        speedups=speedups,
        package_bytes=sum(int(p.get("size") or 0) for p in packages),
        directory=name,
        times=times,
        tasks=outcome.tasks,
    )
