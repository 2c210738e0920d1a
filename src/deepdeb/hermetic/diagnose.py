"""What a failed build lacked, read from its log: the headers, libraries, pkg-config
modules, commands and CMake packages it looked for and did not find, and which host
package has each (``dpkg -S``).

A build that works on the host and fails in the clean room almost always lacks a
build-dependency its debian/control does not declare; saying which one, and that the host
has it, turns a 5000-line log into a one-line fix.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from deepdeb.util import run

_MISSING = (
    ("header", re.compile(r"fatal error: ([\w./+-]+): No such file or directory")),
    ("library", re.compile(r"cannot find -l([\w.+-]+)")),
    ("pkg-config module", re.compile(r"No package '([\w.+-]+)' found")),
    ("pkg-config module", re.compile(r"Package '([\w.+-]+)',? required by .* not found")),
    ("command", re.compile(r"(?:^|\s|/)([\w.+-]+): (?:command )?not found$", re.M)),
    ("CMake package", re.compile(r"package configuration file provided by\s+\"(\w+)\"")),
)  # fmt: skip

_PATTERNS = {
    "header": "*/include/{}",
    "library": "*/lib{}.so",
    "pkg-config module": "*/pkgconfig/{}.pc",
    "command": "*/bin/{}",
    "CMake package": "*/cmake/*{}*Config.cmake",
}


@dataclass(frozen=True)
class Missing:
    """A header, library, module, command or CMake package a failed build did not find."""

    kind: str
    name: str
    host_packages: tuple[str, ...]  # who provides it on the host, if anyone

    def __str__(self) -> str:
        where = (
            f"installed on this host by {', '.join(self.host_packages)}"
            if self.host_packages
            else "not provided by any package installed on this host"
        )
        return f"{self.kind} {self.name} ({where})"


def missing_inputs(log_text: str) -> list[tuple[str, str]]:
    """(kind, name) of each file or tool a failed build looked for and did not find."""
    found: list[tuple[str, str]] = []
    for kind, pattern in _MISSING:
        for name in pattern.findall(log_text):
            if (kind, name) not in found:
                found.append((kind, name))
    return found


def host_providers(kind: str, name: str) -> tuple[str, ...]:
    """Host packages shipping what the build missed (``dpkg -S`` on a path pattern)."""
    proc = run(["dpkg", "-S", _PATTERNS[kind].format(name)], check=False)
    packages: list[str] = []
    for line in proc.stdout.splitlines():
        for package in line.split(":", 1)[0].split(","):
            package = package.strip()
            if package and package not in packages and not line.startswith("diversion"):
                packages.append(package)
    return tuple(packages)


def explain_failure(log_text: str) -> list[Missing]:
    """What a failed build's log says it lacked, each with the host packages that have it."""
    return [Missing(k, n, host_providers(k, n)) for k, n in missing_inputs(log_text)]


def describe(missing: Sequence[Missing]) -> str:
    """The message a failed clean-room build adds: what it lacked, and who has it here."""
    if not missing:
        return ""
    lines = [f"  {m}" for m in missing]
    packages = sorted({p.split(":")[0] for m in missing for p in m.host_packages})
    hint = (
        f"\nThe host has them, the clean room does not: add {', '.join(packages)} to "
        "Build-Depends in debian/control."
        if packages
        else ""
    )
    return (
        "\n--- the clean room lacked (undeclared build-dependencies?) ---\n"
        + "\n".join(lines)
        + hint
    )
