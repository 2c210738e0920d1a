"""The Fashion-MNIST sanity test: the generated DEP-8 test per framework, its dataset
checks, and the PyTorch and JAX examples end to end in a clean root."""

from __future__ import annotations

import gzip
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from debian.deb822 import Deb822

from deepdeb.errors import RecipeError, SanityError
from deepdeb.recipe.frameworks import frameworks
from deepdeb.recipe.load import load_recipe
from deepdeb.recipe.model import WheelRecipe
from deepdeb.wheel.sanity import framework_of_debs, write_test

FRAMEWORKS = ["torch", "tensorflow", "jax"]

FILES = {
    "train-images-idx3-ubyte.gz": (0x803, (3, 2, 2)),
    "train-labels-idx1-ubyte.gz": (0x801, (3,)),
    "t10k-images-idx3-ubyte.gz": (0x803, (2, 2, 2)),
    "t10k-labels-idx1-ubyte.gz": (0x801, (2,)),
}


def _idx(path: Path, magic: int, shape: tuple[int, ...], body: bytes | None = None) -> None:
    size = 1
    for d in shape:
        size *= d
    header = struct.pack(">I", magic) + struct.pack(">" + "I" * len(shape), *shape)
    path.write_bytes(gzip.compress(header + (body if body is not None else bytes(size))))


def _dataset(directory: Path) -> Path:
    directory.mkdir()
    for name, (magic, shape) in FILES.items():
        _idx(directory / name, magic, shape)
    return directory


def _run(script: Path, data: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, SANITY_DATA=str(data))
    return subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True)


@pytest.mark.parametrize(
    ("framework", "depends"),
    [
        ("torch", "python3-torch-api | python3-torch"),
        ("tensorflow", "python3-tensorflow-api | python3-tensorflow"),
        ("jax", "python3-jax, python3-jaxlib"),
    ],
)
def test_the_generated_test_is_a_dep8_test_for_its_framework(
    tmp_path: Path, framework: str, depends: str
) -> None:
    script = write_test(tmp_path / "tests", "fashion-mnist", 60, 0.85, framework)
    control = Deb822((tmp_path / "tests" / "control").read_text())
    assert control["Tests"] == script.name == f"fashion-mnist-{framework}"
    assert control["Depends"] == f"{depends}, dataset-fashion-mnist"
    assert os.access(script, os.X_OK)
    text = script.read_text()
    assert 'MIN_ACCURACY = float(os.environ.get("SANITY_MIN_ACCURACY", "0.85"))' in text
    # the script imports its own framework and no other
    imports = {m for m in ("torch", "tensorflow", "jax") if f"\nimport {m}" in text}
    assert imports == {framework}


def test_every_framework_has_a_script_and_the_known_ones_are_all_there() -> None:
    assert list(frameworks()) == FRAMEWORKS


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_a_missing_dataset_file_is_named(tmp_path: Path, framework: str) -> None:
    script = write_test(tmp_path / "tests", "fashion-mnist", 60, 0.85, framework)
    data = _dataset(tmp_path / "data")
    (data / "t10k-labels-idx1-ubyte.gz").unlink()
    proc = _run(script, data)
    assert proc.returncode == 2
    assert "cannot read dataset file" in proc.stderr
    assert "t10k-labels-idx1-ubyte.gz" in proc.stderr


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_a_wrong_dataset_file_is_named(tmp_path: Path, framework: str) -> None:
    script = write_test(tmp_path / "tests", "fashion-mnist", 60, 0.85, framework)
    data = _dataset(tmp_path / "data")
    _idx(data / "train-images-idx3-ubyte.gz", 0x801, (3,))  # labels where images belong
    proc = _run(script, data)
    assert proc.returncode == 2
    assert "train-images-idx3-ubyte.gz is not an IDX file of the expected kind" in proc.stderr
    data = _dataset(tmp_path / "data2")
    _idx(data / "train-labels-idx1-ubyte.gz", 0x801, (3,), body=b"\0")  # truncated
    proc = _run(script, data)
    assert proc.returncode == 2 and "1 bytes of data, header says 3" in proc.stderr
    data = _dataset(tmp_path / "data3")
    _idx(data / "train-labels-idx1-ubyte.gz", 0x801, (4,))
    proc = _run(script, data)
    assert proc.returncode == 2 and "images and labels disagree: 3/4 training" in proc.stderr


def test_an_unknown_framework_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SanityError, match=r"unknown framework 'mxnet' \(known: torch, tens"):
        write_test(tmp_path, "fashion-mnist", 60, 0.8, "mxnet")
    assert not (tmp_path / "control").exists()


def test_the_framework_of_packages_comes_from_their_names(tmp_path: Path) -> None:
    debs = [
        tmp_path / "python3-jax_0.4.38-1_all.deb",
        tmp_path / "python3-jaxlib_0.4.38-1_amd64.deb",
    ]
    assert framework_of_debs(debs) == "jax"
    tf = [tmp_path / "python3-tensorflow_2.17.1-1_amd64.deb", tmp_path / "python3-keras_3-1.deb"]
    assert framework_of_debs(tf) == "tensorflow"
    with pytest.raises(SanityError, match=r"cannot tell which framework python3-foo hold"):
        framework_of_debs([tmp_path / "python3-foo_1-1_all.deb"])
    both = [tmp_path / "python3-torch_2-1_amd64.deb", *debs]
    with pytest.raises(SanityError, match="give --framework"):
        framework_of_debs(both)


def _recipe(tmp_path: Path, source: str, sanity: str) -> Path:
    recipe = tmp_path / "recipe.toml"
    recipe.write_text(f"[source]\n{source}\n\n[sanity]\n{sanity}")
    return recipe


@pytest.mark.parametrize(
    ("source", "framework"),
    [
        ('pypi = "jax==0.4.38"', "jax"),
        ('pypi = "tensorflow-cpu==2.17.1"', "tensorflow"),
        ('pypi = "Tensorflow_CPU==2.17.1"', "tensorflow"),
        ('wheel = "dist/torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl"', "torch"),
        ('wheel = "dist/tensorflow_cpu-2.17.1-cp311-cp311-manylinux2014_x86_64.whl"', "tensorflow"),
    ],
)
def test_the_sanity_framework_defaults_from_the_wheel(
    tmp_path: Path, source: str, framework: str
) -> None:
    recipe = load_recipe(_recipe(tmp_path, source, 'dataset = "fashion-mnist"\n'))
    assert isinstance(recipe, WheelRecipe) and recipe.sanity is not None
    assert recipe.sanity.framework == framework


def test_the_sanity_framework_is_validated_with_its_line(tmp_path: Path) -> None:
    explicit = _recipe(tmp_path, 'pypi = "mylib==1.0"', 'seconds = 30\nframework = "jax"\n')
    recipe = load_recipe(explicit)
    assert isinstance(recipe, WheelRecipe) and recipe.sanity is not None
    assert recipe.sanity.framework == "jax"
    bad = _recipe(tmp_path, 'pypi = "jax==0.4.38"', 'seconds = 30\nframework = "mxnet"\n')
    with pytest.raises(
        RecipeError, match=r"recipe\.toml:6: .*framework.*one of torch, tensorflow, jax"
    ):
        load_recipe(bad)
    unknown = _recipe(tmp_path, 'pypi = "mylib==1.0"', "seconds = 30\n")
    with pytest.raises(
        RecipeError,
        match=r"recipe\.toml:4: \[sanity\] cannot tell the framework from the wheel 'mylib'",
    ):
        load_recipe(unknown)


def test_an_unknown_dataset_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SanityError, match="unknown dataset 'cifar'"):
        write_test(tmp_path, "cifar", 60, 0.8)


def _torch_wheel_here() -> bool:
    """The PyTorch example needs its wheel, which pip's configuration finds on disk (it is
    fetched into deepdeb's cache here, where the build then finds it)."""
    from deepdeb.errors import SourceError
    from deepdeb.sources.wheels import fetch_wheel

    try:
        fetch_wheel("torch==2.13.0")
    except SourceError:
        return False
    return True


@pytest.mark.slow
def test_pytorch_example_installs_in_a_clean_root_and_learns(tmp_path: Path) -> None:
    """The bundled example: python3-torch from the wheel, its unsatisfiable requirements
    handled as the recipe says, installed by apt in a clean root with Debian's
    dataset-fashion-mnist, trained for 60 s on 2 threads."""
    if not _torch_wheel_here():
        pytest.skip("the PyTorch 2.13.0 wheel is not available to pip on this machine")
    from deepdeb.cli import main

    recipe = Path(__file__).parent.parent / "examples" / "pytorch" / "recipe.toml"
    assert main(["build", str(recipe), "--out", str(tmp_path / "out")]) == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    names = {p["package"]: p for p in report["packages"]}
    torch = names["python3-torch"]
    # local-only (an NVIDIA proprietary notice among its third-party licences, see the
    # README): built here, +local1, never published
    assert torch["version"] == "2.13.0+cpu-1+local1" and torch["area"] == "local-only"
    assert "libstdc++6 (>= " in torch["shlibs_depends"] and "libgomp" not in torch["depends"]
    assert "libgomp.so.1" in torch["bundled_sonames"]
    assert {"python3-sympy", "python3-typing-extensions"} <= names.keys()
    unsatisfied = {r["requirement"]: r["choice"] for r in report["unsatisfied_in_bookworm"]}
    assert unsatisfied == {
        "typing-extensions>=4.10.0": "package",
        "setuptools>=77.0.3": "depend",
        "sympy>=1.13.3": "package",
    }
    sanity = report["sanity"]["cpu"]
    assert sanity["passed"] and sanity["accuracy"] >= 0.85
    assert sanity["cpu_capability"] in ("AVX512", "AVX2", "DEFAULT")
    assert sanity["framework"] == "torch" and sanity["version"] == "2.13.0+cpu"


def _wheels_here(*pins: str) -> bool:
    """The example's wheels, fetched into deepdeb's cache (PyPI, or pip's configuration)."""
    from deepdeb.errors import SourceError
    from deepdeb.sources.wheels import fetch_wheel

    try:
        for pin in pins:
            fetch_wheel(pin)
    except SourceError:
        return False
    return True


@pytest.mark.slow
def test_jax_example_installs_in_a_clean_root_and_learns(tmp_path: Path) -> None:
    """The bundled example: python3-jax from its wheel, jaxlib, ml-dtypes and opt-einsum
    packaged beside it at the versions `deepdeb resolve jax` chose, installed by apt in a
    clean root with bookworm's numpy and scipy, a hand-written JAX MLP trained for 60 s."""
    pins = ("jax==0.4.38", "jaxlib==0.4.38", "ml-dtypes==0.5.4", "opt-einsum==3.4.0")
    if not _wheels_here(*pins):
        pytest.skip("the JAX 0.4.38 wheels are not available to pip on this machine")
    from deepdeb.cli import main

    recipe = Path(__file__).parent.parent / "examples" / "jax" / "recipe.toml"
    assert main(["build", str(recipe), "--out", str(tmp_path / "out")]) == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    versions = {p["package"]: p["version"] for p in report["packages"]}
    assert versions == {
        "python3-jax": "0.4.38-1",
        "python3-jaxlib": "0.4.38-1~deepdeb1",
        "python3-ml-dtypes": "0.5.4-1~deepdeb1",
        "python3-opt-einsum": "3.4.0-1~deepdeb1",
    }
    jax = next(p for p in report["packages"] if p["package"] == "python3-jax")
    # bookworm's numpy under its epoch; jaxlib==0.4.38 is the very package built with it
    assert "python3-numpy (>= 1:1.24)" in jax["depends"]
    assert "python3-jaxlib (= 0.4.38-1~deepdeb1)" in jax["depends"]
    sanity = report["sanity"]["cpu"]
    assert sanity["passed"] and sanity["accuracy"] >= 0.85
    assert sanity["framework"] == "jax" and sanity["version"] == "0.4.38 (jaxlib 0.4.38)"


TENSORFLOW_PACKAGES = {
    "python3-tensorflow": "2.17.1-1",
    "python3-absl": "2.5.1-1~deepdeb1",
    "python3-flatbuffers": "25.12.19-1~deepdeb1",
    "python3-gast": "0.7.0-1~deepdeb1",
    "python3-h5py": "3.16.0-1~deepdeb1",
    "python3-typing-extensions": "4.16.0-1~deepdeb1",
    "python3-google-pasta": "0.2.0-1~deepdeb1",
    "python3-libclang": "18.1.1-1~deepdeb1",
    "python3-ml-dtypes": "0.4.1-1~deepdeb1",
    "python3-opt-einsum": "3.4.0-1~deepdeb1",
    "python3-tensorboard": "2.17.1-1~deepdeb1",
    "python3-tensorboard-data-server": "0.7.2-1~deepdeb1",
    "python3-keras": "3.15.1-1~deepdeb1",
    "python3-namex": "0.1.0-1~deepdeb1",
    "python3-optree": "0.20.0-1~deepdeb1",
    "python3-tensorflow-io-gcs-filesystem": "0.37.1-1~deepdeb1",
}


@pytest.mark.slow
def test_tensorflow_example_installs_in_a_clean_root_and_learns(tmp_path: Path) -> None:
    """The bundled example: python3-tensorflow from the tensorflow-cpu 2.17.1 wheel (the
    newest whose numpy bound bookworm's 1.24 meets), fifteen packages beside it, installed
    by apt in a clean root with bookworm's numpy, protobuf and grpcio, a tf.keras MLP
    trained for 60 s."""
    if not _wheels_here("tensorflow-cpu==2.17.1"):
        pytest.skip("the TensorFlow 2.17.1 wheel is not available to pip on this machine")
    from deepdeb.cli import main

    recipe = Path(__file__).parent.parent / "examples" / "tensorflow" / "recipe.toml"
    assert main(["build", str(recipe), "--out", str(tmp_path / "out")]) == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    versions = {p["package"]: p["version"] for p in report["packages"]}
    assert versions == TENSORFLOW_PACKAGES
    tf = next(p for p in report["packages"] if p["package"] == "python3-tensorflow")
    # bookworm's numpy, under its epoch, below 2: the bound that chose this release
    assert "python3-numpy (<< 1:2.0.0)" in tf["depends"]
    sanity = report["sanity"]["cpu"]
    assert sanity["passed"] and sanity["accuracy"] >= 0.85
    assert sanity["framework"] == "tensorflow" and sanity["version"].startswith("2.17.1")
