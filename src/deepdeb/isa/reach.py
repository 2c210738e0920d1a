"""How the installed system's loader reaches each shared library, and so where its
glibc-hwcaps variants must go for the loader to pick them.

The loader looks a library up by soname in a list of directories (a program's RUNPATH,
ld.so.cache, the system directories) and, in each, first in its ``glibc-hwcaps/<level>/``
subdirectories. A variant counts only where the loader looks, on the system where the
packages are installed by dpkg, with their maintainer scripts run:

``directory``
    The library lies in a directory the loader searches (``data/loader.toml``, plus the
    ``ld.so.conf.d`` files the package itself ships): variants go to
    ``<dir>/glibc-hwcaps/<level>/``.
``alternative``
    The library lies in a directory of its own and reaches the search path through an
    update-alternatives link (``<libdir>/libblas.so.3`` -> ``/etc/alternatives/...`` ->
    ``<libdir>/blas/libblas.so.3``). The loader never searches ``<libdir>/blas/glibc-hwcaps``,
    and a copy in ``<libdir>/glibc-hwcaps/`` would override the administrator's choice of
    another provider (OpenBLAS, MKL) with this one. So every variant becomes a *slave link*
    of the provider's own alternative: ``<libdir>/glibc-hwcaps/<level>/libblas.so.3``
    exists exactly while this provider is the selected one, and update-alternatives
    removes it when another provider is selected. The split layout cannot do that (the
    add-on package would have to re-register the base package's alternative), so there
    such variants are not shipped.
``runpath``
    The library lies in a private directory that programs of the same source name in
    their RUNPATH; the loader searches ``glibc-hwcaps/`` below RUNPATH directories too.
``unreachable``
    Nothing makes the loader look in its directory by name (a plugin loaded by path, say):
    a variant there would never be loaded, so none is shipped, and the report says why.

The functions at the top are pure (text in, decisions out); :func:`plan` reads packages.
"""

from __future__ import annotations

import os
import posixpath
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from deepdeb.debian.elf import read_elf
from deepdeb.report.schema import (
    ALTERNATIVE,
    DIRECTORY,
    HWCAPS,
    RUNPATH,
    UNREACHABLE,
    AltLink,
    Reach,
)
from deepdeb.util import data_toml, run

# --- the loader's directories -----------------------------------------------------------


def normalise(directory: str) -> str:
    """A directory as bookworm's merged /usr sees it (/lib/x is /usr/lib/x)."""
    directory = posixpath.normpath(directory)
    for merged in ("/lib", "/lib64", "/lib32", "/libx32"):
        if directory == merged or directory.startswith(merged + "/"):
            return "/usr" + directory
    return directory


def loader_dirs(architecture: str = "amd64", extra: Iterable[str] = ()) -> frozenset[str]:
    """The directories the loader searches by name on a stock Debian system, plus ``extra``
    (the package's own ld.so.conf.d entries)."""
    data = data_toml("loader.toml")
    arch = data["arch"][architecture]
    return frozenset(normalise(d) for d in [*arch["system"], *arch["conf"], *extra])


def ld_so_conf_dirs(files: Iterable[str]) -> list[str]:
    """Directories named by ld.so.conf.d files (their text); ``include`` lines are not
    followed, since a package's file names directories."""
    dirs = []
    for text in files:
        for line in text.splitlines():
            line = line.split("#", 1)[0].strip()
            if line.startswith("/"):
                dirs.append(line)
    return dirs


# --- update-alternatives in maintainer scripts ------------------------------------------


@dataclass(frozen=True)
class Install:
    """One ``update-alternatives --install`` in a maintainer script."""

    link: str
    name: str
    path: str
    priority: str
    slaves: tuple[tuple[str, str, str], ...]  # (link, name, path)
    end: int  # offset in the script just after the command's last argument
    literal: bool  # False when an argument uses shell expansion ($VAR, `cmd`)

    def links(self) -> list[tuple[str, str, str]]:
        """The master and every slave as (link, name, path)."""
        return [(self.link, self.name, self.path), *self.slaves]


_OPTIONS_WITH_ARGUMENT = ("--altdir", "--admindir", "--instdir", "--root", "--log")


def _command_end(script: str, start: int) -> int:
    """Offset after the last argument of the simple command starting at ``start``: the
    next unquoted ``;``, ``&``, ``|``, ``)``, comment or unescaped newline."""
    i, quote = start, ""
    while i < len(script):
        c = script[i]
        if quote:
            if c == "\\" and quote == '"':
                i += 2
                continue
            if c == quote:
                quote = ""
        elif c == "\\":
            i += 2  # an escaped character, or a line continuation
            continue
        elif c in "'\"":
            quote = c
        elif c in ";&|)\n" or (c == "#" and script[i - 1] in " \t"):
            break
        i += 1
    i = min(i, len(script))
    while i > start and script[i - 1] in " \t":
        i -= 1
    return i


def _starts(script: str) -> Iterable[int]:
    """Offsets of ``update-alternatives`` where it is a command, not in a comment."""
    word = "update-alternatives"
    at = script.find(word)
    while at != -1:
        before = script[at - 1] if at else "\n"
        after = script[at + len(word) : at + len(word) + 1]
        line = script[script.rfind("\n", 0, at) + 1 : at]
        if (before in " \t\n;&|(/" and after in (" ", "\t", "\\")) and "#" not in line:
            yield at
        at = script.find(word, at + 1)


def parse_installs(script: str) -> list[Install]:
    """Every ``update-alternatives --install`` in a maintainer script."""
    found = []
    for start in _starts(script):
        end = _command_end(script, start)
        try:
            words = shlex.split(script[start:end].replace("\\\n", " "))
        except ValueError:
            continue
        words = words[1:]
        while words and words[0].startswith("--") and words[0] != "--install":
            words = words[2:] if words[0] in _OPTIONS_WITH_ARGUMENT else words[1:]
        if len(words) < 5 or words[0] != "--install":
            continue
        link, name, path, priority = words[1:5]
        slaves = []
        rest = words[5:]
        while len(rest) >= 4 and rest[0] == "--slave":
            slaves.append((rest[1], rest[2], rest[3]))
            rest = rest[4:]
        arguments = [link, name, path, priority, *(x for s in slaves for x in s)]
        literal = not any("$" in a or "`" in a for a in arguments)
        found.append(Install(link, name, path, priority, tuple(slaves), end, literal))
    return found


def add_slaves(script: str, additions: Mapping[int, Sequence[tuple[str, str, str]]]) -> str:
    """``script`` with ``--slave`` links appended to the install commands ending at the
    given offsets (from :func:`parse_installs`); everything else is kept byte for byte."""
    for end in sorted(additions, reverse=True):
        text = "".join(
            " \\\n    --slave " + " ".join(shlex.quote(part) for part in slave)
            for slave in additions[end]
        )
        script = script[:end] + text + script[end:]
    return script


# --- classification ---------------------------------------------------------------------


def resolve(path: str, symlinks: Mapping[str, str]) -> str:
    """``path`` with the package's own symlinks (absolute path -> link text) followed."""
    for _ in range(40):
        target = symlinks.get(path)
        if target is None:
            return path
        path = posixpath.normpath(posixpath.join(posixpath.dirname(path), target))
    return path


@dataclass(frozen=True)
class PackageFacts:
    """What classification needs to know about one binary package."""

    name: str
    libraries: Mapping[str, str]  # absolute path -> soname (outside glibc-hwcaps/)
    symlinks: Mapping[str, str] = field(default_factory=dict)  # absolute path -> link text
    postinst: str = ""
    ld_so_conf: tuple[str, ...] = ()  # the texts of the ld.so.conf.d files it ships


def classify(
    package: PackageFacts,
    directories: frozenset[str],
    runpaths: Mapping[str, str],
    layout: str = "fat",
) -> list[Reach]:
    """How the loader reaches each library of ``package``.

    ``directories`` are the loader's own (see :func:`loader_dirs`); ``runpaths`` maps each
    directory some file of the source names in its RUNPATH to that file.
    """
    own = frozenset(normalise(d) for d in ld_so_conf_dirs(package.ld_so_conf))
    searched = directories | own
    installs = parse_installs(package.postinst)
    reaches = []
    for path, soname in sorted(package.libraries.items()):
        directory = normalise(posixpath.dirname(path))
        via = [
            (install, link)
            for install in installs
            for link in install.links()
            if resolve(link[2], package.symlinks) == path
        ]
        if directory in searched:
            how, why, alternative = DIRECTORY, f"in {directory}, which the loader searches", None
        elif via:
            how, why, alternative = _through_alternative(*via[0], searched, soname, layout)
        elif directory in runpaths:
            how, why, alternative = RUNPATH, f"in the RUNPATH of {runpaths[directory]}", None
        else:
            how, alternative = UNREACHABLE, None
            why = (
                f"the loader never searches {directory}: it is not a system library "
                "directory, no update-alternatives link leads there and no RUNPATH of this "
                "source names it (a plugin loaded by path?); a glibc-hwcaps copy there "
                "would never be loaded"
            )
        consumer = runpaths.get(directory) if how == RUNPATH else None
        reaches.append(Reach(package.name, path, soname, how, why, alternative, consumer))
    return reaches


def _through_alternative(
    install: Install,
    link: tuple[str, str, str],
    searched: frozenset[str],
    soname: str,
    layout: str,
) -> tuple[str, str, AltLink | None]:
    """How a library behind an update-alternatives link can get variants, if it can."""
    path, name, target = link
    where = f"update-alternatives link {path} ({install.name})"
    problem = ""
    if not install.literal:
        problem = "registered with shell expansions deepdeb does not follow"
    elif posixpath.basename(path) != soname:
        problem = f"whose file name is not the soname {soname}"
    elif normalise(posixpath.dirname(path)) not in searched:
        problem = "which is itself outside the loader's directories"
    elif layout == "split":
        problem = (
            "and only the provider package itself can register its variants as slave links "
            "of its alternative (use the fat layout)"
        )
    if problem:
        return UNREACHABLE, f"reached through the {where}, {problem}: no variant shipped", None
    try:
        priority = int(install.priority)
    except ValueError:
        priority = 0
    why = (
        f"through the {where}: each variant is a slave link of this provider, present only "
        "while it is the selected one"
    )
    alternative = AltLink(install.name, install.link, install.path, priority, name, path, target)
    return ALTERNATIVE, why, alternative


def _pairs(install: Install) -> list[tuple[str, str]]:
    return [(link, name) for link, name, _ in install.links()]


def register_variants(
    script: str, reaches: Sequence[Reach], levels: Mapping[str, Sequence[str]]
) -> str:
    """The postinst with slave links for the variants of alternative-reached libraries.

    ``levels`` maps a library path to the levels that got a copy of it.
    """
    installs = parse_installs(script)
    additions: dict[int, list[tuple[str, str, str]]] = {}
    for r in reaches:
        if r.alternative is None or not levels.get(r.path):
            continue
        link = r.alternative.link
        install = next(
            i for i in installs if i.name == r.alternative.group and link in dict(_pairs(i))
        )
        additions.setdefault(install.end, []).extend(r.slave(level) for level in levels[r.path])
    return add_slaves(script, additions)


# --- reading packages -------------------------------------------------------------------


def facts(name: str, tree: Path) -> PackageFacts:
    """Facts about a package unpacked with ``dpkg-deb -R`` (data and DEBIAN/) at ``tree``."""
    libraries: dict[str, str] = {}
    symlinks: dict[str, str] = {}
    for path in sorted(tree.rglob("*")):
        rel = path.relative_to(tree)
        if rel.parts[0] == "DEBIAN" or HWCAPS in rel.parts:
            continue
        absolute = "/" + rel.as_posix()
        if path.is_symlink():
            symlinks[absolute] = os.readlink(path)
        elif path.is_file() and _is_elf(path):
            info = read_elf(path)
            if info.is_shared_library and info.soname and "usr/lib/debug" not in absolute:
                libraries[absolute] = info.soname
    postinst = tree / "DEBIAN" / "postinst"
    conf = sorted((tree / "etc" / "ld.so.conf.d").glob("*.conf"))
    return PackageFacts(
        name,
        libraries,
        symlinks,
        postinst.read_text(errors="replace") if postinst.is_file() else "",
        tuple(c.read_text(errors="replace") for c in conf if c.is_file()),
    )


def runpath_dirs(trees: Iterable[Path]) -> dict[str, str]:
    """Directory -> a file naming it in its RUNPATH (or RPATH), over unpacked packages."""
    found: dict[str, str] = {}
    for tree in trees:
        for path in sorted(tree.rglob("*")):
            rel = path.relative_to(tree)
            if rel.parts[0] == "DEBIAN" or path.is_symlink() or not path.is_file():
                continue
            if "usr/lib/debug" in rel.as_posix() or not _is_elf(path):
                continue
            absolute = "/" + rel.as_posix()
            for entry in read_elf(path).runpath:
                entry = entry.replace("${ORIGIN}", "$ORIGIN")
                entry = entry.replace("$ORIGIN", posixpath.dirname(absolute))
                if entry.startswith("/") and "$" not in entry:
                    found.setdefault(normalise(entry), absolute)
    return found


def _is_elf(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(4) == b"\x7fELF"


def plan(debs: Mapping[str, Path], layout: str, work: Path) -> dict[str, list[Reach]]:
    """How the loader reaches every library of a source's packages (package -> reaches).

    ``debs`` are the stock build's packages; each is unpacked, maintainer scripts
    included, under ``work``.
    """
    trees = {}
    work.mkdir(parents=True, exist_ok=True)
    for name, deb in sorted(debs.items()):
        if deb.suffix == ".deb":
            trees[name] = work / name
            run(["dpkg-deb", "-R", deb, trees[name]])
    runpaths = runpath_dirs(trees.values())
    directories = loader_dirs()
    return {
        name: classify(facts(name, tree), directories, runpaths, layout)
        for name, tree in trees.items()
    }
