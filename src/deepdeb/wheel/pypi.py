"""PyPI over HTTP, the resolver's only network code: the Simple API and PEP 658 metadata.

Two kinds of answers, cached under deepdeb's cache (``util.cache_root()/pypi``) and written
atomically, so that a resolve can be repeated offline and a killed one leaves no half file:

* a project's Simple API page (``/simple/<name>/`` asked for as
  ``application/vnd.pypi.simple.v1+json``): it changes with every upload, so it is reused
  for a day, and an older copy is used when PyPI cannot be reached;
* a wheel's core metadata (``<wheel URL>.metadata``, PEP 658/714): immutable, keyed by the
  wheel's SHA-256. Where that file answers 404 (from this network the Simple pages
  advertise none, and many wheels' files are missing), the ``METADATA`` member is read out
  of the wheel itself with HTTP range requests: the zip's central directory at its end,
  then that one member, a few hundred KiB of a 220 MB TensorFlow wheel. The per-version
  JSON API (``/pypi/<name>/<version>/json``) answered 404 here, so it is not used.

``DEEPDEB_PYPI_SIMPLE`` points at another Simple API (a mirror).
"""

from __future__ import annotations

import io
import json
import os
import re
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name

from deepdeb import __version__
from deepdeb.errors import PackageIndexError
from deepdeb.util import atomic_write_bytes, cache_root
from deepdeb.wheel.releases import Metadata, Release, parse_metadata, releases

SIMPLE = "https://pypi.org/simple"
ACCEPT = "application/vnd.pypi.simple.v1+json"
PAGE_MAX_AGE = 24 * 3600  # seconds a cached Simple page is used without asking again
TIMEOUT = 60


def _cache() -> Path:
    return cache_root() / "pypi"


def _get(url: str, accept: str | None = None, byte_range: tuple[int, int] | None = None) -> bytes:
    """One HTTP GET (of bytes ``start``..``end`` inclusive when given a range); urllib's
    errors propagate (the callers decide what a 404 means)."""
    headers = {"User-Agent": f"deepdeb/{__version__}"}
    if accept:
        headers["Accept"] = accept
    if byte_range:
        headers["Range"] = f"bytes={byte_range[0]}-{byte_range[1]}"
    request = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
        data: bytes = response.read()
        return data


def simple_page(name: str, *, refresh: bool = False) -> dict[str, Any]:
    """A project's Simple API JSON page, from the cache when it is less than a day old."""
    project = canonicalize_name(name)
    if not re.fullmatch(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?", project):
        raise PackageIndexError(f"not a project name: {name!r}")
    cached = _cache() / "simple" / f"{project}.json"
    fresh = cached.is_file() and time.time() - cached.stat().st_mtime < PAGE_MAX_AGE
    if fresh and not refresh:
        return _json(cached.read_bytes(), str(cached))
    base = os.environ.get("DEEPDEB_PYPI_SIMPLE", SIMPLE).rstrip("/")
    try:
        data = _get(f"{base}/{project}/", ACCEPT)
    except urllib.error.HTTPError as e:
        if e.code == 404:
            raise PackageIndexError(f"{project}: no such project on {base}") from None
        return _stale(cached, f"{base}/{project}/: HTTP {e.code}")
    except (urllib.error.URLError, TimeoutError, OSError) as e:
        return _stale(cached, f"{base}/{project}/: {e}")
    page = _json(data, f"{base}/{project}/")
    atomic_write_bytes(cached, data)
    return page


def _stale(cached: Path, problem: str) -> dict[str, Any]:
    """An older cached page when the index cannot answer; an error when there is none."""
    if cached.is_file():
        return _json(cached.read_bytes(), str(cached))
    raise PackageIndexError(f"{problem}, and nothing is cached")


def _json(data: bytes, where: str) -> dict[str, Any]:
    try:
        page = json.loads(data)
    except ValueError:
        raise PackageIndexError(f"{where}: not JSON") from None
    if not isinstance(page, dict) or not isinstance(page.get("files"), list):
        raise PackageIndexError(f"{where}: not a Simple API project page")
    return page


def metadata_text(url: str, sha256: str, size: int = 0) -> str | None:
    """A wheel's core metadata, cached by the wheel's digest: its PEP 658 file, else the
    METADATA member read out of the wheel by range requests; None when neither exists."""
    if not re.fullmatch(r"[0-9a-f]{64}", sha256):
        raise PackageIndexError(f"{url}: no SHA-256 on the index")
    cached = _cache() / "metadata" / f"{sha256}.metadata"
    if cached.is_file():
        return cached.read_text(encoding="utf-8", errors="replace")
    try:
        try:
            data: bytes | None = _get(url + ".metadata")
        except urllib.error.HTTPError as e:
            if e.code != 404:
                raise
            data = _member(url, size) if size > 0 else None
    except urllib.error.HTTPError as e:
        raise PackageIndexError(f"{url}: HTTP {e.code}") from None
    except (urllib.error.URLError, TimeoutError, OSError, zipfile.BadZipFile) as e:
        raise PackageIndexError(f"{url}: {e}") from None
    if data is None:
        return None
    atomic_write_bytes(cached, data)
    return data.decode("utf-8", errors="replace")


class _Remote(io.RawIOBase):
    """A file on a web server read by range requests, in blocks, each fetched once: what
    :class:`zipfile.ZipFile` needs to read one member of a large wheel."""

    BLOCK = 256 * 1024

    def __init__(self, url: str, size: int) -> None:
        self.url, self.size, self.pos = url, size, 0
        self.blocks: dict[int, bytes] = {}

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.size}[whence]
        self.pos = max(0, base + offset)
        return self.pos

    def readinto(self, buffer: Any) -> int:
        end = min(self.size, self.pos + len(buffer))
        if end <= self.pos:
            return 0
        first, last = self.pos // self.BLOCK, (end - 1) // self.BLOCK
        missing = [b for b in range(first, last + 1) if b not in self.blocks]
        if missing:  # one request for the whole missing stretch
            lo, hi = missing[0] * self.BLOCK, min(self.size, (missing[-1] + 1) * self.BLOCK)
            data = _get(self.url, byte_range=(lo, hi - 1))
            for b in range(missing[0], missing[-1] + 1):
                self.blocks[b] = data[b * self.BLOCK - lo : (b + 1) * self.BLOCK - lo]
        joined = b"".join(self.blocks[b] for b in range(first, last + 1))
        chunk = joined[self.pos - first * self.BLOCK : end - first * self.BLOCK]
        buffer[: len(chunk)] = chunk
        self.pos += len(chunk)
        return len(chunk)


def _member(url: str, size: int) -> bytes | None:
    """The ``*.dist-info/METADATA`` member of a remote wheel, None when it has none."""
    found = remote_members(url, size, lambda n: bool(re.fullmatch(r"[^/]+\.dist-info/METADATA", n)))
    return next(iter(found.values())) if len(found) == 1 else None


MAX_REMOTE_MEMBER = 4 << 20


def remote_members(url: str, size: int, wanted: Callable[[str], bool]) -> dict[str, bytes]:
    """The members of a remote wheel that ``wanted`` names, read by range requests: its
    central directory, then those members only (a cuDNN wheel's licence text and METADATA
    cost one 256 KiB block of its 658 MB). A member larger than 4 MiB uncompressed is
    refused: these are texts, and a hostile index could serve a zip bomb."""
    with zipfile.ZipFile(io.BufferedReader(_Remote(url, size))) as whl:
        infos = [i for i in whl.infolist() if wanted(i.filename) and not i.is_dir()]
        big = [i.filename for i in infos if i.file_size > MAX_REMOTE_MEMBER]
        if big:
            raise PackageIndexError(f"{url}: {', '.join(big)} larger than 4 MiB")
        return {i.filename: whl.read(i) for i in infos}


class PyPI:
    """The resolver's view of PyPI: releases per project, metadata per release (memoised
    for one run on top of the disk cache)."""

    def __init__(self, refresh: bool = False) -> None:
        self.refresh = refresh
        self._releases: dict[str, list[Release]] = {}

    def releases(self, name: str) -> list[Release]:
        """The project's releases, newest first (see :func:`releases.releases`)."""
        project = canonicalize_name(name)
        if project not in self._releases:
            self._releases[project] = releases(simple_page(project, refresh=self.refresh))
        return self._releases[project]

    def metadata(self, release: Release) -> Metadata | None:
        """The release's core metadata from its wheel, None when it has no usable wheel or
        the index has no metadata file for it."""
        if release.wheel is None:
            return None
        wheel = release.wheel
        text = metadata_text(wheel.url, wheel.sha256, wheel.size)
        return parse_metadata(text) if text is not None else None
