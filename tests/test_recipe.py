import os
from pathlib import Path

import pytest

from deepdeb.errors import RecipeError
from deepdeb.recipe.load import load_recipe, with_levels
from deepdeb.recipe.model import IsaRecipe, SourceRecipe

GOOD = """\
[source]
path = "libfoo-1.0"

[isa]
levels = ["x86-64-v4", "x86-64-v2"]
min_speedup = 1.1
profile = "-O3"

[benchmark]
command = "foo-bench 10"
repeat = 3
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "recipe.toml"
    path.write_text(text)
    return path


def load_isa(path: Path) -> IsaRecipe:
    recipe = load_recipe(path)
    assert isinstance(recipe, IsaRecipe), recipe
    return recipe


def test_good_recipe(tmp_path: Path) -> None:
    recipe = load_isa(write(tmp_path, GOOD))
    assert recipe.source.path == (tmp_path / "libfoo-1.0").resolve()
    assert recipe.isa.levels == ("x86-64-v2", "x86-64-v4")  # sorted by level
    assert recipe.isa.min_speedup == 1.1
    assert recipe.isa.profile == "-O3"
    assert recipe.benchmark is not None
    assert recipe.benchmark.command == "foo-bench 10"
    assert recipe.benchmark.repeat == 3
    assert recipe.version_suffix == "+hwcaps1"


@pytest.mark.parametrize(
    ("text", "line", "needle"),
    [
        (GOOD.replace("repeat = 3", "repaet = 3"), 11, "[benchmark] unknown key 'repaet'"),
        (
            GOOD.replace("min_speedup = 1.1", 'min_speedup = "fast"'),
            6,
            "min_speedup: expected a number >= 1.0, got 'fast'",
        ),
        (GOOD.replace("min_speedup = 1.1", "min_speedup = 0.9"), 6, "a number >= 1.0"),
        (GOOD.replace('"x86-64-v2"]', '"x86-64-v9"]'), 5, "levels: expected a list of levels"),
        (GOOD.replace("repeat = 3", "repeat = 0"), 11, "repeat: expected an integer >= 1"),
        (
            GOOD.replace("repeat = 3", "repeat = 3\nmax_repeat = 2"),
            12,
            "[benchmark] max_repeat: 2 is fewer than repeat (3)",
        ),
        (
            GOOD.replace('profile = "-O3"', 'profile = "-O3 -march=native"'),
            7,
            "without -march/-mtune",
        ),
        (GOOD + "\n[extra]\nx = 1\n", 13, "unknown table [extra]"),
        (GOOD.replace('path = "libfoo-1.0"', 'path = "a"\ndebian = "b"'), 1, "exactly one of"),
        (
            GOOD.replace("levels = [", "levels = [[").replace('"x86-64-v2"]', '"x86-64-v2"]]'),
            5,
            "levels: expected a list",
        ),
        (GOOD.replace("repeat = 3", "repeat = 3 3"), 11, "not valid TOML"),
        (GOOD.replace('command = "foo-bench 10"', ""), 9, "missing key 'command'"),
        (GOOD.replace('path = "libfoo-1.0"', 'debian = "Bad Name"'), 2, "'name' or 'name=version'"),
    ],
)
def test_bad_recipes_name_file_line_and_problem(
    tmp_path: Path, text: str, line: int, needle: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    message = str(info.value)
    assert message.startswith(f"{path}:{line}: "), message
    assert needle in message


def test_isa_without_benchmark_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.split("[benchmark]")[0])
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    assert str(info.value).startswith(f"{path}:4: [isa] without [benchmark]: ")
    assert "only ships variants it has measured faster" in str(info.value)


def test_missing_source(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.split("[isa]")[1].join(["[isa]", ""]))
    with pytest.raises(RecipeError, match=r"missing table \[source\]"):
        load_recipe(path)


def test_source_alone_is_a_stock_build(tmp_path: Path) -> None:
    """What DUPR users want most: the stock packages, built offline, nothing measured."""
    recipe = load_recipe(write(tmp_path, '[source]\ndebian = "zlib"\n'))
    assert recipe.source.debian == "zlib"
    assert type(recipe) is SourceRecipe  # neither levels nor a benchmark
    with pytest.raises(RecipeError, match="--levels: the recipe has no \\[benchmark\\]"):
        with_levels(recipe, ["x86-64-v3"])


def test_benchmark_alone_tries_every_level(tmp_path: Path) -> None:
    recipe = load_isa(
        write(tmp_path, GOOD.replace(GOOD.split("[benchmark]")[0], '[source]\npath = "x"\n\n'))
    )
    assert recipe.isa.levels == ("x86-64-v2", "x86-64-v3", "x86-64-v4")
    assert recipe.benchmark is not None and recipe.benchmark.command == "foo-bench 10"
    assert not recipe.isa.explicit


def test_isa_levels_default_to_every_level(tmp_path: Path) -> None:
    recipe = load_isa(write(tmp_path, GOOD.replace('levels = ["x86-64-v4", "x86-64-v2"]\n', "")))
    assert recipe.isa.levels == ("x86-64-v2", "x86-64-v3", "x86-64-v4")


def test_unreadable_recipe(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match="cannot read recipe"):
        load_recipe(tmp_path / "nope.toml")


def test_debian_source_with_pin(tmp_path: Path) -> None:
    recipe = load_recipe(
        write(tmp_path, GOOD.replace('path = "libfoo-1.0"', 'debian = "liblinear=2.3.0+dfsg-5"'))
    )
    assert recipe.source.debian == "liblinear=2.3.0+dfsg-5"
    assert recipe.source.path is None


def test_levels_override(tmp_path: Path) -> None:
    recipe = with_levels(load_isa(write(tmp_path, GOOD)), ["x86-64-v4", "x86-64-v3"])
    assert recipe.isa.levels == ("x86-64-v3", "x86-64-v4")
    assert recipe.isa.explicit  # named: built even above the host's level
    with pytest.raises(RecipeError, match="unknown level"):
        with_levels(recipe, ["x86-64-v5"])


WHEEL = '[source]\nwheel = "x.whl"\n'


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        (WHEEL + '[python]\npackage = "/some/dir"\n', "package: expected a Debian package name"),
        (WHEEL + '[python]\npackage = "../../x"\n', "package: expected a Debian package name"),
        (WHEEL + '[python]\nrequires = { "../x" = "depend" }\n', "requires: expected a table"),
        (GOOD.replace("repeat = 3", "repeat = 100000000000000000000000"), "at most 1000"),
        (GOOD.replace("repeat = 3", "timeout = inf"), "seconds > 0 and at most"),
        (GOOD.replace("repeat = 3", "timeout = 1e300"), "seconds > 0 and at most"),
        (GOOD.replace("repeat = 3", "timeout = nan"), "seconds > 0 and at most"),
        (GOOD.replace('profile = "-O3"', 'tune = "generic -fplugin=/tmp/evil.so"'),
         "tune: expected a CPU name"),
        (GOOD + "[audit]\ndepends = [" + ", ".join(['"libc6"'] * 1001) + "]\n", "at most 1000"),
        (GOOD + '[audit]\ndepends = ["libc6; rm -rf /"]\n', "a list of Debian package names"),
    ],
)  # fmt: skip
def test_hostile_values_are_refused_before_anything_runs(
    tmp_path: Path, text: str, needle: str
) -> None:
    with pytest.raises(RecipeError) as info:
        load_recipe(write(tmp_path, text))
    assert needle in str(info.value)


def test_unreadable_recipes_are_errors_not_tracebacks(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'[source]\npath = "caf\xe9"\n')
    with pytest.raises(RecipeError, match=r"latin1.toml:2: not UTF-8 text"):
        load_recipe(path)
    deep = tmp_path / "deep.toml"
    deep.write_text("x = " + "[" * 100000 + "]" * 100000 + "\n")
    with pytest.raises(RecipeError, match="not valid TOML"):
        load_recipe(deep)
    fifo = tmp_path / "fifo.toml"
    os.mkfifo(fifo)  # would block a plain open() forever
    with pytest.raises(RecipeError, match="not a regular file"):
        load_recipe(fifo)
    big = tmp_path / "big.toml"
    big.write_text("# " + "x" * (1 << 20) + "\n")
    with pytest.raises(RecipeError, match="larger than"):
        load_recipe(big)
