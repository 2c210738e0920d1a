"""Sanity test: install the built framework and Debian's Fashion-MNIST into a clean root and
train a small network there for a bounded time, requiring an accuracy.

The test is a DEP-8 (autopkgtest) test that deepdeb writes: ``debian/tests/control`` plus
the script for the framework (PyTorch, TensorFlow's tf.keras, or JAX with a hand-written
optimiser: each written for that framework alone, so that it tests what the packages
install and nothing else), which any autopkgtest runner can also run. deepdeb runs it in a
fresh root unpacked from the clean-room chroot tarball (never the host's Python), after
apt installed the packages and ``dataset-fashion-mnist`` from the archive, with no network
and two CPU threads.
"""

from __future__ import annotations

import json
import time
from importlib import resources
from pathlib import Path

from deepdeb.errors import SanityError
from deepdeb.hermetic import cleanroom, sandbox
from deepdeb.recipe.frameworks import framework_of_packages, frameworks
from deepdeb.report.schema import SanityResult

DATASET_PACKAGE = {"fashion-mnist": "dataset-fashion-mnist"}

CONTROL = """Tests: {name}
Depends: {framework_depends}, {dataset_package}
Restrictions: allow-stderr
"""

# The test itself lives in data/sanity/<dataset>-<framework>.py, a plain script: that
# framework only, the IDX files read by hand (no torchvision or tensorflow-datasets in
# Debian's dependency set), a fixed seed, a wall-clock budget for training. deepdeb fills
# in its @NAME@ defaults.


def write_test(
    dest: Path, dataset: str, seconds: float, min_accuracy: float, framework: str = "torch"
) -> Path:
    """Write the DEP-8 test (``control`` and the script) into ``dest``; returns the script."""
    if dataset not in DATASET_PACKAGE:
        raise SanityError(f"unknown dataset {dataset!r} (known: {', '.join(DATASET_PACKAGE)})")
    known = frameworks()
    if framework not in known:
        raise SanityError(f"unknown framework {framework!r} (known: {', '.join(known)})")
    dest.mkdir(parents=True, exist_ok=True)
    name = f"{dataset}-{framework}"
    (dest / "control").write_text(
        CONTROL.format(
            name=name,
            framework_depends=known[framework].depends,
            dataset_package=DATASET_PACKAGE[dataset],
        )
    )
    script = dest / name
    text = resources.files("deepdeb").joinpath(f"data/sanity/{name}.py").read_text()
    defaults = {"DATASET": dataset, "SECONDS": seconds, "MIN_ACCURACY": min_accuracy}
    for key, value in defaults.items():
        text = text.replace(f"@{key}@", str(value))
    script.write_text(text)
    script.chmod(0o755)
    return script


def framework_of_debs(debs: list[Path]) -> str:
    """The framework the given packages hold, from their file names (``<package>_...``),
    for ``deepdeb sanity DEB...`` without ``--framework``."""
    packages = [d.name.split("_", 1)[0] for d in debs]
    found = framework_of_packages(packages)
    if found is None:
        raise SanityError(
            f"cannot tell which framework {', '.join(packages)} hold: "
            f"give --framework ({', '.join(frameworks())})"
        )
    return found


def run_sanity(
    debs: list[Path], work: Path, dataset: str = "fashion-mnist", seconds: float = 60.0,
    min_accuracy: float = 0.80, framework: str = "torch",
) -> SanityResult:  # fmt: skip
    """Install ``debs`` and the dataset into a fresh root; run the generated test there."""
    missing = [d for d in debs if not d.is_file()]
    if missing:
        raise SanityError(f"no such package file: {', '.join(map(str, missing))}")
    tests = work / "tests"
    script = write_test(tests, dataset, seconds, min_accuracy, framework)
    root = work / "root"
    cleanroom.unpack_chroot(cleanroom.runtime_chroot(), root)
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
    env = {
        "SANITY_RESULT": "/deepdeb-results/result.json",
        "SANITY_THREADS": "2",
        "OMP_NUM_THREADS": "2",
    }
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
        framework=data["framework"],
        version=data["version"],
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
