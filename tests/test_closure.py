"""A packaged requirement's own requirements: decided by the same [python] requires table,
packaged breadth first, pinned by [python] versions, and refused with the whole list.

The wheels are the suite's own (wheelmaker), offered to pip from a directory with no
index, under names no index has."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from conftest import control
from rich.console import Console
from wheelmaker import make_wheel

from deepdeb.errors import RecipeError, UnsatisfiedRequirements
from deepdeb.recipe.load import load_recipe
from deepdeb.recipe.model import WheelRecipe
from deepdeb.wheel.pipeline import run_wheel_build


def _pure(dest: Path, name: str, version: str, *requires: str) -> Path:
    module = name.replace("-", "_")
    files = {f"{module}/__init__.py": f"VERSION = {version!r}\n".encode()}
    return make_wheel(dest, name, version, files, requires=requires)


@pytest.fixture
def index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory pip takes wheels from, and nothing else: ddfx-app needs ddfx-mid (two
    releases), which needs ddfx-leaf (two releases); none of them is in bookworm."""
    links = tmp_path / "links"
    _pure(links, "ddfx-mid", "1.0", "ddfx-leaf>=0.5")
    _pure(links, "ddfx-mid", "2.0", "ddfx-leaf>=0.5", "ddfx-tail")
    _pure(links, "ddfx-leaf", "0.5")
    _pure(links, "ddfx-leaf", "0.7")
    _pure(links, "ddfx-tail", "1.0", "six")  # six: the archive's
    monkeypatch.setenv("DEEPDEB_CACHE", str(tmp_path / "cache"))  # wheels fetched per test
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(links))
    return links


def _recipe(tmp: Path, app_requires: tuple[str, ...], table: str) -> WheelRecipe:
    app = _pure(tmp / "dist", "ddfx-app", "3.0", *app_requires)
    path = tmp / "recipe.toml"
    path.write_text(f'[source]\nwheel = "{app}"\n\n{table}')
    recipe = load_recipe(path)
    assert isinstance(recipe, WheelRecipe)
    return recipe


def _build(recipe: WheelRecipe, out: Path) -> dict[str, Any]:
    run_wheel_build(recipe, out, Console(file=io.StringIO()))
    report: dict[str, Any] = json.loads((out / "report.json").read_text())
    return report


def test_what_a_packaged_requirement_needs_is_listed_with_who_needs_it(
    index: Path, tmp_path: Path
) -> None:
    recipe = _recipe(tmp_path, ("ddfx-mid>=1.0",), '[python.requires]\nddfx-mid = "package"\n')
    with pytest.raises(UnsatisfiedRequirements) as caught:
        _build(recipe, tmp_path / "out")
    message = str(caught.value)
    assert (
        "ddfx-leaf>=0.5 (needed by ddfx-mid 2.0 for python3-ddfx-app): python3-ddfx-leaf is "
        'not in the archive; choose in [python] requires: ddfx-leaf = "depend" | "bundle" | '
        '"package", or pin an older ddfx-mid in [python] versions'
    ) in message
    assert "ddfx-tail (needed by ddfx-mid 2.0 for python3-ddfx-app)" in message  # the whole level
    assert not (tmp_path / "out" / "report.json").exists()
    assert not list((tmp_path / "out").glob("*.deb"))


def test_the_closure_is_packaged_and_each_package_depends_on_the_next(
    index: Path, tmp_path: Path
) -> None:
    table = (
        '[python.requires]\nddfx-mid = "package"\nddfx-leaf = "package"\nddfx-tail = "package"\n'
    )
    report = _build(_recipe(tmp_path, ("ddfx-mid>=1.0",), table), tmp_path / "out")
    packages = {p["package"]: p for p in report["packages"]}
    assert set(packages) == {
        "python3-ddfx-app", "python3-ddfx-mid", "python3-ddfx-leaf", "python3-ddfx-tail",
    }  # fmt: skip
    mid = control(tmp_path / "out" / packages["python3-ddfx-mid"]["file"])
    assert mid["Version"] == "2.0-1~deepdeb1"
    assert "python3-ddfx-leaf (>= 0.5)" in mid["Depends"]
    assert "python3-ddfx-tail" in mid["Depends"]
    tail = control(tmp_path / "out" / packages["python3-ddfx-tail"]["file"])
    assert "python3-six" in tail["Depends"]  # from the archive, as before
    leaf = control(tmp_path / "out" / packages["python3-ddfx-leaf"]["file"])
    assert leaf["Version"] == "0.7-1~deepdeb1"
    # built together, all free: main, though bookworm has none of them
    assert {p["area"] for p in packages.values()} == {"main"}
    rows = {r["requirement"]: r["choice"] for r in report["unsatisfied_in_bookworm"]}
    assert rows == {"ddfx-mid>=1.0": "package", "ddfx-leaf>=0.5": "package",
                    "ddfx-tail": "package"}  # fmt: skip


def test_a_pinned_requirement_is_taken_at_its_pin(index: Path, tmp_path: Path) -> None:
    """ddfx-mid 1.0 needs no ddfx-tail: pinning it keeps the closure smaller."""
    table = (
        '[python.requires]\nddfx-mid = "package"\nddfx-leaf = "package"\n\n'
        '[python.versions]\nddfx-mid = "1.0"\nddfx_leaf = "0.5"\n'
    )
    report = _build(_recipe(tmp_path, ("ddfx-mid>=1.0",), table), tmp_path / "out")
    versions = {p["package"]: p["version"] for p in report["packages"]}
    assert versions == {
        "python3-ddfx-app": "3.0-1",
        "python3-ddfx-mid": "1.0-1~deepdeb1",
        "python3-ddfx-leaf": "0.5-1~deepdeb1",
    }


def test_a_pin_that_does_not_meet_the_requirement_is_refused(index: Path, tmp_path: Path) -> None:
    table = '[python.requires]\nddfx-mid = "package"\n\n[python.versions]\nddfx-mid = "1.0"\n'
    with pytest.raises(UnsatisfiedRequirements, match=r"pins ddfx-mid 1\.0, which does not meet "
                       r"ddfx-mid>=2\.0"):  # fmt: skip
        _build(_recipe(tmp_path, ("ddfx-mid>=2.0",), table), tmp_path / "out")


def test_two_requirers_that_want_different_releases_are_both_named(
    index: Path, tmp_path: Path
) -> None:
    """The app takes ddfx-leaf 0.7 (its own requirement, first); ddfx-mid 1.0 wants < 0.6."""
    (index / "ddfx_mid-1.0-py3-none-any.whl").unlink()
    _pure(index, "ddfx-mid", "1.0", "ddfx-leaf<0.6")
    table = (
        '[python.requires]\nddfx-mid = "package"\nddfx-leaf = "package"\n\n'
        '[python.versions]\nddfx-mid = "1.0"\n'
    )
    with pytest.raises(UnsatisfiedRequirements) as caught:
        _build(_recipe(tmp_path, ("ddfx-leaf>=0.6", "ddfx-mid"), table), tmp_path / "out")
    assert (
        "ddfx-leaf<0.6 (ddfx-mid 1.0 for python3-ddfx-app): python3-ddfx-leaf is packaged at "
        "0.7 for python3-ddfx-app"
    ) in str(caught.value)


def test_a_pin_for_a_requirement_the_recipe_does_not_package_is_a_recipe_error(
    tmp_path: Path,
) -> None:
    path = tmp_path / "recipe.toml"
    path.write_text(
        '[source]\npypi = "jax==0.4.38"\n\n[python.requires]\njaxlib = "depend"\n\n'
        '[python.versions]\njaxlib = "0.4.38"\n'
    )
    with pytest.raises(RecipeError, match=r"recipe\.toml:7: \[python\] versions: jaxlib pinned"):
        load_recipe(path)
    path.write_text('[source]\npypi = "jax==0.4.38"\n\n[python.versions]\njaxlib = "latest"\n')
    with pytest.raises(
        RecipeError, match=r"recipe\.toml:4: \[python\] versions: expected .*one release"
    ):
        load_recipe(path)


def test_a_packaged_requirement_that_needs_the_frameworks_library_depends_on_it(
    index: Path, tmp_path: Path
) -> None:
    """tensorflow-io-gcs-filesystem's plugin needs libtensorflow_framework.so.2, which
    python3-tensorflow ships: dpkg-shlibdeps finds it in the package built before it, and
    the plugin's package depends on that package at the version built. A script both
    wheels declare is installed by the package whose wheel holds its module only (dpkg
    would refuse the second)."""
    from wheelmaker import compile_so

    tag = "cp311-cp311-manylinux_2_17_x86_64"
    build = tmp_path / "so"
    build.mkdir()
    core = compile_so(build, "libddcore.so.2", "int ddcore(void) { return 2; }\n",
                      ("-Wl,-soname,libddcore.so.2",))  # fmt: skip
    code = "int ddcore(void);\nint plug(void) { return ddcore(); }\n"
    plugin = compile_so(build, "libddplug.so", code, (f"-L{build}", "-l:libddcore.so.2"))
    members = {"ddfx_plug/__init__.py": b"", "ddfx_plug/libddplug.so": plugin}
    members["ddfx_plug/cli.py"] = b"def main():\n    return 0\n"
    # both declare the script; its module is the plugin's (tensorflow and tensorboard)
    script = "[console_scripts]\nddplug = ddfx_plug.cli:main\n"
    make_wheel(index, "ddfx-plug", "0.3", members, tag=tag, entry_points=script)
    app = make_wheel(tmp_path / "dist", "ddfx-core", "2.0",
                     {"ddfx_core/__init__.py": b"", "ddfx_core/libddcore.so.2": core},
                     requires=("ddfx-plug>=0.3",), tag=tag, entry_points=script)  # fmt: skip
    path = tmp_path / "recipe.toml"
    path.write_text(f'[source]\nwheel = "{app}"\n\n[python.requires]\nddfx-plug = "package"\n')
    recipe = load_recipe(path)
    assert isinstance(recipe, WheelRecipe)
    report = _build(recipe, tmp_path / "out")
    files = {p["package"]: p["file"] for p in report["packages"]}
    plug = control(tmp_path / "out" / files["python3-ddfx-plug"])
    assert "python3-ddfx-core (= 2.0-1)" in plug["Depends"].split(", ")
    core_fields = control(tmp_path / "out" / files["python3-ddfx-core"])
    assert "python3-ddfx-plug (>= 0.3)" in core_fields["Depends"]
    scripts = {p["package"]: p["scripts"] for p in report["packages"]}
    assert (scripts["python3-ddfx-core"], scripts["python3-ddfx-plug"]) == ([], ["ddplug"])
