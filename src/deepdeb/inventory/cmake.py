"""Find downloads declared in CMake files, without running CMake.

CMake's syntax is simple enough to tokenise: a command is ``name(args)``, arguments are
separated by white space, may be quoted, and ``#`` starts a comment. ``${VAR}`` is
replaced from ``set()`` calls seen in the scanned files; anything else stays as written.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

_COMMAND = re.compile(r"^[ \t]*([A-Za-z_][A-Za-z0-9_]*)[ \t]*\(", re.M)
_TOKEN = re.compile(r'"((?:[^"\\]|\\.)*)"|\[(=*)\[(.*?)\]\2\]|([^\s()"#]+)', re.S)
_VAR = re.compile(r"\$\{([A-Za-z0-9_.+-]+)\}")

INTERESTING = {"fetchcontent_declare", "externalproject_add", "file", "execute_process", "set"}


@dataclass(frozen=True)
class Command:
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
        if name not in INTERESTING:
            continue
        depth, i = 1, match.end()
        while i < len(text) and depth:
            depth += {"(": 1, ")": -1}.get(text[i], 0)
            i += 1
        body = text[match.end() : i - 1]
        args = [m.group(1) or m.group(3) or m.group(4) or "" for m in _TOKEN.finditer(body)]
        yield Command(name, args, text.count("\n", 0, match.start()) + 1)


def expand(value: str, variables: dict[str, str]) -> str:
    return _VAR.sub(lambda m: variables.get(m.group(1), m.group(0)), value)


def keyword_args(args: list[str], keywords: set[str]) -> dict[str, list[str]]:
    """Group a command's arguments by the upper-case keywords that introduce them."""
    grouped: dict[str, list[str]] = {}
    current = ""
    for arg in args:
        if arg in keywords:
            current = arg
            grouped.setdefault(current, [])
        else:
            grouped.setdefault(current, []).append(arg)
    return grouped
