"""The licence table (``data/licenses.toml``): SPDX normalisation and the class of every
licence expression (``OR`` takes the best choice, ``AND`` the worst)."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any

from license_expression import ExpressionError, get_spdx_licensing

from deepdeb.util import data_toml

SEVERITY = ("free", "non-free", "unknown", "not-redistributable")


@dataclass(frozen=True)
class Fingerprint:
    """How the table recognises a licence text that licensecheck does not name."""

    scope: str  # "license" (licence-like files) or "header" (top of any file)
    pattern: re.Pattern[str]
    requires: re.Pattern[str] | None
    spdx: str


@dataclass(frozen=True)
class LicenseTable:
    """``data/licenses.toml``, parsed: each licence's class, the names that map to SPDX ids,
    and the fingerprints."""

    classes: dict[str, tuple[str, str]]  # SPDX id -> (class, reason)
    debian: dict[str, str]  # Debian short name -> SPDX id
    aliases: dict[str, str]  # lower-case name on model and dataset cards -> SPDX id
    fingerprints: list[Fingerprint]


@functools.cache
def table() -> LicenseTable:
    """The licence table, read and compiled once per process."""
    data = data_toml("licenses.toml")
    return LicenseTable(
        classes={k: (v["class"], v["reason"]) for k, v in data["license"].items()},
        debian=dict(data["debian"]),
        aliases=dict(data["alias"]),
        fingerprints=[
            Fingerprint(
                f["scope"],
                re.compile(f["pattern"], re.I),
                re.compile(f["requires"], re.I) if "requires" in f else None,
                f["spdx"],
            )
            for f in data["fingerprint"]
        ],
    )


@functools.cache
def _licensing() -> Any:
    """license-expression's SPDX index (building it takes a while: once per process)."""
    return get_spdx_licensing()


@functools.lru_cache(maxsize=4096)
def normalise(text: str | None) -> str | None:
    """An SPDX expression from licensecheck's, DEP-5's or a metadata field's wording."""
    if not text or text.strip().upper() in ("UNKNOWN", "NONE", "GENERATED FILE"):
        return None
    expr = text.strip()
    expr = re.sub(r"\s+and/or\s+|\s+or\s+", " OR ", expr)
    expr = re.sub(r"\s+and\s+", " AND ", expr)
    expr = re.sub(r",\s*", " AND ", expr)
    names, aliases = table().debian, table().aliases
    expr = " ".join(
        names.get(token) or aliases.get(token.lower()) or token for token in expr.split()
    )
    try:
        return str(_licensing().parse(expr).render())
    except ExpressionError:
        return None


@functools.lru_cache(maxsize=4096)
def classify(expression: str | None) -> tuple[str, str]:
    """(class, reason) of an SPDX expression: OR takes the best choice, AND the worst."""
    if expression is None:
        return "unknown", "no licence found: needs human review"
    try:
        parsed = _licensing().parse(expression)
    except ExpressionError:
        return "unknown", f"cannot parse {expression!r}: needs human review"
    return _evaluate(parsed)


def _evaluate(node: Any) -> tuple[str, str]:
    name = type(node).__name__
    if name in ("AND", "OR"):
        parts = [_evaluate(arg) for arg in node.args]
        pick = max if name == "AND" else min
        return pick(parts, key=lambda p: SEVERITY.index(p[0]))
    if name == "LicenseWithExceptionSymbol":
        # An exception only adds permissions (Autoconf, GCC runtime, ...): the licence
        # it is attached to decides.
        return _evaluate(node.license_symbol)
    key = str(getattr(node, "key", node))
    if key in table().classes:
        return table().classes[key]
    return "unknown", f"{key} is not in deepdeb's licence table: needs human review"
