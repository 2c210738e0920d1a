"""Stacks: many recipes in one run, on a real Dask cluster (a scheduler and two workers
on 127.0.0.1, each with its own cache and temporary directory)."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import FIXTURES, build

from deepdeb.cpu.levels import host_cpu
from deepdeb.errors import DeepdebError, RecipeError, UsageError
from deepdeb.stack.bundle import Options, Outcome, cache_key, pack, recipes_from, unpack
from deepdeb.stack.graph import able, task_key
from deepdeb.stack.run import _directories, _place, preferred_workers
from deepdeb.stack.tasks import Job, build_task, digest, forget, plan_task, run_tests_task

BIN = Path(sys.executable).parent


def stack_dir(tmp: Path) -> Path:
    """Three recipes in one directory: vecmath at x86-64-v2 (every host runs it), a stock
    build of it, and a copy whose build fails."""
    root = tmp / "stack"
    root.mkdir()
    shutil.copytree(FIXTURES / "vecmath-1.0", root / "vecmath-1.0")
    broken = root / "broken-1.0"
    shutil.copytree(FIXTURES / "vecmath-1.0", broken)
    rules = broken / "debian" / "rules"
    rules.write_text(
        rules.read_text() + "\noverride_dh_auto_build:\n\techo broken on purpose; false\n"
    )
    changelog = broken / "debian" / "changelog"
    changelog.write_text(changelog.read_text().replace("vecmath", "broken", 1))
    control = broken / "debian" / "control"
    control.write_text(control.read_text().replace("Source: vecmath", "Source: broken", 1))
    vecmath = (FIXTURES / "vecmath.toml").read_text()
    (root / "a-vecmath.toml").write_text(
        vecmath.replace(
            'levels = ["x86-64-v2", "x86-64-v3", "x86-64-v4"]', 'levels = ["x86-64-v2"]'
        )
    )
    (root / "b-stock.toml").write_text((FIXTURES / "stock.toml").read_text())
    (root / "c-broken.toml").write_text('[source]\npath = "broken-1.0"\n')
    return root


# --- bundles, keys, placing results ------------------------------------------------------


def test_a_directory_means_its_recipes_in_name_order(tmp_path: Path) -> None:
    root = stack_dir(tmp_path)
    (root / "sub").mkdir()
    (root / "sub" / "recipe.toml").write_text('[source]\npath = "../vecmath-1.0"\n')
    names = [p.relative_to(root).as_posix() for p in recipes_from([root])]
    assert names == ["a-vecmath.toml", "b-stock.toml", "c-broken.toml", "sub/recipe.toml"]
    with pytest.raises(UsageError, match="without recipes"):
        recipes_from([root / "vecmath-1.0" / "debian" / "source"])


def test_a_bundle_is_the_same_bytes_for_the_same_directory(tmp_path: Path) -> None:
    root = stack_dir(tmp_path)
    first = pack(root / "a-vecmath.toml")
    os.utime(root / "vecmath-1.0" / "vecmath.c", (1, 1))  # times do not count
    assert pack(root / "a-vecmath.toml").sha256 == first.sha256
    (root / "vecmath-1.0" / "vecmath.c").write_text("/* changed */\n")
    assert pack(root / "a-vecmath.toml").sha256 != first.sha256
    out = tmp_path / "unpacked"
    unpack(first.data, out)
    assert (out / "a-vecmath.toml").read_text() == (root / "a-vecmath.toml").read_text()
    assert (out / "vecmath-1.0" / "debian" / "rules").stat().st_mode & 0o111
    assert (out / "vecmath-1.0" / "vecmath.c").stat().st_mtime > time.time() - 60  # not 1970


def test_a_bundle_leaves_out_what_belongs_to_other_recipes(tmp_path: Path) -> None:
    root = stack_dir(tmp_path)
    (root / "tone.py").write_text("# a benchmark helper, shared\n")
    bundle = pack(root / "a-vecmath.toml")
    with tarfile.open(fileobj=io.BytesIO(bundle.data)) as tar:
        names = set(tar.getnames())
    assert {"a-vecmath.toml", "vecmath-1.0/vecmath.c", "tone.py"} <= names
    assert not {n for n in names if n.startswith(("broken-1.0", "b-stock", "c-broken"))}
    (root / "b-stock.toml").write_text("# changed\n[source]\npath = 'vecmath-1.0'\n")
    (root / "broken-1.0" / "vecmath.c").write_text("changed\n")
    assert pack(root / "a-vecmath.toml").sha256 == bundle.sha256
    (root / "tone.py").write_text("# changed\n")  # shared files count
    assert pack(root / "a-vecmath.toml").sha256 != bundle.sha256


def test_a_bundle_holds_only_the_recipes_directory(tmp_path: Path) -> None:
    root = stack_dir(tmp_path)
    (root / "sub").mkdir()
    (root / "sub" / "recipe.toml").write_text('[source]\npath = "../vecmath-1.0"\n')
    with pytest.raises(RecipeError, match="outside the recipe's directory"):
        pack(root / "sub" / "recipe.toml")
    out = root / "out"  # an --out inside the recipes' directory is not sent back out
    out.mkdir()
    (out / "big.deb").write_bytes(b"x" * 1000)
    with tarfile.open(fileobj=io.BytesIO(pack(root / "b-stock.toml", (out,)).data)) as tar:
        assert not [n for n in tar.getnames() if n.startswith("out")]


@pytest.mark.parametrize(
    ("name", "kind", "link"),
    [
        ("../escaped", tarfile.REGTYPE, ""),
        ("/tmp/escaped", tarfile.REGTYPE, ""),
        ("ok/../../escaped", tarfile.REGTYPE, ""),
        ("link", tarfile.SYMTYPE, "../../etc"),
        ("link", tarfile.SYMTYPE, "/etc/shadow"),
        ("dev", tarfile.CHRTYPE, ""),
        ("hard", tarfile.LNKTYPE, "/etc/shadow"),
    ],
)
def test_a_hostile_bundle_cannot_write_outside(
    tmp_path: Path, name: str, kind: bytes, link: str
) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.addfile(tarfile.TarInfo("fine.txt"), io.BytesIO(b""))
        info = tarfile.TarInfo(name)
        info.type, info.linkname = kind, link
        tar.addfile(info, io.BytesIO(b""))
    with pytest.raises(UsageError, match="bundle member"):
        unpack(buffer.getvalue(), tmp_path / "dest")
    assert list((tmp_path / "dest").iterdir()) == []  # checked before anything is written


def test_the_cache_key_follows_recipe_and_options(tmp_path: Path) -> None:
    root = stack_dir(tmp_path)
    bundle = pack(root / "a-vecmath.toml")
    base = cache_key(bundle, Options())
    assert cache_key(bundle, Options()) == base
    assert cache_key(bundle, Options(layout="split")) != base
    assert cache_key(bundle, Options(levels=("x86-64-v3",))) != base
    assert cache_key(pack(root / "b-stock.toml"), Options()) != base


def test_a_worker_cannot_place_files_outside_the_output(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    outcome = Outcome("r.toml", True, "vecmath", "1.0", files={"../../evil": b"x"})
    with pytest.raises(DeepdebError, match="a worker sent a file named"):
        _place(outcome, tmp_path / "out", "vecmath", ran=True)
    assert not (tmp_path / "evil").exists()
    assert list((tmp_path / "out").iterdir()) == []
    good = Outcome("r.toml", True, "vecmath", "1.0", files={"a.deb": b"x", "logs/x.log": b"y"})
    assert _place(good, tmp_path / "out", "vecmath-r", ran=True).directory == "vecmath-r"
    assert sorted(p.name for p in (tmp_path / "out" / "vecmath-r").rglob("*")) == [
        "a.deb",
        "logs",
        "x.log",
    ]
    assert _place(Outcome("r.toml", True, "x"), tmp_path / "out", "../x", True).status == "failed"


def test_sources_prefer_the_workers_that_run_the_most_levels() -> None:
    """Heterogeneous CPUs: sources go to the workers of the highest level; with workers
    all alike there is no preference to give."""
    levels = {"tcp://a:1": "x86-64-v3", "tcp://b:1": "x86-64-v4", "tcp://c:1": "x86-64-v4"}
    assert preferred_workers(levels) == ["tcp://b:1", "tcp://c:1"]
    assert preferred_workers({"tcp://a:1": "x86-64-v3", "tcp://b:1": "x86-64-v3"}) is None
    assert preferred_workers({}) is None


def test_a_level_goes_to_the_workers_that_run_it() -> None:
    """Builds and tests of a level prefer the workers whose CPU runs it; a level none
    runs (built only when named explicitly) may go anywhere, as may one all run."""
    levels = {"tcp://a:1": "x86-64-v2", "tcp://b:1": "x86-64-v3", "tcp://c:1": "x86-64-v4"}
    assert able(levels, "x86-64-v3") == ["tcp://b:1", "tcp://c:1"]
    assert able(levels, "x86-64-v4") == ["tcp://c:1"]
    assert able(levels, "x86-64") is None
    assert able({"tcp://a:1": "x86-64-v2"}, "x86-64-v4") is None
    assert task_key("build", "zstd", "x86-64-v3", "ab" * 32) == (
        "deepdeb-build-zstd-x86-64-v3-abababababababab"
    )
    assert task_key("measure", "zstd", "", "ab" * 32) == "deepdeb-measure-zstd-abababababababab"


def test_two_recipes_of_one_source_get_a_directory_each() -> None:
    recipes = [Path("a/Stock_Build.toml"), Path("b/vecmath.toml"), Path("c/opus/recipe.toml")]
    names = _directories({0: "vecmath", 1: "vecmath", 2: "opus"}, recipes)
    assert names == {0: "vecmath-stock-build", 1: "vecmath-vecmath", 2: "opus"}


# --- a real cluster ----------------------------------------------------------------------


@dataclass
class Cluster:
    scheduler: str
    workers: dict[str, subprocess.Popen[bytes]]
    tmpdirs: dict[str, Path]
    base: Path

    def builds_started(self, name: str) -> int:
        """How many source builds the worker has started (each makes a scratch folder)."""
        logs = self.base / f"{name}.log"
        return logs.read_text(errors="replace").count("deepdeb: building") if logs.exists() else 0


def _spawn(cmd: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with open(log, "ab") as f:
        return subprocess.Popen(
            cmd, stdout=f, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    base = tmp_path_factory.mktemp("dask")
    file = base / "scheduler.json"
    env = {**os.environ, "DASK_DISTRIBUTED__WORKER__DAEMON": "False"}
    scheduler = _spawn(
        [str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", "0",
         "--no-dashboard", "--scheduler-file", str(file)],
        base / "scheduler.log", env,
    )  # fmt: skip
    procs = [scheduler]
    workers: dict[str, subprocess.Popen[bytes]] = {}
    tmpdirs: dict[str, Path] = {}
    try:
        for _ in range(300):
            if file.exists() and file.stat().st_size:
                break
            time.sleep(0.1)
        address = json.loads(file.read_text())["address"]
        for name in ("w1", "w2"):
            tmpdirs[name] = base / f"{name}-tmp"
            tmpdirs[name].mkdir()
            worker_env = {
                **env,
                "XDG_CACHE_HOME": str(base / f"{name}-cache"),
                "TMPDIR": str(tmpdirs[name]),
            }
            workers[name] = _spawn(
                [str(BIN / "dask"), "worker", address, "--name", name, "--nthreads", "1",
                 "--no-nanny", "--no-dashboard", "--local-directory", str(base / name)],
                base / f"{name}.log", worker_env,
            )  # fmt: skip
            procs.append(workers[name])
        _wait_for_workers(address, 2)
        yield Cluster(address, workers, tmpdirs, base)
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def _wait_for_workers(address: str, count: int) -> None:
    from dask.distributed import Client

    with Client(address, timeout="30s") as client:  # type: ignore[no-untyped-call]
        client.wait_for_workers(count, timeout=120)


def _deepdeb(*args: str | Path, cache: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "XDG_CACHE_HOME": str(cache), "COLUMNS": "400"}
    return subprocess.run(
        [str(BIN / "deepdeb"), *map(str, args)], capture_output=True, text=True, env=env
    )


def _debs(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.glob("*.deb"))}


@pytest.mark.slow
def test_a_stack_on_a_cluster_builds_what_single_builds_build(
    cluster: Cluster, tmp_path: Path
) -> None:
    root = stack_dir(tmp_path)
    out = tmp_path / "out"
    cache = tmp_path / "client-cache"
    proc = _deepdeb("build", root, "--out", out, "--scheduler", cluster.scheduler, cache=cache)
    assert proc.returncode == 1, proc.stdout + proc.stderr  # one source failed
    stack = json.loads((out / "stack.json").read_text())
    rows = {Path(r["recipe"]).name: r for r in stack["rows"]}
    assert [r["status"] for r in stack["rows"]] == ["ok", "ok", "failed"]
    assert stack["failed"] == 1 and "c-broken.toml" in proc.stdout
    assert "x86-64-v2 failed to build" in rows["c-broken.toml"]["error"] or (
        "failed to build" in rows["c-broken.toml"]["error"]
    )
    assert rows["a-vecmath.toml"]["kept_levels"] == ["x86-64-v2"]
    assert rows["b-stock.toml"]["kept_levels"] == []
    assert {r["worker"]["host"] for r in stack["rows"] if r["status"] == "ok"}
    assert sorted(stack["workers"].values()) == [host_cpu().level] * 2  # asked of each
    # Each good source is what a one-recipe build of it makes, byte for byte.
    single = build(root / "a-vecmath.toml", tmp_path / "single-a")
    stacked = out / "vecmath-a-vecmath"  # two recipes of one source: named apart
    assert _debs(stacked) == _debs(tmp_path / "single-a") != {}
    assert json.loads((stacked / "report.json").read_text())["shipped_levels"] == (
        single.shipped_levels
    )
    # The stock recipe builds the same source: its packages are the stock ones, unchanged.
    stock = json.loads((out / "vecmath-b-stock" / "report.json").read_text())
    assert stock["packages"] and all(p["stock"] for p in stock["packages"])
    # Every level is a task of its own: a build per level, one measurement of them all, a
    # test run only for the level that is kept (it was built with nocheck, measured, then
    # tested in its own tree, on the worker that built it), and the last stage.
    tasks = rows["a-vecmath.toml"]["tasks"]
    assert sorted((t["stage"], t["level"]) for t in tasks) == [
        ("build", "x86-64"),
        ("build", "x86-64-v2"),
        ("finish", ""),
        ("measure", "x86-64,x86-64-v2"),
        ("test", "x86-64-v2"),
    ]
    workers = {(t["stage"], t["level"]): t["worker"] for t in tasks}
    assert set(workers.values()) <= {"w1", "w2"}
    assert workers[("test", "x86-64-v2")] == workers[("build", "x86-64-v2")]
    stacked_report = json.loads((stacked / "report.json").read_text())
    levels = {lv["level"]: lv for lv in stacked_report["levels"]}
    assert levels["x86-64-v2"]["tests_run"] is True and levels["x86-64-v2"]["kept"]
    assert sorted((t["stage"], t["level"]) for t in rows["b-stock.toml"]["tasks"]) == [
        ("build", "x86-64"),
        ("finish", ""),
        ("measure", "x86-64"),
    ]  # a stock build: one level, nothing deferred
    logs = "".join((cluster.base / f"{n}.log").read_text() for n in cluster.workers)
    assert "deepdeb: building x86-64-v2 of" in logs and "deepdeb: testing x86-64-v2 of" in logs
    assert 'id="speedups-vecmath-a-vecmath"' in (out / "report.html").read_text()
    assert sorted(p.name for p in out.iterdir()) == [
        "report.html",
        "stack.json",
        "vecmath-a-vecmath",
        "vecmath-b-stock",
    ]


@pytest.mark.slow
def test_a_level_whose_tests_fail_in_its_task_is_dropped(cluster: Cluster, tmp_path: Path) -> None:
    """The graph decides as a one-recipe build does: v3 is measured faster, so its test
    task runs; its tests fail, v3 is dropped and the levels decided again; v2, not faster,
    never gets a test task."""
    root = tmp_path / "stack"
    root.mkdir()
    shutil.copytree(FIXTURES / "fmastrict-1.0", root / "fmastrict-1.0")
    shutil.copy(FIXTURES / "fmastrict.toml", root / "fmastrict.toml")
    out = tmp_path / "out"
    proc = _deepdeb("build", root, "--out", out, "--scheduler", cluster.scheduler,
                    cache=tmp_path / "client-cache")  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (row,) = json.loads((out / "stack.json").read_text())["rows"]
    assert row["kept_levels"] == []
    stages = sorted((t["stage"], t["level"]) for t in row["tasks"])
    assert [s for s in stages if s[0] == "build"] == [
        ("build", lv) for lv in ("x86-64", "x86-64-v2", "x86-64-v3")
    ]
    assert [s for s in stages if s[0].endswith("test")] == [("test", "x86-64-v3")]
    report = json.loads((out / "fmastrict" / "report.json").read_text())
    by = {r["level"]: r for r in report["levels"]}
    assert by["x86-64-v3"]["tests_passed"] is False and not by["x86-64-v3"]["kept"]
    assert by["x86-64-v2"]["tests_passed"] is None
    assert report["shipped_levels"] == ["x86-64"]
    assert "multiply-add was fused" in (out / "fmastrict" / "logs" / "x86-64-v3.log").read_text()


@pytest.mark.slow
def test_a_test_task_without_its_tree_builds_the_level_again(tmp_path: Path) -> None:
    """The stage tasks in this process: a level's tests run in the tree its build task
    left; when that tree is gone (its worker died), the level is built again first, and
    tested only if it is the very packages that were measured."""
    root = stack_dir(tmp_path)
    bundle = pack(root / "a-vecmath.toml")
    job = Job("0123456789abcdef" * 4, bundle.data, bundle.member, "a.toml", Options())
    try:
        plan = plan_task(job)
        assert plan.levels == ["x86-64", "x86-64-v2"] and plan.defer
        built = build_task(job, plan, "x86-64-v2")
        assert not built.variant.tests_run and any(n.endswith(".deb") for n in built.files)
        here = run_tests_task(job, plan, built, digest(built.files))
        assert not here.rebuilt and here.variant.tests_run and here.variant.tests_passed
        forget(job.key)  # the worker that held the tree is gone
        again = run_tests_task(job, plan, built, digest(built.files))
        assert again.rebuilt and again.variant.tests_passed and again.variant.tests_run
        forget(job.key)
        other = run_tests_task(job, plan, built, "not what was measured")
        assert other.rebuilt and other.variant.tests_passed is False
        assert "differ from those measured" in other.variant.failure
    finally:
        forget(job.key)


@pytest.mark.slow
def test_a_rerun_builds_nothing_that_did_not_change(cluster: Cluster, tmp_path: Path) -> None:
    """The first run on the embedded local cluster (the default), the rerun on the running
    one: the cache is the client's, so the rerun sends no task to any worker."""
    root = stack_dir(tmp_path)
    cache = tmp_path / "client-cache"
    (root / "c-broken.toml").unlink()
    first = _deepdeb("build", root, "--out", tmp_path / "o1", "--workers", "1", cache=cache)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "embedded local cluster" not in first.stdout  # the cluster's own address is named
    assert json.loads((tmp_path / "o1" / "stack.json").read_text())["scheduler"].startswith(
        "tcp://127.0.0.1:"
    )
    started = {name: cluster.builds_started(name) for name in cluster.workers}
    again = _deepdeb("build", root, "--out", tmp_path / "o2", "--scheduler", cluster.scheduler,
                     cache=cache)  # fmt: skip
    assert again.returncode == 0, again.stdout + again.stderr
    rows = json.loads((tmp_path / "o2" / "stack.json").read_text())["rows"]
    assert [r["ran"] for r in rows] == [False, False]
    assert {name: cluster.builds_started(name) for name in cluster.workers} == started
    assert again.stderr.count("not rebuilt") == 2
    for name in ("vecmath-a-vecmath", "vecmath-b-stock"):
        assert _debs(tmp_path / "o1" / name) == _debs(tmp_path / "o2" / name) != {}
    # A changed recipe is built again; the unchanged one is not.
    stock = root / "b-stock.toml"
    stock.write_text(stock.read_text() + '\n[package]\nversion_suffix = "+hwcaps2"\n')
    third = _deepdeb("build", root, "--out", tmp_path / "o3", "--scheduler", cluster.scheduler,
                     cache=cache)  # fmt: skip
    rows = json.loads((tmp_path / "o3" / "stack.json").read_text())["rows"]
    assert third.returncode == 0 and [r["ran"] for r in rows] == [False, True]


@pytest.mark.slow
def test_a_worker_killed_during_a_build_does_not_stop_the_stack(
    cluster: Cluster, tmp_path: Path
) -> None:
    root = stack_dir(tmp_path)
    (root / "c-broken.toml").unlink()
    (root / "b-stock.toml").unlink()
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "client-cache")}
    run = subprocess.Popen(
        [str(BIN / "deepdeb"), "build", str(root), "--out", str(tmp_path / "out"),
         "--scheduler", cluster.scheduler],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )  # fmt: skip
    before = {name: cluster.builds_started(name) for name in cluster.workers}
    victim = None
    for _ in range(600):
        started = [n for n in cluster.workers if cluster.builds_started(n) > before[n]]
        if started:
            victim = started[0]
            break
        time.sleep(0.1)
    assert victim is not None, "no worker started the build"
    time.sleep(3)  # well into the build
    os.killpg(cluster.workers[victim].pid, signal.SIGKILL)
    output, _ = run.communicate(timeout=900)
    assert run.returncode == 0, output
    (row,) = json.loads((tmp_path / "out" / "stack.json").read_text())["rows"]
    assert row["status"] == "ok" and row["kept_levels"] == ["x86-64-v2"]
    survivor = next(n for n in cluster.workers if n != victim)
    assert cluster.builds_started(survivor) > before[survivor]
