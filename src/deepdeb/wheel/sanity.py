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
from dataclasses import asdict, dataclass
from pathlib import Path

from deepdeb.errors import DeepdebError
from deepdeb.hermetic import cleanroom, sandbox

DATASET_PACKAGE = {"fashion-mnist": "dataset-fashion-mnist"}

CONTROL = """Tests: {name}
Depends: python3-torch-api | python3-torch, {dataset_package}
Restrictions: allow-stderr
"""

# The test itself: plain PyTorch, the IDX files read by hand (no torchvision in Debian's
# dependency set), a fixed seed, a wall-clock budget for training.
SCRIPT = r'''#!/usr/bin/python3
"""DEP-8 test written by deepdeb: train an MLP on Fashion-MNIST for a bounded time."""
import gzip, json, os, struct, sys, time

DATA = os.environ.get("SANITY_DATA", "/usr/share/datasets/{dataset}")
SECONDS = float(os.environ.get("SANITY_SECONDS", "{seconds}"))
MIN_ACCURACY = float(os.environ.get("SANITY_MIN_ACCURACY", "{min_accuracy}"))
RESULT = os.environ.get("SANITY_RESULT")


def fail(message):
    print("sanity: " + message, file=sys.stderr)
    sys.exit(2)


def idx(name, magic):
    path = os.path.join(DATA, name)
    try:
        with gzip.open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        fail(f"cannot read dataset file {{path}}: {{e}}")
    if len(data) < 8 or struct.unpack(">I", data[:4])[0] != magic:
        fail(f"{{path}} is not an IDX file of the expected kind (magic {{magic:#x}})")
    dims = data[3]
    shape = struct.unpack(">" + "I" * dims, data[4 : 4 + 4 * dims])
    body = data[4 + 4 * dims :]
    expected = 1
    for d in shape:
        expected *= d
    if len(body) != expected:
        fail(f"{{path}}: {{len(body)}} bytes of data, header says {{expected}}")
    return shape, body


start = time.monotonic()
(n, rows, cols), images = idx("train-images-idx3-ubyte.gz", 0x803)
(n_labels,), labels = idx("train-labels-idx1-ubyte.gz", 0x801)
(tn, _, _), test_images = idx("t10k-images-idx3-ubyte.gz", 0x803)
(tn_labels,), test_labels = idx("t10k-labels-idx1-ubyte.gz", 0x801)
if n != n_labels or tn != tn_labels:
    fail(f"images and labels disagree: {{n}}/{{n_labels}} training, {{tn}}/{{tn_labels}} test")

import torch  # noqa: E402  (after the dataset checks: a bad dataset fails without torch)

torch.manual_seed(0)
torch.set_num_threads(int(os.environ.get("SANITY_THREADS", "2")))
x = torch.frombuffer(bytearray(images), dtype=torch.uint8).reshape(n, rows * cols).float() / 255
y = torch.frombuffer(bytearray(labels), dtype=torch.uint8).long()
tx = torch.frombuffer(bytearray(test_images), dtype=torch.uint8).reshape(tn, -1).float() / 255
ty = torch.frombuffer(bytearray(test_labels), dtype=torch.uint8).long()
loaded = time.monotonic() - start

model = torch.nn.Sequential(
    torch.nn.Linear(rows * cols, 256), torch.nn.ReLU(),
    torch.nn.Linear(256, 128), torch.nn.ReLU(),
    torch.nn.Linear(128, 10),
)
optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
loss_fn = torch.nn.CrossEntropyLoss()
train_start = time.monotonic()
epochs = steps = 0
while time.monotonic() - train_start < SECONDS:
    order = torch.randperm(n)
    for i in range(0, n, 128):
        batch = order[i : i + 128]
        optimiser.zero_grad()
        loss = loss_fn(model(x[batch]), y[batch])
        loss.backward()
        optimiser.step()
        steps += 1
        if time.monotonic() - train_start >= SECONDS:
            break
    else:
        epochs += 1
trained = time.monotonic() - train_start
with torch.no_grad():
    accuracy = (model(tx).argmax(1) == ty).float().mean().item()
result = {{
    "accuracy": round(accuracy, 4),
    "min_accuracy": MIN_ACCURACY,
    "train_seconds": round(trained, 1),
    "load_seconds": round(loaded, 1),
    "epochs_completed": epochs,
    "steps": steps,
    "threads": torch.get_num_threads(),
    "cpu_capability": torch.backends.cpu.get_cpu_capability(),
    "torch": torch.__version__,
    "torch_file": torch.__file__,
}}
print(json.dumps(result))
if RESULT:
    with open(RESULT, "w") as f:
        json.dump(result, f)
if accuracy < MIN_ACCURACY:
    fail(f"accuracy {{accuracy:.4f}} is below the required {{MIN_ACCURACY}}")
'''


class SanityError(DeepdebError):
    """The sanity test could not run, or the network did not learn well enough."""


@dataclass
class SanityResult:
    accuracy: float
    min_accuracy: float
    train_seconds: float
    cpu_capability: str
    torch: str
    epochs_completed: int
    steps: int
    threads: int
    passed: bool
    install_seconds: float
    test_seconds: float

    def to_json(self) -> dict[str, object]:
        return asdict(self)


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
    script.write_text(SCRIPT.format(dataset=dataset, seconds=seconds, min_accuracy=min_accuracy))
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
