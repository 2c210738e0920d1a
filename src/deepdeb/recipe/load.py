"""Reading recipes: TOML in, a typed :mod:`deepdeb.recipe.model` recipe out.

A recipe is a small TOML file, and untrusted input. It is validated strictly: an unknown key
or a wrong type is an error naming the file, the line and what was expected, because a typo
that silently falls back to a default (``min_sepedup``) would ship variants the user meant to
reject.
"""

from __future__ import annotations

import dataclasses
import re
import stat
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from deepdeb.cpu.levels import BASELINE, OPTIONAL_LEVELS, rank
from deepdeb.debian.debpkg import PACKAGE_NAME
from deepdeb.errors import RecipeError
from deepdeb.recipe.frameworks import framework_of_wheel, frameworks
from deepdeb.recipe.model import (
    FLAVORS,
    REQUIRE_CHOICES,
    Benchmark,
    Flavor,
    Isa,
    IsaRecipe,
    Python,
    Recipe,
    Sanity,
    Source,
    SourceRecipe,
    WheelRecipe,
)

# --- schema -----------------------------------------------------------------------------

_Check = Callable[[Any], str | None]  # returns what was expected, or None when fine


# Bounds on numbers and sizes: a recipe is untrusted input, and a value no build needs
# (a timeout of 1e300 s, 10^23 repetitions) is refused before anything runs.
MAX_REPEAT = 1000
MAX_SECONDS = 7 * 24 * 3600.0
MAX_LIST = 1000
MAX_TEXT = 4096


def _is_str(v: Any) -> str | None:
    ok = isinstance(v, str) and v.strip() and len(v) <= MAX_TEXT and "\0" not in v
    return None if ok else f"a non-empty string (at most {MAX_TEXT} characters)"


def _is_debian_name(v: Any) -> str | None:
    ok = isinstance(v, str) and len(v) <= 128 and PACKAGE_NAME.fullmatch(v) is not None
    return None if ok else "a Debian package name (lower case letters, digits, + - .; Policy 5.6.1)"


def _is_tune(v: Any) -> str | None:
    ok = isinstance(v, str) and re.fullmatch(r"[a-z0-9][a-z0-9_.-]*", v) is not None
    return None if ok else "a CPU name for -mtune (e.g. generic, znver3, skylake)"


def _is_levels(v: Any) -> str | None:
    ok = isinstance(v, list) and all(isinstance(x, str) and x in OPTIONAL_LEVELS for x in v)
    return None if ok else f"a list of levels from {', '.join(OPTIONAL_LEVELS)}"


def _is_speedup(v: Any) -> str | None:
    ok = isinstance(v, int | float) and not isinstance(v, bool) and v >= 1.0
    return None if ok else "a number >= 1.0"


def _is_repeat(v: Any) -> str | None:
    ok = isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= MAX_REPEAT
    return None if ok else f"an integer >= 1 and at most {MAX_REPEAT}"


def _is_count(v: Any) -> str | None:
    ok = isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= MAX_REPEAT
    return None if ok else f"an integer >= 0 and at most {MAX_REPEAT}"


def _is_seconds(v: Any) -> str | None:
    ok = isinstance(v, int | float) and not isinstance(v, bool) and 0 < v <= MAX_SECONDS
    return None if ok else f"a number of seconds > 0 and at most {MAX_SECONDS:.0f} (a week)"


def _is_sha256(v: Any) -> str | None:
    ok = isinstance(v, str) and re.fullmatch(r"[0-9a-f]{64}", v) is not None
    return None if ok else "a sha256 digest (64 lowercase hex digits)"


def _is_commit(v: Any) -> str | None:
    ok = isinstance(v, str) and re.fullmatch(r"[0-9a-f]{40}", v) is not None
    return None if ok else "a full git commit id (40 lowercase hex digits)"


def _is_flags(v: Any) -> str | None:
    if not isinstance(v, str) or len(v) > MAX_TEXT:
        return "a string of compiler flags"
    if re.search(r"(^|\s)-march=|(^|\s)-mtune=", v):
        return "compiler flags without -march/-mtune (deepdeb sets those per level)"
    return None


def _string_list(what: str, item: _Check | None = None) -> _Check:
    def check(v: Any) -> str | None:
        ok = isinstance(v, list) and len(v) <= MAX_LIST
        ok = ok and all(isinstance(x, str) and x and len(x) <= MAX_TEXT for x in v)
        ok = ok and (item is None or all(item(x) is None for x in v))
        return None if ok else f"{what} (at most {MAX_LIST})"

    return check


_is_names = _string_list("a list of Debian package names", _is_debian_name)
_is_globs = _string_list("a list of paths or glob patterns")


def _pypi_table(v: Any, value_ok: Callable[[Any], bool]) -> bool:
    """A table of PyPI names (at most MAX_LIST) whose every value ``value_ok`` accepts."""
    return (
        isinstance(v, dict)
        and len(v) <= MAX_LIST
        and all(
            isinstance(k, str)
            and re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", k) is not None
            and value_ok(x)
            for k, x in v.items()
        )
    )


def _is_requires(v: Any) -> str | None:
    ok = _pypi_table(v, lambda x: x in REQUIRE_CHOICES)
    return None if ok else f"a table of PyPI name = one of {', '.join(REQUIRE_CHOICES)}"


def _is_versions(v: Any) -> str | None:
    ok = _pypi_table(v, lambda x: isinstance(x, str) and _is_pep440(x))
    return None if ok else 'a table of PyPI name = "version" (one release, e.g. "0.5.4")'


def _is_pep440(text: str) -> bool:
    try:
        Version(text)
    except InvalidVersion:
        return False
    return len(text) <= 64


def _is_framework(v: Any) -> str | None:
    ok = isinstance(v, str) and v in frameworks()
    return None if ok else f"one of {', '.join(frameworks())}"


def _is_fraction(v: Any) -> str | None:
    ok = isinstance(v, int | float) and not isinstance(v, bool) and 0 < v <= 1
    return None if ok else "a number in (0, 1]"


def _is_pin(v: Any) -> str | None:
    ok = isinstance(v, str) and re.fullmatch(r"[A-Za-z0-9._-]+==[A-Za-z0-9.+!_-]+", v) is not None
    return None if ok else "'name==version' (pinned)"


def _is_suffix(v: Any) -> str | None:
    ok = isinstance(v, str) and re.fullmatch(r"\+[a-z0-9][a-z0-9.+~]*", v) is not None
    return None if ok else 'a Debian version suffix starting with "+" (e.g. "+hwcaps1")'


_SCHEMA: dict[str, dict[str, _Check]] = {
    "source": {
        "path": _is_str,
        "debian": _is_str,
        "url": _is_str,
        "sha256": _is_sha256,
        "git": _is_str,
        "commit": _is_commit,
        "wheel": _is_str,
        "pypi": _is_pin,
    },
    "python": {
        "package": _is_debian_name,
        "requires": _is_requires,
        "versions": _is_versions,
        "drop": _is_globs,
        "extras": _is_globs,
        "maintainer": _is_str,
    },
    "sanity": {
        "dataset": _is_str,
        "min_accuracy": _is_fraction,
        "seconds": _is_seconds,
        "framework": _is_framework,
    },
    "isa": {
        "levels": _is_levels,
        "min_speedup": _is_speedup,
        "profile": _is_flags,
        "tune": _is_tune,
    },
    "benchmark": {
        "command": _is_str,
        "repeat": _is_repeat,
        "max_repeat": _is_repeat,
        "warmup": _is_count,
        "timeout": _is_seconds,
    },
    "package": {"version_suffix": _is_suffix},
    "audit": {"depends": _is_names},
}
_ML_KEYS = (
    "name",
    "license",
    "training_data",
    "training_data_license",
    "training_program",
    "url",
    "sha256",
    "path",  # where it lies in the tree: the file found there is judged by this entry
)


def _line_of(text: str, table: str, key: str | None = None) -> int | None:
    """Line number of ``[table]`` or of ``key`` inside it (TOML's parser gives none)."""
    current = None
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        header = re.fullmatch(r"\[\[?\s*([A-Za-z0-9_.-]+)\s*\]\]?\s*(#.*)?", line)
        if header:
            current = header.group(1)
            if key is None and current == table:
                return number
            if key is not None and current == f"{table}.{key}":  # [python.requires]
                return number
            continue
        if key is not None and current == table and re.match(rf'"?{re.escape(key)}"?\s*=', line):
            return number
        dotted = re.match(rf"{re.escape(table)}\.{re.escape(key or '')}\s*=", line)
        if key is not None and current is None and dotted:
            return number
    return None


MAX_RECIPE_BYTES = 1 << 20


def load_recipe(path: Path) -> Recipe:
    """Read and validate a recipe file; raises RecipeError with file and line."""
    path = Path(path).absolute()
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            raise RecipeError(path, "cannot read recipe: not a regular file")
        if info.st_size > MAX_RECIPE_BYTES:
            raise RecipeError(path, f"recipe is larger than {MAX_RECIPE_BYTES} bytes")
        raw = path.read_bytes()
    except OSError as e:
        raise RecipeError(path, f"cannot read recipe: {e.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise RecipeError(path, f"not UTF-8 text (byte {e.start})", line) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        match = re.search(r"at line (\d+)", str(e))
        raise RecipeError(
            path, f"not valid TOML: {e}", int(match.group(1)) if match else None
        ) from None
    except RecursionError:
        raise RecipeError(path, "not valid TOML: nested too deeply") from None
    return parse_recipe(path, text, data)


def parse_recipe(path: Path, text: str, data: dict[str, Any]) -> Recipe:
    """Validate parsed TOML against the schema and build the recipe of the right kind."""

    def fail(message: str, table: str, key: str | None = None) -> RecipeError:
        return RecipeError(path, message, _line_of(text, table, key) or _line_of(text, table))

    models = _ml_entries(data.pop("model", []), "model", fail)
    datasets = _ml_entries(data.pop("dataset", []), "dataset", fail)
    raw_flavors = data.pop("flavor", {})
    for table, value in data.items():
        if table not in _SCHEMA:
            known = ", ".join(f"[{t}]" for t in _SCHEMA)
            raise RecipeError(
                path,
                f"unknown table [{table}] (known: {known}, [flavor.*], [[model]], [[dataset]])",
                _line_of(text, table),
            )
        _check_table(table, value, _SCHEMA[table], fail)
    flavors = _flavors(path, raw_flavors, fail)
    if "source" not in data and not flavors:
        raise RecipeError(path, "missing table [source]")
    source = _source(path, data["source"], fail) if "source" in data else None
    if flavors or (source is not None and source.is_wheel):
        return _wheel_recipe(path, data, source, flavors, models, datasets, fail)
    for table in ("python", "sanity"):
        if table in data:
            raise fail(f"[{table}] is for recipes whose source is a wheel or pypi", table)
    assert source is not None
    common = SourceRecipe(
        path=path,
        source=source,
        version_suffix=data.get("package", {}).get("version_suffix", SourceRecipe.version_suffix),
        models=models,
        datasets=datasets,
        depends=tuple(data.get("audit", {}).get("depends", [])),
    )
    return _isa_recipe(common, data, fail)


_Fail = Callable[..., RecipeError]


def _check_table(where: str, value: Any, schema: dict[str, _Check], fail: _Fail) -> None:
    """Every key known and of the expected type, else an error at its line."""
    if not isinstance(value, dict):
        raise fail(f"[{where}] must be a table", where)
    for key, item in value.items():
        check = schema.get(key)
        if check is None:
            known = ", ".join(schema)
            raise fail(f"[{where}] unknown key '{key}' (known: {known})", where, key)
        expected = check(item)
        if expected is not None:
            raise fail(f"[{where}] {key}: expected {expected}, got {item!r}", where, key)


def _ml_entries(entries: Any, table: str, fail: _Fail) -> tuple[dict[str, str], ...]:
    """[[model]] or [[dataset]]: string fields only, a name and a licence each."""
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise fail(f"[[{table}]] must be an array of tables", table)
    for entry in entries:
        for key, item in entry.items():
            if key not in _ML_KEYS:
                known = ", ".join(_ML_KEYS)
                raise fail(f"[[{table}]] unknown key '{key}' (known: {known})", table, key)
            if not isinstance(item, str):
                raise fail(f"[[{table}]] {key}: expected a string, got {item!r}", table, key)
        if "name" not in entry or "license" not in entry:
            raise fail(f"[[{table}]] needs 'name' and 'license'", table)
    return tuple(entries)


def _wheel_recipe(
    path: Path,
    data: dict[str, Any],
    source: Source | None,
    flavors: tuple[Flavor, ...],
    models: tuple[dict[str, str], ...],
    datasets: tuple[dict[str, str], ...],
    fail: _Fail,
) -> WheelRecipe:
    """A wheel recipe: [source] (the cpu wheel) and/or [flavor.*], never [isa]."""
    python = _python(data.get("python", {}))
    _check_versions(python, "python", fail)
    for flavor in flavors:
        _check_versions(flavor.python, f"flavor.{flavor.name}", fail)
    if source is not None:
        if not source.is_wheel:
            raise fail("[source] of a recipe with [flavor.*] must be 'wheel' or 'pypi'", "source")
        if any(f.name == "cpu" for f in flavors):
            raise fail("[source] and [flavor.cpu] both give the cpu wheel: keep one", "source")
        flavors = (Flavor("cpu", source, python), *flavors)
    return WheelRecipe(
        path=path,
        flavors=flavors,
        python=python,
        sanity=_sanity(data["sanity"], flavors, fail) if "sanity" in data else None,
        models=models,
        datasets=datasets,
    )


def _check_versions(python: Python, table: str, fail: _Fail) -> None:
    """A pinned version is for a requirement the recipe bundles or packages: anywhere else
    it would be silently ignored."""
    choices = dict(python.requires)  # already PEP 503 names (_canonical)
    loose = [k for k, _ in python.versions if choices.get(k) not in ("bundle", "package")]
    if loose:
        raise fail(
            f"[{table}] versions: {', '.join(loose)} pinned, but [{table}] requires does "
            'not "bundle" or "package" it',
            table,
            "versions",
        )


def _wheel_project(source: Source) -> str:
    """The PyPI project of a wheel source: the pin's name, or the wheel file's first part."""
    if source.pypi is not None:
        return source.pypi.partition("==")[0]
    assert source.wheel is not None
    return source.wheel.name.split("-", 1)[0]


def _sanity(table: dict[str, Any], flavors: tuple[Flavor, ...], fail: _Fail) -> Sanity:
    """[sanity], its framework defaulting from the first flavour's wheel (torch, jax, ...)."""
    fields = dict(table)
    if "framework" not in fields:
        project = _wheel_project(flavors[0].source)
        found = framework_of_wheel(project)
        if found is None:
            raise fail(
                f"[sanity] cannot tell the framework from the wheel {project!r}: "
                f"set framework = one of {', '.join(frameworks())}",
                "sanity",
            )
        fields["framework"] = found
    return Sanity(**fields)


def _isa_recipe(common: SourceRecipe, data: dict[str, Any], fail: _Fail) -> SourceRecipe:
    """[isa] and [benchmark], which go together: deepdeb ships a variant only when it was
    measured faster. Neither: a stock build. [benchmark] alone: every level is tried."""
    if "isa" in data and "benchmark" not in data:
        raise fail(
            "[isa] without [benchmark]: deepdeb only ships variants it has measured faster. "
            "Add a [benchmark] command, or remove [isa] for a stock build of the source",
            "isa",
        )
    if "benchmark" not in data:
        return common
    isa_table = data.get("isa", {})
    levels = isa_table.get("levels", list(OPTIONAL_LEVELS))
    if len(set(levels)) != len(levels) or not levels:
        raise fail("[isa] levels: expected a non-empty list without repeats", "isa", "levels")
    isa = Isa(
        levels=tuple(sorted(levels, key=rank)),
        min_speedup=float(isa_table.get("min_speedup", Isa.min_speedup)),
        profile=isa_table.get("profile", ""),
        tune=isa_table.get("tune", Isa.tune),
    )
    bench = data["benchmark"]
    if "command" not in bench:
        raise fail("[benchmark] missing key 'command'", "benchmark")
    benchmark = Benchmark(
        command=bench["command"],
        repeat=bench.get("repeat", Benchmark.repeat),
        warmup=bench.get("warmup", Benchmark.warmup),
        timeout=float(bench.get("timeout", Benchmark.timeout)),
        max_repeat=bench.get("max_repeat"),
    )
    if benchmark.max_repeat is not None and benchmark.max_repeat < benchmark.repeat:
        raise fail(
            f"[benchmark] max_repeat: {benchmark.max_repeat} is fewer than repeat "
            f"({benchmark.repeat})",
            "benchmark",
            "max_repeat",
        )
    return IsaRecipe(**_fields(common), isa=isa, benchmark=benchmark)


def _fields(recipe: SourceRecipe) -> dict[str, Any]:
    return {f.name: getattr(recipe, f.name) for f in dataclasses.fields(SourceRecipe)}


def _source(path: Path, src: dict[str, Any], fail: _Fail, table: str = "source") -> Source:
    kinds = [k for k in ("path", "debian", "url", "git", "wheel", "pypi") if k in src]
    if len(kinds) != 1:
        raise fail(
            f"[{table}] needs exactly one of 'path', 'debian', 'url', 'git', 'wheel' or 'pypi'",
            table,
        )
    for key, pin in (("url", "sha256"), ("git", "commit")):
        if key in src and pin not in src:
            raise fail(f"[{table}] {key} needs '{pin}': unpinned downloads are refused", table)
        if pin in src and key not in src:
            raise fail(f"[{table}] '{pin}' only goes with '{key}'", table, pin)
    source = Source(
        path=(path.parent / src["path"]).resolve() if "path" in src else None,
        debian=src.get("debian"),
        url=src.get("url"),
        sha256=src.get("sha256"),
        git=src.get("git"),
        commit=src.get("commit"),
        wheel=(path.parent / src["wheel"]).resolve() if "wheel" in src else None,
        pypi=src.get("pypi"),
    )
    if source.debian is not None and not re.fullmatch(
        r"[a-z0-9][a-z0-9+.-]+(=[A-Za-z0-9.+~:-]+)?", source.debian
    ):
        raise fail(
            f"[{table}] debian: expected 'name' or 'name=version', got {source.debian!r}",
            table,
            "debian",
        )
    return source


def _canonical(table: dict[str, str]) -> tuple[tuple[str, str], ...]:
    """A table keyed by PyPI names, with the names as PEP 503 writes them (requirements
    are matched by that form: ``typing_extensions`` is ``typing-extensions``)."""
    return tuple(sorted((str(canonicalize_name(k)), v) for k, v in table.items()))


def _python(table: dict[str, Any]) -> Python:
    return Python(
        package=table.get("package"),
        requires=_canonical(table.get("requires", {})),
        versions=_canonical(table.get("versions", {})),
        drop=tuple(table.get("drop", [])),
        extras=tuple(table.get("extras", [])),
        maintainer=table.get("maintainer"),
    )


def _flavors(path: Path, raw: Any, fail: _Fail) -> tuple[Flavor, ...]:
    """[flavor.NAME] tables: a wheel source plus [python]-style keys each."""
    if not isinstance(raw, dict):
        raise fail("[flavor] must hold tables such as [flavor.cpu]", "flavor")
    flavors = []
    keys = {"wheel": _is_str, "pypi": _is_pin, **_SCHEMA["python"]}
    for name, table in raw.items():
        where = f"flavor.{name}"
        if name not in FLAVORS:
            raise fail(f"unknown flavour [{where}] (known: {', '.join(FLAVORS)})", where)
        _check_table(where, table, keys, fail)
        src = {k: v for k, v in table.items() if k in ("wheel", "pypi")}
        if len(src) != 1:
            raise fail(f"[{where}] needs exactly one of 'wheel' or 'pypi'", where)
        rest = {k: v for k, v in table.items() if k not in ("wheel", "pypi")}
        flavors.append(Flavor(name, _source(path, src, fail, where), _python(rest)))
    return tuple(sorted(flavors, key=lambda f: FLAVORS.index(f.name)))


def with_levels(recipe: SourceRecipe, levels: list[str]) -> IsaRecipe:
    """The recipe with its level list replaced (``--levels`` on the command line)."""
    unknown = [lv for lv in levels if lv not in OPTIONAL_LEVELS and lv != BASELINE]
    if unknown:
        raise RecipeError(
            recipe.path,
            f"--levels: unknown level(s) {', '.join(unknown)}; "
            f"expected some of {', '.join(OPTIONAL_LEVELS)}",
        )
    if not isinstance(recipe, IsaRecipe):
        raise RecipeError(
            recipe.path,
            "--levels: the recipe has no [benchmark], so it is a stock build; deepdeb only "
            "ships variants it has measured faster",
        )
    chosen = tuple(sorted({lv for lv in levels if lv != BASELINE}, key=rank))
    isa = dataclasses.replace(recipe.isa, levels=chosen, explicit=True)
    return dataclasses.replace(recipe, isa=isa)
