"""Downloads declared as data: URLs paired with a hash in Starlark constants.

Hermetic CUDA in TensorFlow/XLA declares no ``http_archive`` for its manifests, wheels or
CCCL: it keeps them in dicts (``CUDA_REDIST_JSON_DICT = {"12.5.1": [url, sha256]}``,
``{"x86_64-unknown-linux-gnu": {"url": ..., "sha256": ...}}``,
``{"full_path": ..., "sha256": ...}``) that repository rules read when they run. A URL
with a hash next to it is a pinned download whatever reads it, so every module-level
constant is searched for such pairs. Names referring to other constants are not followed:
the constant they name is searched itself, so an archive referenced twice (CCCL for two
platforms, one NCCL dict under several CUDA versions) is listed once.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from deepdeb.inventory.inputs import HEX, Input, urlpath_suffix
from deepdeb.inventory.starlark import Folder, call_name

URL_KEYS = ("url", "urls", "full_path", "relative_path")
_VERSION = re.compile(r"v?\d+(\.\d+)+")
_MAX_DEPTH = 32  # deeper than any real table; a hostile file is not walked forever
Key = tuple[str | int | float, ...]  # the subscripts that lead to a value


@dataclass(frozen=True)
class Pinned:
    """A URL list and its sha256 found at ``path`` (the keys leading to it) in a constant."""

    path: Key
    urls: list[str]
    sha256: str
    line: int
    version: str | None


def _hex64(value: Any) -> str | None:
    if isinstance(value, str) and len(value) == 64 and HEX.fullmatch(value.lower()):
        return value.lower()
    return None


def _urls(value: Any) -> list[str]:
    items = value if isinstance(value, list) else [value]
    return [v for v in items if isinstance(v, str) and "://" in v]


def _line(node: ast.expr) -> int:
    """The line of the first URL in a value: the list's first element when it is a list."""
    if isinstance(node, ast.List | ast.Tuple) and node.elts:
        return node.elts[0].lineno
    return node.lineno


def _pair(node: ast.expr, folder: Folder, path: Key) -> Pinned | None:
    """``[url, sha256]``, as the ``*_REDIST_JSON_DICT`` values are, or ``[url, sha256,
    strip_prefix]`` as the SYCL ones."""
    if not (isinstance(node, ast.List | ast.Tuple) and 2 <= len(node.elts) <= 3):
        return None
    value = folder.fold(node)
    if not isinstance(value, list) or len(value) != len(node.elts):
        return None
    urls, sha = _urls(value[0]), _hex64(value[1])
    if not (isinstance(value[0], str) and urls and sha):
        return None
    return Pinned(path, urls, sha, node.elts[0].lineno, None)


def _as_dict(node: ast.expr) -> ast.expr:
    """``struct(url = ..., sha256 = ...)`` (the ROCm .deb lists) read as the dict it is."""
    if isinstance(node, ast.Call) and call_name(node.func) == "struct" and not node.args:
        keys: list[ast.expr | None] = [ast.Constant(k.arg) for k in node.keywords]
        as_dict = ast.Dict(keys=keys, values=[k.value for k in node.keywords])
        return ast.copy_location(as_dict, node)
    return node


def _record(node: ast.expr, folder: Folder, path: Key) -> Pinned | None:
    """``{"url" | "urls" | "full_path" | "relative_path": ..., "sha256": ...}``, or a
    ``struct()`` with those fields."""
    node = _as_dict(node)
    if not isinstance(node, ast.Dict):
        return None
    value = folder.fold(node)
    if not isinstance(value, dict) or not (sha := _hex64(value.get("sha256"))):
        return None
    for key in URL_KEYS:
        urls = _urls(value.get(key))
        if urls:
            where = next(
                (
                    v
                    for k, v in zip(node.keys, node.values, strict=True)
                    if k and folder.fold(k) == key
                ),
                node,
            )
            version = value.get("version")
            return Pinned(
                path, urls, sha, _line(where), version if isinstance(version, str) else None
            )
    return None


def pinned_urls(node: ast.expr, folder: Folder, path: Key = ()) -> Iterator[Pinned]:
    """Every URL-with-hash in a constant's value, with the keys that lead to it."""
    if len(path) > _MAX_DEPTH:
        return
    found = _pair(node, folder, path) or _record(node, folder, path)
    if found is not None:
        yield found
    elif isinstance(node, ast.Dict):
        for key, value in zip(node.keys, node.values, strict=True):
            folded = folder.fold(key) if key is not None else None
            if isinstance(folded, str | int | float):
                yield from pinned_urls(value, folder, (*path, folded))
    elif isinstance(node, ast.List | ast.Tuple):
        for index, element in enumerate(node.elts):
            yield from pinned_urls(element, folder, (*path, index))


def _input(rel: str, constant: str, found: Pinned) -> Input:
    suffix = urlpath_suffix(found.urls[0])
    kind = {".json": "redistrib_manifest", ".whl": "wheel"}.get(suffix, "url_constant")
    version = found.version
    last = found.path[-1] if found.path else None
    if version is None and isinstance(last, str) and _VERSION.fullmatch(last):
        version = last
    return Input(
        kind,
        constant + "".join(f'["{k}"]' if isinstance(k, str) else f"[{k}]" for k in found.path),
        rel,
        found.line,
        urls=found.urls,
        version=version,
        hash=f"sha256:{found.sha256}",
        second_level=kind == "redistrib_manifest",
        note="in a constant: the build picks the entries it needs (by version, platform)",
    )


def url_constants(
    rel: str, tree: ast.Module, folder: Folder, seen: set[tuple[str, str]], declared: set[str]
) -> Iterator[Input]:
    """Module-level constants' URLs with hashes, each (URL, hash) once over all files
    (``seen``), none whose URL a rule call already lists (``declared``)."""
    for node in tree.body:
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1):
            continue
        target = node.targets[0]
        if not isinstance(target, ast.Name):
            continue
        for found in pinned_urls(node.value, folder):
            key = (found.urls[0], found.sha256)
            if key in seen or any(u in declared for u in found.urls):
                continue
            seen.add(key)
            yield _input(rel, target.id, found)
