"""What PyTorch's own run-time dispatch is worth: the same wheel at each CPU capability.

PyTorch compiles its hot kernels several times and picks one at run time
(``torch.backends.cpu.get_cpu_capability()``); ``ATEN_CPU_CAPABILITY=default|avx2|avx512``
forces a lower one. This script runs three workloads in a fresh process per capability,
interleaved in serpentine order over several rounds, and writes medians and ratios to JSON:

* ``matmul``: 1024x1024 float32 matrix product (oneDNN/MKL: mostly not ATen's dispatch);
* ``convnet_step``: one training step (forward, backward, SGD) of a small conv net on a
  batch of 64 28x28 images;
* ``bf16_elementwise``: ``a * b + c`` over 4M bfloat16 values (ATen vectorised kernels).

It needs a Python that can import torch (``--python``; e.g. a venv made with
``pip install torch==2.13.0``). Usage:

    python benchmarks/torch_dispatch.py --python /path/to/venv/bin/python \\
        --json benchmarks/results/torch_dispatch.json --rounds 5
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
from pathlib import Path

from deepdeb.util import atomic_write_text

CAPABILITIES = ("default", "avx2", "avx512")

WORKER = r"""
import json, statistics, time, torch
torch.manual_seed(0)
torch.set_num_threads(int(__import__("os").environ.get("THREADS", "2")))

def timed(fn, repeat):
    fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter(); fn(); times.append(time.perf_counter() - t)
    return statistics.median(times)

a = torch.randn(1024, 1024); b = torch.randn(1024, 1024)
net = torch.nn.Sequential(
    torch.nn.Conv2d(1, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
    torch.nn.Conv2d(16, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
    torch.nn.Flatten(), torch.nn.Linear(32 * 7 * 7, 10))
opt = torch.optim.SGD(net.parameters(), lr=0.01)
x = torch.randn(64, 1, 28, 28); y = torch.randint(0, 10, (64,))
def step():
    opt.zero_grad(); torch.nn.functional.cross_entropy(net(x), y).backward(); opt.step()
p, q, r = (torch.randn(4 * 1024 * 1024).to(torch.bfloat16) for _ in range(3))
print(json.dumps({
    "capability": torch.backends.cpu.get_cpu_capability(),
    "torch": torch.__version__,
    "matmul": timed(lambda: a @ b, 20),
    "convnet_step": timed(step, 20),
    "bf16_elementwise": timed(lambda: p * q + r, 20),
}))
"""


def run_once(python: str, capability: str) -> dict[str, float | str]:
    env = dict(os.environ, ATEN_CPU_CAPABILITY=capability, THREADS="2")
    out = subprocess.run(
        [python, "-c", WORKER], env=env, capture_output=True, text=True, check=True
    ).stdout
    result: dict[str, float | str] = json.loads(out.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--python", required=True, help="a Python that imports torch")
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    samples: dict[str, list[dict[str, float | str]]] = {c: [] for c in CAPABILITIES}
    for i in range(args.rounds):
        order = CAPABILITIES if i % 2 == 0 else tuple(reversed(CAPABILITIES))
        for capability in order:
            samples[capability].append(run_once(args.python, capability))
    workloads = ("matmul", "convnet_step", "bf16_elementwise")
    medians = {
        c: {w: statistics.median(float(s[w]) for s in samples[c]) for w in workloads}
        for c in CAPABILITIES
    }
    best = "avx512"
    result = {
        "host": {"machine": platform.machine(), "cores": os.cpu_count()},
        "torch": samples[best][0]["torch"],
        "threads": 2,
        "rounds": args.rounds,
        "capability_reported": {c: samples[c][0]["capability"] for c in CAPABILITIES},
        "median_s": medians,
        "slowdown_vs_avx512": {
            c: {w: round(medians[c][w] / medians[best][w], 3) for w in workloads}
            for c in CAPABILITIES
        },
        "samples": samples,
    }
    atomic_write_text(args.json, json.dumps(result, indent=2) + "\n")
    for c in CAPABILITIES:
        cells = ", ".join(
            f"{w} {medians[c][w] * 1000:.2f} ms ({result['slowdown_vs_avx512'][c][w]:.2f}x)"
            for w in workloads
        )
        print(f"{c:8} {cells}")


if __name__ == "__main__":
    main()
