"""The ``deepdeb`` command line."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
import threading
from dataclasses import asdict
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from deepdeb import __version__
from deepdeb.archive import publish
from deepdeb.cpu.levels import LEVELS, host_cpu, level_features
from deepdeb.debian.target import SUITE
from deepdeb.errors import DeepdebError, UsageError
from deepdeb.inventory import scan as inventory
from deepdeb.inventory.configured import NOT_USED
from deepdeb.inventory.debmatch import SourceIndex
from deepdeb.inventory.expand import ManifestSource
from deepdeb.inventory.manifests import DEFAULT_PLATFORM
from deepdeb.isa.pipeline import BACKENDS, LAYOUTS, run_build
from deepdeb.licence import audit
from deepdeb.licence.dep5 import copyright_file
from deepdeb.recipe.frameworks import frameworks
from deepdeb.recipe.load import load_recipe, with_levels
from deepdeb.recipe.model import WheelRecipe
from deepdeb.report.tables import (
    print_audit,
    print_inventory,
    print_report,
    print_sanity,
    print_stack,
    print_wheel_report,
)
from deepdeb.stack.bundle import Options, recipes_from
from deepdeb.stack.run import run_stack
from deepdeb.util import atomic_write_text
from deepdeb.wheel.pipeline import run_wheel_build
from deepdeb.wheel.pypi import PyPI
from deepdeb.wheel.resolve import AptArchive, Kind, resolve
from deepdeb.wheel.sanity import framework_of_debs, run_sanity


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deepdeb",
        description="Rebuild Debian packages per x86-64 ISA level and ship the variants "
        "that are measurably faster, picked at run time by the loader (glibc-hwcaps).",
    )
    parser.add_argument("--version", action="version", version=f"deepdeb {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    cpu = sub.add_parser("cpu", help="show this CPU's ISA level and features")
    cpu.add_argument("--json", action="store_true", help="machine-readable output")

    build = sub.add_parser("build", help="build, measure, assemble and verify recipes")
    build.add_argument(
        "recipes",
        type=Path,
        nargs="+",
        metavar="RECIPE",
        help="recipe files or directories of them; several make a stack, built on Dask",
    )
    build.add_argument("--out", type=Path, required=True, help="directory for the results")
    build.add_argument("--layout", choices=LAYOUTS, default="fat")
    build.add_argument(
        "--levels", help="comma-separated levels to try, overriding the recipe's [isa] levels"
    )
    build.add_argument(
        "--backend",
        choices=BACKENDS,
        default="host",
        help="host: build against this system's packages (fast); cleanroom: in a fresh "
        "bookworm chroot holding only the declared build-dependencies (like Debian's buildds)",
    )
    build.add_argument("--keep-work", action="store_true", help="keep the build directories")
    build.add_argument("--no-lintian", action="store_true", help="skip the lintian check")
    build.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="a running Dask scheduler (tcp://HOST:PORT) to build on; default: an embedded "
        "local cluster",
    )
    build.add_argument(
        "--workers", type=int, help="workers of the embedded cluster (default: one per two cores)"
    )

    inv = sub.add_parser(
        "inventory", help="list every external download a source tree declares (static scan)"
    )
    inv.add_argument("path", type=Path)
    inv.add_argument("--format", choices=("table", "json"), default="table")
    inv.add_argument(
        "--no-debian", action="store_true", help="skip matching against apt's source index"
    )
    inv.add_argument(
        "--manifests",
        type=Path,
        metavar="DIR",
        help="expand second-level manifests (redistrib_*.json) found in DIR by their URL's "
        "file name into the archives they list, after checking each against its pinned hash",
    )
    inv.add_argument(
        "--fetch-manifests",
        action="store_true",
        help="download the manifests not in --manifests DIR (hash-checked); without this "
        "option the inventory never uses the network",
    )
    inv.add_argument(
        "--expand",
        action="append",
        default=[],
        metavar="GLOB",
        help="expand only manifests whose file name matches GLOB (repeatable), e.g. the "
        "CUDA and cuDNN versions the build is configured for; default: all",
    )
    for library, label in (("cuda", "CUDA"), ("cudnn", "cuDNN"), ("nvshmem", "NVSHMEM")):
        inv.add_argument(
            f"--{library}-version",
            metavar="V",
            help=f"the hermetic {label} version the build is configured for, in place of "
            f"the tree's .bazelrc (HERMETIC_{library.upper()}_VERSION); manifests of "
            "other versions are listed as not used and not counted",
        )
    inv.add_argument(
        "--platform",
        default=DEFAULT_PLATFORM,
        help=f"the build's platform in NVIDIA's manifests (default {DEFAULT_PLATFORM}): only "
        "its archives are listed and counted",
    )

    san = sub.add_parser(
        "sanity", help="install packages in a clean root and train on a Debian dataset package"
    )
    san.add_argument("debs", type=Path, nargs="+", metavar="DEB")
    san.add_argument("--dataset", default="fashion-mnist")
    san.add_argument("--seconds", type=float, default=60.0, help="training budget")
    san.add_argument("--min-accuracy", type=float, default=0.80)
    san.add_argument(
        "--framework",
        choices=list(frameworks()),
        help="the training script to run (default: the framework the packages hold)",
    )
    san.add_argument("--json", action="store_true", help="machine-readable output")

    pub = sub.add_parser("publish", help="add built packages to a signed apt repository")
    pub.add_argument("dirs", type=Path, nargs="+", metavar="DIR", help="deepdeb build --out DIRs")
    pub.add_argument("--repo", type=Path, required=True, help="the repository (made if new)")
    pub.add_argument(
        "--local",
        action="store_true",
        help="a private repository, never to be served publicly: accepts packages that are "
        "not redistributable",
    )
    pub.add_argument("--json", action="store_true", help="machine-readable output")

    aud = sub.add_parser("audit", help="licence verdict: archive area and redistributability")
    aud.add_argument("target", type=Path, help="a recipe, a source tree, a .deb or a .whl")
    aud.add_argument("--format", choices=("table", "json"), default="table")
    aud.add_argument(
        "--deep",
        action="store_true",
        help="also use scancode-toolkit (when installed) for what licensecheck leaves unknown",
    )
    aud.add_argument(
        "--write-copyright", type=Path, metavar="FILE", help="write a DEP-5 debian/copyright draft"
    )

    res = sub.add_parser(
        "resolve",
        help="the newest release of a PyPI project the archive can take, and what it needs",
    )
    res.add_argument("name", help="the project on PyPI, e.g. tensorflow-cpu")
    res.add_argument("--target", choices=(SUITE,), default=SUITE, help="the Debian release")
    res.add_argument("--json", action="store_true", help="machine-readable output")
    res.add_argument(
        "--limit", type=int, default=40, help="final releases to look at, newest first"
    )
    res.add_argument(
        "--depth", type=int, default=2, help="levels of additions' own requirements followed"
    )
    res.add_argument(
        "--refresh", action="store_true", help="ask PyPI again even for pages cached today"
    )
    return parser


def _cmd_audit(args: argparse.Namespace, out: Console) -> int:
    if not args.target.exists():
        raise UsageError(f"{args.target}: no such file or directory")
    with tempfile.TemporaryDirectory(prefix="deepdeb-audit-") as tmp:
        result = audit.audit_target(args.target, Path(tmp), deep=args.deep)
    if args.write_copyright:
        text = copyright_file(result.verdict, result.upstream_name, result.source)
        atomic_write_text(args.write_copyright, text)
    if args.format == "json":
        print(json.dumps(result.to_json(), indent=2))
    else:
        print_audit(result, out)
    return 0


def _cmd_sanity(args: argparse.Namespace, out: Console, err: Console) -> int:
    with (
        tempfile.TemporaryDirectory(prefix="deepdeb-sanity-") as tmp,
        err.status("installing into a clean root and training ..."),
    ):
        framework = args.framework or framework_of_debs(args.debs)
        result = run_sanity(
            args.debs, Path(tmp), args.dataset, args.seconds, args.min_accuracy, framework
        )
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
    else:
        print_sanity(result, out)
    return 0


def _cmd_publish(args: argparse.Namespace, out: Console) -> int:
    result = publish.publish(args.dirs, args.repo, local=args.local)
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
        return 0
    kind = "PRIVATE" if result.private else "public"
    table = Table(title=f"{args.repo} ({kind}, {SUITE})")
    table.add_column("package file")
    table.add_column("result")
    for name in result.added:
        table.add_row(name, "[green]added[/green]")
    for name in result.unchanged:
        table.add_row(name, "already there, identical")
    out.print(table)
    for note in result.notes:
        out.print(f"note: {note}")
    keyring = (args.repo / publish.KEYRING).resolve()
    out.print(
        "use it with:\n"
        f"  install -D -m 644 {keyring} /etc/apt/keyrings/deepdeb.gpg\n"
        "  printf 'Types: deb\\nURIs: file:"
        f"{args.repo.resolve()}\\nSuites: {SUITE}\\nComponents: main contrib "
        "non-free\\nSigned-By: /etc/apt/keyrings/deepdeb.gpg\\n' "
        "> /etc/apt/sources.list.d/deepdeb.sources",
        highlight=False,
        soft_wrap=True,
    )
    return 0


def _manifest_source(args: argparse.Namespace) -> ManifestSource | None:
    if args.manifests is not None and not args.manifests.is_dir():
        raise UsageError(f"--manifests {args.manifests}: not a directory")
    if args.manifests is None and not args.fetch_manifests:
        if args.expand:
            raise UsageError("--expand needs --manifests DIR or --fetch-manifests")
        return None
    return ManifestSource(args.manifests, args.fetch_manifests, tuple(args.expand))


def _cmd_inventory(args: argparse.Namespace, out: Console) -> int:
    if not args.path.is_dir():
        raise UsageError(f"{args.path}: not a directory")
    manifests = _manifest_source(args)
    index = None if args.no_debian else SourceIndex.from_apt()
    versions = {
        library: version
        for library in ("cuda", "cudnn", "nvshmem")
        if (version := getattr(args, f"{library}_version"))
    }
    result = inventory.scan(
        args.path, index, manifests=manifests, platform=args.platform, versions=versions
    )
    if args.format == "json":
        print(json.dumps(result.to_json(), indent=2))
        return 0
    print_inventory(result, out)
    _print_configuration(result, out)
    _print_download_size(result, args.platform, out)
    return 0


def _print_configuration(result: inventory.Inventory, out: Console) -> None:
    """The hermetic CUDA versions the total is for, and how much was left out for it."""
    settings = result.configuration.settings
    if not result.configuration.hermetic:
        return
    chosen = "; ".join(
        f"{name}={'/'.join(s.values)} ({s.where})" for name, s in sorted(settings.items())
    )
    unused = sum(NOT_USED in (i.note or "") for i in result.inputs)
    out.print(
        f"configuration: {chosen}; {unused} inputs listed as {NOT_USED}",
        highlight=False,
        soft_wrap=True,
    )


def _print_download_size(result: inventory.Inventory, platform: str, out: Console) -> None:
    """Bytes by kind: a lower bound while some inputs' sizes are unknown (only manifests
    state sizes), so those are counted next to it."""
    sizes = result.sizes()
    table = Table(title=f"download size ({platform})")
    for col in ("kind", "inputs", "bytes", "size unknown"):
        table.add_column(col, justify="left" if col == "kind" else "right")
    for kind, row in sizes["by_kind"].items():
        table.add_row(kind, str(row["inputs"]), f"{row['bytes']:,}", str(row["unsized"]))
    out.print(table)
    total, unsized = sizes["download_bytes"], sizes["unsized"]
    out.print(
        f"download: {total:,} bytes ({total / 2**20:.1f} MiB) where sizes are known; "
        f"{unsized} inputs of unknown size",
        highlight=False,
    )


def _cmd_resolve(args: argparse.Namespace, out: Console, err: Console) -> int:
    """Exit status 0 when some release fits without breaking the archive, else 1."""
    if args.limit < 1 or args.depth < 0:
        raise UsageError("--limit must be at least 1 and --depth at least 0")
    with err.status(f"reading {args.name}'s releases from PyPI, checking them against apt ..."):
        result = resolve(args.name, PyPI(args.refresh), AptArchive(), args.limit, args.depth)
    fits = result.newest(Kind.BINARY) is not None
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
        return 0 if fits else 1
    table = Table(title=f"{result.name} on {result.target} (Python 3.11, x86-64)")
    for col in ("release", "fits", "why / what it adds"):
        table.add_column(col, overflow="fold")
    for v in result.shown():
        table.add_row(v.version, v.kind.label, escape(v.reason))
    out.print(table)
    for line in result.summary():
        out.print(escape(line), highlight=False, soft_wrap=True)
    return 0 if fits else 1


def _cmd_cpu(args: argparse.Namespace, out: Console) -> int:
    host = host_cpu()
    if args.json:
        out.print_json(json.dumps(asdict(host)))
        return 0
    out.print(f"microarchitecture: {host.microarchitecture} ({host.vendor})")
    out.print(f"x86-64 level:      [bold]{host.level}[/bold]")
    if host.capped_by:
        out.print(f"(lowered by {host.capped_by}; the CPU itself is {host.microarchitecture})")
    table = Table(title="levels")
    table.add_column("level")
    table.add_column("loader uses it here")
    table.add_column("features it adds")
    table.add_column("missing on this CPU")
    features = set(host.features)
    for level in LEVELS:
        adds = level_features(level)
        missing = [f for f in adds if f not in features]
        table.add_row(
            level,
            "yes" if host.supports(level) else "no",
            " ".join(adds),
            f"[red]{' '.join(missing)}[/red]" if missing else "-",
        )
    out.print(table)
    return 0


def _cmd_build(args: argparse.Namespace, out: Console, err: Console) -> int:
    recipes = recipes_from(args.recipes)
    stack = len(recipes) > 1 or any(p.is_dir() for p in args.recipes) or args.scheduler
    if stack:
        return _cmd_stack(args, recipes, out, err)
    recipe = load_recipe(recipes[0])
    if isinstance(recipe, WheelRecipe):
        wheels = run_wheel_build(recipe, args.out, err)
        print_wheel_report(wheels, out)
        for flavor, result in (wheels.sanity or {}).items():
            print_sanity(result, out, flavor)
        out.print(f"report: {args.out / 'report.json'}")
        return 0
    if args.levels:
        recipe = with_levels(recipe, _levels(args))
    report = run_build(
        recipe,
        args.out,
        args.layout,
        console=err,
        keep_work=args.keep_work,
        lintian=not args.no_lintian,
        backend=args.backend,
    )
    print_report(report, out)
    out.print(f"report: {args.out / 'report.json'}")
    return 0


def _levels(args: argparse.Namespace) -> list[str]:
    return [s.strip() for s in (args.levels or "").split(",") if s.strip()]


def _cmd_stack(args: argparse.Namespace, recipes: list[Path], out: Console, err: Console) -> int:
    """Several recipes: each source in ``--out/<source>/``, stack.json, exit 1 if any failed."""
    if args.keep_work:
        raise UsageError("--keep-work keeps one build's directories: give a single recipe")
    options = Options(args.layout, args.backend, tuple(_levels(args)), not args.no_lintian)
    report = run_stack(recipes, args.out, options, err, args.scheduler, args.workers)
    print_stack(report, out)
    out.print(f"stack: {args.out / 'stack.json'}")
    return 1 if report.failed else 0


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C: builds are stopped, scratch kept and named, nothing
    half-written is left in the output."""


def _terminate(signum: int, frame: object) -> None:
    raise Terminated()


def main(argv: list[str] | None = None) -> int:
    """Run one deepdeb command; the exit status: 1 for an error, 130 or 143 when interrupted."""
    args = _parser().parse_args(argv)
    out = Console()
    err = Console(stderr=True)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate)
    try:
        if args.command == "cpu":
            return _cmd_cpu(args, out)
        if args.command == "inventory":
            return _cmd_inventory(args, out)
        if args.command == "audit":
            return _cmd_audit(args, out)
        if args.command == "publish":
            return _cmd_publish(args, out)
        if args.command == "sanity":
            return _cmd_sanity(args, out, err)
        if args.command == "resolve":
            return _cmd_resolve(args, out, err)
        return _cmd_build(args, out, err)
    except DeepdebError as e:
        err.print(f"[bold red]error:[/bold red] {escape(str(e))}", highlight=False, soft_wrap=True)
        return 1
    except KeyboardInterrupt as e:
        err.print("[bold red]interrupted[/bold red]: nothing was written to the output")
        return 143 if isinstance(e, Terminated) else 130


if __name__ == "__main__":
    sys.exit(main())
