"""Git submodules (``.gitmodules``), pinned by the commit the tree records for each."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from deepdeb.inventory.inputs import Input, read
from deepdeb.util import run


def scan_gitmodules(root: Path, path: Path) -> Iterator[Input]:
    """Each submodule of a .gitmodules file, pinned by the commit in the superproject's git
    index (unpinned where the tree is not a git checkout)."""
    rel = path.relative_to(root).as_posix()
    sections: list[tuple[str, int, dict[str, str]]] = []
    for number, raw in enumerate(read(path).splitlines(), start=1):
        line = raw.strip()
        header = re.match(r'\[submodule\s+"([^"]+)"\]', line)
        if header:
            sections.append((header.group(1), number, {}))
        elif "=" in line and sections:
            key, _, value = line.partition("=")
            sections[-1][2][key.strip()] = value.strip()
    for name, number, values in sections:
        commit = _gitlink(path.parent, values.get("path", name))
        yield Input(
            "git_submodule",
            name,
            rel,
            number,
            urls=[values.get("url", "")],
            version=values.get("branch"),
            hash=f"commit:{commit}" if commit else None,
            note=None if commit else "commit is in the superproject's git index",
        )


def _gitlink(repo: Path, sub: str) -> str | None:
    """The commit a submodule is pinned to, from the git index, when there is one."""
    if not (repo / ".git").exists():
        return None
    out = run(["git", "-C", repo, "ls-files", "-s", "--", sub], check=False).stdout.split()
    return out[1] if len(out) >= 2 and out[0] == "160000" else None
