"""The frameworks the sanity test trains with (``data/sanity/frameworks.toml``).

The recipe loader needs them to validate ``[sanity] framework`` and to default it from
the recipe's wheel; the sanity test needs them to pick the script and write the DEP-8
control. Both read this one table, so a framework is added by adding data and a script.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from packaging.utils import canonicalize_name

from deepdeb.util import data_toml


@dataclass(frozen=True)
class Framework:
    """One framework: its DEP-8 Depends, the wheels that default to it, its packages."""

    name: str
    depends: str
    wheels: tuple[str, ...]
    packages: tuple[str, ...]


@functools.cache
def frameworks() -> dict[str, Framework]:
    """Every framework with a training script, by name, in the data file's order."""
    table = data_toml("sanity/frameworks.toml")["framework"]
    return {
        name: Framework(name, entry["depends"], tuple(entry["wheels"]), tuple(entry["packages"]))
        for name, entry in table.items()
    }


def framework_of_wheel(project: str) -> str | None:
    """The framework a wheel of PyPI project ``project`` is (or belongs to), if known."""
    wanted = canonicalize_name(project)
    return next((f.name for f in frameworks().values() if wanted in f.wheels), None)


def framework_of_packages(packages: list[str]) -> str | None:
    """The framework that one of these Debian packages holds, if exactly one does."""
    found = {f.name for f in frameworks().values() if set(f.packages) & set(packages)}
    return found.pop() if len(found) == 1 else None
