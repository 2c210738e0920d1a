"""What travels to a worker: a recipe's directory as one deterministic tar, and what a
worker sends back. Workers may share no filesystem with the client, so a build's inputs
and outputs are bytes, named by their digests.

Everything here is pure or reads files only; :mod:`deepdeb.stack.run` talks to Dask.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import stat
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from deepdeb import __version__
from deepdeb.errors import RecipeError, UsageError
from deepdeb.recipe.load import load_recipe
from deepdeb.recipe.model import WheelRecipe

# A recipe directory is sources and scripts, not build trees: more than this is a mistake
# (an --out directory inside it, a checkout's .git), refused before anything is sent.
MAX_BUNDLE_BYTES = 256 << 20
_SKIP = {".git", ".hg", ".svn", "__pycache__", ".pytest_cache", ".mypy_cache", ".cache"}


def recipes_from(paths: list[Path]) -> list[Path]:
    """The recipe files named on the command line: a directory counts as every ``*.toml``
    in it and every ``*/recipe.toml`` below it (``examples/stack/``), in name order."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            listed = sorted(path.glob("*.toml")) + sorted(path.glob("*/recipe.toml"))
            if not listed:
                raise UsageError(f"{path}: a directory without recipes (*.toml, */recipe.toml)")
            found += listed
        else:
            found.append(path)
    unique = list(dict.fromkeys(p.absolute() for p in found))
    return unique


@dataclass(frozen=True)
class Bundle:
    """A recipe and the directory it lives in, as the worker will see them."""

    recipe: Path  # on the client
    member: str  # the recipe's path inside the tar
    data: bytes
    sha256: str


def pack(recipe: Path, exclude: tuple[Path, ...] = ()) -> Bundle:
    """The recipe's directory as a tar with fixed owners, modes and times, members in
    name order: the same inputs give the same bytes, so its digest can key a cache.

    What belongs to the other recipes of that directory (their files, and the source
    trees only they name) is left out: a change to a neighbour does not rebuild this one.
    A source ``path`` outside the directory is refused (the worker would not have it).
    """
    recipe = recipe.absolute()
    root = recipe.parent
    own = _source_path(recipe)
    if own is not None and not own.is_relative_to(root.resolve()):
        raise RecipeError(
            recipe,
            f"source path {own} lies outside the recipe's directory "
            f"{root}: a stack build sends only that directory to the workers",
        )
    exclude = exclude + _neighbours(recipe, own)
    buffer = io.BytesIO()
    total = 0
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in _walk(root, tuple(e.absolute() for e in exclude)):
            info = tar.gettarinfo(str(path), arcname=path.relative_to(root).as_posix())
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            info.mtime = 0
            info.mode = 0o755 if info.isdir() or info.mode & 0o111 else 0o644
            total += info.size
            if total > MAX_BUNDLE_BYTES:
                raise UsageError(
                    f"{root}: more than {MAX_BUNDLE_BYTES >> 20} MiB to send to a worker; "
                    "keep build trees and --out directories out of a recipe's directory"
                )
            if info.isreg():
                with open(path, "rb") as f:
                    tar.addfile(info, f)
            elif info.isdir() or info.issym():
                tar.addfile(info)
    data = buffer.getvalue()
    return Bundle(recipe, recipe.name, data, hashlib.sha256(data).hexdigest())


def _source_path(recipe: Path) -> Path | None:
    """The source tree a recipe names with ``path``, resolved; None for other kinds."""
    parsed = load_recipe(recipe)
    return None if isinstance(parsed, WheelRecipe) else parsed.source.path


def _neighbours(recipe: Path, own: Path | None) -> tuple[Path, ...]:
    """The other recipe files next to ``recipe``, and the source trees that only they
    name. A neighbour that does not parse is still a recipe file, and left out."""
    found: list[Path] = []
    for other in sorted(recipe.parent.glob("*.toml")):
        if other.absolute() == recipe:
            continue
        found.append(other.absolute())
        try:
            theirs = _source_path(other)
        except RecipeError:
            continue
        if theirs is not None and theirs != own and theirs.parent == recipe.parent.resolve():
            found.append(recipe.parent / theirs.name)
    return tuple(found)


def _walk(root: Path, exclude: tuple[Path, ...]) -> list[Path]:
    """Directories, regular files and symbolic links under ``root``, sorted; never what
    ``exclude`` names, nor sockets, FIFOs or devices."""
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = sorted(
            d for d in dirnames if d not in _SKIP and (here / d).absolute() not in exclude
        )
        for name in [*dirnames, *sorted(filenames)]:
            path = here / name
            if path.absolute() in exclude:
                continue
            mode = path.lstat().st_mode
            if stat.S_ISDIR(mode) or stat.S_ISREG(mode) or stat.S_ISLNK(mode):
                found.append(path)
    return sorted(found)


def unpack(data: bytes, dest: Path) -> None:
    """A bundle on the worker. Every member is checked before anything is written: plain
    relative names only, no ``..``, only directories, regular files and symbolic links
    that stay inside ``dest`` (this Python's tarfile has no extraction filter)."""
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        members = tar.getmembers()
        for member in members:
            _check_member(member)
        tar.extractall(dest, members=members)
    # The tar's times are fixed, to key the cache by content; the tree gets the time of its
    # arrival, as a fresh checkout would, so dpkg clamps every file to the changelog's date
    # (SOURCE_DATE_EPOCH) exactly as on the client, instead of shipping 1970.
    now = time.time()
    for path in [dest, *dest.rglob("*")]:
        os.utime(path, (now, now), follow_symlinks=False)


def _check_member(member: tarfile.TarInfo) -> None:
    name = member.name
    parts = name.split("/")
    if name.startswith("/") or ".." in parts or "\0" in name:
        raise UsageError(f"bundle member {name!r}: not a plain relative path")
    if not (member.isreg() or member.isdir() or member.issym()):
        raise UsageError(f"bundle member {name!r}: only files, directories and links travel")
    if member.issym():
        target = os.path.normpath(os.path.join(os.path.dirname(name), member.linkname))
        if member.linkname.startswith("/") or target == ".." or target.startswith("../"):
            raise UsageError(f"bundle member {name!r}: a link out of the bundle")
    member.mode &= 0o755
    member.uid = member.gid = 0


@dataclass(frozen=True)
class Options:
    """How every source of a stack is built: part of each result's cache key."""

    layout: str = "fat"
    backend: str = "host"
    levels: tuple[str, ...] = ()  # --levels, or () for each recipe's own
    lintian: bool = True


def cache_key(bundle: Bundle, options: Options) -> str:
    """What a result depends on that the client knows: the recipe and its directory (the
    source tree, pinned source hashes, benchmark), the options and deepdeb itself. The
    toolchain and chroot are the worker's and are recorded in each report."""
    text = json.dumps(
        {
            "bundle": bundle.sha256,
            "member": bundle.member,
            "options": [options.layout, options.backend, list(options.levels), options.lintian],
            "deepdeb": [__version__, own_digest()],
        },
        sort_keys=True,
    )
    return hashlib.sha256(text.encode()).hexdigest()


@functools.cache
def own_digest() -> str:
    """A digest of deepdeb's own code and data: a result made by another deepdeb (a
    changed decision rule, a fixed bug) is not this one's, whatever its version says."""
    package = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(str(path.relative_to(package)).encode() + b"\0")
            digest.update(path.read_bytes())
    return digest.hexdigest()


@dataclass
class Outcome:
    """What a worker sends back for one source: its files, or why it failed."""

    recipe: str  # as the client named it
    ok: bool
    source: str = ""  # the Debian source (or wheel project) name
    version: str = ""
    error: str = ""
    files: dict[str, bytes] = field(default_factory=dict)  # path in DIR/<source>/ -> bytes
    seconds: float = 0.0
    worker: dict[str, str] = field(default_factory=dict)  # host name, CPU, level
    # the source's tasks: stage (build, measure, test, finish), level, worker that ran it
    tasks: list[dict[str, str]] = field(default_factory=list)

    @property
    def report(self) -> dict[str, object]:
        """The source's report.json, as its build wrote it."""
        data = self.files.get("report.json")
        loaded = json.loads(data) if data else {}
        return loaded if isinstance(loaded, dict) else {}
