"""The stack's HTML report: one self-contained file (inline SVG plots drawn by matplotlib,
no script, no network) that a maintainer opens to see, per source, what each level gained,
what was kept and why, what it costs in package size and in build time; and, for the
whole stack, how the gains are distributed.
"""

from __future__ import annotations

import html
import io
import json
import statistics
from pathlib import Path
from typing import Any

from deepdeb.report.schema import StackReport, StackRow

_STYLE = """
body { font-family: sans-serif; margin: 2em auto; max-width: 72em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; }
td.num { text-align: right; }
.ok { color: #1a7f37; } .failed { color: #c62828; }
figure { margin: 1em 0; } pre { white-space: pre-wrap; background: #f6f6f6; padding: 0.5em; }
"""
_KEPT, _DROPPED = "#2e7d32", "#9e9e9e"


def render_stack(report: StackReport, out: Path, extra: str = "") -> str:
    """The report of a stack run whose sources' reports lie in ``out/<directory>/``;
    ``extra`` (HTML, e.g. :func:`comparison_section`) goes after the stack's summary."""
    sources = [(row, _read_report(out, row)) for row in report.rows]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>deepdeb stack: {len(report.rows)} sources</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>deepdeb stack: {len(report.rows)} sources, {len(report.failed)} failed</h1>",
        f"<p>Scheduler: {html.escape(report.scheduler)}; wall time {report.seconds:.0f} s."
        f"{_workers(report.workers)}</p>",
        _summary_table(report.rows),
        _gains_figure([(row, data) for row, data in sources if data]),
        extra,
    ]
    for row, data in sources:
        parts.append(_source_section(row, data))
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _workers(workers: dict[str, str]) -> str:
    """The workers that built this run, with their x86-64 levels (sources go to the
    highest ones)."""
    if not workers:
        return ""
    listed = ", ".join(f"{html.escape(a)} ({html.escape(lv)})" for a, lv in sorted(workers.items()))
    return f" Workers: {listed}."


def _read_report(out: Path, row: StackRow) -> dict[str, Any]:
    if row.status != "ok" or not row.directory:
        return {}
    try:
        data = json.loads((out / row.directory / "report.json").read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _summary_table(rows: list[StackRow]) -> str:
    lines = [
        '<table id="summary"><tr><th>source</th><th>status</th><th>kept</th>'
        "<th>best speedup</th><th>packages</th><th>time</th><th>worker</th></tr>"
    ]
    for row in rows:
        best = _best(row)
        status = "ok" if row.status == "ok" else "failed"
        lines.append(
            f"<tr><td>{html.escape(row.source or row.recipe)}</td>"
            f'<td class="{status}">{status}</td>'
            f"<td>{html.escape(', '.join(row.kept_levels) or '-')}</td>"
            f'<td class="num">{f"{best:.2f}x" if best else "-"}</td>'
            f'<td class="num">{row.package_bytes / 2**20:.2f} MiB</td>'
            f'<td class="num">{row.seconds:.0f} s{"" if row.ran else " (cached)"}</td>'
            f"<td>{html.escape(row.worker.get('level', '-'))}</td></tr>"
        )
    lines.append("</table>")
    return "\n".join(lines)


def _best(row: StackRow) -> float | None:
    kept = [row.speedups.get(level) for level in row.kept_levels]
    return max((v for v in kept if v is not None), default=None)


def _pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend: no display, every figure becomes SVG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _svg(fig: Any) -> str:
    """A matplotlib figure as inline SVG (the XML prologue dropped)."""
    plt = _pyplot()

    buffer = io.StringIO()
    metadata = {"Creator": None, "Date": None, "Format": None, "Type": None}  # no dates
    fig.savefig(buffer, format="svg", bbox_inches="tight", metadata=metadata)
    plt.close(fig)
    text = buffer.getvalue()
    return text[text.index("<svg") :]


def _figure(figure_id: str, caption: str, svg: str) -> str:
    return (
        f'<figure id="{html.escape(figure_id)}">{svg}'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def _gains_figure(sources: list[tuple[StackRow, dict[str, Any]]]) -> str:
    """The stack's distribution: each source's best kept speedup, 1.00x where none was."""
    plt = _pyplot()

    gains = sorted(((_best(row) or 1.0), row.source or row.recipe) for row, _ in sources)
    if not gains:
        return "<p>No source built: nothing to plot.</p>"
    fig, ax = plt.subplots(figsize=(8, 0.4 * len(gains) + 1.2))
    values = [g for g, _ in gains]
    ax.barh([n for _, n in gains], values, color=[_KEPT if g > 1.0 else _DROPPED for g in values])
    ax.axvline(1.0, color="#555", linewidth=1)
    ax.set_xlabel("best kept speedup over the baseline rebuild (1.00x: nothing shipped)")
    geomean = statistics.geometric_mean(values)
    ax.set_title(f"gains across the stack (geometric mean {geomean:.2f}x)")
    return _figure("stack-gains", "Distribution of gains across the stack", _svg(fig))


def _source_section(row: StackRow, data: dict[str, Any]) -> str:
    name = html.escape(row.source or row.recipe)
    head = f'<section id="source-{html.escape(row.directory or row.recipe)}"><h2>{name}</h2>'
    if row.status != "ok":
        return f"{head}<pre>{html.escape(row.error)}</pre></section>"
    levels = [lv for lv in data.get("levels") or [] if isinstance(lv, dict)]
    parts = [head]
    if any(lv.get("measured") for lv in levels):
        parts.append(_speedup_figure(row, data, levels))
    parts.append(_levels_table(levels))
    parts.append(_packages_table(data))
    parts.append("</section>")
    return "\n".join(parts)


def _speedup_figure(row: StackRow, data: dict[str, Any], levels: list[dict[str, Any]]) -> str:
    """Speedup per level (the median's), the spread of the runs as an error bar, the
    recipe's min_speedup as a line; kept levels in green."""
    plt = _pyplot()

    baseline = next((lv for lv in levels if lv.get("level") == "x86-64"), None)
    base = baseline.get("median_s") if baseline else None
    measured = [lv for lv in levels if lv.get("measured") and lv.get("speedup")]
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(10, 3.2))
    names = [str(lv["level"]) for lv in measured]
    speedups = [float(lv["speedup"]) for lv in measured]
    low, high = [], []
    for lv, s in zip(measured, speedups, strict=True):
        runs = [base / t for t in lv.get("times_s") or [] if base and t] or [s]
        low.append(max(0.0, s - min(runs)))
        high.append(max(0.0, max(runs) - s))
    colours = [_KEPT if lv.get("kept") else _DROPPED for lv in measured]
    ax.bar(names, speedups, yerr=[low, high], color=colours, capsize=4)
    isa = data.get("isa") or {}
    ax.axhline(float(isa.get("min_speedup", 1.05)), color="#c62828", linestyle="--", linewidth=1)
    ax.set_ylabel("speedup over x86-64")
    ax.set_title("speedup per level (bars: kept in green; line: min_speedup)")
    names = [str(lv["level"]) for lv in levels]
    tests = [float(lv.get("test_seconds") or 0) for lv in levels]
    builds = [
        max(0.0, float(lv.get("build_seconds") or 0) - t)
        for lv, t in zip(levels, tests, strict=True)
    ]
    measures = [float(lv.get("measure_seconds") or 0) for lv in levels]
    bx.barh(names, builds, color="#1565c0", label="build")
    bx.barh(names, tests, left=builds, color="#f9a825", label="tests")
    lefts = [b + t for b, t in zip(builds, tests, strict=True)]
    bx.barh(names, measures, left=lefts, color="#6a1b9a", label="measure")
    bx.set_xlabel("seconds")
    bx.set_title("time per level")
    bx.legend(loc="lower right", fontsize="small")
    caption = f"{row.source}: speedups of the measured levels; build, test and measure time"
    return _figure(f"speedups-{row.directory}", caption, _svg(fig))


def _levels_table(levels: list[dict[str, Any]]) -> str:
    lines = ["<table><tr><th>level</th><th>speedup</th><th>kept</th><th>why</th></tr>"]
    for lv in levels:
        speedup = lv.get("speedup")
        lines.append(
            f"<tr><td>{html.escape(str(lv.get('level')))}</td>"
            f'<td class="num">{f"{speedup:.2f}x" if speedup else "-"}</td>'
            f"<td>{'yes' if lv.get('kept') else 'no'}</td>"
            f"<td>{html.escape(str(lv.get('reason') or ''))}</td></tr>"
        )
    lines.append("</table>")
    return "\n".join(lines)


def _packages_table(data: dict[str, Any]) -> str:
    """Each package's size, and how many glibc-hwcaps files it carries (0: stock)."""
    lines = ["<table><tr><th>package</th><th>size</th><th>glibc-hwcaps files</th></tr>"]
    for p in data.get("packages") or []:
        if isinstance(p, dict):
            lines.append(
                f"<tr><td>{html.escape(str(p.get('file')))}</td>"
                f'<td class="num">{int(p.get("size") or 0) / 1024:.1f} KiB</td>'
                f'<td class="num">{len(p.get("hwcaps_files") or [])}</td></tr>'
            )
    lines.append("</table>")
    return "\n".join(lines)


# The builds benchmarks/stack.py compares, in the order they are drawn.
_COMPARED = ("flat-v3-O2", "flat-v3-O3", "deepdeb", "native-O3")
_COMPARED_COLOURS = ("#90caf9", "#1565c0", "#2e7d32", "#f9a825")


def comparison_section(results: list[dict[str, Any]], summary: dict[str, Any]) -> str:
    """Each source's speedup over the stock packages for the flat rebuilds, deepdeb's
    packages and a native build, side by side (what benchmarks/stack.py measured)."""
    plt = _pyplot()

    good = [r for r in results if r.get("status") == "ok"]
    if not good:
        return ""
    fig, ax = plt.subplots(figsize=(9, 0.55 * len(good) + 1.5))
    height = 0.8 / len(_COMPARED)
    for k, (name, colour) in enumerate(zip(_COMPARED, _COMPARED_COLOURS, strict=True)):
        values = [r["builds"].get(name, {}).get("speedup_vs_stock", 0.0) for r in good]
        ax.barh(
            [i + k * height for i in range(len(good))], values, height, label=name, color=colour
        )
    ax.set_yticks([i + 0.4 - height / 2 for i in range(len(good))])
    ax.set_yticklabels([str(r["source"]) for r in good])
    ax.invert_yaxis()
    ax.axvline(1.0, color="#555", linewidth=1)
    ax.set_xlabel("speedup over the stock Debian packages (0: not measured)")
    ax.legend(loc="lower right", fontsize="small")
    geo = summary.get("geomean_vs_stock") or {}
    ax.set_title(
        "geometric means: " + ", ".join(f"{n} {geo[n]:.3f}x" for n in _COMPARED if n in geo)
    )
    rows = ['<table id="comparison-table"><tr><th>source</th>']
    rows[0] += "".join(f"<th>{n}</th>" for n in _COMPARED) + "</tr>"
    for r in good:
        cells = []
        for name in _COMPARED:
            b = r["builds"].get(name, {})
            text = f"{b['speedup_vs_stock']:.2f}x" if "speedup_vs_stock" in b else "-"
            title = html.escape(str(b.get("status", "")))
            cells.append(f'<td class="num" title="{title}">{text}</td>')
        rows.append(f"<tr><td>{html.escape(str(r['source']))}</td>{''.join(cells)}</tr>")
    rows.append("</table>")
    caption = "Speedup over stock: flat x86-64-v3 rebuilds, deepdeb's packages, -march=native"
    return (
        "<h2>Against flat rebuilds and a native build</h2>"
        + _figure("comparison", caption, _svg(fig))
        + "\n".join(rows)
    )
