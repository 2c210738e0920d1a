"""lintian, Debian's package checker, run on built .debs."""

from __future__ import annotations

import re
from pathlib import Path

from deepdeb.errors import LintianError
from deepdeb.util import run


def lintian_tags(debs: list[Path]) -> tuple[list[str], list[str]]:
    """lintian's errors and warnings for ``debs``; a lintian that fails to run is an error."""
    proc = run(["lintian", "--no-tag-display-limit", *debs], check=False)
    tags = re.findall(r"^([EW]): (.*)$", proc.stdout, flags=re.M)
    # lintian exits 2 when it reports errors (--fail-on error): only a status without any
    # tag to explain it means that lintian itself failed.
    if proc.returncode not in (0, 1, 2) or (proc.returncode == 2 and not tags):
        raise LintianError(f"lintian failed to run:\n{proc.stderr.strip()[-1500:]}")
    errors = [text for kind, text in tags if kind == "E"]
    warnings = [text for kind, text in tags if kind == "W"]
    return errors, warnings
