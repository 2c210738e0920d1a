"""End to end: real .debs from the fixture source packages, inspected with dpkg-deb and run."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import (
    FIXTURES,
    build,
    contents,
    control,
    expected_level,
    host_levels,
    in_root,
    installed_root,
    listed,
    vecmath_recipe,
)

from deepdeb.cpu.levels import BASELINE, LEVELS, host_cpu, level_features
from deepdeb.debian.elf import read_elf
from deepdeb.errors import (
    BenchmarkError,
    BuildError,
    FlagsNotAppliedError,
    MissingBuildDepsError,
    SourceError,
)
from deepdeb.isa.assemble import debug_file
from deepdeb.isa.measure import ALPHA, sign_test
from deepdeb.report.schema import BuildReport
from deepdeb.util import sha256_file

pytestmark = pytest.mark.slow
LIBDIR = "/usr/lib/x86_64-linux-gnu"
DEEPDEB = [sys.executable, "-m", "deepdeb"]


def out_dir(report: BuildReport) -> Path:
    return report.packages[0].file.parent


def by_name(report: BuildReport) -> dict[str, Path]:
    return {p.package: p.file for p in report.packages}


# --- the gaining fixture, fat layout ------------------------------------------------------


def test_gaining_fixture_keeps_v3_and_reports_measurements(vecmath_fat: BuildReport) -> None:
    data = json.loads((out_dir(vecmath_fat) / "report.json").read_text())
    levels = {lv["level"]: lv for lv in data["levels"]}
    assert list(levels) == ["x86-64", "x86-64-v2", "x86-64-v3", "x86-64-v4"]
    assert levels["x86-64"]["speedup"] == 1.0 and levels["x86-64"]["kept"]
    v3 = levels["x86-64-v3"]
    assert v3["kept"] and v3["speedup"] >= 1.05 and len(v3["times_s"]) == 5
    # Every verdict follows from the measured medians (no level kept on faith); a level
    # this CPU cannot run is not built by default, and says why.
    base = levels["x86-64"]["median_s"]
    best_below, below_times = 1.0, levels["x86-64"]["times_s"]
    for name in ("x86-64-v2", "x86-64-v3", "x86-64-v4"):
        lv = levels[name]
        if not host_cpu().supports(name):
            assert not lv["built"] and not lv["kept"] and lv["speedup"] is None
            assert lv["reason"].startswith("not built: ") and host_cpu().level in lv["reason"]
            continue
        assert lv["speedup"] == pytest.approx(base / lv["median_s"])
        confirmed = sign_test(below_times, lv["times_s"])[1] <= ALPHA  # by the paired rounds
        assert lv["kept"] == (
            lv["speedup"] >= 1.05 and lv["speedup"] / best_below >= 1.05 and confirmed
        )
        if lv["kept"]:
            best_below, below_times = lv["speedup"], lv["times_s"]
    assert data["shipped_levels"] == [n for n, lv in levels.items() if lv["kept"]]
    for lv in levels.values():  # where the time went, per level
        if lv["built"]:
            assert 0 <= lv["test_seconds"] <= lv["build_seconds"]
        if lv["measured"]:
            assert lv["measure_seconds"] + 0.05 >= sum(lv["times_s"]) > 0  # warm-up too
    assert {p["file"] for p in data["packages"]} == {
        p.name for p in out_dir(vecmath_fat).glob("*.deb")
    }
    assert all(
        p["size"] == (out_dir(vecmath_fat) / p["file"]).stat().st_size for p in data["packages"]
    )
    assert data["lintian"]["ran"] and data["lintian"]["errors"] == []
    assert (data["licence"]["area"], data["licence"]["redistributable"]) == ("main", True)
    assert all(p["area"] == "main" and p["redistributable"] for p in data["packages"])


def test_fat_package_layout_and_control(vecmath_fat: BuildReport) -> None:
    debs = by_name(vecmath_fat)
    kept = [lv for lv in vecmath_fat.shipped_levels if lv != "x86-64"]
    lib = debs["libvecmath1"]
    files = contents(lib)
    assert f"{LIBDIR}/libvecmath.so.1.0.0" in files  # the baseline stays in place
    for level in kept:
        assert f"{LIBDIR}/glibc-hwcaps/{level}/libvecmath.so.1.0.0" in files
        assert f"{LIBDIR}/glibc-hwcaps/{level}/libvecmath.so.1" in files  # soname link
    dropped = {"x86-64-v2", "x86-64-v3", "x86-64-v4"} - set(kept)
    assert not any(f"glibc-hwcaps/{lv}/" in f for lv in dropped for f in files)
    fields = control(lib)
    assert fields["Version"] == "1.0-1+hwcaps1"
    assert fields["Source"] == "vecmath (1.0-1)"
    assert "libc6 (>= 2.33)" in fields["Depends"]
    dev = control(debs["libvecmath-dev"])
    assert "libvecmath1 (= 1.0-1+hwcaps1)" in dev["Depends"]
    assert "glibc-hwcaps" not in " ".join(contents(debs["vecmath-bench"]))


def test_fat_package_metadata_is_consistent(vecmath_fat: BuildReport, tmp_path: Path) -> None:
    lib = by_name(vecmath_fat)["libvecmath1"]
    subprocess.run(["dpkg-deb", "-R", lib, tmp_path / "t"], check=True)
    md5sums = (tmp_path / "t/DEBIAN/md5sums").read_text().splitlines()
    listed = {line.split("  ", 1)[1] for line in md5sums}
    regular = {
        p.relative_to(tmp_path / "t").as_posix()
        for p in (tmp_path / "t").rglob("*")
        if p.is_file() and not p.is_symlink() and "DEBIAN" not in p.parts
    }
    assert listed == regular
    check = subprocess.run(
        ["md5sum", "-c", "--quiet", tmp_path / "t/DEBIAN/md5sums"],
        cwd=tmp_path / "t",
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stdout
    sizes = sum(
        (p.stat().st_size + 1023) // 1024
        for p in (tmp_path / "t").rglob("*")
        if "DEBIAN" not in p.parts and p.is_file() and not p.is_symlink()
    )
    others = sum(
        1
        for p in (tmp_path / "t").rglob("*")
        if "DEBIAN" not in p.parts and (p.is_dir() or p.is_symlink())
    )
    assert int(control(lib)["Installed-Size"]) == sizes + others


def test_no_isa_marker_outside_hwcaps(vecmath_fat: BuildReport, tmp_path: Path) -> None:
    for package in vecmath_fat.packages:
        root = tmp_path / package.package
        subprocess.run(["dpkg-deb", "-x", package.file, root], check=True)
        for path in root.rglob("*.so*"):
            if path.is_symlink():
                continue
            notes = subprocess.run(["readelf", "-n", path], capture_output=True, text=True).stdout
            level_dir = path.parent.name if path.parent.parent.name == "glibc-hwcaps" else None
            if level_dir:
                assert "x86 ISA needed: x86-64-baseline" in notes and level_dir in notes
            else:
                assert "x86-64-v" not in notes, path


def test_dpkg_installs_fat_packages_and_loader_picks_levels(
    vecmath_fat: BuildReport, tmp_path: Path
) -> None:
    """Installed by apt in a fresh bookworm root (maintainer scripts and triggers run), the
    program loads the variant of each level, found by the loader on its own."""
    root = installed_root([p.file for p in vecmath_fat.packages], tmp_path / "root")
    status = in_root(root, "dpkg-query", "-W", "libvecmath1")
    assert status.strip() == "libvecmath1:amd64\t1.0-1+hwcaps1"
    assert in_root(root, "vecmath-bench", "10") is not None  # the installed program runs
    kept = [lv for lv in vecmath_fat.shipped_levels if lv != "x86-64"]
    for level in host_levels():
        want = expected_level(kept, level)
        got = listed(root, "/usr/bin/vecmath-bench", "libvecmath.so.1", level)
        if want == "x86-64":
            assert got == f"{LIBDIR}/libvecmath.so.1.0.0", level
        else:
            assert got == f"{LIBDIR}/glibc-hwcaps/{want}/libvecmath.so.1.0.0", level


def test_loader_checks_in_report(vecmath_fat: BuildReport) -> None:
    checks = vecmath_fat.loader_checks
    assert checks and all(c.ok for c in checks)
    assert {c.method for c in checks} == {"tunables", "ld.so-mask"}
    assert {c.level for c in checks} == set(host_levels())
    kept = [lv for lv in vecmath_fat.shipped_levels if lv != "x86-64"]
    for check in checks:
        want = expected_level(kept, check.level)
        suffix = "" if want == "x86-64" else f"glibc-hwcaps/{want}/"
        assert check.loaded == f"{LIBDIR}/{suffix}libvecmath.so.1.0.0"
    for level in LEVELS:
        if not host_cpu().supports(level):
            assert any(n.startswith(f"{level}: not checked") for n in vecmath_fat.loader_notes)


# --- split layout -------------------------------------------------------------------------


def test_split_layout(tmp_path: Path) -> None:
    report = build(
        "vecmath.toml",
        tmp_path / "out",
        layout="split",
        levels=["x86-64-v3", "x86-64-v4"],
        keep_work=True,
    )
    assert report.work_dir is not None
    try:
        debs = by_name(report)
        stock_dir = report.work_dir / "builds" / "x86-64"
        for name in ("libvecmath1", "libvecmath-dev", "vecmath-bench"):
            assert debs[name].name.endswith("_1.0-1_amd64.deb")
            assert sha256_file(debs[name]) == sha256_file(stock_dir / debs[name].name)
        addons = [p for p in report.packages if not p.stock]
        kept = [lv for lv in report.shipped_levels if lv != "x86-64"]
        assert "x86-64-v3" in kept
        assert sorted(p.package for p in addons) == sorted(f"libvecmath1-{lv}" for lv in kept)
        v3 = debs["libvecmath1-x86-64-v3"]
        fields = control(v3)
        assert fields["Depends"] == "libvecmath1 (= 1.0-1), libc6 (>= 2.33)"
        assert fields["Version"] == "1.0-1+hwcaps1"
        files = [f for f in contents(v3) if not f.endswith("/")]
        assert sorted(files) == [
            f"{LIBDIR}/glibc-hwcaps/x86-64-v3/libvecmath.so.1",
            f"{LIBDIR}/glibc-hwcaps/x86-64-v3/libvecmath.so.1.0.0",
            "/usr/share/doc/libvecmath1-x86-64-v3",
        ]
        root = installed_root([p.file for p in report.packages], tmp_path / "root")
        if host_cpu().supports("x86-64-v3"):
            got = listed(root, "/usr/bin/vecmath-bench", "libvecmath.so.1", "x86-64-v3")
            assert got == f"{LIBDIR}/glibc-hwcaps/x86-64-v3/libvecmath.so.1.0.0"
        empty = tmp_path / "empty"  # a dpkg database with nothing installed
        for sub in ("info", "updates", "triggers"):
            (empty / "var/lib/dpkg" / sub).mkdir(parents=True)
        (empty / "var/lib/dpkg/status").touch()
        lone = subprocess.run(  # the add-on needs its base package
            ["dpkg", f"--root={empty}", "--force-script-chrootless", "-i", v3],
            capture_output=True,
            text=True,
        )
        assert lone.returncode != 0 and "depends on libvecmath1 (= 1.0-1)" in lone.stderr
    finally:
        shutil.rmtree(report.work_dir)


# --- a package that does not gain --------------------------------------------------------


def test_non_gaining_package_is_shipped_unchanged(tmp_path: Path) -> None:
    report = build("chase.toml", tmp_path / "out", keep_work=True)
    assert report.work_dir is not None
    try:
        assert report.shipped_levels == ["x86-64"]
        for level in report.levels[1:]:
            assert not level.kept
            if not host_cpu().supports(level.level):
                continue
            # a latency-bound chase gains nothing: a median that noise lifts over 1.05 is
            # not confirmed by the rounds (sign test), so it is not kept either
            assert level.speedup is not None
            assert any(
                why in level.reason
                for why in ("below min_speedup", "over the level below", "beyond the noise")
            ), level.reason
        stock_dir = report.work_dir / "builds" / "x86-64"
        assert report.packages and all(p.stock for p in report.packages)
        for package in report.packages:
            assert sha256_file(package.file) == sha256_file(stock_dir / package.file.name)
    finally:
        shutil.rmtree(report.work_dir)


# --- failures -----------------------------------------------------------------------------


def test_level_that_fails_to_build(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.json").write_text('{"packages": []}')  # an earlier run's result
    with pytest.raises(BuildError) as info:
        build("nosse42.toml", out)
    message = str(info.value)
    assert message.startswith("level x86-64-v2 failed to build; full log: ")
    assert "does not support SSE4.2 builds" in message  # the log's tail is shown
    log = Path(message.split("full log: ")[1].split("\n")[0])
    assert log.is_file() and "x86-64-v2" in str(log)
    # the other builds were stopped, their sandboxes (PID namespaces) included
    work = log.parent.parent.parent
    time.sleep(0.5)
    left = subprocess.run(["pgrep", "-f", str(work)], capture_output=True, text=True)
    assert left.stdout == "", f"processes of the stopped builds are still running: {left.stdout}"
    assert sorted(p.name for p in out.iterdir()) == ["report.json"]  # untouched
    assert (out / "report.json").read_text() == '{"packages": []}'


def test_a_failed_level_stops_the_running_builds_whole(tmp_path: Path) -> None:
    """v2 fails while the baseline is still in a long step: the baseline's sandbox, its PID
    namespace and everything in it, is stopped; nothing is left running."""
    tree = tmp_path / "nosse42-1.0"
    shutil.copytree(FIXTURES / "nosse42-1.0", tree)
    with open(tree / "debian/rules", "a") as rules:
        rules.write(
            "\noverride_dh_auto_configure:\nifeq (,$(DEB_CFLAGS_APPEND))\n\tsleep 120\nendif\n"
        )
    shutil.copyfile(FIXTURES / "nosse42.toml", tmp_path / "r.toml")
    start = time.monotonic()
    with pytest.raises(BuildError, match="level x86-64-v2 failed to build"):
        build(tmp_path / "r.toml", tmp_path / "out", levels=["x86-64-v2"])
    assert time.monotonic() - start < 60  # it did not wait for the baseline's step
    time.sleep(0.5)
    left = subprocess.run(["pgrep", "-f", "deepdeb-nosse42-"], capture_output=True, text=True)
    assert left.stdout == "", "processes of the stopped build are still running"


def test_level_whose_tests_fail_is_dropped(tmp_path: Path) -> None:
    """v3 is measured faster, so its deferred tests run, fail and drop it; v2, not faster,
    never runs its tests; the baseline always does."""
    report = build("fmastrict.toml", tmp_path / "out")
    by = {r.level: r for r in report.levels}
    assert by["x86-64-v3"].measured and (by["x86-64-v3"].speedup or 0) > 1.3
    assert by["x86-64-v3"].tests_passed is False and not by["x86-64-v3"].kept
    assert "tests fail" in by["x86-64-v3"].reason
    assert by["x86-64-v2"].measured and not by["x86-64-v2"].kept
    assert by["x86-64-v2"].tests_passed is None and "min_speedup" in by["x86-64-v2"].reason
    assert report.build["x86-64-v2"]["tests_run"] is False
    assert report.build["x86-64-v3"]["tests_run"] is True
    assert report.build["x86-64-v3"]["test_seconds"] > 0
    assert report.shipped_levels == [BASELINE]
    log = (out_dir(report) / "logs" / "x86-64-v3.log").read_text()
    assert "multiply-add was fused" in log
    assert "multiply-add was fused" in report.build["x86-64-v3"]["tests_log_tail"]


def test_build_system_ignoring_flags_is_caught(tmp_path: Path) -> None:
    with pytest.raises(FlagsNotAppliedError, match=r"libownflags\.so\.1 \(ISA needed: x86-64\)"):
        build("ownflags.toml", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_missing_build_dependency(tmp_path: Path) -> None:
    tree = tmp_path / "vecmath-1.0"
    shutil.copytree(FIXTURES / "vecmath-1.0", tree)
    ctl = tree / "debian/control"
    ctl.write_text(
        ctl.read_text().replace(
            "debhelper-compat (= 13)",
            "debhelper-compat (= 13), libdeepdeb-no-such-dev (>= 3), deepdeb-no-such-tool",
        )
    )
    recipe = tmp_path / "r.toml"
    recipe.write_text((FIXTURES / "vecmath.toml").read_text())
    with pytest.raises(MissingBuildDepsError) as info:
        build(recipe, tmp_path / "out")
    assert "libdeepdeb-no-such-dev (>= 3)" in str(info.value)
    # dpkg-checkbuilddeps separates them with spaces: both are offered, without versions
    assert "apt-get install libdeepdeb-no-such-dev deepdeb-no-such-tool)" in str(info.value)


def test_a_level_whose_benchmark_crashes_is_dropped_and_named(tmp_path: Path) -> None:
    """A level whose benchmark dies where the baseline's does not (libvorbis at v4 dies
    of SIGSEGV) is dropped with the error; the source still ships its baseline."""
    recipe = vecmath_recipe(
        tmp_path, "test $DEEPDEB_LEVEL != x86-64-v2 || { echo boom >&2; kill -SEGV $$; }"
    )
    report = build(recipe, tmp_path / "out", levels=["x86-64-v2"])
    v2 = next(r for r in report.levels if r.level == "x86-64-v2")
    assert not v2.kept and not v2.measured and v2.times == []
    failed = r"dropped: its benchmark failed; .*level x86-64-v2 \(exit 139: SIGSEGV\)"
    assert re.search(failed, v2.reason)
    assert "boom" in v2.reason
    assert report.shipped_levels == ["x86-64"]
    assert any(n.startswith("x86-64-v2: benchmark command failed") for n in report.notes)


# v2 runs twice as fast as the baseline, but its first two timed runs are the slowest:
# 3 wins of 5 is undecided, so 10 more rounds run, and 13 of 15 keep it.
NOISY_START = (
    'n=$(cat "$TMPDIR/n-$DEEPDEB_LEVEL" 2>/dev/null || echo 0); '
    'echo $((n + 1)) > "$TMPDIR/n-$DEEPDEB_LEVEL"; '
    "if [ $DEEPDEB_LEVEL = x86-64 ]; then sleep 0.2; "
    "elif [ $n -ge 1 ] && [ $n -le 2 ]; then sleep 0.3; else sleep 0.1; fi"
)


def test_an_undecided_level_gets_more_rounds_and_is_decided_on_all(tmp_path: Path) -> None:
    report = build(vecmath_recipe(tmp_path, NOISY_START), tmp_path / "out", levels=["x86-64-v2"])
    base, v2 = report.levels
    assert len(base.times) == len(v2.times) == 15  # repeat 5, then up to 3 x 5, paired
    assert v2.kept and v2.faster_rounds == 13 and v2.p_value is not None
    assert v2.p_value <= 0.025
    assert any("10 more rounds run, decided on 15 at p <= 0.025" in n for n in report.notes)
    # with max_repeat = repeat, the same start leaves it undecided: not kept
    (tmp_path / "once").mkdir()
    recipe = vecmath_recipe(tmp_path / "once", NOISY_START)
    recipe.write_text(recipe.read_text().replace("repeat = 5", "repeat = 5\nmax_repeat = 5"))
    once = build(recipe, tmp_path / "out-once", levels=["x86-64-v2"])
    assert len(once.levels[1].times) == 5 and not once.levels[1].kept
    assert "in only 3 of 5 rounds" in once.levels[1].reason


def test_a_failing_baseline_benchmark_stops_the_build(tmp_path: Path) -> None:
    recipe = vecmath_recipe(tmp_path, "test $DEEPDEB_LEVEL != x86-64 || { echo boom >&2; exit 3; }")
    with pytest.raises(BenchmarkError, match=r"level x86-64 \(exit 3\)(.|\n)*boom"):
        build(recipe, tmp_path / "out", levels=["x86-64-v2"])


def test_levels_above_the_host_are_not_built_unless_named(tmp_path: Path) -> None:
    """On a host treated as x86-64-v2 (any CPU can be), v3 and v4 are not built and the
    report says why; named with --levels, v3 is built but neither measured nor shipped."""
    env = dict(os.environ, DEEPDEB_HOST_LEVEL="x86-64-v2")
    cmd: list[str | Path] = [
        *DEEPDEB,
        "build",
        FIXTURES / "vecmath.toml",
        "--out",
        tmp_path / "out",
    ]
    proc = subprocess.run([*cmd, "--no-lintian"], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    data = json.loads((tmp_path / "out/report.json").read_text())
    assert data["host"]["level"] == "x86-64-v2"
    assert data["host"]["capped_by"] == "DEEPDEB_HOST_LEVEL"
    levels = {lv["level"]: lv for lv in data["levels"]}
    for name in ("x86-64-v3", "x86-64-v4"):
        assert not levels[name]["built"] and not levels[name]["kept"]
        assert levels[name]["reason"].startswith("not built: ")
        assert "--levels" in levels[name]["reason"]
    assert all("build_seconds" not in levels[n] for n in ("x86-64-v3", "x86-64-v4"))
    assert levels["x86-64-v2"]["kept"] and data["shipped_levels"] == ["x86-64", "x86-64-v2"]
    assert "not built: " in proc.stdout  # the table says it too

    named: list[str | Path] = [*cmd, "--levels", "x86-64-v2,x86-64-v3", "--no-lintian"]
    proc = subprocess.run(named, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    data = json.loads((tmp_path / "out/report.json").read_text())
    v3 = data["levels"][2]
    assert v3["level"] == "x86-64-v3" and "build_seconds" in v3  # built this time
    assert not v3["measured"] and not v3["kept"] and v3["speedup"] is None
    assert "DEEPDEB_HOST_LEVEL" in v3["reason"]
    assert data["shipped_levels"] == ["x86-64", "x86-64-v2"]


def test_a_level_whose_configure_dies_of_sigill_is_reported_not_fatal(tmp_path: Path) -> None:
    """configure runs a program built for v4 and it dies of an illegal instruction, as on a
    CPU without AVX-512: named explicitly above the host, the level is reported, v3 ships."""
    env = dict(os.environ, DEEPDEB_HOST_LEVEL="x86-64-v3")
    cmd: list[str | Path] = [*DEEPDEB, "build", FIXTURES / "sigill.toml", "--out", tmp_path / "out"]
    proc = subprocess.run(
        [*cmd, "--no-lintian", "--levels", "x86-64-v3,x86-64-v4"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads((tmp_path / "out/report.json").read_text())
    v4 = data["levels"][2]
    assert v4["level"] == "x86-64-v4" and not v4["built"] and not v4["kept"]
    assert v4["reason"].startswith("the build died of an illegal instruction (SIGILL)")
    assert "cannot run C compiled programs" in v4["reason"] and "not fatal" in v4["reason"]
    assert data["shipped_levels"] == ["x86-64", "x86-64-v3"]
    assert (tmp_path / "out/logs/x86-64-v4.log").is_file()


def test_tests_dying_of_sigill_are_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same program run by the test suite (configure skipped by a build profile): the
    level is dropped because its tests died of SIGILL, and the report says so."""
    monkeypatch.setenv("DEB_BUILD_PROFILES", "trap-in-tests")
    monkeypatch.setenv("DEEPDEB_HOST_LEVEL", "x86-64-v3")
    host_cpu.cache_clear()
    try:
        report = build("sigill.toml", tmp_path / "out", levels=["x86-64-v3", "x86-64-v4"])
    finally:
        host_cpu.cache_clear()
    v4 = report.levels[2]
    assert v4.built and not v4.tests_passed and not v4.kept
    assert v4.reason.startswith("the package's tests died of an illegal instruction (SIGILL)")
    assert "Illegal instruction" in report.build["x86-64-v4"]["tests_log_tail"]


def test_debian_source_errors(tmp_path: Path) -> None:
    recipe = tmp_path / "r.toml"
    recipe.write_text(
        (FIXTURES / "vecmath.toml")
        .read_text()
        .replace('path = "vecmath-1.0"', 'debian = "deepdeb-no-such-source"')
    )
    with pytest.raises(SourceError, match="unknown source package deepdeb-no-such-source"):
        build(recipe, tmp_path / "out")
    # An apt configuration without deb-src entries.
    (tmp_path / "apt.conf").write_text(
        f'Dir::Etc::SourceList "/dev/null"; Dir::Etc::SourceParts "{tmp_path}/none";\n'
        f'Dir::State::Lists "{tmp_path}/lists";\n'
    )
    (tmp_path / "lists/partial").mkdir(parents=True)
    proc = subprocess.run(
        [*DEEPDEB, "build", recipe, "--out", tmp_path / "out"],
        env=dict(os.environ, APT_CONFIG=str(tmp_path / "apt.conf")),
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1
    assert "apt has no deb-src entries" in proc.stderr


def _cpuinfo_flags() -> set[str]:
    """The kernel's CPU flags, under archspec's names (the kernel calls SSE3 "pni")."""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            return flags | ({"sse3"} if "pni" in flags else set())
    return set()


def test_cli_cpu_reports_what_this_cpu_has() -> None:
    proc = subprocess.run([*DEEPDEB, "cpu", "--json"], capture_output=True, text=True, check=True)
    data = json.loads(proc.stdout)
    assert data["level"] == host_cpu().level
    flags = _cpuinfo_flags()
    # the features are the CPU's own (archspec reads them from /proc/cpuinfo)
    assert ("avx512f" in data["features"]) == ("avx512f" in flags)
    assert ("avx2" in data["features"]) == ("avx2" in flags)
    table = subprocess.run(
        [*DEEPDEB, "cpu"],
        capture_output=True,
        text=True,
        check=True,
        env=dict(os.environ, COLUMNS="250"),
    )
    assert f"x86-64 level:      {host_cpu().level}" in table.stdout
    for level in LEVELS[1:]:
        row = next(li for li in table.stdout.splitlines() if li.startswith(f"│ {level} "))
        cells = [c.strip() for c in row.strip("│").split("│")]
        assert (cells[1] == "yes") == host_cpu().supports(level), row
        assert cells[2].split() == list(level_features(level))
        missing = [f for f in level_features(level) if f not in flags]
        assert cells[3] == (" ".join(missing) or "-"), row  # what this CPU really lacks


def test_cli_reports_recipe_errors(tmp_path: Path) -> None:
    recipe = tmp_path / "r.toml"
    recipe.write_text('[source]\npath = "x"\n[isa]\nlevels = ["x86-64-v3"]\nspeed = 2\n')
    proc = subprocess.run(
        [*DEEPDEB, "build", recipe, "--out", tmp_path / "o"], capture_output=True, text=True
    )
    assert proc.returncode == 1
    assert f"{recipe}:5: [isa] unknown key 'speed'" in proc.stderr


def test_fat_dbgsym_carries_the_variants_debug_symbols(
    vecmath_fat: BuildReport, tmp_path: Path
) -> None:
    debs = by_name(vecmath_fat)
    subprocess.run(["dpkg-deb", "-x", debs["libvecmath1"], tmp_path / "lib"], check=True)
    dbgsym = debs["libvecmath1-dbgsym"]
    listed = contents(dbgsym)
    ids = control(dbgsym)["Build-Ids"].split()
    assert control(dbgsym)["Depends"] == "libvecmath1 (= 1.0-1+hwcaps1)"
    variant_libs = list((tmp_path / "lib").glob("usr/lib/*/glibc-hwcaps/*/libvecmath.so.1.0.0"))
    assert len(variant_libs) == len(vecmath_fat.shipped_levels) - 1
    for lib in [*variant_libs, *(tmp_path / "lib").glob("usr/lib/*/libvecmath.so.1.0.0")]:
        build_id = read_elf(lib).build_id
        assert build_id in ids
        assert "/" + debug_file(build_id) in listed


def test_two_builds_are_bit_identical(quick_build: BuildReport, tmp_path: Path) -> None:
    """Same recipe, same inputs, another scratch directory: the same bytes. (The level is
    x86-64-v2, whose 4-5x gain keeps every run's decision the same: with levels at the
    edge of min_speedup, as v4 can be next to v3, two runs may decide differently.)"""
    again = build("vecmath.toml", tmp_path / "again", levels=["x86-64-v2"])
    first = {p.file.name: p.sha256 for p in quick_build.packages}
    second = {p.file.name: p.sha256 for p in again.packages}
    if again.shipped_levels != quick_build.shipped_levels:
        pytest.fail(
            f"levels differ between runs: {quick_build.shipped_levels} vs "
            f"{again.shipped_levels} (a measurement, not a reproducibility, issue)"
        )
    assert first == second
    assert all(sha256_file(p.file) == p.sha256 for p in again.packages)
