#!/usr/bin/python3
"""DEP-8 test written by deepdeb: train a PyTorch MLP on Fashion-MNIST for a bounded time."""

import gzip
import json
import os
import struct
import sys
import time

DATA = os.environ.get("SANITY_DATA", "/usr/share/datasets/@DATASET@")
SECONDS = float(os.environ.get("SANITY_SECONDS", "@SECONDS@"))
MIN_ACCURACY = float(os.environ.get("SANITY_MIN_ACCURACY", "@MIN_ACCURACY@"))
RESULT = os.environ.get("SANITY_RESULT")


def fail(message):
    """End the DEP-8 test as failed, with its reason on stderr."""
    print("sanity: " + message, file=sys.stderr)
    sys.exit(2)


def idx(name, magic):
    """(shape, bytes) of a gzipped IDX file of the dataset, checked against its magic number
    and its header's size: a truncated or wrong file fails here, before torch is loaded."""
    path = os.path.join(DATA, name)
    try:
        with gzip.open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        fail(f"cannot read dataset file {path}: {e}")
    if len(data) < 8 or struct.unpack(">I", data[:4])[0] != magic:
        fail(f"{path} is not an IDX file of the expected kind (magic {magic:#x})")
    dims = data[3]
    shape = struct.unpack(">" + "I" * dims, data[4 : 4 + 4 * dims])
    body = data[4 + 4 * dims :]
    expected = 1
    for d in shape:
        expected *= d
    if len(body) != expected:
        fail(f"{path}: {len(body)} bytes of data, header says {expected}")
    return shape, body


start = time.monotonic()
(n, rows, cols), images = idx("train-images-idx3-ubyte.gz", 0x803)
(n_labels,), labels = idx("train-labels-idx1-ubyte.gz", 0x801)
(tn, _, _), test_images = idx("t10k-images-idx3-ubyte.gz", 0x803)
(tn_labels,), test_labels = idx("t10k-labels-idx1-ubyte.gz", 0x801)
if n != n_labels or tn != tn_labels:
    fail(f"images and labels disagree: {n}/{n_labels} training, {tn}/{tn_labels} test")

import torch  # noqa: E402  (after the dataset checks: a bad dataset fails without torch)

torch.manual_seed(0)
torch.set_num_threads(int(os.environ.get("SANITY_THREADS", "2")))
x = torch.frombuffer(bytearray(images), dtype=torch.uint8).reshape(n, rows * cols).float() / 255
y = torch.frombuffer(bytearray(labels), dtype=torch.uint8).long()
tx = torch.frombuffer(bytearray(test_images), dtype=torch.uint8).reshape(tn, -1).float() / 255
ty = torch.frombuffer(bytearray(test_labels), dtype=torch.uint8).long()
loaded = time.monotonic() - start

model = torch.nn.Sequential(
    torch.nn.Linear(rows * cols, 256),
    torch.nn.ReLU(),
    torch.nn.Linear(256, 128),
    torch.nn.ReLU(),
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
result = {
    "accuracy": round(accuracy, 4),
    "min_accuracy": MIN_ACCURACY,
    "train_seconds": round(trained, 1),
    "load_seconds": round(loaded, 1),
    "epochs_completed": epochs,
    "steps": steps,
    "threads": torch.get_num_threads(),
    "cpu_capability": torch.backends.cpu.get_cpu_capability(),
    "framework": "torch",
    "version": torch.__version__,
    "module_file": torch.__file__,
}
print(json.dumps(result))
if RESULT:
    with open(RESULT, "w") as f:
        json.dump(result, f)
if accuracy < MIN_ACCURACY:
    fail(f"accuracy {accuracy:.4f} is below the required {MIN_ACCURACY}")
