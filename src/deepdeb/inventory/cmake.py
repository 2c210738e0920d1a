"""Find downloads declared in CMake files, without running CMake.

CMake's syntax is simple enough to tokenise: a command is ``name(args)``, arguments are
separated by white space, may be quoted, and ``#`` starts a comment. ``${VAR}`` is
replaced from ``set()`` calls seen in the scanned files; anything else stays as written.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from deepdeb.inventory.inputs import Input, hash_of, read, second_level

_COMMAND = re.compile(r"^[ \t]*([A-Za-z_][A-Za-z0-9_]*)[ \t]*\(", re.M)
_TOKEN = re.compile(r'"((?:[^"\\]|\\.)*)"|\[(=*)\[(.*?)\]\2\]|([^\s()"#]+)', re.S)
_VAR = re.compile(r"\$\{([A-Za-z0-9_.+-]+)\}")

INTERESTING = {
    "fetchcontent_declare",
    "externalproject_add",
    "file",
    "execute_process",
    "set",
    "string",
}


def _fetch_command(name: str) -> str | None:
    """FetchContent_Declare and ExternalProject_Add, and projects' own wrappers with the
    same signature (ONNX Runtime's ``onnxruntime_fetchcontent_declare``)."""
    if name.endswith("fetchcontent_declare"):
        return "fetchcontent_declare"
    return "externalproject_add" if name == "externalproject_add" else None


@dataclass(frozen=True)
class Command:
    """One CMake command call, with its arguments as tokenised (variables not yet expanded)."""

    name: str  # lower case, as CMake compares them
    args: list[str]
    line: int


def _strip_comments(text: str) -> str:
    """Blank out ``#`` comments (not inside quotes) but keep line numbers."""
    out, quoted = [], False
    i = 0
    while i < len(text):
        c = text[i]
        if c == '"' and (i == 0 or text[i - 1] != "\\"):
            quoted = not quoted
        if c == "#" and not quoted:
            end = text.find("\n", i)
            end = len(text) if end < 0 else end
            out.append(" " * (end - i))
            i = end
            continue
        out.append(c)
        i += 1
    return "".join(out)


def commands(text: str) -> Iterator[Command]:
    """The commands in a CMake file that can declare downloads (plus set())."""
    text = _strip_comments(text)
    for match in _COMMAND.finditer(text):
        name = match.group(1).lower()
        if name not in INTERESTING and _fetch_command(name) is None:
            continue
        depth, i = 1, match.end()
        while i < len(text) and depth:
            depth += {"(": 1, ")": -1}.get(text[i], 0)
            i += 1
        body = text[match.end() : i - 1]
        args = [m.group(1) or m.group(3) or m.group(4) or "" for m in _TOKEN.finditer(body)]
        yield Command(name, args, text.count("\n", 0, match.start()) + 1)


def expand(value: str, variables: dict[str, str]) -> str:
    """``${VAR}`` replaced where the scanned set() calls define VAR; others stay as written."""
    return _VAR.sub(lambda m: variables.get(m.group(1), m.group(0)), value)


# The option families of FetchContent and ExternalProject: an upper-case word starting
# with one of these is an option, never a URL (DOWNLOAD_NO_EXTRACT, LOG_DOWNLOAD, ...).
_OPTION = re.compile(
    r"(DOWNLOAD|LOG|USES_TERMINAL|GIT|URL|BUILD|INSTALL|CONFIGURE|UPDATE|PATCH|TEST|STEP|CMAKE"
    r"|SOURCE|BINARY|TLS|NETRC|HTTP|INACTIVITY|TIMEOUT|LIST|DEPENDS|EXCLUDE|INDEPENDENT|STAMP"
    r"|TMP|PREFIX|SVN|HG|CVS|FIND_PACKAGE|OVERRIDE|SYSTEM)(_[A-Z0-9_]+)?"
)


def keyword_args(args: list[str], keywords: set[str]) -> dict[str, list[str]]:
    """Group a command's arguments by the upper-case keywords that introduce them; for a
    fetch command every option of those families counts, so that a flag such as
    DOWNLOAD_NO_EXTRACT ends the URL list instead of joining it."""
    grouped: dict[str, list[str]] = {}
    current = ""
    fetch = bool(keywords & {"URL", "GIT_REPOSITORY"})
    for arg in args:
        if arg in keywords or (fetch and _OPTION.fullmatch(arg)):
            current = arg
            grouped.setdefault(current, [])
        else:
            grouped.setdefault(current, []).append(arg)
    return grouped


# --- the scanner ---------------------------------------------------------------------------


_FETCH_KEYWORDS = {
    "GIT_REPOSITORY",
    "GIT_TAG",
    "URL",
    "URL_HASH",
    "URL_MD5",
    "SOURCE_DIR",
    "BINARY_DIR",
    "DOWNLOAD_COMMAND",
    "CONFIGURE_COMMAND",
    "BUILD_COMMAND",
    "INSTALL_COMMAND",
    "PATCH_COMMAND",
    "UPDATE_COMMAND",
    "CMAKE_ARGS",
    "SOURCE_SUBDIR",
    "DOWNLOAD_EXTRACT_TIMESTAMP",
    "GIT_SHALLOW",
    "GIT_PROGRESS",
    "FIND_PACKAGE_ARGS",
    "OVERRIDE_FIND_PACKAGE",
    "EXCLUDE_FROM_ALL",
    "TLS_VERIFY",
    "DOWNLOAD_NAME",
    "PREFIX",
    "TEST_COMMAND",
}


def scan_cmake(root: Path, files: list[Path]) -> Iterator[Input]:
    """The downloads that FetchContent, ExternalProject, file(DOWNLOAD) and execute_process
    git clones declare; the set() values of all the files are read first (one file often
    uses another's)."""
    parsed = []
    variables: dict[str, str] = {}
    for path in files:
        cmds = list(commands(read(path)))
        parsed.append((path, cmds))
        for c in cmds:
            _define(c, variables)
    for path, cmds in parsed:
        rel = path.relative_to(root).as_posix()
        for c in cmds:
            args = [expand(a, variables) for a in c.args]
            fetch = _fetch_command(c.name)
            if fetch and args:
                found = _cmake_fetch(rel, c, args, fetch)
                if found is not None:
                    yield found
            elif c.name == "file" and len(args) >= 2 and args[0] == "DOWNLOAD":
                kw = keyword_args(args[2:], {"EXPECTED_HASH", "EXPECTED_MD5"})
                hash_ = (
                    hash_of(kw["EXPECTED_HASH"][0])
                    if kw.get("EXPECTED_HASH")
                    else hash_of("MD5=" + kw["EXPECTED_MD5"][0])
                    if kw.get("EXPECTED_MD5")
                    else None
                )
                yield Input(
                    "cmake_file_download",
                    os.path.basename(args[1].split("?")[0]),
                    rel,
                    c.line,
                    urls=[args[1]],
                    hash=hash_,
                    second_level=second_level(args[1]),
                )
            elif c.name == "execute_process" and "clone" in args:
                at = args.index("clone")
                urls = [a for a in args[at + 1 :] if "://" in a or a.startswith("git@")]
                if urls and at > 0 and args[at - 1].endswith("git"):
                    yield Input(
                        "git_clone",
                        urls[0].rstrip("/").rsplit("/", 1)[-1].removesuffix(".git"),
                        rel,
                        c.line,
                        urls=urls[:1],
                        note="cloned at configure time, whatever the branch holds",
                    )


def _define(c: Command, variables: dict[str, str]) -> None:
    """What set() and string(CONCAT|APPEND) give a variable (the first definition wins:
    a scan does not know which branch of an if() runs)."""
    if c.name == "set" and len(c.args) >= 2:
        variables.setdefault(c.args[0], expand(" ".join(c.args[1:]), variables))
    elif c.name == "string" and len(c.args) >= 3 and c.args[0] == "CONCAT":
        variables.setdefault(c.args[1], "".join(expand(a, variables) for a in c.args[2:]))
    elif c.name == "string" and len(c.args) >= 3 and c.args[0] == "APPEND":
        old = variables.get(c.args[1], "")
        variables[c.args[1]] = old + "".join(expand(a, variables) for a in c.args[2:])


def _cmake_fetch(rel: str, c: Command, args: list[str], command: str) -> Input | None:
    """The input a fetch command declares; None for an ExternalProject whose source is
    already in the tree (SOURCE_DIR, no URL or repository): it downloads nothing."""
    kw = keyword_args(args[1:], _FETCH_KEYWORDS)
    if not kw.get("GIT_REPOSITORY") and not kw.get("URL"):
        return None
    kind = "cmake_fetchcontent" if command == "fetchcontent_declare" else "cmake_externalproject"
    if kw.get("GIT_REPOSITORY"):
        tag = kw["GIT_TAG"][0] if kw.get("GIT_TAG") else None
        pinned = tag is not None and re.fullmatch(r"[0-9a-f]{40}", tag) is not None
        return Input(
            kind,
            args[0],
            rel,
            c.line,
            urls=kw["GIT_REPOSITORY"][:1],
            version=None if pinned else tag,
            hash=f"commit:{tag}" if pinned else None,
        )
    hash_ = (
        hash_of(kw["URL_HASH"][0])
        if kw.get("URL_HASH")
        else (hash_of("MD5=" + kw["URL_MD5"][0]) if kw.get("URL_MD5") else None)
    )
    urls = kw.get("URL", [])
    return Input(
        kind,
        args[0],
        rel,
        c.line,
        urls=urls,
        hash=hash_,
        second_level=any(second_level(u) for u in urls),
    )
