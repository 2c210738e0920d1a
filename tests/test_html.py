"""The stack's HTML report, opened in a real browser (Debian's chromium, headless)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from deepdeb.report.html import render_stack
from deepdeb.report.schema import StackReport, StackRow


def _level(level: str, speedup: float | None, kept: bool, median: float) -> dict[str, object]:
    return {
        "level": level,
        "build_seconds": 12.0,
        "built": True,
        "tests_passed": True,
        "measured": speedup is not None,
        "times_s": [median * f for f in (0.98, 1.0, 1.03)],
        "median_s": median,
        "speedup": speedup,
        "kept": kept,
        "reason": "baseline" if level == "x86-64" else "1.31x" if kept else "1.00x over v2",
    }


def stack(out: Path) -> StackReport:
    """Two built sources (one that gains, one that does not) and one that failed."""
    reports = {
        "vecmath": [
            _level("x86-64", 1.0, True, 0.2),
            _level("x86-64-v2", 1.1, False, 0.18),
            _level("x86-64-v3", 1.31, True, 0.153),
        ],
        "flat": [_level("x86-64", 1.0, True, 0.1), _level("x86-64-v3", 1.0, False, 0.1)],
    }
    for name, levels in reports.items():
        (out / name).mkdir(parents=True)
        report = {
            "isa": {"min_speedup": 1.05},
            "levels": levels,
            "packages": [{"file": f"lib{name}1_1.0_amd64.deb", "size": 9000, "hwcaps_files": []}],
        }
        (out / name / "report.json").write_text(json.dumps(report))
    rows = [
        StackRow("vecmath.toml", "ok", "vecmath", "1.0", kept_levels=["x86-64-v3"],
                 speedups={"x86-64-v2": 1.1, "x86-64-v3": 1.31}, package_bytes=9000,
                 directory="vecmath", worker={"level": "x86-64-v4"}),
        StackRow("flat.toml", "ok", "flat", "1.0", speedups={"x86-64-v3": 1.0},
                 package_bytes=9000, directory="flat"),
        StackRow("broken.toml", "failed", error="level x86-64 failed to build; <b>log</b>"),
    ]  # fmt: skip
    return StackReport(rows, 42.0, "tcp://127.0.0.1:8786")


def test_the_report_is_one_file_without_network(tmp_path: Path) -> None:
    page = render_stack(stack(tmp_path), tmp_path)
    assert page.count("<svg") == 3  # the stack's gains, and each measured source's levels
    # Nothing is fetched when it is opened: no scripts, stylesheets or images from outside
    # (the http:// names left are XML namespaces, identifiers only).
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", page)
    assert "<script" not in page and "<link" not in page
    assert "&lt;b&gt;log&lt;/b&gt;" in page  # the error is text, never markup


def _chromium() -> str:
    found = shutil.which("chromium")
    if found is None:
        pytest.fail("chromium is missing: scripts/setup installs it")
    return found


def test_the_report_renders_in_a_browser(tmp_path: Path) -> None:
    """Headless chromium: the plots are in the DOM it built, and its screenshot is not a
    blank page."""
    import matplotlib.image

    out = tmp_path / "out"
    out.mkdir()
    page = out / "report.html"
    page.write_text(render_stack(stack(out), out))
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--user-data-dir=" + str(tmp_path / "p"),
    ]
    dom = subprocess.run(
        [_chromium(), *flags, "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert 'id="stack-gains"' in dom.stdout and 'id="speedups-vecmath"' in dom.stdout
    assert dom.stdout.count("<svg") == 3 and 'id="summary"' in dom.stdout
    shot = tmp_path / "shot.png"
    subprocess.run(
        [_chromium(), *flags, f"--screenshot={shot}", "--window-size=1200,1600", page.as_uri()],
        capture_output=True, timeout=120, check=True,
    )  # fmt: skip
    pixels = matplotlib.image.imread(shot)
    assert pixels.shape[0] >= 1000 and pixels.std() > 0.05  # drawn, not one colour
    green = (abs(pixels[..., 0] - 0x2E / 255) < 0.02) & (abs(pixels[..., 1] - 0x7D / 255) < 0.02)
    assert green.sum() > 500  # the kept level's bar is on screen


def test_the_comparison_section_plots_and_tables_every_measured_build(tmp_path: Path) -> None:
    """benchmarks/stack.py's section: one bar per build and source, a table cell per build,
    a build that was not measured shown as such with its reason."""
    from deepdeb.report.html import comparison_section

    builds = {
        "stock": {"status": "ok", "speedup_vs_stock": 1.0},
        "flat-v3-O2": {"status": "ok", "speedup_vs_stock": 1.1},
        "flat-v3-O3": {"status": "ok", "speedup_vs_stock": 1.25},
        "deepdeb": {"status": "ok", "speedup_vs_stock": 1.3},
        "native-O3": {"status": "benchmark fails: Segmentation fault"},
    }
    results: list[dict[str, Any]] = [
        {"source": "vecmath", "status": "ok", "builds": builds},
        {"recipe": "broken.toml", "status": "failed", "error": "no"},
    ]
    summary = {"geomean_vs_stock": {"deepdeb": 1.3, "flat-v3-O2": 1.1}}
    section = comparison_section(results, summary)
    assert 'id="comparison"' in section and "<svg" in section
    assert "deepdeb 1.300x" in section and "broken.toml" not in section
    cells = re.findall(r'<td class="num" title="([^"]*)">([^<]*)</td>', section)
    assert cells == [
        ("ok", "1.10x"),
        ("ok", "1.25x"),
        ("ok", "1.30x"),
        ("benchmark fails: Segmentation fault", "-"),
    ]
    assert comparison_section(results[1:], {}) == ""
    html_file = tmp_path / "r.html"
    html_file.write_text(render_stack(stack(tmp_path), tmp_path, extra=section))
    page = html_file.read_text()  # ids are unique in the page
    assert page.count('id="comparison"') == page.count('id="comparison-table"') == 1
