#!/usr/bin/python3
"""DEP-8 test written by deepdeb: train a JAX MLP on Fashion-MNIST for a bounded time.

Plain JAX (jax.grad, jax.jit) with Adam written out: no flax or optax, which Debian does not
have, so the test depends on the jax and jaxlib packages alone."""

import contextlib
import gzip
import itertools
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
    and its header's size: a truncated or wrong file fails here, before jax is loaded."""
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

# XLA sizes its thread pool from the CPUs this process may run on: keep it to the budget.
THREADS = int(os.environ.get("SANITY_THREADS", "2"))
with contextlib.suppress(OSError):
    os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:THREADS])

import numpy as np  # noqa: E402

x = np.frombuffer(images, dtype=np.uint8).reshape(n, rows * cols).astype(np.float32) / 255
y = np.frombuffer(labels, dtype=np.uint8).astype(np.int32)
tx = np.frombuffer(test_images, dtype=np.uint8).reshape(tn, -1).astype(np.float32) / 255
ty = np.frombuffer(test_labels, dtype=np.uint8).astype(np.int32)

import jax  # noqa: E402  (after the dataset checks: a bad dataset fails without jax)
import jax.numpy as jnp  # noqa: E402
import jaxlib  # noqa: E402

loaded = time.monotonic() - start
BATCH, LR, B1, B2, EPS = 128, 1e-3, 0.9, 0.999, 1e-8


def init(key, sizes):
    """Weights and biases drawn as PyTorch's nn.Linear draws them, U(-1/sqrt(in), +)."""
    params = []
    for fan_in, fan_out in itertools.pairwise(sizes):
        key, kw, kb = jax.random.split(key, 3)
        bound = 1.0 / fan_in**0.5
        w = jax.random.uniform(kw, (fan_in, fan_out), minval=-bound, maxval=bound)
        b = jax.random.uniform(kb, (fan_out,), minval=-bound, maxval=bound)
        params.append((w, b))
    return params


def forward(params, inputs):
    """The MLP: ReLU between the layers, logits out."""
    h = inputs
    for w, b in params[:-1]:
        h = jax.nn.relu(h @ w + b)
    w, b = params[-1]
    return h @ w + b


def loss(params, inputs, targets):
    """Mean cross-entropy of the logits against the labels."""
    logp = jax.nn.log_softmax(forward(params, inputs))
    return -jnp.mean(jnp.take_along_axis(logp, targets[:, None], axis=1))


@jax.jit
def step(params, m, v, t, xs, ys, batch):
    """One Adam step on the rows ``batch`` of the training set (gathered inside XLA)."""
    grads = jax.grad(loss)(params, xs[batch], ys[batch])
    t = t + 1
    m = jax.tree_util.tree_map(lambda a, g: B1 * a + (1 - B1) * g, m, grads)
    v = jax.tree_util.tree_map(lambda a, g: B2 * a + (1 - B2) * g * g, v, grads)
    rate = LR * jnp.sqrt(1 - B2**t) / (1 - B1**t)
    params = jax.tree_util.tree_map(
        lambda p, a, s: p - rate * a / (jnp.sqrt(s) + EPS), params, m, v
    )
    return params, m, v, t


predict = jax.jit(lambda params, inputs: jnp.argmax(forward(params, inputs), axis=1))

params = init(jax.random.PRNGKey(0), [rows * cols, 256, 128, 10])
m = jax.tree_util.tree_map(jnp.zeros_like, params)
v = jax.tree_util.tree_map(jnp.zeros_like, params)
t = jnp.zeros((), jnp.float32)
xs, ys = jax.device_put(x), jax.device_put(y)
rng = np.random.default_rng(0)
train_start = time.monotonic()
epochs = steps = 0
while time.monotonic() - train_start < SECONDS:
    order = rng.permutation(n).astype(np.int32)
    for i in range(0, n - BATCH + 1, BATCH):  # whole batches only: one compiled shape
        params, m, v, t = step(params, m, v, t, xs, ys, order[i : i + BATCH])
        steps += 1
        if steps % 50 == 0:
            jax.block_until_ready(params)  # dispatch is asynchronous: keep the clock honest
        if time.monotonic() - train_start >= SECONDS:
            break
    else:
        epochs += 1
jax.block_until_ready(params)
trained = time.monotonic() - train_start
accuracy = float(np.mean(np.asarray(predict(params, jax.device_put(tx))) == ty))


def host_isa():
    """The widest vector ISA of this CPU: XLA's CPU backend compiles for the host's."""
    try:
        with open("/proc/cpuinfo") as f:
            found = (line.split(":", 1)[1] for line in f if line.startswith("flags"))
            flags = next(found, "").split()
    except OSError:
        return "unknown"
    for isa in ("avx512f", "avx2", "avx", "sse4_2"):
        if isa in flags:
            return isa.upper()
    return "baseline"


result = {
    "accuracy": round(accuracy, 4),
    "min_accuracy": MIN_ACCURACY,
    "train_seconds": round(trained, 1),
    "load_seconds": round(loaded, 1),
    "epochs_completed": epochs,
    "steps": steps,
    "threads": len(os.sched_getaffinity(0)),
    "cpu_capability": f"XLA {jax.default_backend()}, code generated for the host ({host_isa()})",
    "framework": "jax",
    "version": f"{jax.__version__} (jaxlib {jaxlib.__version__})",
    "module_file": jax.__file__,
}
print(json.dumps(result))
if RESULT:
    with open(RESULT, "w") as f:
        json.dump(result, f)
if accuracy < MIN_ACCURACY:
    fail(f"accuracy {accuracy:.4f} is below the required {MIN_ACCURACY}")
