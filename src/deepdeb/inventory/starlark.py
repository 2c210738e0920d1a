"""Starlark read as data: parse with Python's ``ast`` and fold constant expressions.

Starlark is Python syntax, so Python's ``ast`` parses it. A small evaluator folds what
declarations are made of (string constants, ``+``, ``%``, ``.format()``, lists, dicts,
subscripts) into values; anything it cannot fold (a function parameter, a value computed
by a macro) stays :data:`UNKNOWN` rather than guessed. Nothing is ever executed. The
Bazel scanners (rule calls, URL constants, repository-rule downloads) share it.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import Any

UNKNOWN = object()


@dataclass(frozen=True)
class RuleCall:
    """One call that declares an external input."""

    rule: str
    line: int
    args: dict[str, Any]  # keyword arguments whose values could be folded
    function: str | None = None  # the ``def`` the call is in, if any


def call_name(node: ast.expr) -> str | None:
    """``http_archive`` for ``http_archive(...)`` and ``native.http_archive(...)``."""
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
            return UNKNOWN

    def _fold(self, node: ast.expr) -> Any:
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            return self.constants.get(node.id, UNKNOWN)
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
            if left is UNKNOWN or right is UNKNOWN:
                return UNKNOWN
            if isinstance(node.op, ast.Add):
                return left + right
            if isinstance(node.op, ast.Mod) and isinstance(left, str):
                return left % (tuple(right) if isinstance(right, list) else right)
            return UNKNOWN
        if isinstance(node, ast.Subscript):
            base, key = self._fold(node.value), self._fold(node.slice)
            return UNKNOWN if base is UNKNOWN or key is UNKNOWN else base[key]
        if isinstance(node, ast.Call):
            return self._fold_call(node)
        return UNKNOWN

    def _fold_call(self, node: ast.Call) -> Any:
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr == "format":
            template = self._fold(func.value)
            args = [self._fold(a) for a in node.args]
            kwargs = {k.arg: self._fold(k.value) for k in node.keywords if k.arg}
            if not isinstance(template, str) or UNKNOWN in args or UNKNOWN in kwargs.values():
                return UNKNOWN
            return template.format(*args, **kwargs)
        if isinstance(func, ast.Attribute) and func.attr == "join" and len(node.args) == 1:
            sep, items = self._fold(func.value), self._fold(node.args[0])
            if isinstance(sep, str) and isinstance(items, list) and UNKNOWN not in items:
                return sep.join(items)
            return UNKNOWN
        # Mirror helpers such as tf_mirror_urls("https://..."): the URL they are given is
        # the upstream URL; the mirrors they add are copies of it.
        if len(node.args) == 1 and not node.keywords:
            value = self._fold(node.args[0])
            if isinstance(value, str) and "://" in value:
                return [value]
        return UNKNOWN


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
                if value is not UNKNOWN:
                    found[target.id] = value
    return found


def enclosing_functions(tree: ast.Module) -> dict[int, ast.FunctionDef]:
    """For every call inside a ``def``, the innermost ``def`` around it (by ``id``)."""
    inside: dict[int, ast.FunctionDef] = {}
    for fn in ast.walk(tree):  # breadth first: an inner def overwrites its outer one
        if isinstance(fn, ast.FunctionDef):
            for node in ast.walk(fn):
                if isinstance(node, ast.Call):
                    inside[id(node)] = fn
    return inside


def scope(fn: ast.FunctionDef, outer: dict[str, Any]) -> dict[str, Any]:
    """The constants visible inside ``fn``: a parameter or a local variable hides the file's
    (or another function's) constant of the same name, so ``url`` in
    ``def _impl(ctx, url)`` is unknown, not some other ``url = "..."``; locals that fold
    to constants are known."""
    args = fn.args
    hidden = {a.arg for a in [*args.posonlyargs, *args.args, *args.kwonlyargs]}
    hidden |= {a.arg for a in (args.vararg, args.kwarg) if a is not None}
    hidden |= {
        n.id for n in ast.walk(fn) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)
    }
    visible = {k: v for k, v in outer.items() if k not in hidden}
    return {**visible, **constants(ast.Module(body=fn.body, type_ignores=[]), visible)}
