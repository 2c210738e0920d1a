"""The Fashion-MNIST sanity test: the generated DEP-8 test, its dataset checks, and the
PyTorch example end to end in a clean root."""

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

from deepdeb.errors import SanityError
from deepdeb.wheel.sanity import write_test

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


def test_the_generated_test_is_a_dep8_test(tmp_path: Path) -> None:
    script = write_test(tmp_path / "tests", "fashion-mnist", 60, 0.85)
    control = Deb822((tmp_path / "tests" / "control").read_text())
    assert control["Tests"] == script.name == "fashion-mnist-train"
    assert "dataset-fashion-mnist" in control["Depends"]
    assert "python3-torch-api" in control["Depends"]
    assert os.access(script, os.X_OK)
    assert 'MIN_ACCURACY = float(os.environ.get("SANITY_MIN_ACCURACY", "0.85"))' in (
        script.read_text()
    )


def test_a_missing_dataset_file_is_named(tmp_path: Path) -> None:
    script = write_test(tmp_path / "tests", "fashion-mnist", 60, 0.85)
    data = _dataset(tmp_path / "data")
    (data / "t10k-labels-idx1-ubyte.gz").unlink()
    proc = _run(script, data)
    assert proc.returncode == 2
    assert "cannot read dataset file" in proc.stderr
    assert "t10k-labels-idx1-ubyte.gz" in proc.stderr


def test_a_wrong_dataset_file_is_named(tmp_path: Path) -> None:
    script = write_test(tmp_path / "tests", "fashion-mnist", 60, 0.85)
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
    assert torch["version"] == "2.13.0+cpu-1"
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
    assert sanity["torch"] == "2.13.0+cpu"
