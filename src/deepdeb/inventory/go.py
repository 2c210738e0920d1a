"""Go modules pinned in ``go.sum``."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from deepdeb.inventory.inputs import Input, read


def scan_go_sum(root: Path, path: Path) -> Iterator[Input]:
    """The module zips a go.sum pins, as proxy.golang.org serves them (capitals escaped as
    ``!x``); its lines for a module's go.mod alone are left out."""
    rel = path.relative_to(root).as_posix()
    for number, line in enumerate(read(path).splitlines(), start=1):
        parts = line.split()
        if len(parts) != 3 or parts[1].endswith("/go.mod"):
            continue
        module, version, digest = parts
        escaped = re.sub(r"[A-Z]", lambda m: "!" + m.group(0).lower(), module)
        yield Input(
            "go",
            module,
            rel,
            number,
            version=version,
            hash=digest,
            urls=[f"https://proxy.golang.org/{escaped}/@v/{version}.zip"],
        )
