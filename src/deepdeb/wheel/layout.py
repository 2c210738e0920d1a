"""Where a wheel's files go in a Debian package, and the scripts dpkg installs for it.

The layout is dh-python's for bookworm: ``purelib``/``platlib`` under dist-packages,
scripts in /usr/bin with a ``#!/usr/bin/python3`` line, headers under
/usr/include/python3.X, and no pip RECORD (the files move and get byte-compiled).
"""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path, PurePosixPath

from deepdeb.debian.target import DIST_PACKAGES, PYTHON
from deepdeb.errors import WheelError
from deepdeb.sources.wheelfile import Wheel


def install_path(wheel: Wheel, member: str) -> str | None:
    """Where a wheel member goes in the Debian package (None: left out)."""
    data_dir = f"{wheel.dist_info.removesuffix('.dist-info')}.data/"
    if member == f"{wheel.dist_info}/RECORD" or member.startswith(f"{wheel.dist_info}/RECORD."):
        return None  # files move and get byte-compiled: pip's RECORD would be wrong
    if member.startswith(data_dir):
        kind, _, rest = member[len(data_dir) :].partition("/")
        if kind in ("purelib", "platlib"):
            return f"{DIST_PACKAGES}/{rest}"
        if kind == "scripts":
            return f"usr/bin/{rest}"
        if kind == "data":
            return f"usr/{rest}"
        if kind == "headers":
            return f"usr/include/python{PYTHON}/{wheel.name}/{rest}"
        raise WheelError(f"{wheel.path.name}: unknown .data directory {kind!r}")
    return f"{DIST_PACKAGES}/{member}"


def extract(wheel: Wheel, root: Path, drop: list[str] | None = None) -> list[str]:
    """Extract into a package root, verifying every file's hash as it is written.

    Returns the members left out by ``drop`` (glob patterns on wheel paths, for test-only
    libraries and the like).
    """
    dropped = []
    with zipfile.ZipFile(wheel.path) as zf:
        for info in zf.infolist():
            if info.is_dir():
                continue
            target = install_path(wheel, info.filename)
            expected = wheel.record.get(info.filename)
            if target is None:
                continue
            if drop and any(PurePosixPath(info.filename).match(p) for p in drop):
                dropped.append(info.filename)
                continue
            dest = root / target
            dest.parent.mkdir(parents=True, exist_ok=True)
            digest = hashlib.sha256()
            with zf.open(info) as src, open(dest, "wb") as out:
                for block in iter(lambda: src.read(1 << 20), b""):
                    digest.update(block)
                    out.write(block)
            if expected is not None and digest.hexdigest() != expected:
                raise WheelError(
                    f"{wheel.path.name}: {info.filename}: SHA-256 does not match RECORD "
                    "(the wheel was altered or damaged)"
                )
            mode = (info.external_attr >> 16) & 0o777
            dest.chmod(0o755 if mode & 0o111 or target.startswith("usr/bin/") else 0o644)
            if target.startswith("usr/bin/"):
                _fix_shebang(dest)
    return dropped


def _fix_shebang(script: Path) -> None:
    """Wheel scripts start with ``#!python``; Debian's must name /usr/bin/python3."""
    first, _, rest = script.read_bytes().partition(b"\n")
    if first.startswith(b"#!python"):
        script.write_bytes(b"#!/usr/bin/python3\n" + rest)


def entry_point_script(target: str) -> str:
    """A console script for ``module:func``, as pip and dh-python write them."""
    module, _, func = target.partition(":")
    func = func.split("[", 1)[0].strip()
    head = func.split(".")[0]
    return (
        "#!/usr/bin/python3\nimport sys\n"
        f"from {module.strip()} import {head}\n"
        f"if __name__ == '__main__':\n    sys.exit({func}())\n"
    )
