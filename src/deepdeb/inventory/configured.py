"""What the tree's own build configuration selects among the hermetic CUDA downloads.

TensorFlow and XLA list manifests for every CUDA, cuDNN and NVSHMEM version they support
(``CUDA_REDIST_JSON_DICT = {"11.8": [...], "12.5.1": [...], ...}``), NCCL wheels per CUDA
major, and mirrored ``*_tar.json`` alternatives; a build downloads one manifest per
library, the one ``HERMETIC_CUDA_VERSION`` / ``HERMETIC_CUDNN_VERSION`` name (set in the
tree's ``.bazelrc`` with ``--repo_env``), and of its archives only the components the
rules have a BUILD template for (the keys of ``REDIST_VERSIONS_TO_BUILD_TEMPLATES``):
no Nsight, no documentation, no demo suite. Counting everything listed overstates the
download by half; this module reads the configuration, as data, and marks the rest as
listed but not used by it.
"""

from __future__ import annotations

import ast
import re
import shlex
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from deepdeb.inventory.inputs import UNPARSEABLE, Input, read
from deepdeb.inventory.starlark import parse

# The library each variable chooses the version of; the TF_* names are the fallbacks the
# repository rules read when the HERMETIC_* one is unset.
LIBRARIES = {"cuda": "CUDA", "cudnn": "CUDNN", "nvshmem": "NVSHMEM"}
_FALLBACK = {
    "HERMETIC_CUDA_VERSION": "TF_CUDA_VERSION",
    "HERMETIC_CUDNN_VERSION": "TF_CUDNN_VERSION",
}
TARS = "USE_CUDA_TAR_ARCHIVE_FILES"
_READ = {*(f"HERMETIC_{v}_VERSION" for v in LIBRARIES.values()), *_FALLBACK.values(), TARS}
_ENV_OPTIONS = ("--repo_env", "--action_env")
_COMMANDS = ("build", "common")  # what ``bazel build`` reads; test/run only add to it
_DEFAULT_CONFIG = "cuda"  # the config a CUDA build names (``--config=cuda``)
_MAX_IMPORTS = 16
TEMPLATES_SUFFIX = "VERSIONS_TO_BUILD_TEMPLATES"


@dataclass(frozen=True)
class Setting:
    """A variable's value(s) and where they are set: one value, unless configs that are
    not the default set it differently (then each counts)."""

    values: tuple[str, ...]
    where: str

    def to_json(self) -> dict[str, Any]:
        return {"values": list(self.values), "where": self.where}


@dataclass(frozen=True)
class BuildConfig:
    """The settings that choose hermetic CUDA downloads, and the components a build has
    templates for (``None``: the tree does not say, so every component counts)."""

    settings: dict[str, Setting] = field(default_factory=dict)
    components: frozenset[str] | None = None

    @property
    def hermetic(self) -> bool:
        """Whether any library version is chosen: only then do the others go unused."""
        return any(f"HERMETIC_{v}_VERSION" in self.settings for v in LIBRARIES.values())

    def version(self, library: str) -> Setting | None:
        return self.settings.get(f"HERMETIC_{LIBRARIES[library]}_VERSION")

    def to_json(self) -> dict[str, Any]:
        return {
            "settings": {k: s.to_json() for k, s in sorted(self.settings.items())},
            "components": sorted(self.components) if self.components is not None else None,
        }


# --- .bazelrc --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Line:
    name: str
    value: str
    config: str | None  # "cuda" for ``build:cuda``; None for plain ``build``/``common``
    where: str


def _logical_lines(text: str) -> Iterator[tuple[int, str]]:
    """Lines with backslash continuations joined, numbered by their first line."""
    pending, start = "", 0
    for number, line in enumerate(text.splitlines(), start=1):
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        yield start, pending + line
        pending = ""
    if pending:
        yield start, pending


def _env_assignments(words: list[str]) -> Iterator[str]:
    """``NAME=VALUE`` of ``--repo_env=NAME=VALUE`` and ``--repo_env NAME=VALUE``."""
    for i, word in enumerate(words):
        option, eq, rest = word.partition("=")
        if option not in _ENV_OPTIONS:
            continue
        if eq:
            yield rest
        elif i + 1 < len(words):
            yield words[i + 1]


def _imports(words: list[str], root: Path) -> Path | None:
    """The in-tree file an ``import``/``try-import %workspace%/...`` names, if any."""
    if len(words) != 2 or words[0] not in ("import", "try-import"):
        return None
    target = words[1].removeprefix("%workspace%/")
    if target == words[1] or PurePosixPath(target).is_absolute() or ".." in target.split("/"):
        return None  # outside the tree: a user's or machine's file, not the project's
    return root / target


def _rc_lines(root: Path, path: Path, seen: set[Path]) -> Iterator[_Line]:
    if path in seen or len(seen) >= _MAX_IMPORTS or not path.is_file() or path.is_symlink():
        return
    if not path.resolve().is_relative_to(root.resolve()):
        return  # an in-tree name through a linked directory: not the project's file
    seen.add(path)
    try:
        text = read(path)
    except (OSError, ValueError):
        return
    rel = path.relative_to(root).as_posix()
    for number, line in _logical_lines(text):
        try:
            words = shlex.split(line, comments=True)
        except ValueError:  # an unclosed quote: Bazel would refuse the file too
            continue
        if not words:
            continue
        imported = _imports(words, root)
        if imported is not None:
            yield from _rc_lines(root, imported, seen)
            continue
        command, _, config = words[0].partition(":")
        if command not in _COMMANDS:
            continue
        for assignment in _env_assignments(words[1:]):
            name, eq, value = assignment.partition("=")
            if eq and name in _READ:
                where = f"{rel}:{number}, {words[0]}"
                yield _Line(name, value, config or None, where)


def _resolve(lines: list[_Line]) -> Setting:
    """One variable's setting: the ``cuda`` config's (a CUDA build names it, and it then
    overrides plain lines; the last one wins, as in Bazel), else a plain ``build`` line's;
    otherwise every config's value, when they differ."""
    for chosen in (
        [x for x in lines if x.config == _DEFAULT_CONFIG],
        [x for x in lines if x.config is None],
    ):
        if chosen:
            return Setting((chosen[-1].value,), chosen[-1].where)
    values = tuple(dict.fromkeys(x.value for x in lines))
    return Setting(values, "; ".join(dict.fromkeys(x.where for x in lines)))


def read_bazelrc(root: Path) -> dict[str, Setting]:
    """The hermetic-CUDA settings of the tree's ``.bazelrc`` (and the in-tree files it
    imports): by variable, the TF_* fallbacks folded into the HERMETIC_* names."""
    by_name: dict[str, list[_Line]] = {}
    for line in _rc_lines(root, root / ".bazelrc", set()):
        by_name.setdefault(line.name, []).append(line)
    settings = {name: _resolve(lines) for name, lines in by_name.items()}
    for name, fallback in _FALLBACK.items():
        if name not in settings and fallback in settings:
            settings[name] = settings[fallback]
        settings.pop(fallback, None)
    return settings


# --- build templates ---------------------------------------------------------------------


def template_components(files: Iterable[Path]) -> frozenset[str] | None:
    """The keys of every ``*VERSIONS_TO_BUILD_TEMPLATES`` dict in the Bazel files: the
    components a hermetic build makes repositories of. ``None`` when no file has one."""
    found: set[str] | None = None
    for path in files:
        try:
            text = read(path)
            if TEMPLATES_SUFFIX not in text:
                continue
            tree = parse(text)
        except (OSError, *UNPARSEABLE):
            continue
        for node in tree.body:
            if (
                isinstance(node, ast.Assign)
                and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name)
                and node.targets[0].id.endswith(TEMPLATES_SUFFIX)
                and isinstance(node.value, ast.Dict)
            ):
                keys = {k.value for k in node.value.keys if isinstance(k, ast.Constant)}
                found = (found or set()) | {k for k in keys if isinstance(k, str)}
    return frozenset(found) if found is not None else None


def configure(
    root: Path, bazel_files: Iterable[Path], versions: Mapping[str, str] | None = None
) -> BuildConfig:
    """The tree's configuration, with ``versions`` (library -> version, from the command
    line) replacing what ``.bazelrc`` says."""
    settings = read_bazelrc(root)
    for library, version in (versions or {}).items():
        settings[f"HERMETIC_{LIBRARIES[library]}_VERSION"] = Setting(
            (version,), f"--{library}-version"
        )
    return BuildConfig(settings, template_components(bazel_files))


# --- marking what the configuration does not use -----------------------------------------

_NCCL_MAJOR = re.compile(r"CUDA_(\d+)_NCCL")
NOT_USED = "not used by this configuration"


def _constant(item: Input) -> str:
    return item.name.split("[", 1)[0]


def _library(constant: str) -> str | None:
    """The library a manifest dict is for, by its name: cuDNN's and NVSHMEM's say so."""
    for library in ("cudnn", "nvshmem", "cuda"):
        if LIBRARIES[library] in constant:
            return library
    return None


def _unused_manifest(item: Input, config: BuildConfig, mirrored: set[tuple[str, str]]) -> str:
    """Why the configuration does not download this manifest ("" when it does)."""
    constant = _constant(item)
    library = _library(constant)
    if library is None or item.version is None:
        return ""
    setting = config.version(library)
    name = f"HERMETIC_{LIBRARIES[library]}_VERSION"
    if setting is None:
        return f"{NOT_USED}: {name} is not set"
    if item.version not in setting.values:
        return f"{NOT_USED}: {name}={'/'.join(setting.values)} ({setting.where})"
    tars = config.settings.get(TARS)
    tars_on = tars is not None and any(tars.values)  # the rules test the string: "0" is on
    if constant.startswith("MIRRORED"):
        if not tars_on:
            return f"{NOT_USED}: a mirrored tar manifest, read only with {TARS} set"
    elif tars is not None and tars_on and (library, item.version) in mirrored:
        return f"{NOT_USED}: {TARS} ({tars.where}) reads the mirrored tar manifest instead"
    return ""


def _unused_wheel(item: Input, config: BuildConfig) -> str:
    """NCCL wheels are chosen by the CUDA major (``CUDA_12_NCCL_WHEEL_DICT``)."""
    major = _NCCL_MAJOR.search(_constant(item))
    cuda = config.version("cuda")
    if major is None or cuda is None:
        return ""
    if any(v.split(".")[0] == major.group(1) for v in cuda.values):
        return ""
    return (
        f"{NOT_USED}: NCCL for CUDA {major.group(1)}, HERMETIC_CUDA_VERSION={'/'.join(cuda.values)}"
    )


def _unused_archive(item: Input, config: BuildConfig) -> str:
    if config.components is None or item.name in config.components:
        return ""
    return f"{NOT_USED}: no build template for {item.name} (*{TEMPLATES_SUFFIX})"


def _why_unused(item: Input, config: BuildConfig, mirrored: set[tuple[str, str]]) -> str:
    if item.kind == "redistrib_manifest":
        return _unused_manifest(item, config, mirrored)
    if item.kind == "wheel":
        return _unused_wheel(item, config)
    if item.kind == "redist_archive":
        return _unused_archive(item, config)
    return ""


def mark_unused(inputs: list[Input], config: BuildConfig) -> None:
    """Manifests of versions the configuration does not choose, NCCL wheels for another
    CUDA major and archives of components without a template stay listed, with the reason,
    but out of the download total. Without a chosen version nothing changes: the tree
    does not say what a build uses."""
    if not config.hermetic:
        return
    mirrored = {
        (library, item.version)
        for item in inputs
        if item.kind == "redistrib_manifest"
        and _constant(item).startswith("MIRRORED")
        and item.version is not None
        and (library := _library(_constant(item))) is not None
    }
    for item in inputs:
        why = _why_unused(item, config, mirrored)
        if why and item.in_total:
            item.in_total = False
            item.note = f"{item.note}; {why}" if item.note else why
