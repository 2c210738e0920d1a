#!/usr/bin/python3
"""DEP-8 test written by deepdeb: train a tf.keras MLP on Fashion-MNIST for a bounded time."""

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
    and its header's size: a truncated or wrong file fails here, before tensorflow is loaded."""
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

THREADS = int(os.environ.get("SANITY_THREADS", "2"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")  # TensorFlow's start-up notes, not warnings

import numpy as np  # noqa: E402

x = np.frombuffer(images, dtype=np.uint8).reshape(n, rows * cols).astype(np.float32) / 255
y = np.frombuffer(labels, dtype=np.uint8).astype(np.int32)
tx = np.frombuffer(test_images, dtype=np.uint8).reshape(tn, -1).astype(np.float32) / 255
ty = np.frombuffer(test_labels, dtype=np.uint8).astype(np.int32)

import tensorflow as tf  # noqa: E402  (after the dataset checks: a bad dataset fails without it)

tf.config.threading.set_intra_op_parallelism_threads(THREADS)
tf.config.threading.set_inter_op_parallelism_threads(THREADS)
keras = tf.keras
keras.utils.set_random_seed(0)
loaded = time.monotonic() - start

model = keras.Sequential(
    [
        keras.Input((rows * cols,)),
        keras.layers.Dense(256, activation="relu"),
        keras.layers.Dense(128, activation="relu"),
        keras.layers.Dense(10),
    ]
)
model.compile(
    optimizer=keras.optimizers.Adam(1e-3),
    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
)


class Budget(keras.callbacks.Callback):
    """Stops training when the time budget is spent; counts steps and whole epochs."""

    def __init__(self, seconds):
        super().__init__()
        self.seconds = seconds
        self.steps = self.epochs = 0
        self.stopped = False
        self.start = time.monotonic()

    def on_train_batch_end(self, batch, logs=None):
        self.steps += 1
        if time.monotonic() - self.start >= self.seconds:
            self.stopped = self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        if not self.stopped:
            self.epochs += 1


budget = Budget(SECONDS)
model.fit(x, y, batch_size=128, epochs=1_000_000, shuffle=True, verbose=0, callbacks=[budget])
trained = time.monotonic() - budget.start
logits = model.predict(tx, batch_size=1000, verbose=0)
accuracy = float(np.mean(np.argmax(logits, axis=1) == ty))


def host_isa():
    """The widest vector ISA of this CPU: oneDNN dispatches the heavy ops up to it (the
    rest of the wheel is compiled for AVX)."""
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


def backend():
    """Whether TensorFlow runs its heavy CPU ops through oneDNN, and up to which ISA."""
    try:
        from tensorflow.python.util import _pywrap_util_port

        onednn = _pywrap_util_port.IsMklEnabled()
    except (ImportError, AttributeError):
        return f"unknown (host {host_isa()})"
    if not onednn:
        return "Eigen (oneDNN off), AVX baseline"
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA")
    return f"oneDNN up to {cap or host_isa()}" + (" (ONEDNN_MAX_CPU_ISA)" if cap else "")


result = {
    "accuracy": round(accuracy, 4),
    "min_accuracy": MIN_ACCURACY,
    "train_seconds": round(trained, 1),
    "load_seconds": round(loaded, 1),
    "epochs_completed": budget.epochs,
    "steps": budget.steps,
    "threads": tf.config.threading.get_intra_op_parallelism_threads(),
    "cpu_capability": backend(),
    "framework": "tensorflow",
    "version": f"{tf.__version__} (keras {keras.__version__})",
    "module_file": tf.__file__,
}
print(json.dumps(result))
if RESULT:
    with open(RESULT, "w") as f:
        json.dump(result, f)
if accuracy < MIN_ACCURACY:
    fail(f"accuracy {accuracy:.4f} is below the required {MIN_ACCURACY}")
