"""report.json, typed: the records the build stages produce and every reader uses.

The ISA pipeline fills a :class:`BuildReport` and writes it with :meth:`BuildReport.dumps`;
the terminal tables print one; ``deepdeb publish`` reads a report.json back through
:func:`read_packages`, which treats the file as untrusted input. Nothing here runs a
program: these are records and their JSON form, so that any stage may import them without
importing another stage.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from deepdeb import __version__
from deepdeb.cpu.levels import HostCpu
from deepdeb.debian.debpkg import AssembledPackage
from deepdeb.errors import ReportError
from deepdeb.licence.verdict import Verdict
from deepdeb.recipe.model import Benchmark, Isa

# How the installed loader reaches a library (see :mod:`deepdeb.isa.reach`).
HWCAPS = "glibc-hwcaps"
DIRECTORY = "directory"
ALTERNATIVE = "alternative"
RUNPATH = "runpath"
UNREACHABLE = "unreachable"


@dataclass(frozen=True)
class AltLink:
    """One link of an alternative that resolves to a library of the package."""

    group: str  # the alternative (the master's name), e.g. libblas.so.3-x86_64-linux-gnu
    master: str  # the master link: /usr/lib/x86_64-linux-gnu/libblas.so.3
    choice: str  # this provider's master path, which names it to update-alternatives --set
    priority: int
    name: str  # this link's own name: the master's, or a slave's
    link: str  # where this link is (the master link itself, or a slave's)
    target: str  # what the package registers for it: /usr/lib/x86_64-linux-gnu/blas/libblas.so.3


@dataclass(frozen=True)
class Reach:
    """How the loader reaches one library of one package."""

    package: str
    path: str  # the library file, absolute as installed
    soname: str
    how: str  # DIRECTORY, ALTERNATIVE, RUNPATH or UNREACHABLE
    why: str
    alternative: AltLink | None = None
    consumer: str | None = None  # RUNPATH: a file of the source that finds it that way

    @property
    def ships_variants(self) -> bool:
        return self.how != UNREACHABLE

    def copy_path(self, level: str) -> str:
        """Where the level's copy of the file goes: next to it, under glibc-hwcaps/."""
        directory, _, name = self.path.rpartition("/")
        return f"{directory}/{HWCAPS}/{level}/{name}"

    def soname_path(self, level: str) -> str:
        """The copy's soname link, which the loader (or the slave link) names."""
        directory = self.path.rpartition("/")[0]
        return f"{directory}/{HWCAPS}/{level}/{self.soname}"

    def search_path(self, level: str) -> str:
        """The name under which the loader finds the level's copy."""
        if self.alternative is not None:
            directory, _, name = self.alternative.link.rpartition("/")
            return f"{directory}/{HWCAPS}/{level}/{name}"
        return self.soname_path(level)

    def slave(self, level: str) -> tuple[str, str, str]:
        """The (link, name, path) of the slave link that makes a level's copy reachable."""
        assert self.alternative is not None
        name = f"{self.alternative.name}-{level}"
        return (self.search_path(level), name, self.soname_path(level))

    def to_json(self) -> dict[str, object]:
        data: dict[str, object] = {
            "package": self.package,
            "path": self.path,
            "soname": self.soname,
            "reach": self.how,
            "why": self.why,
        }
        if self.alternative is not None:
            data["alternative"] = {
                "name": self.alternative.group,
                "link": self.alternative.link,
                "provider": self.alternative.choice,
                "priority": self.alternative.priority,
            }
        if self.consumer is not None:
            data["consumer"] = self.consumer
        return data


@dataclass
class LevelResult:
    """Everything the report says about one level."""

    level: str
    built: bool = True
    tests_passed: bool | None = True  # None: not run, the level was dropped before them
    measured: bool = False
    times: list[float] = field(default_factory=list)
    median: float | None = None
    speedup: float | None = None
    gain_over_lower: float | None = None
    faster_rounds: int | None = None  # rounds in which it beat the baseline
    p_value: float | None = None  # of the sign test on those rounds
    kept: bool = False
    reason: str = ""


@dataclass(frozen=True)
class LoaderCheck:
    """One verify-stage check: the file the loader picked for a soname with the CPU masked
    down to one level, and whether it was the expected one."""

    library: str  # soname
    level: str  # the level the CPU was masked down to
    method: str  # "tunables" or "ld.so-mask"
    expected: str  # the file, symlinks resolved, inside the installed root
    loaded: str
    ok: bool
    context: str = ""  # e.g. which provider of an alternative was selected


def checks_to_json(checks: list[LoaderCheck]) -> list[dict[str, object]]:
    """Loader checks as report.json lists them, one object of their fields each."""
    return [asdict(c) for c in checks]


@dataclass(frozen=True)
class LintianResult:
    """lintian's tags on the built packages (``ran`` is false where lintian is not installed)."""

    ran: bool
    errors: list[str]
    warnings: list[str]


@dataclass
class BuildReport:
    """What ``deepdeb build`` found and decided for one recipe, written out as report.json."""

    recipe: Path
    source_name: str
    source_version: str
    source_origin: str
    host: HostCpu
    layout: str
    isa: Isa  # the levels tried and the decision rule; recipe.model.STOCK for a stock build
    benchmark: Benchmark | None  # None: a stock build, nothing measured
    levels: list[LevelResult]
    build: dict[str, dict[str, Any]] = field(default_factory=dict)  # level -> flags, seconds
    packages: list[AssembledPackage] = field(default_factory=list)
    loader_checks: list[LoaderCheck] = field(default_factory=list)
    loader_notes: list[str] = field(default_factory=list)
    lintian: LintianResult | None = None
    notes: list[str] = field(default_factory=list)
    network_attempts: list[dict[str, object]] = field(default_factory=list)
    licence: Verdict | None = None
    work_dir: Path | None = None  # set when the scratch directory was kept (--keep-work)
    backend: str = "host"  # "host" (the host's packages) or "cleanroom" (a fresh chroot)
    chroot: dict[str, object] | None = None  # the clean room's tarball, digest and timings
    buildinfo: Path | None = None
    libraries: list[Reach] = field(default_factory=list)  # how the loader reaches each one

    @property
    def shipped_levels(self) -> list[str]:
        return [r.level for r in self.levels if r.kept]

    def to_json(self) -> dict[str, Any]:
        return {
            "deepdeb_version": __version__,
            "recipe": display_path(self.recipe),
            "source": {
                "name": self.source_name,
                "version": self.source_version,
                "origin": display_path(Path(self.source_origin))
                if self.source_origin.startswith("/")
                else self.source_origin,
            },
            "host": asdict(self.host),
            "backend": self.backend,
            "chroot": self.chroot,
            "buildinfo": None if self.buildinfo is None else self.buildinfo.name,
            "layout": self.layout,
            "isa": asdict(self.isa),
            "benchmark": None if self.benchmark is None else asdict(self.benchmark),
            "levels": [
                {
                    "level": r.level,
                    **self.build.get(r.level, {}),
                    "built": r.built,
                    "tests_passed": r.tests_passed,
                    "measured": r.measured,
                    "times_s": [round(t, 6) for t in r.times],
                    "median_s": r.median,
                    "speedup": r.speedup,
                    "gain_over_lower": r.gain_over_lower,
                    "faster_rounds": r.faster_rounds,
                    "p_value": None if r.p_value is None else round(r.p_value, 4),
                    "kept": r.kept,
                    "reason": r.reason,
                }
                for r in self.levels
            ],
            "shipped_levels": self.shipped_levels,
            "libraries": [r.to_json() for r in self.libraries],
            "network_attempts": self.network_attempts,
            "licence": None
            if self.licence is None
            else {k: v for k, v in self.licence.to_json().items() if k != "files"},
            "packages": [p.to_json() for p in self.packages],
            "loader_checks": checks_to_json(self.loader_checks),
            "loader_notes": self.loader_notes,
            "lintian": None
            if self.lintian is None
            else {
                "ran": self.lintian.ran,
                "errors": self.lintian.errors,
                "warnings": self.lintian.warnings,
            },
            "notes": self.notes,
        }

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2) + "\n"


def display_path(path: Path) -> str:
    """A path relative to the working directory when it lies below it (reports are often
    committed or shared, and this machine's directory layout means nothing elsewhere)."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


# --- wheel builds -----------------------------------------------------------------------------


@dataclass
class SanityResult:
    """The Fashion-MNIST training run in a clean root with the built packages installed."""

    accuracy: float
    min_accuracy: float
    train_seconds: float
    cpu_capability: str  # the ISA or backend the framework says it used
    framework: str  # torch, tensorflow, jax
    version: str  # the framework's own version string, as imported
    epochs_completed: int
    steps: int
    threads: int
    passed: bool
    install_seconds: float
    test_seconds: float

    def to_json(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class RequirementRow:
    """One Requires-Dist of a wheel: what bookworm has for it and what the recipe chose."""

    requirement: str
    package: str  # the Debian package that would satisfy it
    archive_versions: list[str]
    satisfiable: bool
    choice: str | None  # depend, bundle, package, or None (the archive satisfies it)
    depends: str | None  # the Debian relation written, if any
    dropped_specifiers: list[str]

    def to_json(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class WheelOrigin:
    """The wheel a package was made from: its file name, SHA-256, and path or PyPI requirement."""

    file: str
    sha256: str
    origin: str


@dataclass(frozen=True)
class WheelPackageEntry:
    """One python3-* package made from a wheel, with its licence and requirement decisions."""

    deb: AssembledPackage
    area: str
    redistributable: bool
    licence_reasons: list[str]
    flavor: str | None  # None: a requirement packaged for the framework
    wheel: WheelOrigin
    depends: str
    shlibs_depends: str
    provides: list[str]
    conflicts: list[str]
    dropped: list[str]
    bundled_sonames: list[str]
    scripts: list[str]
    not_byte_compiled: list[str]
    requirements: list[RequirementRow]
    build_seconds: float
    # the licence clauses the verdict relies on: file, section, heading, item, sentence
    licence_clauses: list[dict[str, str]] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        data: dict[str, object] = dict(self.deb.to_json())
        data.update(
            {
                "area": self.area,
                "redistributable": self.redistributable,
                "licence_reasons": self.licence_reasons,
                "licence_clauses": self.licence_clauses,
                "flavor": self.flavor,
                "wheel": asdict(self.wheel),
                "depends": self.depends,
                "shlibs_depends": self.shlibs_depends,
                "provides": self.provides,
                "conflicts": self.conflicts,
                "dropped": self.dropped,
                "bundled_sonames": self.bundled_sonames,
                "scripts": self.scripts,
                "not_byte_compiled": self.not_byte_compiled,
                "requirements": [r.to_json() for r in self.requirements],
                "build_seconds": self.build_seconds,
            }
        )
        return data


@dataclass
class WheelReport:
    """report.json of a wheel recipe's build."""

    recipe: Path
    flavors: list[str]
    seconds: float
    packages: list[WheelPackageEntry]
    sanity: dict[str, SanityResult] | None = None  # per flavour, when the recipe asks

    @property
    def unsatisfied(self) -> list[RequirementRow]:
        """Requirements bookworm does not satisfy, and what the recipe chose for each."""
        return [r for p in self.packages for r in p.requirements if not r.satisfiable]

    def to_json(self) -> dict[str, Any]:
        reasons = sorted(
            {r for p in self.packages if not p.redistributable for r in p.licence_reasons}
        )
        data: dict[str, Any] = {
            "recipe": str(self.recipe),
            "kind": "wheel",
            "flavors": self.flavors,
            "seconds": round(self.seconds, 1),
            "packages": [p.to_json() for p in self.packages],
            "licence": {"redistributable_reasons": reasons},
            "unsatisfied_in_bookworm": [
                {"requirement": r.requirement, "archive_versions": r.archive_versions,
                 "choice": r.choice}
                for r in self.unsatisfied
            ],
        }  # fmt: skip
        if self.sanity is not None:
            data["sanity"] = {flavor: r.to_json() for flavor, r in self.sanity.items()}
        return data

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2) + "\n"


# --- stacks (many recipes in one run) --------------------------------------------------


@dataclass
class StackRow:
    """One source's line in stack.json."""

    recipe: str
    status: str  # "ok" or "failed"
    source: str = ""
    version: str = ""
    error: str = ""
    ran: bool = True  # False: the result came from the cache
    seconds: float = 0.0  # its time, first task to last (build, tests, measurement, checks)
    worker: dict[str, str] = field(default_factory=dict)
    kept_levels: list[str] = field(default_factory=list)
    speedups: dict[str, float | None] = field(default_factory=dict)
    package_bytes: int = 0  # the shipped .debs, all together
    directory: str = ""  # DIR/<source>, relative to DIR
    # per level: build_seconds (tests included), test_seconds, measure_seconds
    times: dict[str, dict[str, float]] = field(default_factory=dict)
    # the Dask tasks of the source: stage (build, measure, test, finish), level, worker
    tasks: list[dict[str, str]] = field(default_factory=list)


@dataclass
class StackReport:
    """stack.json: every source, in the order the recipes were given."""

    rows: list[StackRow]
    seconds: float
    scheduler: str
    workers: dict[str, str] = field(default_factory=dict)  # address -> x86-64 level

    @property
    def failed(self) -> list[StackRow]:
        return [r for r in self.rows if r.status != "ok"]

    def to_json(self) -> dict[str, Any]:
        return {
            "deepdeb_version": __version__,
            "scheduler": self.scheduler,
            "workers": self.workers,
            "seconds": round(self.seconds, 1),
            "sources": len(self.rows),
            "failed": len(self.failed),
            "rows": [asdict(r) for r in self.rows],
        }


# --- reading report.json back (deepdeb publish) -------------------------------------------

# A plain binary package file name: no directory, no "..", nothing a report could use to
# make a reader open a file outside the build's directory.
_DEB_FILE = re.compile(r"[a-z0-9][a-z0-9+.-]*_[A-Za-z0-9.+~-]+_[a-z0-9-]+\.deb")


@dataclass(frozen=True)
class PackageRecord:
    """One .deb as report.json lists it, with what its licence audit decided.

    Source builds (``packages`` and one ``licence`` for all) and wheel builds (a
    ``licence_reasons`` per package) both read as this.
    """

    file: str  # a plain package file name, in the report's directory
    package: str
    version: str
    architecture: str
    sha256: str
    area: str
    redistributable: bool
    reasons: tuple[str, ...]


def _strings(entry: dict[str, Any], *keys: str) -> list[str]:
    values = [entry.get(k) for k in keys]
    if not all(isinstance(v, str) and v for v in values):
        raise ValueError(f"each package needs {', '.join(keys)} as strings")
    return [str(v) for v in values]


def read_packages(build_dir: Path) -> list[PackageRecord]:
    """The .debs a ``deepdeb build --out DIR`` produced, from DIR/report.json.

    The report is untrusted input: a file name that is not a plain Debian package file
    name (``../x``, ``/etc/shadow``) is refused, and any wrong shape is a ReportError.
    """
    path = build_dir / "report.json"
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ReportError(f"{build_dir}: not a deepdeb build result ({e.strerror})") from None
    except ValueError as e:
        raise ReportError(f"{path}: not valid JSON: {e}") from None
    try:
        found = _package_records(report)
    except (ValueError, TypeError, AttributeError) as e:
        raise ReportError(f"{path}: not a deepdeb build report: {e}") from None
    if not found:
        raise ReportError(f"{path}: the report lists no packages")
    return found


def _package_records(report: Any) -> list[PackageRecord]:
    if not isinstance(report, dict) or not isinstance(report.get("packages", []), list):
        raise ValueError("expected an object with a list of packages")
    licence = report.get("licence") or {}
    reasons = tuple(str(r) for r in (licence.get("redistributable_reasons") or ()))
    found = []
    for p in report.get("packages", []):
        if not isinstance(p, dict):
            raise ValueError("a package entry is not an object")
        if not str(p.get("file", "")).endswith(".deb"):
            continue
        file, package, version, arch, digest = _strings(
            p, "file", "package", "version", "architecture", "sha256"
        )
        if not _DEB_FILE.fullmatch(file):
            raise ValueError(f"{file!r} is not a package file name")
        found.append(
            PackageRecord(
                file=file,
                package=package,
                version=version,
                architecture=arch,
                sha256=digest,
                area=str(p.get("area") or "main"),
                redistributable=p.get("redistributable") is True,
                # wheel builds give reasons per package; source builds one for all
                reasons=tuple(str(r) for r in (p.get("licence_reasons") or reasons)),
            )
        )
    return found
