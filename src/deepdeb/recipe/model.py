"""What a recipe says, as types: the three kinds of recipe and their parts.

A recipe is one of three things, and the type says which, so that no stage has to guess
from empty fields:

- :class:`SourceRecipe`: a Debian source built as it is (stock), offline and sandboxed;
- :class:`IsaRecipe`: a Debian source rebuilt per ISA level, variants kept only where
  ``[benchmark]`` measured them faster;
- :class:`WheelRecipe`: one or more prebuilt wheels (flavours) repacked as python3-* packages.

:mod:`deepdeb.recipe.load` reads and validates the TOML; this module holds no logic.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

REQUIRE_CHOICES = ("depend", "bundle", "package")
FLAVORS = ("cpu", "cuda", "rocm")


@dataclass(frozen=True)
class Source:
    """Where the source comes from. Exactly one kind is set, and the remote kinds are
    always pinned: a download that is not verified is not a source."""

    path: Path | None = None  # absolute path of a Debian source tree (has debian/)
    debian: str | None = None  # "name" or "name=version", fetched with apt-get source
    url: str | None = None  # a tarball of a Debian source tree ...
    sha256: str | None = None  # ... with its hash
    git: str | None = None  # a git repository holding a Debian source tree ...
    commit: str | None = None  # ... at this commit
    wheel: Path | None = None  # a prebuilt wheel on disk (repacked, not built)
    pypi: str | None = None  # "name==version": a wheel fetched with pip, its hash recorded

    @property
    def is_wheel(self) -> bool:
        return self.wheel is not None or self.pypi is not None

    @property
    def label(self) -> str:
        if self.path is not None:
            return str(self.path)
        if self.url is not None:
            return f"{self.url} (sha256 {self.sha256})"
        if self.git is not None:
            return f"{self.git} (commit {self.commit})"
        if self.wheel is not None:
            return str(self.wheel)
        if self.pypi is not None:
            return f"pypi:{self.pypi}"
        return str(self.debian)


@dataclass(frozen=True)
class Isa:
    """[isa]: the levels to rebuild at, the compiler tuning, and the speedup a level needs."""

    levels: tuple[str, ...]  # optional levels to try, ascending; the baseline is implied
    min_speedup: float = 1.05
    profile: str = ""
    tune: str = "generic"
    # The levels were named on the command line (--levels): built even where this CPU
    # cannot run them, instead of being planned from the host.
    explicit: bool = False


@dataclass(frozen=True)
class Benchmark:
    """[benchmark]: the command timed at every level to decide which levels are kept."""

    command: str
    repeat: int = 5
    warmup: int = 1
    timeout: float = 600.0
    # Rounds in all when a level gains in the median but not yet in enough rounds (see
    # deepdeb.isa.measure.undecided); None: three times ``repeat``; ``repeat``: never more.
    max_repeat: int | None = None

    @property
    def most_rounds(self) -> int:
        """The rounds a measurement may grow to."""
        return max(self.repeat, self.max_repeat or 3 * self.repeat)


@dataclass(frozen=True)
class Python:
    """[python]: how a wheel becomes a python3-* package (recipes with a wheel source)."""

    package: str | None = None  # default python3-<name>
    requires: tuple[tuple[str, str], ...] = ()  # (PyPI name, depend|bundle|package)
    # (PyPI name, version): the release a bundled or packaged requirement is taken at
    # (what ``deepdeb resolve`` chose), instead of the newest its requirers accept
    versions: tuple[tuple[str, str], ...] = ()
    drop: tuple[str, ...] = ()  # wheel paths (globs) left out, e.g. test-only libraries
    extras: tuple[str, ...] = ()
    maintainer: str | None = None


@dataclass(frozen=True)
class Flavor:
    """[flavor.NAME]: one build of the framework (cpu, cuda, rocm), its own wheel."""

    name: str
    source: Source
    python: Python


@dataclass(frozen=True)
class Sanity:
    """[sanity]: train on a Debian dataset package in a clean root, require an accuracy."""

    dataset: str = "fashion-mnist"
    min_accuracy: float = 0.80
    seconds: float = 60.0
    framework: str = "torch"  # data/sanity/frameworks.toml; the loader defaults it from the wheel


@dataclass(frozen=True, kw_only=True)
class SourceRecipe:
    """A Debian source built as it is: the stock packages, offline in the sandbox,
    audited, installed and checked in a clean root. The DUPR case."""

    path: Path
    source: Source
    version_suffix: str = "+hwcaps1"
    models: tuple[dict[str, str], ...] = ()  # [[model]]: ML-Policy entries
    datasets: tuple[dict[str, str], ...] = ()  # [[dataset]]
    depends: tuple[str, ...] = ()  # Debian packages it needs beyond its debian/control

    @property
    def directory(self) -> Path:
        return self.path.parent


@dataclass(frozen=True, kw_only=True)
class IsaRecipe(SourceRecipe):
    """A Debian source rebuilt at ISA levels: [isa] and [benchmark] always go together,
    because deepdeb ships only variants it has measured faster."""

    isa: Isa
    benchmark: Benchmark


@dataclass(frozen=True, kw_only=True)
class WheelRecipe:
    """Prebuilt wheels (one per flavour, ``cpu`` first) repacked as python3-* packages."""

    path: Path
    flavors: tuple[Flavor, ...]
    python: Python
    sanity: Sanity | None = None
    models: tuple[dict[str, str], ...] = ()
    datasets: tuple[dict[str, str], ...] = ()

    @property
    def source(self) -> Source:
        """The first flavour's wheel: the one ``deepdeb audit`` reads."""
        return self.flavors[0].source

    @property
    def directory(self) -> Path:
        return self.path.parent


Recipe = SourceRecipe | WheelRecipe  # an IsaRecipe is a SourceRecipe

# The levels of a build that rebuilds nothing: only the baseline (stock) build.
STOCK = Isa(levels=())
