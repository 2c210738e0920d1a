"""One source of a stack as a graph of Dask tasks, driven from the client.

``plan`` (on a worker of the cluster's highest level) -> ``build`` per level (the baseline
and every planned level, side by side on any workers that can run them) -> ``measure``
(every level on one worker that can run them all: speedups are ratios within one machine)
-> ``test`` per level that would be kept (on the worker holding its built tree) ->
``finish`` (assemble, verify, lintian, report). When a level's tests fail it is dropped and
the levels are decided again, exactly as in a one-recipe build, which runs the same stages
(:func:`deepdeb.isa.pipeline.run_kept_tests` drives both); the new choice gets its own test
tasks. Every task is keyed ``deepdeb-<stage>-<source>-<level>-<cache key>``, which is what
Dask's dashboard and logs show.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

from deepdeb.cpu.levels import BASELINE, rank
from deepdeb.isa.build import VariantBuild
from deepdeb.isa.pipeline import run_kept_tests
from deepdeb.stack.bundle import Outcome
from deepdeb.stack.tasks import (
    Job,
    StageError,
    build_task,
    finish_task,
    forget,
    measure_task,
    plan_task,
    record_tests,
    run_tests_task,
)


def task_key(stage: str, source: str, level: str, key: str) -> str:
    """The Dask key of one stage of one source (at one level)."""
    return "-".join(p for p in ("deepdeb", stage, source, level, key[:16]) if p)


def able(levels: dict[str, str], level: str) -> list[str] | None:
    """The workers whose CPU runs ``level``; None when all do, or none does (then any
    worker builds it: a level no worker can run is built only when named explicitly)."""
    found = sorted(a for a, lv in levels.items() if rank(lv) >= rank(level))
    return None if not found or len(found) == len(levels) else found


def run_source(client: Any, job: Job, levels: dict[str, str], top: list[str] | None) -> Outcome:
    """Run one source's graph; a stage's failure is the source's failed outcome. What
    the workers held for it is removed once it is done, whatever happened."""
    start = time.monotonic()
    tasks: list[dict[str, str]] = []
    try:
        outcome = _graph(client, job, levels, top, tasks)
    except StageError as e:
        outcome = Outcome(job.label, False, error=str(e))
    except Exception as e:  # a bug, or a worker that kept dying: the source fails
        outcome = Outcome(job.label, False, error=f"{type(e).__name__}: {e}")
    finally:
        with contextlib.suppress(Exception):
            client.run(forget, job.key)
    outcome.seconds = round(time.monotonic() - start, 1)
    outcome.tasks = tasks
    return outcome


def _graph(
    client: Any,
    job: Job,
    levels: dict[str, str],
    top: list[str] | None,
    tasks: list[dict[str, str]],
) -> Outcome:
    from dask.distributed import as_completed

    def submit(
        func: Any, *args: Any, key: str, workers: list[str] | None, strict: bool = False
    ) -> Any:
        """A task placed on ``workers`` as a preference, or only there when ``strict``."""
        return client.submit(
            func, *args, key=key, pure=False, retries=0, workers=workers,
            allow_other_workers=not strict and workers is not None,
        )  # fmt: skip

    stem = job.member.rsplit("/", 1)[-1].removesuffix(".toml")
    planned = submit(plan_task, job, key=task_key("plan", stem, "", job.key), workers=top)
    plan = planned.result()
    name = plan.name
    builds = {
        level: submit(
            build_task,
            job,
            plan,
            level,
            key=task_key("build", name, level, job.key),
            workers=able(levels, level),
        )
        for level in plan.levels
    }
    for done in as_completed(list(builds.values())):  # type: ignore[no-untyped-call]
        if done.status == "error":  # one level failed: the others are of no use
            client.cancel([f for f in builds.values() if f is not done])
            done.result()
    measured_levels = [lv for lv in plan.plan.levels if lv not in plan.plan.may_fail]
    highest = max(measured_levels, key=rank, default=BASELINE)
    where = able(levels, highest) or top
    measure = submit(
        measure_task, job, plan, *builds.values(), key=task_key("measure", name, "", job.key),
        workers=where,
    )  # fmt: skip
    m = measure.result()
    for level, builder in m.builders.items():
        tasks.append({"stage": "build", "level": level, "worker": _name(builder)})
    tasks.append({"stage": "measure", "level": ",".join(m.variants), "worker": _name(m.worker)})
    tested: dict[str, Any] = {}

    def test(level: str, workers: list[str] | None, strict: bool, again: str = "") -> Any:
        return submit(
            run_tests_task, job, plan, builds[level], m.digests[level],
            key=task_key("test" + again, name, level, job.key), workers=workers,
            strict=strict,
        )  # fmt: skip

    def run(untested: list[VariantBuild]) -> None:
        # Pinned to the worker that holds the tree: a loose restriction lets Dask's work
        # stealing move the task to an idle worker, which would have to build it again.
        pinned = {v.level: _builder(m.builders[v.level], levels, v.level) for v in untested}
        futures = {
            level: test(level, [b] if b else able(levels, level), strict=b is not None)
            for level, b in pinned.items()
        }
        for level, future in futures.items():
            builder = pinned[level]
            if builder is not None:
                future = _unless_gone(
                    client, future, builder,
                    lambda lv=level: test(lv, able(levels, lv), strict=False, again="retest"),
                )  # fmt: skip
            result = future.result()
            record_tests(m.variants[level], result)
            tested[level] = future
            stage = "rebuild+test" if result.rebuilt else "test"
            tasks.append({"stage": stage, "level": level, "worker": _name(result.worker)})

    run_kept_tests(m.measured.report, m.variants, m.measured.times, run)
    final = submit(
        finish_task, job, plan, m.measured, m.digests, list(builds.values()),
        list(tested.values()), key=task_key("finish", name, "", job.key), workers=where,
    )  # fmt: skip
    outcome: Outcome = final.result()
    tasks.append({"stage": "finish", "level": "", "worker": _name(outcome.worker)})
    # The row names the machine whose measurements it shows.
    outcome.worker = {k: v for k, v in m.worker.items() if k in ("host", "cpu", "level")}
    return outcome


def _builder(builder: dict[str, str], levels: dict[str, str], level: str) -> str | None:
    """Where a level's tests should run: the worker that built it, which holds its tree,
    if that worker can run the level; None when it cannot (then any that can, and the
    test task builds the level again there). Not where Dask holds the build's result:
    that moves (to the measuring worker, and Dask drops copies it deems redundant), the
    tree does not."""
    allowed = able(levels, level)
    address = builder.get("address", "")
    if address in levels and (allowed is None or address in allowed):
        return address
    return None


def _unless_gone(client: Any, future: Any, address: str, elsewhere: Any) -> Any:
    """``future``, pinned to ``address``; if that worker leaves the cluster before the
    task is done (a pinned task would then wait for it forever), the task is cancelled
    and ``elsewhere()`` submitted instead."""
    from dask.distributed import wait

    while True:
        with contextlib.suppress(TimeoutError):
            wait(future, timeout=_POLL)  # type: ignore[no-untyped-call]
        if future.done():
            return future
        if address not in client.scheduler_info().get("workers", {}):
            client.cancel([future])
            return elsewhere()


_POLL = 5.0  # seconds between checks that a pinned task's worker is still there


def _name(worker: dict[str, str]) -> str:
    return worker.get("name") or worker.get("address") or worker.get("host", "")
