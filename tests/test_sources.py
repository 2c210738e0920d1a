"""Any Debian source: a stock build from a recipe with only [source], a source whose
packages are all Architecture: all, and the fast whole-pipeline build."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import build, contents, host_levels, in_root, installed_root

from deepdeb.archive import publish
from deepdeb.report.schema import BuildReport
from deepdeb.util import sha256_file

LIBDIR = "/usr/lib/x86_64-linux-gnu"


def test_a_source_alone_is_a_stock_build_verified_and_publishable(tmp_path: Path) -> None:
    report = build("stock.toml", tmp_path / "out", keep_work=True)
    assert report.work_dir is not None
    data = json.loads((tmp_path / "out/report.json").read_text())
    assert [lv["level"] for lv in data["levels"]] == ["x86-64"]
    assert data["benchmark"] is None and data["shipped_levels"] == ["x86-64"]
    assert any(n.startswith("stock build: the recipe has no [isa]") for n in data["notes"])
    assert "build_seconds" in data["levels"][0]  # one dpkg-buildpackage, nothing else
    stock_dir = report.work_dir / "builds" / "x86-64"
    for package in report.packages:
        assert package.stock and package.version == "1.0-1"
        assert sha256_file(package.file) == sha256_file(stock_dir / package.file.name)
    # checked where users run it: installed by apt, the loader loads the one library
    assert {c.level for c in report.loader_checks} == set(host_levels())
    assert all(c.ok and c.loaded == f"{LIBDIR}/libvecmath.so.1.0.0" for c in report.loader_checks)
    assert data["licence"]["area"] == "main" and data["lintian"]["errors"] == []
    result = publish.publish([tmp_path / "out"], tmp_path / "repo")
    assert sorted(result.added) == sorted(p.file.name for p in report.packages)


def test_the_fast_pipeline_measures_assembles_and_verifies(quick_build: BuildReport) -> None:
    """The whole ISA pipeline on one level every host runs: built, tested, measured,
    assembled, installed in a bookworm root and checked there, lintian-clean."""
    by = {r.level: r for r in quick_build.levels}
    assert list(by) == ["x86-64", "x86-64-v2"]
    assert by["x86-64-v2"].measured and by["x86-64-v2"].kept  # 4-5x on any x86-64 CPU
    lib = next(p for p in quick_build.packages if p.package == "libvecmath1")
    assert f"{LIBDIR}/glibc-hwcaps/x86-64-v2/libvecmath.so.1.0.0" in contents(lib.file)
    checks = {(c.level, c.method): c.loaded for c in quick_build.loader_checks}
    for level in host_levels():
        want = "libvecmath.so.1.0.0" if level == "x86-64" else "glibc-hwcaps/x86-64-v2/"
        assert all(want in checks[(level, m)] for m in ("tunables", "ld.so-mask"))
    assert quick_build.lintian is not None and quick_build.lintian.errors == []


@pytest.mark.slow
def test_a_source_with_only_architecture_all_packages(tmp_path: Path) -> None:
    report = build("allonly.toml", tmp_path / "out")
    data = json.loads((tmp_path / "out/report.json").read_text())
    levels = {lv["level"]: lv for lv in data["levels"]}
    assert levels["x86-64"]["kept"]
    for name in ("x86-64-v2", "x86-64-v3", "x86-64-v4"):
        assert not levels[name]["built"] and not levels[name]["kept"]
        assert "only Architecture: all packages" in levels[name]["reason"]
    (package,) = report.packages
    assert package.stock and package.architecture == "all"
    assert package.file.name == "allonly_1.0-1_all.deb"
    assert data["buildinfo"] == "allonly_1.0-1_all.deepdeb.buildinfo"
    root = installed_root([package.file], tmp_path / "root")
    assert in_root(root, "allonly-hello").strip() == "hello from allonly"
