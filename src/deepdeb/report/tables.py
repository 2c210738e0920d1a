"""Terminal tables for people: a build report, an inventory, an audit (rich)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from deepdeb.inventory.scan import Inventory
from deepdeb.licence.audit import AuditResult
from deepdeb.report.schema import (
    BuildReport,
    SanityResult,
    StackReport,
    WheelReport,
    display_path,
)


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def print_report(report: BuildReport, console: Console) -> None:
    """What ``deepdeb build`` shows: the levels, the packages, then every caveat a
    maintainer must see before publishing (licence, unreachable variants, network use)."""
    console.print(_levels_table(report))
    if report.build:
        console.print(_times_table(report))
    console.print(_packages_table(report))
    if report.licence is not None:
        lic = report.licence
        console.print(
            f"licence: area {lic.area}, "
            f"{'redistributable' if lic.redistributable else 'NOT redistributable (local build)'}"
            f": {'; '.join(lic.area_reasons + lic.redistributable_reasons)}"
        )
    if len(report.shipped_levels) > 1:
        _print_libraries(report, console)
    ok = sum(c.ok for c in report.loader_checks)
    console.print(
        f"loader checks on the installed system: {ok}/{len(report.loader_checks)} picked "
        "the expected file"
    )
    for attempt in report.network_attempts:
        console.print(
            f"[yellow]network: the {attempt['level']} build tried {attempt['kind']} "
            f"{attempt['url'] or attempt['host']} (refused)[/yellow]"
        )
    for note in [*report.loader_notes, *report.notes]:
        console.print(f"note: {escape(note)}")
    if report.lintian is not None and report.lintian.ran:
        console.print(
            f"lintian: {len(report.lintian.errors)} errors, {len(report.lintian.warnings)} warnings"
        )


def _levels_table(report: BuildReport) -> Table:
    where = "clean-room chroot" if report.backend == "cleanroom" else "host system (not clean)"
    levels = Table(
        title=f"{report.source_name} {report.source_version}: ISA levels, built on the {where}"
    )
    for col in ("level", "build", "tests", "median", "speedup", "kept", "why"):
        levels.add_column(col, justify="right" if col in ("median", "speedup") else "left")
    for r in report.levels:
        build = report.build.get(r.level, {})
        tests = (
            "-"
            if not r.built
            else "pass"
            if r.tests_passed
            else "not run"
            if r.tests_passed is None
            else "[red]FAIL[/red]"
        )
        levels.add_row(
            r.level,
            f"{build['build_seconds']:.0f}s" if "build_seconds" in build else "-",
            tests,
            f"{r.median * 1000:.1f} ms" if r.median is not None else "-",
            f"{r.speedup:.2f}x" if r.speedup is not None else "-",
            "[green]yes[/green]" if r.kept else "no",
            escape(r.reason),
        )
    return levels


def _times_table(report: BuildReport) -> Table:
    """Where each level's time went: its build, of which its own tests, and measuring it
    (a table of its own: the levels table's reasons need the terminal's width)."""
    times = Table(title="time per level")
    for col in ("level", "build", "of which tests", "measure"):
        times.add_column(col, justify="left" if col == "level" else "right")
    for level, build in report.build.items():
        times.add_row(level, *(_seconds(build, k) for k in _TIME_KEYS))
    return times


_TIME_KEYS = ("build_seconds", "test_seconds", "measure_seconds")


def _seconds(build: dict[str, Any], key: str) -> str:
    value = build.get(key)
    return f"{value:.0f}s" if isinstance(value, int | float) else "-"


def _packages_table(report: BuildReport) -> Table:
    packages = Table(title=f"packages ({report.layout} layout)")
    for col in ("file", "size", "installed", "glibc-hwcaps files"):
        packages.add_column(col, justify="right" if col in ("size", "installed") else "left")
    for p in report.packages:
        packages.add_row(
            p.file.name,
            _size(p.size),
            _size(p.installed_size * 1024),
            "stock, unchanged" if p.stock else str(len(p.hwcaps_files)),
        )
    return packages


def _print_libraries(report: BuildReport, console: Console) -> None:
    """Libraries whose variants are not plain copies: alternatives, and unreachable ones."""
    for lib in report.libraries:
        if lib.how == "alternative" and lib.alternative is not None:
            console.print(
                f"{lib.soname} ({lib.package}): variants are slave links of the "
                f"{lib.alternative.group} alternative, used only while this provider is "
                "selected"
            )
        elif not lib.ships_variants:
            console.print(f"[yellow]{lib.path}: no variant shipped: {escape(lib.why)}[/yellow]")


def print_inventory(result: Inventory, console: Console) -> None:
    """Every declared download, pinned or not, and the Debian package that has it."""
    table = Table(title=f"external inputs declared under {display_path(result.root)}")
    for col in ("kind", "name", "version", "pinned", "declared at", "Debian", "url"):
        table.add_column(col, overflow="fold")
    for item in result.inputs:
        pin = item.hash.split(":", 1)[0] if item.hash else "[red]unpinned[/red]"
        extra = " (2nd level)" if item.second_level else ""
        table.add_row(  # names such as CONST["x86_64-..."] are text, not rich markup
            escape(item.kind),
            escape(item.name),
            escape(item.version or ""),
            pin,
            escape(f"{item.file}:{item.line}"),
            f"{item.debian} ({item.debian_match})" if item.debian else "no match",
            escape(item.urls[0] if item.urls else "") + extra,
        )
    console.print(table)
    s = result.summary()
    matched = (
        f"{s['matched_in_debian']} matched in Debian"
        if result.debian_index
        else "Debian matching skipped (no apt source index)"
    )
    console.print(
        f"{s['inputs']} inputs, {s['pinned']} pinned, {matched}, "
        f"{s['second_level']} second-level; {s['files_scanned']} files scanned"
    )


def print_audit(result: AuditResult, console: Console) -> None:
    """The verdict first, then the licences found, grouped, with an example file each."""
    v = result.verdict
    table = Table(title=f"licences in {result.target}")
    for col in ("licence (SPDX)", "class", "files", "example"):
        table.add_column(col, overflow="fold")
    groups: dict[tuple[str, str], list[str]] = {}
    for f in v.files:
        groups.setdefault((f.spdx or "unknown", f.classification), []).append(f.path)
    for (spdx, cls), paths in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        color = {"free": "green", "non-free": "yellow"}.get(cls, "red")
        table.add_row(spdx, f"[{color}]{cls}[/{color}]", str(len(paths)), paths[0])
    console.print(table)
    for m in v.ml:
        missing = f": {'; '.join(m.missing)}" if m.missing else ""
        console.print(f"{m.kind} {m.name} ({m.license}): [bold]{m.category}[/bold]{missing}")
    console.print(f"area: [bold]{v.area}[/bold]")
    for reason in v.area_reasons:
        console.print(f"  {reason}")
    console.print(f"redistributable: [bold]{'yes' if v.redistributable else 'no'}[/bold]")
    for reason in v.redistributable_reasons:
        console.print(f"  {reason}")


def print_wheel_report(report: WheelReport, out: Console) -> None:
    """The python3-* packages made, their areas, and the requirements bookworm lacks."""
    table = Table(title="python packages from wheels")
    for col in ("package", "version", "size", "installed", "area", "depends (system)"):
        table.add_column(col, justify="right" if col in ("size", "installed") else "left")
    for p in report.packages:
        table.add_row(
            p.deb.package,
            p.deb.version,
            f"{p.deb.size / 2**20:.1f} MiB",
            f"{p.deb.installed_size / 1024:.0f} MiB",
            p.area + ("" if p.redistributable else " (local only)"),
            p.shlibs_depends or "-",
        )
    out.print(table)
    for row in report.unsatisfied:
        have = ", ".join(row.archive_versions) or "nothing"
        out.print(f"not in bookworm: {row.requirement} (archive: {have}) -> {row.choice}")


def print_sanity(result: SanityResult, out: Console, flavor: str = "") -> None:
    """The training run's accuracy against the bar, and what the framework dispatched to."""
    title = f"sanity test of the {flavor} flavour" if flavor else "sanity test"
    table = Table(title=f"{title} (clean root, Fashion-MNIST)")
    for col in ("accuracy", "required", "training", "epochs", "CPU capability", "framework"):
        table.add_column(col)
    table.add_row(
        f"{result.accuracy:.4f}",
        f"{result.min_accuracy:.2f}",
        f"{result.train_seconds:.0f} s on {result.threads} threads",
        str(result.epochs_completed),
        result.cpu_capability,
        f"{result.framework} {result.version}",
    )
    out.print(table)


def print_stack(report: StackReport, console: Console) -> None:
    """One line per source: what was kept at which speedup, what it costs, what failed."""
    table = Table(title=f"stack: {len(report.rows)} sources, {report.seconds:.0f} s")
    for col in ("source", "status", "kept", "best speedup", "packages", "time", "worker"):
        table.add_column(col, justify="right" if col in ("packages", "time") else "left")
    for row in report.rows:
        best = max((v for v in row.speedups.values() if v is not None), default=None)
        table.add_row(
            escape(row.source or row.recipe),
            "[green]ok[/green]" if row.status == "ok" else "[red]FAILED[/red]",
            ", ".join(row.kept_levels) or "-",
            f"{best:.2f}x" if best is not None else "-",
            _size(row.package_bytes) if row.status == "ok" else "-",
            f"{row.seconds:.0f} s" + ("" if row.ran else " (cached)"),
            escape(row.worker.get("level", "-")),
        )
    console.print(table)
    for row in report.failed:
        first = row.error.splitlines()[0] if row.error else "failed"
        console.print(f"[red]{escape(row.recipe)}[/red]: {escape(first)}")
