"""Read Bazel's external-repository declarations without running Starlark.

Starlark is Python syntax, so Python's ``ast`` parses it. A small evaluator folds what
repository rules are called with (string constants, ``+``, ``%``, ``.format()``, lists,
dicts, subscripts) into values; anything it cannot fold (a function parameter, a value
computed by a macro) stays unknown rather than guessed. Nothing is ever executed.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deepdeb.inventory.inputs import HEX, UNPARSEABLE, Input, read, second_level

# Rules that fetch something. Project wrappers (tf_http_archive, ...) are recognised
# generically: any call with a ``name`` and a ``url``/``urls``/``remote`` argument.
ARCHIVE_RULES = {
    "http_archive",
    "http_file",
    "http_jar",
    "git_repository",
    "new_git_repository",
    "archive_override",
    "git_override",
}
_UNKNOWN = object()


@dataclass(frozen=True)
class RuleCall:
    """One call that declares an external input."""

    rule: str
    line: int
    args: dict[str, Any]  # keyword arguments whose values could be folded


def _call_name(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


class Folder:
    """Folds expressions to values with a table of known constants."""

    def __init__(self, constants: dict[str, Any]) -> None:
        self.constants = constants

    def fold(self, node: ast.expr) -> Any:
        try:
            return self._fold(node)
        except (TypeError, ValueError, KeyError, IndexError, AttributeError):
            return _UNKNOWN

    def _fold(self, node: ast.expr) -> Any:
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            return self.constants.get(node.id, _UNKNOWN)
        if isinstance(node, ast.List | ast.Tuple):
            return [self._fold(e) for e in node.elts]
        if isinstance(node, ast.Dict):
            return {
                self._fold(k): self._fold(v)
                for k, v in zip(node.keys, node.values, strict=True)
                if k is not None
            }
        if isinstance(node, ast.BinOp):
            left, right = self._fold(node.left), self._fold(node.right)
            if left is _UNKNOWN or right is _UNKNOWN:
                return _UNKNOWN
            if isinstance(node.op, ast.Add):
                return left + right
            if isinstance(node.op, ast.Mod) and isinstance(left, str):
                return left % (tuple(right) if isinstance(right, list) else right)
            return _UNKNOWN
        if isinstance(node, ast.Subscript):
            base, key = self._fold(node.value), self._fold(node.slice)
            return _UNKNOWN if base is _UNKNOWN or key is _UNKNOWN else base[key]
        if isinstance(node, ast.Call):
            return self._fold_call(node)
        return _UNKNOWN

    def _fold_call(self, node: ast.Call) -> Any:
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr == "format":
            template = self._fold(func.value)
            args = [self._fold(a) for a in node.args]
            kwargs = {k.arg: self._fold(k.value) for k in node.keywords if k.arg}
            if not isinstance(template, str) or _UNKNOWN in args or _UNKNOWN in kwargs.values():
                return _UNKNOWN
            return template.format(*args, **kwargs)
        if isinstance(func, ast.Attribute) and func.attr == "join" and len(node.args) == 1:
            sep, items = self._fold(func.value), self._fold(node.args[0])
            if isinstance(sep, str) and isinstance(items, list) and _UNKNOWN not in items:
                return sep.join(items)
            return _UNKNOWN
        # Mirror helpers such as tf_mirror_urls("https://..."): the URL they are given is
        # the upstream URL; the mirrors they add are copies of it.
        if len(node.args) == 1 and not node.keywords:
            value = self._fold(node.args[0])
            if isinstance(value, str) and "://" in value:
                return [value]
        return _UNKNOWN


def parse(source: str) -> ast.Module:
    """Parse Starlark (Python syntax); raises SyntaxError like ast.parse."""
    return ast.parse(source)


def constants(tree: ast.Module, known: dict[str, Any]) -> dict[str, Any]:
    """Simple ``NAME = expr`` assignments anywhere in a file, folded in file order."""
    found: dict[str, Any] = {}
    folder = Folder({**known, **found})
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
            if isinstance(target, ast.Name) and target.id not in found:
                folder.constants = {**known, **found}
                value = folder.fold(node.value)
                if value is not _UNKNOWN:
                    found[target.id] = value
    return found


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


def rule_calls(source: str, known: dict[str, Any]) -> Iterator[RuleCall]:
    """Calls in a Starlark file that declare downloads, with their foldable arguments.

    Calls inside a macro that only pass the macro's own parameters along (the body of
    ``tf_http_archive`` calling ``http_archive(name = name, urls = urls)``) are the
    wrapper's plumbing, not declarations, and are left out.
    """
    tree = parse(source)
    folder = Folder({**known, **constants(tree, known)})
    params = _parameters(tree)
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        rule = _call_name(node.func)
        if rule == "maybe" and node.args:  # maybe(http_archive, name = ..., ...)
            rule = _call_name(node.args[0])
        keywords = {k.arg: k.value for k in node.keywords if k.arg}
        fetching = {"url", "urls", "remote"} & keywords.keys()
        if rule is None or not (
            rule in ARCHIVE_RULES or rule == "bazel_dep" or ("name" in keywords and fetching)
        ):
            continue
        own = params.get(id(node), set())
        if own and all(
            isinstance(v, ast.Name) and v.id in own for k, v in keywords.items() if k in fetching
        ):
            continue
        args = {}
        for key, value in keywords.items():
            folded = folder.fold(value)
            if folded is not _UNKNOWN:
                args[key] = folded
        yield RuleCall(rule=rule, line=node.lineno, args=args)


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


def scan_bazel(root: Path, files: list[Path]) -> Iterator[Input]:
    """All Bazel files together: constants in one file are often used in another."""
    sources: dict[Path, str] = {}
    known: dict[str, Any] = {}
    for path in files:
        try:
            sources[path] = read(path)
            tree = parse(sources[path])
        except (OSError, *UNPARSEABLE):
            continue
        known.update(constants(tree, known))
    for path, text in sources.items():
        rel = path.relative_to(root).as_posix()
        try:
            calls = list(rule_calls(text, known))
        except UNPARSEABLE as e:
            line = e.lineno or 0 if isinstance(e, SyntaxError) else 0
            why = e.msg if isinstance(e, SyntaxError) else str(e) or type(e).__name__
            yield Input("unparsed", path.name, rel, line, note=f"not parseable as Starlark: {why}")
            continue
        for call in calls:
            found = _bazel_inputs(rel, call)
            if found is not None:
                yield found
