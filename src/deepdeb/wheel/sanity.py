"""Sanity test: install the built framework and Debian's Fashion-MNIST into a clean root and
train a small network there for a bounded time, requiring an accuracy.

The test is a DEP-8 (autopkgtest) test that deepdeb writes: ``debian/tests/control`` plus
the script, which any autopkgtest runner can also run. deepdeb runs it in a fresh root
unpacked from the clean-room chroot tarball (never the host's Python), after apt installed
the packages and ``dataset-fashion-mnist`` from the archive, with no network and two CPU
threads.
"""

from __future__ import annotations

import json
import time
from importlib import resources
from pathlib import Path

from deepdeb.errors import SanityError
from deepdeb.hermetic import cleanroom, sandbox
from deepdeb.report.schema import SanityResult

DATASET_PACKAGE = {"fashion-mnist": "dataset-fashion-mnist"}

CONTROL = """Tests: {name}
Depends: python3-torch-api | python3-torch, {dataset_package}
Restrictions: allow-stderr
"""

# The test itself lives in data/sanity/<dataset>-train.py, a plain script: PyTorch only, the
# IDX files read by hand (no torchvision in Debian's dependency set), a fixed seed, a
# wall-clock budget for training. deepdeb fills in its @NAME@ defaults.


def write_test(dest: Path, dataset: str, seconds: float, min_accuracy: float) -> Path:
    """Write the DEP-8 test (``control`` and the script) into ``dest``; returns the script."""
    if dataset not in DATASET_PACKAGE:
        raise SanityError(f"unknown dataset {dataset!r} (known: {', '.join(DATASET_PACKAGE)})")
    dest.mkdir(parents=True, exist_ok=True)
    name = f"{dataset}-train"
    (dest / "control").write_text(
        CONTROL.format(name=name, dataset_package=DATASET_PACKAGE[dataset])
    )
    script = dest / name
    text = resources.files("deepdeb").joinpath(f"data/sanity/{name}.py").read_text()
    defaults = {"DATASET": dataset, "SECONDS": seconds, "MIN_ACCURACY": min_accuracy}
    for key, value in defaults.items():
        text = text.replace(f"@{key}@", str(value))
    script.write_text(text)
    script.chmod(0o755)
    return script


def run_sanity(
    debs: list[Path], work: Path, dataset: str = "fashion-mnist", seconds: float = 60.0,
    min_accuracy: float = 0.80,
) -> SanityResult:  # fmt: skip
    """Install ``debs`` and the dataset into a fresh root; run the generated test there."""
    missing = [d for d in debs if not d.is_file()]
    if missing:
        raise SanityError(f"no such package file: {', '.join(map(str, missing))}")
    root = work / "root"
    cleanroom.unpack_chroot(cleanroom.runtime_chroot(), root)
    tests = work / "tests"
    script = write_test(tests, dataset, seconds, min_accuracy)
    start = time.monotonic()
    proc = cleanroom.install_packages(root, debs, [DATASET_PACKAGE[dataset]])
    if proc.returncode != 0:
        raise SanityError(f"installing into the clean root failed:\n{proc.stdout[-1500:]}"
                          f"{proc.stderr[-1500:]}")  # fmt: skip
    installed = time.monotonic() - start
    results = work / "results"
    results.mkdir()
    sandbox.hand_over(results)  # the test runs the framework's code: as the build user
    binds = [
        ("--ro-bind", str(tests), "/deepdeb-tests"),
        ("--bind", str(results), "/deepdeb-results"),
    ]
    env = {"SANITY_RESULT": "/deepdeb-results/result.json", "OMP_NUM_THREADS": "2"}
    start = time.monotonic()
    proc = cleanroom.in_root(
        root, [f"/deepdeb-tests/{script.name}"], binds=binds, env=env, check=False,
        network=False, as_build_user=True,
    )  # fmt: skip
    tested = time.monotonic() - start
    try:
        data = json.loads((results / "result.json").read_text())
    except (OSError, ValueError):
        why = proc.stderr.strip()[-2000:]
        raise SanityError(f"the sanity test did not finish:\n{why}") from None
    result = SanityResult(
        accuracy=data["accuracy"],
        min_accuracy=min_accuracy,
        train_seconds=data["train_seconds"],
        cpu_capability=data["cpu_capability"],
        torch=data["torch"],
        epochs_completed=data["epochs_completed"],
        steps=data["steps"],
        threads=data["threads"],
        passed=proc.returncode == 0,
        install_seconds=round(installed, 1),
        test_seconds=round(tested, 1),
    )
    if not result.passed:
        raise SanityError(proc.stderr.strip()[-1500:] or f"sanity test failed: {data}")
    return result
