"""Read Bazel's external-repository declarations without running Starlark.

Files are parsed and folded by :mod:`deepdeb.inventory.starlark`; nothing is executed.
This module finds the calls that declare downloads (``http_archive`` and its kin, project
wrappers, ``bazel_dep``, and the kinds :mod:`deepdeb.inventory.bazel_rules` reads) and,
through :mod:`deepdeb.inventory.bazel_urls`, the URLs with hashes kept in constants.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from deepdeb.inventory.bazel_rules import (
    DOWNLOAD_METHODS,
    FETCH_ARGS,
    REPOSITORY_DOWNLOAD,
    WRAPPED_BY_ARGS,
    reader_for,
)
from deepdeb.inventory.bazel_urls import url_constants
from deepdeb.inventory.inputs import HEX, UNPARSEABLE, Input, read, second_level
from deepdeb.inventory.starlark import (
    UNKNOWN,
    Folder,
    RuleCall,
    call_name,
    constants,
    enclosing_functions,
    parse,
    scope,
)

# Rules that fetch something. Project wrappers (tf_http_archive, ...) are recognised
# generically: any call with a ``name`` and a ``url``/``urls``/``remote`` argument (or one
# of the arguments in WRAPPED_BY_ARGS, e.g. ``jar_urls``).
ARCHIVE_RULES = {
    "http_archive",
    "http_file",
    "http_jar",
    "git_repository",
    "new_git_repository",
    "archive_override",
    "git_override",
}
_GENERIC = {"url", "urls", "remote"}


def _parameters(tree: ast.Module) -> dict[int, set[str]]:
    """For every call inside a ``def``, the names of that function's parameters."""
    inside: dict[int, set[str]] = {}
    for fn in ast.walk(tree):
        if isinstance(fn, ast.FunctionDef):
            params = {a.arg for a in [*fn.args.args, *fn.args.kwonlyargs]}
            for node in ast.walk(fn):
                if isinstance(node, ast.Call):
                    inside.setdefault(id(node), set()).update(params)
    return inside


def _rule_of(node: ast.Call) -> str | None:
    """The rule a call invokes; ``repository_ctx.download(...)`` and its like are
    :data:`REPOSITORY_DOWNLOAD`."""
    func = node.func
    if (
        isinstance(func, ast.Attribute)
        and isinstance(func.value, ast.Name)
        and func.attr in DOWNLOAD_METHODS
    ):
        return REPOSITORY_DOWNLOAD
    rule = call_name(func)
    if rule == "maybe" and node.args:  # maybe(http_archive, name = ..., ...)
        rule = call_name(node.args[0])
    return rule


def _declares(rule: str, keywords: dict[str, ast.expr]) -> bool:
    if rule in ARCHIVE_RULES or rule in FETCH_ARGS or rule in ("bazel_dep", REPOSITORY_DOWNLOAD):
        return True
    return "name" in keywords and bool((_GENERIC | WRAPPED_BY_ARGS.keys()) & keywords.keys())


def _plumbing(rule: str, keywords: dict[str, ast.expr], own: set[str]) -> bool:
    """A call inside a macro that only passes the macro's own parameters along (the body of
    ``tf_http_archive`` calling ``http_archive(name = name, urls = urls)``)."""
    fetching = (_GENERIC | WRAPPED_BY_ARGS.keys() | FETCH_ARGS.get(rule, set())) & keywords.keys()
    return bool(own) and all(
        isinstance(v, ast.Name) and v.id in own for k, v in keywords.items() if k in fetching
    )


def _folded_args(node: ast.Call, rule: str, folder: Folder) -> dict[str, Any]:
    """The keyword arguments that fold; a repository download's positional URL and hash
    (``download(url, output, sha256)``) too."""
    values = {k.arg: k.value for k in node.keywords if k.arg}
    if rule == REPOSITORY_DOWNLOAD:
        for position, key in ((0, "url"), (2, "sha256")):
            if len(node.args) > position and key not in values:
                values[key] = node.args[position]
    args = {}
    for key, value in values.items():
        folded = folder.fold(value)
        if folded is not UNKNOWN:
            args[key] = folded
    return args


def rule_calls(tree: ast.Module, table: dict[str, Any]) -> Iterator[RuleCall]:
    """Calls in a parsed Starlark file that declare downloads, with their foldable arguments.

    ``table``: the constants the file sees. Inside a ``def``, its parameters and locals
    hide those (:func:`scope`). A macro's plumbing (:func:`_plumbing`) is left out; a
    repository rule's own ``download`` calls are not plumbing, whatever they pass.
    """
    params = _parameters(tree)
    functions = enclosing_functions(tree)
    folders: dict[int, Folder] = {}
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        rule = _rule_of(node)
        keywords = {k.arg: k.value for k in node.keywords if k.arg}
        if rule is None or not _declares(rule, keywords):
            continue
        fn = functions.get(id(node))
        if rule == REPOSITORY_DOWNLOAD and fn is None:
            continue  # repository_ctx exists only inside a rule's implementation
        if rule != REPOSITORY_DOWNLOAD and _plumbing(rule, keywords, params.get(id(node), set())):
            continue
        if fn is not None and id(fn) not in folders:
            folders[id(fn)] = Folder(scope(fn, table))
        folder = folders[id(fn)] if fn is not None else Folder(table)
        args = _folded_args(node, rule, folder)
        yield RuleCall(rule, node.lineno, args, fn.name if fn is not None else None)


# --- the scanner ---------------------------------------------------------------------------


def _bazel_inputs(rel: str, call: RuleCall) -> Input | None:
    a = call.args
    name = str(a.get("name") or a.get("module_name") or "")
    urls = a.get("urls") or ([a["url"]] if "url" in a else [])
    urls = [u for u in urls if isinstance(u, str)] if isinstance(urls, list) else []
    if call.rule == "bazel_dep":
        return Input(
            "bazel_dep",
            name,
            rel,
            call.line,
            version=a.get("version"),
            second_level=True,
            note="archive and hash come from the Bazel registry",
        )
    if "remote" in a or call.rule in ("git_repository", "new_git_repository", "git_override"):
        commit = a.get("commit")
        hash_ = f"commit:{commit}" if isinstance(commit, str) and HEX.fullmatch(commit) else None
        ref = a.get("tag") or a.get("branch")
        return Input(
            call.rule,
            name,
            rel,
            call.line,
            urls=[str(a.get("remote", ""))],
            version=str(ref) if ref else None,
            hash=hash_,
            note=None if hash_ else "tag or branch: moves upstream",
        )
    if not urls:
        return None
    hash_ = None
    if isinstance(a.get("sha256"), str) and a["sha256"]:
        hash_ = f"sha256:{a['sha256']}"
    elif isinstance(a.get("integrity"), str):
        hash_ = f"integrity:{a['integrity']}"
    return Input(
        call.rule,
        name,
        rel,
        call.line,
        urls=urls,
        hash=hash_,
        second_level=any(second_level(u) for u in urls),
    )


def call_inputs(rel: str, call: RuleCall) -> list[Input]:
    """The inputs one rule call declares (``filegroup_external`` may declare several)."""
    special = reader_for(call)
    if special is not None:
        return special(rel, call)
    found = _bazel_inputs(rel, call)
    return [found] if found is not None else []


Parsed = ast.Module | BaseException  # a parse (or fold) failure is reported, not raised


def _parse_all(files: list[Path]) -> tuple[dict[Path, Parsed], dict[str, Any]]:
    """Every file parsed, and the constants of all of them: constants in one file are often
    used in another."""
    trees: dict[Path, Parsed] = {}
    known: dict[str, Any] = {}
    for path in files:
        try:
            text = read(path)
        except (OSError, *UNPARSEABLE):
            continue
        try:
            tree = parse(text)
            known.update(constants(tree, known))
        except UNPARSEABLE as e:
            trees[path] = e
            continue
        trees[path] = tree
    return trees, known


def _unparsed(path: Path, rel: str, e: BaseException) -> Input:
    line = e.lineno or 0 if isinstance(e, SyntaxError) else 0
    why = e.msg if isinstance(e, SyntaxError) else str(e) or type(e).__name__
    return Input("unparsed", path.name, rel, line, note=f"not parseable as Starlark: {why}")


def scan_bazel(root: Path, files: list[Path]) -> Iterator[Input]:
    """All Bazel files together: rule calls first, then the URL constants that no rule
    call already lists."""
    trees, known = _parse_all(files)
    tables: dict[Path, tuple[ast.Module, dict[str, Any]]] = {}
    found: list[Input] = []
    for path, tree in trees.items():
        rel = path.relative_to(root).as_posix()
        if isinstance(tree, BaseException):
            found.append(_unparsed(path, rel, tree))
            continue
        try:
            table = {**known, **constants(tree, known)}
            found += [i for call in rule_calls(tree, table) for i in call_inputs(rel, call)]
        except UNPARSEABLE as e:
            found.append(_unparsed(path, rel, e))
            continue
        tables[path] = (tree, table)
    declared = {u for i in found for u in i.urls}
    seen: set[tuple[str, str]] = set()
    for path, (tree, table) in tables.items():
        rel = path.relative_to(root).as_posix()
        try:
            found += list(url_constants(rel, tree, Folder(table), seen, declared))
        except UNPARSEABLE as e:
            found.append(_unparsed(path, rel, e))
    yield from found
