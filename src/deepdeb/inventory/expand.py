"""Second-level manifests followed: the archives an NVIDIA ``redistrib_*.json`` lists.

A build that downloads ``redistrib_12.5.1.json`` then downloads what it lists, so the tree
alone cannot say what (or how many bytes) the build fetches. Given the manifests, from a
directory or, only when the user allows it, from the network, each is checked against the
hash the tree pins it with and followed by its archives for the build's platform, with
their sizes. Without a hash to check, a manifest is still read and says so in its note.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from urllib.parse import urlsplit

from deepdeb.errors import DeepdebError
from deepdeb.inventory.inputs import MAX_FILE_BYTES, Input, urlpath_suffix
from deepdeb.inventory.manifests import (
    DEFAULT_PLATFORM,
    RedistArchive,
    counted,
    newest_variants,
    redist_archives,
)
from deepdeb.util import read_regular

FETCH_TIMEOUT_S = 30.0


class ManifestError(DeepdebError):
    """A manifest is not the one the tree pins: its hash differs from the declared one."""


@dataclass(frozen=True)
class ManifestSource:
    """Where manifests come from: ``directory`` (by the URL's file name) first, then the
    network, but only with ``fetch``. ``only``: file-name globs; none means all."""

    directory: Path | None = None
    fetch: bool = False
    only: tuple[str, ...] = ()


@dataclass(frozen=True)
class Loaded:
    """A manifest's bytes and where they came from (for the notes and errors)."""

    data: bytes
    origin: str


def file_name(url: str) -> str:
    """The last part of a URL's path; never a path that leaves the manifest directory."""
    name = urlsplit(url).path.rsplit("/", 1)[-1]
    return "" if name in ("", ".", "..") or os.sep in name else name


def is_manifest(item: Input) -> bool:
    """A second-level input whose URL is a JSON manifest (not a ``bazel_dep``)."""
    return item.second_level and bool(item.urls) and urlpath_suffix(item.urls[0]) == ".json"


def _fetch(urls: list[str]) -> tuple[Loaded | None, str]:
    """The first of ``urls`` that downloads, or why none did. Only http(s); bounded size."""
    why = "no http(s) URL"
    for url in urls:
        if urlsplit(url).scheme not in ("http", "https"):
            continue
        request = urllib.request.Request(url, headers={"User-Agent": "deepdeb-inventory"})
        try:
            with urllib.request.urlopen(request, timeout=FETCH_TIMEOUT_S) as response:
                data = response.read(MAX_FILE_BYTES + 1)
        except (OSError, http.client.HTTPException, ValueError) as e:  # URLError is an OSError
            why = f"{url}: {e}"
            continue
        if len(data) > MAX_FILE_BYTES:
            why = f"{url}: larger than {MAX_FILE_BYTES} bytes"
            continue
        return Loaded(data, f"fetched from {url}"), why
    return None, why


def load(item: Input, source: ManifestSource) -> tuple[Loaded | None, str]:
    """The manifest ``item`` names, checked against its hash, or why it is not there.

    Raises :class:`ManifestError` when the hash differs: the tree pins another file."""
    name = file_name(item.urls[0])
    loaded: Loaded | None = None
    why = f"{name} not in {source.directory}" if source.directory else "no manifests given"
    path = source.directory / name if source.directory is not None and name else None
    if path is not None and os.path.lexists(path):
        try:
            loaded = Loaded(read_regular(path, MAX_FILE_BYTES, tail=False), f"read from {path}")
        except OSError as e:  # a link (never followed), unreadable
            why = f"{path}: {e.strerror or e}"
    elif source.fetch:
        loaded, why = _fetch(item.urls)
    if loaded is not None:
        verify(item, name, loaded)
    return loaded, why


def verify(item: Input, name: str, loaded: Loaded) -> None:
    """The manifest's sha256 must be the one declared at the item's file and line."""
    algo, _, expected = (item.hash or "").partition(":")
    if algo != "sha256":
        return
    actual = hashlib.sha256(loaded.data).hexdigest()
    if actual != expected:
        raise ManifestError(
            f"{name} ({loaded.origin}) has sha256 {actual}, but {item.file}:{item.line} "
            f"declares sha256 {expected}: not the manifest this tree pins"
        )


def _archive_input(item: Input, name: str, archive: RedistArchive, total: bool) -> Input:
    base = item.urls[0].rsplit("/", 1)[0]
    url = archive.path if archive.full else f"{base}/{archive.path}"
    return Input(
        "redist_archive",
        archive.component,
        item.file,
        item.line,
        urls=[url],
        version=archive.version,
        hash=f"sha256:{archive.sha256}" if archive.sha256 else None,
        size=archive.size,
        note=f"listed in {name} ({archive.where})",
        in_total=total,
    )


def expand_one(
    item: Input, source: ManifestSource, platform: str, seen: set[str]
) -> Iterator[Input]:
    """The archives of one manifest input for ``platform`` (URLs in ``seen`` are not
    repeated); the item's size and note say what happened."""
    name = file_name(item.urls[0])
    if source.only and not any(fnmatchcase(name, glob) for glob in source.only):
        item.note = "not expanded: not selected"
        return
    loaded, why = load(item, source)
    if loaded is None:
        item.note = f"not expanded: {why}"
        return
    item.size = len(loaded.data)
    try:
        archives = list(redist_archives(json.loads(loaded.data)))
    except ValueError:
        item.note = f"not expanded: {name} is not JSON"
        return
    newest = newest_variants(archives)
    mine = [a for a in archives if a.platform == platform]
    unverified = "" if (item.hash or "").startswith("sha256:") else "; no hash to check it"
    item.note = f"expanded: {len(mine)} archives for {platform}, {loaded.origin}"
    item.note += unverified
    for archive in mine:
        expanded = _archive_input(item, name, archive, counted(archive, platform, newest))
        if expanded.urls[0] not in seen:
            seen.add(expanded.urls[0])
            yield expanded


def expand(
    inputs: list[Input], source: ManifestSource, platform: str = DEFAULT_PLATFORM
) -> list[Input]:
    """``inputs`` with each manifest followed by the archives it lists for ``platform``."""
    seen = {u for i in inputs for u in i.urls}
    result: list[Input] = []
    for item in inputs:
        result.append(item)
        if is_manifest(item) and item.in_total:  # not one the configuration leaves unused
            result.extend(expand_one(item, source, platform, seen))
    return result
