"""Python requirements: ``requirements*.txt`` / ``.in`` and ``pyproject.toml``."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator
from pathlib import Path

from deepdeb.inventory.inputs import Input, read

_REQ = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*(.*)$")


def scan_requirements(root: Path, path: Path) -> Iterator[Input]:
    """Each requirement of a pip requirements file (continued lines joined, options skipped),
    pinned by its first ``--hash`` or, for a URL, by the commit it names."""
    rel = path.relative_to(root).as_posix()
    logical: list[tuple[int, str]] = []
    pending, start = "", 0
    for number, raw in enumerate(read(path).splitlines(), start=1):
        text = raw.split(" #", 1)[0].strip() if not raw.lstrip().startswith("#") else ""
        if not pending:
            start = number
        if text.endswith("\\"):
            pending += text[:-1] + " "
            continue
        logical.append((start, pending + text))
        pending = ""
    for number, line in logical:
        if not line or line.startswith("-"):
            continue
        hashes = re.findall(r"--hash[= ](\w+):([0-9a-f]+)", line)
        spec = re.sub(r"--hash[= ]\S+", "", line).split(";")[0].strip()
        if "://" in spec:
            name, _, url = spec.partition("@")
            url = url.strip() or spec
            commit = re.search(r"@([0-9a-f]{40})(?:#|$)", url)
            yield Input(
                "pypi",
                name.strip() or url,
                rel,
                number,
                urls=[url],
                hash=f"commit:{commit.group(1)}" if commit else None,
            )
            continue
        match = _REQ.match(spec)
        if not match:
            continue
        version = re.fullmatch(r"==\s*([^,\s]+)", match.group(3).strip())
        yield Input(
            "pypi",
            match.group(1),
            rel,
            number,
            version=version.group(1) if version else match.group(3).strip() or None,
            hash=f"{hashes[0][0]}:{hashes[0][1]}" if hashes else None,
        )


def scan_pyproject(root: Path, path: Path) -> Iterator[Input]:
    """A pyproject.toml's ``[build-system] requires``: installed before the build starts,
    and never pinned by a hash there."""
    rel = path.relative_to(root).as_posix()
    try:
        data = tomllib.loads(read(path))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError):
        return
    lines = read(path).splitlines()
    for requirement in data.get("build-system", {}).get("requires", []):
        match = _REQ.match(requirement)
        if match:
            line = next((i for i, t in enumerate(lines, 1) if requirement in t), 1)
            yield Input(
                "pyproject-build",
                match.group(1),
                rel,
                line,
                version=match.group(3).strip() or None,
                note="build requirement, resolved by the installer",
            )
