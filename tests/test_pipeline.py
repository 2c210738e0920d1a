"""End to end: real .debs from the fixture source packages, inspected with dpkg-deb and run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import FIXTURES, build, contents, control, dpkg_install, vecmath_recipe

from deepdeb.assemble import debug_file
from deepdeb.elf import read_elf
from deepdeb.errors import (
    BenchmarkError,
    BuildError,
    FlagsNotAppliedError,
    MissingBuildDepsError,
    SourceError,
)
from deepdeb.isa import LOADER, host_cpu
from deepdeb.report import BuildReport
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
    # Every verdict follows from the measured medians (no level kept on faith).
    base = levels["x86-64"]["median_s"]
    best_below = 1.0
    for name in ("x86-64-v2", "x86-64-v3", "x86-64-v4"):
        lv = levels[name]
        assert lv["speedup"] == pytest.approx(base / lv["median_s"])
        assert lv["kept"] == (lv["speedup"] >= 1.05 and lv["speedup"] / best_below >= 1.05)
        if lv["kept"]:
            best_below = lv["speedup"]
    assert data["shipped_levels"] == [n for n, lv in levels.items() if lv["kept"]]
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
    root = tmp_path / "root"
    debs = [p.file for p in vecmath_fat.packages]
    proc = dpkg_install(debs, root)
    assert proc.returncode == 0, proc.stderr
    status = subprocess.run(
        ["dpkg", f"--root={root}", "-s", "libvecmath1"], capture_output=True, text=True
    ).stdout
    assert "Status: install ok installed" in status and "1.0-1+hwcaps1" in status
    # The installed benchmark program runs, and ld.so resolves the library per level.
    bench = root / "usr/bin/vecmath-bench"
    libdir = root / LIBDIR.lstrip("/")
    env = dict(os.environ, LD_LIBRARY_PATH=str(libdir))
    assert subprocess.run([bench, "10"], env=env, capture_output=True).returncode == 0
    kept = [lv for lv in vecmath_fat.shipped_levels if lv != "x86-64"]
    for mask_level, want in [("none", "x86-64"), *((lv, lv) for lv in kept)]:
        mask = (
            ":".join(k for k in kept if int(k[-1]) <= int(want[-1])) if want != "x86-64" else "none"
        )
        listing = subprocess.run(
            [
                LOADER,
                "--glibc-hwcaps-mask",
                mask or "none",
                "--library-path",
                libdir,
                "--list",
                bench,
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        line = next(li for li in listing.splitlines() if "libvecmath" in li)
        if want == "x86-64":
            assert "glibc-hwcaps" not in line, (mask_level, line)
        else:
            assert f"glibc-hwcaps/{want}/libvecmath.so.1" in line, (mask_level, line)


def test_loader_checks_in_report(vecmath_fat: BuildReport) -> None:
    checks = vecmath_fat.loader_checks
    assert checks and all(c.ok for c in checks)
    assert {c.method for c in checks} == {"tunables", "ld.so-mask"}
    host = host_cpu()
    for level in vecmath_fat.shipped_levels:
        if host.supports(level):
            assert any(c.level == level for c in checks)
    top = max(
        (lv for lv in vecmath_fat.shipped_levels if host.supports(lv)),
        key=lambda lv: int(lv[-1]) if lv != "x86-64" else 1,
    )
    picked = [c.loaded for c in checks if c.level == top]
    suffix = "" if top == "x86-64" else f"glibc-hwcaps/{top}/"
    assert all(p == f"{LIBDIR}/{suffix}libvecmath.so.1.0.0" for p in picked)


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
        proc = dpkg_install([p.file for p in report.packages], tmp_path / "root")
        assert proc.returncode == 0, proc.stderr
        lone = dpkg_install([v3], tmp_path / "root2")  # the add-on needs its base package
        assert lone.returncode != 0 and "libvecmath1" in lone.stderr
    finally:
        shutil.rmtree(report.work_dir)


# --- a package that does not gain --------------------------------------------------------


def test_non_gaining_package_is_shipped_unchanged(tmp_path: Path) -> None:
    report = build("chase.toml", tmp_path / "out", keep_work=True)
    assert report.work_dir is not None
    try:
        assert report.shipped_levels == ["x86-64"]
        for level in report.levels[1:]:
            assert not level.kept and level.speedup is not None and level.speedup < 1.05
            assert "below min_speedup" in level.reason or "over the level below" in level.reason
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
        build("noavx512.toml", out)
    message = str(info.value)
    assert message.startswith("level x86-64-v4 failed to build; full log: ")
    assert "does not support AVX-512 builds" in message  # the log's tail is shown
    log = Path(message.split("full log: ")[1].split("\n")[0])
    assert log.is_file() and "x86-64-v4" in str(log)
    assert sorted(p.name for p in out.iterdir()) == ["report.json"]  # untouched
    assert (out / "report.json").read_text() == '{"packages": []}'


def test_level_whose_tests_fail_is_dropped(tmp_path: Path) -> None:
    report = build("fmastrict.toml", tmp_path / "out")
    by = {r.level: r for r in report.levels}
    assert by["x86-64-v3"].tests_passed is False and not by["x86-64-v3"].kept
    assert "tests fail" in by["x86-64-v3"].reason
    assert by["x86-64-v2"].tests_passed is True and by["x86-64-v2"].measured
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
            "debhelper-compat (= 13)", "debhelper-compat (= 13), libdeepdeb-no-such-dev (>= 3)"
        )
    )
    recipe = tmp_path / "r.toml"
    recipe.write_text((FIXTURES / "vecmath.toml").read_text())
    with pytest.raises(MissingBuildDepsError) as info:
        build(recipe, tmp_path / "out")
    assert "libdeepdeb-no-such-dev (>= 3)" in str(info.value)
    assert "apt-get install libdeepdeb-no-such-dev" in str(info.value)


def test_failing_benchmark_names_the_level(tmp_path: Path) -> None:
    recipe = vecmath_recipe(
        tmp_path, "test $DEEPDEB_LEVEL != x86-64-v3 || { echo boom >&2; exit 3; }"
    )
    with pytest.raises(BenchmarkError, match=r"level x86-64-v3 \(exit 3\)(.|\n)*boom"):
        build(recipe, tmp_path / "out", levels=["x86-64-v3"])


def test_level_above_the_cpu_is_not_measured(tmp_path: Path) -> None:
    """A v3 CPU, simulated by masking AVX-512: v4 is built but neither measured nor shipped."""
    env = dict(os.environ, GLIBC_TUNABLES="glibc.cpu.hwcaps=-AVX512F")
    proc = subprocess.run(
        [
            *DEEPDEB,
            "build",
            FIXTURES / "vecmath.toml",
            "--out",
            tmp_path / "out",
            "--levels",
            "x86-64-v3,x86-64-v4",
            "--no-lintian",
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads((tmp_path / "out/report.json").read_text())
    assert data["host"]["level"] == "x86-64-v3"
    v4 = data["levels"][2]
    assert v4["level"] == "x86-64-v4" and not v4["measured"] and not v4["kept"]
    assert "cannot run here" in v4["reason"]
    assert data["levels"][1]["kept"]  # v3 still wins


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


def test_cli_cpu() -> None:
    proc = subprocess.run([*DEEPDEB, "cpu", "--json"], capture_output=True, text=True, check=True)
    data = json.loads(proc.stdout)
    assert data["level"] == host_cpu().level
    table = subprocess.run([*DEEPDEB, "cpu"], capture_output=True, text=True, check=True)
    assert f"x86-64 level:      {host_cpu().level}" in table.stdout
    assert "avx512f" in table.stdout.lower() or host_cpu().level != "x86-64-v4"


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


def test_two_builds_are_bit_identical(vecmath_fat: BuildReport, tmp_path: Path) -> None:
    """Same recipe, same inputs, another scratch directory: the same bytes."""
    again = build("vecmath.toml", tmp_path / "again")
    first = {p.file.name: p.sha256 for p in vecmath_fat.packages}
    second = {p.file.name: p.sha256 for p in again.packages}
    if again.shipped_levels != vecmath_fat.shipped_levels:
        pytest.fail(
            f"levels differ between runs: {vecmath_fat.shipped_levels} vs "
            f"{again.shipped_levels} (a measurement, not a reproducibility, issue)"
        )
    assert first == second
    assert all(sha256_file(p.file) == p.sha256 for p in again.packages)
