"""An input a build would download, and how the scanners read the files that declare one.

The files are the scanned tree's, so untrusted: :func:`read` takes only regular files, of
bounded size, never following a link.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HEX = re.compile(r"[0-9a-f]+")


@dataclass
class Input:
    """One external input, as the JSON output shows it (see the README for the schema)."""

    kind: str
    name: str
    file: str  # relative to the scanned root
    line: int
    urls: list[str] = field(default_factory=list)
    version: str | None = None
    hash: str | None = None  # "sha256:…", "sha1:…", "commit:…", "integrity:…", "h1:…"
    size: int | None = None
    second_level: bool = False  # its real contents are listed in another download
    note: str | None = None
    # Counted in the download total: False for what a build on this platform would not
    # fetch (another platform's archive, an older CUDA variant of cuDNN).
    in_total: bool = True
    debian: str | None = None
    debian_match: str = "no match"  # "homepage", "name" or "no match"

    @property
    def pinned(self) -> bool:
        return self.hash is not None

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "pinned": self.pinned}


def hash_of(value: str) -> str | None:
    """ "ALGO=hex" or bare hex (by length) as "algo:hex"."""
    algo, _, digest = value.partition("=")
    if not digest:
        algo, digest = {40: "sha1", 64: "sha256", 128: "sha512"}.get(len(value), ""), value
    digest = digest.lower()
    return f"{algo.lower()}:{digest}" if algo and HEX.fullmatch(digest) else None


def second_level(url: str) -> bool:
    """Whether the URL is a JSON manifest, whose own entries are the downloads that matter."""
    return urlpath_suffix(url) == ".json"


def urlpath_suffix(url: str) -> str:
    """The extension of a URL's path, lower-cased; its query and fragment are not part of it."""
    path = url.split("?", 1)[0].split("#", 1)[0]
    return os.path.splitext(path)[1].lower()


MAX_FILE_BYTES = 16 << 20


UNPARSEABLE = (SyntaxError, ValueError, RecursionError, MemoryError)


def read(path: Path) -> str:
    """A file of the scanned tree as text: at most MAX_FILE_BYTES, and only a regular file
    (a FIFO would hang the scan, a device flood it)."""
    with open(path, "rb", opener=_nonblocking) as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise ValueError("not a regular file")
        data = f.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise ValueError(f"larger than {MAX_FILE_BYTES} bytes")
    return data.decode("utf-8", "replace")


def _nonblocking(path: str, flags: int) -> int:
    return os.open(path, flags | os.O_NONBLOCK | os.O_NOFOLLOW)
