"""Bazel downloads that are not ``http_archive``-shaped: Java jars, file groups, Maven
artifacts and the downloads repository rules make themselves.

TensorFlow declares jars with ``java_import_external(jar_urls, jar_sha256)``, licence files
and tools with ``filegroup_external(sha256_urls = {hash: urls})``, Android libraries with
``maven_install(artifacts)``, and its hermetic CUDA rules call ``repository_ctx.download``
themselves. None of them has the ``name`` + ``urls`` shape the generic rule recognises, so
each has its own reader here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from deepdeb.inventory.inputs import HEX, Input
from deepdeb.inventory.starlark import RuleCall

REPOSITORY_DOWNLOAD = "repository_rule_download"
DOWNLOAD_METHODS = ("download", "download_and_extract")  # of repository_ctx
# The arguments that name what a rule downloads: a macro that only passes its own
# parameters into them is plumbing, not a declaration.
FETCH_ARGS = {
    "java_import_external": {"jar_urls", "srcjar_urls"},
    "filegroup_external": {"sha256_urls", "sha256_urls_extract", "sha256_urls_extract_macos"},
    "maven_install": {"artifacts"},
}
# A project's wrapper of one of these rules is known by the arguments it takes, as a
# wrapper of http_archive is by ``urls``.
WRAPPED_BY_ARGS = {arg: rule for rule, args in FETCH_ARGS.items() for arg in args}
WRAPPED_BY_ARGS.pop("artifacts")  # too common a word to mean maven_install
_FILEGROUP_NOTES = {
    "sha256_urls": None,
    "sha256_urls_extract": "extracted",
    "sha256_urls_extract_macos": "extracted; used on macOS only",
}


def _strings(value: Any) -> list[str]:
    """A folded string or list as its strings (unknown parts dropped)."""
    items = value if isinstance(value, list) else [value]
    return [v for v in items if isinstance(v, str)]


def _sha256(value: Any) -> str | None:
    if isinstance(value, str) and len(value) == 64 and HEX.fullmatch(value.lower()):
        return f"sha256:{value.lower()}"
    return None


def java_inputs(rel: str, call: RuleCall) -> list[Input]:
    """``java_import_external``: the jar, and the source jar when one is declared."""
    name = str(call.args.get("name", ""))
    found = []
    for prefix, label in (("jar", name), ("srcjar", f"{name} (srcjar)")):
        urls = _strings(call.args.get(f"{prefix}_urls"))
        if urls:
            sha = _sha256(call.args.get(f"{prefix}_sha256"))
            found.append(Input(call.rule, label, rel, call.line, urls=urls, hash=sha))
    return found


def filegroup_inputs(rel: str, call: RuleCall) -> list[Input]:
    """``filegroup_external``: one input per hash of ``sha256_urls`` and its variants."""
    name = str(call.args.get("name", ""))
    found = []
    for attr, note in _FILEGROUP_NOTES.items():
        table = call.args.get(attr)
        for digest, value in table.items() if isinstance(table, dict) else []:
            if urls := _strings(value):
                sha = _sha256(digest)
                found.append(Input(call.rule, name, rel, call.line, urls, hash=sha, note=note))
    return found


def maven_url(repository: str, coordinate: str) -> str | None:
    """Where a Maven repository keeps ``group:artifact[:packaging[:classifier]]:version``."""
    parts = coordinate.split(":")
    if not 3 <= len(parts) <= 5 or not all(parts):
        return None
    group, artifact, *middle, version = parts
    packaging = middle[0] if middle else "jar"
    classifier = f"-{middle[1]}" if len(middle) == 2 else ""
    path = f"{group.replace('.', '/')}/{artifact}/{version}/{artifact}-{version}{classifier}"
    return f"{repository.rstrip('/')}/{path}.{packaging}"


def maven_inputs(rel: str, call: RuleCall) -> list[Input]:
    """``maven_install``: one input per artifact; rules_jvm_external resolves them (and
    what they depend on) when the build runs, so nothing here is pinned."""
    repositories = _strings(call.args.get("repositories"))
    lock = call.args.get("maven_install_json")
    note = "resolved with its dependencies when the build runs" + (
        f"; pinned in {lock}, not read" if isinstance(lock, str) else "; no lock file"
    )
    found = []
    for coordinate in _strings(call.args.get("artifacts")):
        urls = [u for r in repositories if (u := maven_url(r, coordinate))]
        if not urls:
            continue
        group, artifact, *_, version = coordinate.split(":")
        name = f"{group}:{artifact}"
        found.append(Input(call.rule, name, rel, call.line, urls, version=version, note=note))
    return found


def download_inputs(rel: str, call: RuleCall) -> list[Input]:
    """``repository_ctx.download[_and_extract]()`` inside a rule's implementation, named
    after that function: usually its URL is an attribute or parameter, known only when
    the rule runs, but the call is still a download the build makes."""
    urls = [u for u in _strings(call.args.get("url")) if "://" in u]
    sha = _sha256(call.args.get("sha256"))
    integrity = call.args.get("integrity")
    if sha is None and isinstance(integrity, str) and integrity:
        sha = f"integrity:{integrity}"
    note = "constant URL" if urls else "its URL is chosen when the rule runs"
    return [
        Input(REPOSITORY_DOWNLOAD, call.function or "", rel, call.line, urls, hash=sha, note=note)
    ]


RULE_INPUTS: dict[str, Callable[[str, RuleCall], list[Input]]] = {
    "java_import_external": java_inputs,
    "filegroup_external": filegroup_inputs,
    "maven_install": maven_inputs,
    REPOSITORY_DOWNLOAD: download_inputs,
}


def reader_for(call: RuleCall) -> Callable[[str, RuleCall], list[Input]] | None:
    """The reader of a rule this module knows, by its name or, for a project's wrapper
    (``demo_java_import(jar_urls = ...)``), by its arguments."""
    if call.rule in RULE_INPUTS:
        return RULE_INPUTS[call.rule]
    like = next((rule for arg, rule in WRAPPED_BY_ARGS.items() if arg in call.args), None)
    return RULE_INPUTS[like] if like is not None else None
