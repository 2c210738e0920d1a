"""Fuzzing the parsers of untrusted input: recipes, wheel metadata and the files a source
tree declares its downloads in. Whatever the bytes, the answer is a result or deepdeb's own
error, never a traceback and never a hang."""

from __future__ import annotations

import contextlib
import io
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
from hypothesis import HealthCheck, given, settings

from deepdeb.errors import DeepdebError, WheelError
from deepdeb.inventory import scan as inventory
from deepdeb.recipe.load import load_recipe, parse_recipe
from deepdeb.sources.wheelfile import entry_points_of, open_wheel, read_record

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

KEYS = [
    "source", "isa", "benchmark", "python", "package", "audit", "sanity", "flavor", "model",
    "path", "debian", "url", "sha256", "git", "commit", "wheel", "pypi", "levels",
    "min_speedup", "profile", "tune", "command", "repeat", "warmup", "timeout", "requires",
    "drop", "extras", "maintainer", "version_suffix", "depends", "name", "license", "cpu",
]  # fmt: skip
SCALARS = st.one_of(
    st.text(max_size=20), st.integers(), st.floats(), st.booleans(),
    st.sampled_from(["x86-64-v3", "x86-64-v9", "/etc", "../x", "libc6", "true"]),
)  # fmt: skip
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(KEYS), inner, max_size=4)
    ),
    max_leaves=12,
)


@FUZZ
@given(st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=6))
def test_recipe_structures(data: dict[str, Any]) -> None:
    with contextlib.suppress(DeepdebError):
        parse_recipe(Path("/fuzz/recipe.toml"), "", data)


@FUZZ
@given(st.binary(max_size=400))
def test_recipe_bytes(raw: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "recipe.toml"
        path.write_bytes(b"[source]\npath = '.'\n" + raw)
        with contextlib.suppress(DeepdebError):
            load_recipe(path)


@FUZZ
@given(st.text(max_size=300))
def test_wheel_record(text: str) -> None:
    with contextlib.suppress(WheelError):
        read_record(text)


@FUZZ
@given(st.text(max_size=300))
def test_wheel_entry_points(text: str) -> None:
    with contextlib.suppress(WheelError):
        entry_points_of(text, "fuzz.whl")


DIST = "fuzz-1.0.dist-info"


@FUZZ
@given(st.binary(max_size=200), st.binary(max_size=200), st.binary(max_size=200))
def test_wheel_metadata_files(metadata: bytes, wheel: bytes, record: bytes) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr(f"{DIST}/METADATA", metadata)
        zf.writestr(f"{DIST}/WHEEL", wheel)
        zf.writestr(f"{DIST}/RECORD", record)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fuzz-1.0-py3-none-any.whl"
        path.write_bytes(buffer.getvalue())
        with contextlib.suppress(WheelError):
            open_wheel(path)


DECLARATIONS = [
    "WORKSPACE", "MODULE.bazel", "deps.bzl", "CMakeLists.txt", "requirements.txt",
    "pyproject.toml", "Cargo.lock", "go.sum", "package-lock.json", ".gitmodules",
    "deps.txt", "redistrib_1.json",
]  # fmt: skip


@FUZZ
@given(st.sampled_from(DECLARATIONS), st.binary(max_size=400))
def test_inventory_files(name: str, raw: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / name).write_bytes(raw)
        result = inventory.scan(Path(tmp))
        assert result.files_scanned == 1
        result.to_json()  # and what it found can be reported
