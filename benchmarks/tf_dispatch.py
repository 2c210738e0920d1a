"""What TensorFlow's run-time dispatch covers: the same wheel at each oneDNN ISA cap.

TensorFlow's x86 wheel is compiled for an AVX baseline; its heavy operations go to oneDNN,
which generates its kernels at run time for the CPU it finds (``ONEDNN_MAX_CPU_ISA`` caps
that), and everything else runs in Eigen code compiled once, for the baseline.
``TF_ENABLE_ONEDNN_OPTS=0`` turns off TensorFlow's oneDNN operations (its Eigen contraction
still calls oneDNN's sgemm for matrix blocks, so the cap is tried there too). This script
runs seven workloads in a fresh process per setting, interleaved in serpentine order over
several rounds, each timed process holding deepdeb's measurement lock, and writes medians
and ratios to JSON:

* ``matmul`` / ``bf16_matmul``: 1024x1024 matrix product in float32 / bfloat16;
* ``convnet_step``: one training step (forward, GradientTape backward, SGD) of a small conv
  net (tf.nn) on a batch of 64 28x28 images;
* ``f32_elementwise`` / ``bf16_elementwise``: ``a * b + c`` over 4M values;
* ``softmax``: over a 4096x1024 float32 matrix;
* ``reduce_sum``: of 4M float32 values.

A probe run per setting with ``ONEDNN_VERBOSE=1`` records which oneDNN primitives (and
which of their JIT kernels) one steady-state call of each workload executed: what is not
listed there ran in code compiled for the wheel's baseline. ``objdump`` counts of the wheel's
largest shared objects (AVX ``ymm``, AVX-512 ``zmm``, FMA instructions, and in which code)
show what a source build per level would recompile. Settings the CPU lacks are skipped and
named. It needs a Python that can import tensorflow (``--python``; e.g. a venv made with
``pip install tensorflow-cpu==2.17.1``). Usage:

    python benchmarks/tf_dispatch.py --python /path/to/venv/bin/python \\
        --json benchmarks/results/tf_dispatch.json --rounds 5
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import platform
import re
import statistics
import subprocess
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from deepdeb.cpu.levels import host_cpu
from deepdeb.cpu.quiet import building, measuring
from deepdeb.util import atomic_write_text

WORKLOADS = (
    "matmul",
    "bf16_matmul",
    "convnet_step",
    "f32_elementwise",
    "bf16_elementwise",
    "softmax",
    "reduce_sum",
)
THREADS = 2
REFERENCE = "oneDNN"  # oneDNN on, no cap: what the wheel does on this CPU when asked to
# TensorFlow decides from CPUID, not from the cap, that its oneDNN matmul takes bfloat16;
# oneDNN has no bfloat16 matmul below AVX512_CORE and the process aborts ("could not create
# a primitive descriptor for a matmul primitive"). A real AVX2 CPU never gets there, so the
# capped runs cannot stand for it: the workload is left out of them.
BF16_BELOW_AVX512 = ("AVX2", "AVX", "SSE41")

# The /proc/cpuinfo flags each oneDNN ISA cap needs (oneDNN's own cpu_isa_traits, cut to
# what decides between the levels measured here).
_AVX512_CORE = ("avx512f", "avx512bw", "avx512vl", "avx512dq")
ISA_NEEDS: dict[str, tuple[str, ...]] = {
    "SSE41": ("sse4_1",),
    "AVX": ("avx",),
    "AVX2": ("avx2", "fma"),
    "AVX512_CORE": _AVX512_CORE,
    "AVX512_CORE_BF16": (*_AVX512_CORE, "avx512_vnni", "avx512_bf16"),
    "AVX512_CORE_AMX": (*_AVX512_CORE, "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16"),
}


@dataclass(frozen=True)
class Setting:
    """One process configuration: TensorFlow's oneDNN operations on or off, and a cap."""

    name: str
    onednn_opts: bool
    max_isa: str = ""  # "" leaves oneDNN to pick the best the CPU has
    skip: tuple[str, ...] = ()  # workloads this setting cannot run (see BF16_BELOW_AVX512)

    def env(self) -> dict[str, str]:
        env = {"TF_ENABLE_ONEDNN_OPTS": "1" if self.onednn_opts else "0"}
        if self.max_isa:
            env["ONEDNN_MAX_CPU_ISA"] = self.max_isa
        return env


def cpu_flags(cpuinfo: str) -> frozenset[str]:
    """The feature flags of the first processor in a /proc/cpuinfo text."""
    match = re.search(r"^flags\s*:(.*)$", cpuinfo, flags=re.M)
    return frozenset(match.group(1).split()) if match else frozenset()


def settings_for(flags: frozenset[str]) -> tuple[list[Setting], dict[str, str]]:
    """The settings this CPU can run, best first, and the ones it cannot, with the reason.

    oneDNN quietly ignores a cap above the CPU, so a setting the CPU lacks would only time
    the uncapped case again under a misleading name: it is skipped instead.
    """
    wanted = [
        Setting(REFERENCE, True),
        *(
            Setting(
                f"oneDNN, {isa}",
                True,
                isa,
                skip=("bf16_matmul",) if isa in BF16_BELOW_AVX512 else (),
            )
            for isa in (
                "AVX512_CORE_AMX",
                "AVX512_CORE_BF16",
                "AVX512_CORE",
                "AVX2",
                "AVX",
                "SSE41",
            )
        ),
        Setting("oneDNN ops off", False),
        Setting("oneDNN ops off, SSE41", False, "SSE41"),
    ]
    runnable, skipped = [], {}
    for setting in wanted:
        missing = [f for f in ISA_NEEDS.get(setting.max_isa, ()) if f not in flags]
        if missing:
            skipped[setting.name] = "CPU lacks " + ", ".join(missing)
        else:
            runnable.append(setting)
    return runnable, skipped


def serpentine(items: list[Setting], rounds: int) -> list[Setting]:
    """Every setting once per round, every other round reversed: drift hits all alike."""
    order: list[Setting] = []
    for i in range(rounds):
        order += items if i % 2 == 0 else list(reversed(items))
    return order


_EXEC = re.compile(r"^onednn_verbose,(?:v\d+,)?primitive,exec,cpu,([^,]*),([^,]*),")


def primitives_by_workload(stdout: str) -> dict[str, dict[str, int]]:
    """Count the oneDNN primitives (``kind:implementation``) each workload executed.

    The worker prints ``@@@ NAME`` before the one steady-state call the probe counts and
    ``@@ NAME`` before the warm-up call (first-call reorders and weight caching), which is
    not counted.
    """
    counts: dict[str, collections.Counter[str]] = {}
    current = ""
    for line in stdout.splitlines():
        if line.startswith("@@@ "):
            current = line[4:].strip()
            counts[current] = collections.Counter()
        elif line.startswith("@@ "):
            current = ""
        elif current and (m := _EXEC.match(line)):
            kind, impl = m.groups()
            counts[current][f"{kind}:{impl}" if impl else kind] += 1
    return {w: dict(sorted(c.items())) for w, c in counts.items()}


def baseline_message(stderr: str) -> str:
    """TensorFlow's own word on what its wheel was not compiled for, if it printed it."""
    match = re.search(r"To enable the following instructions: ([^,]*),", stderr)
    return match.group(1).strip() if match else ""


# Which code an instruction belongs to, from its demangled function name: the first of
# these namespaces (or C prefixes) that appears in it.
_OWNER = re.compile(
    r"\b(Eigen|dnnl|tensorflow|tsl|xla|mlir|llvm|absl|google|grpc|tflite|ruy|xnn_|"
    r"pthreadpool|std)"
)


def owner(symbol: str) -> str:
    """The library a demangled symbol belongs to (``other`` when none is recognised)."""
    match = _OWNER.search(symbol)
    return match.group(1).rstrip("_") if match else "other"


def summarise_disassembly(rows: list[tuple[str, int, int, int, int]]) -> dict[str, object]:
    """Totals and, for AVX-512 and FMA code, the libraries it sits in.

    ``rows``: per function (symbol, instructions, ymm, zmm, fma). ``ymm`` without ``zmm`` is
    AVX code, which the AVX baseline allows everywhere; ``zmm`` and FMA are above it, so
    they can only be code dispatched at run time.
    """
    totals = [sum(counts) for counts in zip(*(r[1:] for r in rows), strict=True)] or [0] * 4
    above: dict[str, collections.Counter[str]] = {
        "zmm": collections.Counter(),
        "fma": collections.Counter(),
    }
    for symbol, _, _, zmm, fma in rows:
        if zmm:
            above["zmm"][owner(symbol)] += zmm
        if fma:
            above["fma"][owner(symbol)] += fma
    return {
        "instructions": totals[0],
        "ymm": totals[1],
        "zmm": totals[2],
        "fma": totals[3],
        "functions": len(rows),
        "functions_with_zmm": sum(1 for r in rows if r[3]),
        "functions_with_fma": sum(1 for r in rows if r[4]),
        "zmm_by_library": dict(above["zmm"].most_common()),
        "fma_by_library": dict(above["fma"].most_common()),
    }


# Per function: instructions, those naming a ymm / zmm register, FMA instructions.
_AWK = r"""
/^[0-9a-f]+ <.*>:$/ { if (name != "") print name "\t" n "\t" y "\t" z "\t" f;
                      name = substr($0, index($0, "<")); n = y = z = f = 0; next }
/^ +[0-9a-f]+:\t/ { n++; if ($0 ~ /zmm/) z++; else if ($0 ~ /ymm/) y++;
                    if ($0 ~ /vfn?m(add|sub)/) f++ }
END { if (name != "") print name "\t" n "\t" y "\t" z "\t" f }
"""


def disassemble(path: Path) -> dict[str, object]:
    """objdump one shared object and summarise its vector code (slow for the big ones)."""
    objdump = subprocess.Popen(
        ["objdump", "-d", "-C", "--no-show-raw-insn", str(path)], stdout=subprocess.PIPE
    )
    awk = subprocess.run(
        ["awk", _AWK], stdin=objdump.stdout, capture_output=True, text=True, check=True
    )
    if objdump.stdout is not None:
        objdump.stdout.close()
    objdump.wait()
    rows = []
    for line in awk.stdout.splitlines():
        name, *counts = line.rsplit("\t", 4)
        n, y, z, f = (int(c) for c in counts)
        rows.append((name, n, y, z, f))
    return {"bytes": path.stat().st_size, **summarise_disassembly(rows)}


WORKER = r"""
import json, os, statistics, sys, time
import tensorflow as tf
threads = int(os.environ["THREADS"])
tf.config.threading.set_intra_op_parallelism_threads(threads)
tf.config.threading.set_inter_op_parallelism_threads(threads)
tf.random.set_seed(0)
probe = os.environ.get("PROBE") == "1"
skip = set(os.environ.get("SKIP", "").split(","))

def timed(name, fn):
    fn()
    start = time.perf_counter(); fn(); first = time.perf_counter() - start
    repeat = max(7, min(40, int(1.0 / max(first, 1e-6))))
    times = []
    for _ in range(repeat):
        start = time.perf_counter(); fn(); times.append(time.perf_counter() - start)
    best[name] = min(times)
    return statistics.median(times)

def probed(name, fn):
    print("@@ " + name, flush=True); fn()
    print("@@@ " + name, flush=True); fn()
    print("@@ end", flush=True)
    return 0.0

a, b = tf.random.normal((1024, 1024)), tf.random.normal((1024, 1024))
a16, b16 = tf.cast(a, tf.bfloat16), tf.cast(b, tf.bfloat16)
p, q, r = (tf.random.normal((4 * 1024 * 1024,)) for _ in range(3))
p16, q16, r16 = (tf.cast(t, tf.bfloat16) for t in (p, q, r))
logits = tf.random.normal((4096, 1024))

init = tf.initializers.GlorotUniform(seed=0)
w1 = tf.Variable(init((3, 3, 1, 16))); b1 = tf.Variable(tf.zeros(16))
w2 = tf.Variable(init((3, 3, 16, 32))); b2 = tf.Variable(tf.zeros(32))
w3 = tf.Variable(init((32 * 7 * 7, 10))); b3 = tf.Variable(tf.zeros(10))
params = [w1, b1, w2, b2, w3, b3]
x = tf.random.normal((64, 28, 28, 1))
y = tf.random.uniform((64,), 0, 10, dtype=tf.int32)

def net(x):
    h = tf.nn.max_pool2d(tf.nn.relu(tf.nn.conv2d(x, w1, 1, "SAME") + b1), 2, 2, "VALID")
    h = tf.nn.max_pool2d(tf.nn.relu(tf.nn.conv2d(h, w2, 1, "SAME") + b2), 2, 2, "VALID")
    return tf.matmul(tf.reshape(h, (-1, 32 * 7 * 7)), w3) + b3

@tf.function
def step():
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(
            tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=net(x)))
    for v, g in zip(params, tape.gradient(loss, params)):
        v.assign_sub(0.01 * g)
    return loss

workloads = {
    "matmul": tf.function(lambda: tf.matmul(a, b)),
    "bf16_matmul": tf.function(lambda: tf.matmul(a16, b16)),
    "convnet_step": step,
    "f32_elementwise": tf.function(lambda: p * q + r),
    "bf16_elementwise": tf.function(lambda: p16 * q16 + r16),
    "softmax": tf.function(lambda: tf.nn.softmax(logits)),
    "reduce_sum": tf.function(lambda: tf.reduce_sum(p)),
}
from tensorflow.python.util import _pywrap_util_port
result = {"tensorflow": tf.__version__, "onednn_enabled": _pywrap_util_port.IsMklEnabled(),
          "nice": os.nice(0)}
best = result["best"] = {}
for name, fn in workloads.items():
    if name in skip:
        continue
    result[name] = probed(name, fn) if probe else timed(name, fn)
print(json.dumps(result), flush=True)
"""


def worker_env(setting: Setting | None, *, probe: bool) -> dict[str, str]:
    """The process environment: the setting's variables, 2 threads, verbose for probes."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("TF_ENABLE_ONEDNN_OPTS", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA")
    }
    env |= {"THREADS": str(THREADS), "OMP_NUM_THREADS": str(THREADS)}
    if setting is not None:
        env |= setting.env() | {"SKIP": ",".join(setting.skip)}
    if probe:
        env |= {"ONEDNN_VERBOSE": "1", "PROBE": "1"}
    return env


PRIORITY = -10


def _ahead() -> None:
    """Run the worker ahead of work that does not take deepdeb's locks (where allowed).

    The measurement lock keeps deepdeb's builds off the CPU, but not other programs; a
    higher priority (a lower nice value) for the timed process keeps it from being
    descheduled for theirs, for the few seconds it runs. Without the privilege, it runs at
    the normal priority and the JSON says so.
    """
    with contextlib.suppress(PermissionError):
        os.setpriority(os.PRIO_PROCESS, 0, PRIORITY)


def run_worker(python: str, env: dict[str, str]) -> tuple[dict[str, object], str, str]:
    """One fresh TensorFlow process: its JSON line, its stdout and its stderr."""
    proc = subprocess.run(
        [python, "-c", WORKER], env=env, capture_output=True, text=True, preexec_fn=_ahead
    )
    if proc.returncode != 0:
        raise SystemExit(f"worker failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    result: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result, proc.stdout, proc.stderr


def probe(python: str, setting: Setting | None) -> dict[str, object]:
    """What oneDNN ran per workload under one setting (None: TensorFlow's own default)."""
    result, out, err = run_worker(python, worker_env(setting, probe=True))
    isa = re.search(r"^onednn_verbose,(?:v\d+,)?info,cpu,isa:(.*)$", out, flags=re.M)
    version = re.search(r"^onednn_verbose,(?:v\d+,)?info,(oneDNN v[^ ]+)", out, flags=re.M)
    return {
        "onednn_enabled": result["onednn_enabled"],
        "onednn": version.group(1) if version else "",
        "onednn_isa": isa.group(1) if isa else "",
        "tensorflow_says_not_compiled_for": baseline_message(err),
        "primitives": primitives_by_workload(out),
    }


def shared_objects(python: str) -> list[Path]:
    """The wheel's two big libraries and its Python extension."""
    where = subprocess.run(
        [python, "-c", "import os, tensorflow as tf; print(os.path.dirname(tf.__file__))"],
        capture_output=True, text=True, check=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
    ).stdout.strip().splitlines()[-1]  # fmt: skip
    root = Path(where)
    names = (
        "libtensorflow_cc.so.2",
        "libtensorflow_framework.so.2",
        "python/_pywrap_tensorflow_internal.so",
    )
    return [root / n for n in names if (root / n).exists()]


Times = dict[str, dict[str, float]]  # setting -> workload -> seconds


def aggregate(samples: dict[str, list[dict[str, object]]]) -> tuple[Times, Times]:
    """Per setting and workload, the median over rounds of each process's median call and
    of its fastest call.

    The fastest call is the one least disturbed by anything else on the machine; on a
    shared machine its median over rounds is the steadier figure, and the table's.
    """
    medians: Times = {}
    best: Times = {}
    for name, runs in samples.items():
        present = [w for w in WORKLOADS if w in runs[0]]
        medians[name] = {w: statistics.median(float(r[w]) for r in runs) for w in present}  # type: ignore[arg-type]
        best[name] = {w: statistics.median(r["best"][w] for r in runs) for w in present}  # type: ignore[index]
    return medians, best


def ratios(times: Times) -> Times:
    """Each setting's time over the reference's, per workload."""
    return {
        name: {w: round(t / times[REFERENCE][w], 3) for w, t in per.items()}
        for name, per in times.items()
    }


def render(result: dict[str, object], settings: list[Setting]) -> Table:
    """The terminal table: fastest call per setting and workload, ratio to the reference."""
    medians: dict[str, dict[str, float]] = result["best_s"]  # type: ignore[assignment]
    ratios: dict[str, dict[str, float]] = result["slowdown_vs_reference"]  # type: ignore[assignment]
    table = Table(
        title=f"TensorFlow dispatch ({THREADS} threads; ms, median over rounds of the fastest "
        f"call; ratio to {REFERENCE})"
    )
    table.add_column("setting")
    for w in WORKLOADS:
        table.add_column(w, justify="right")
    for s in settings:
        cells = []
        for w in WORKLOADS:
            if w not in ratios[s.name]:
                cells.append("[dim]aborts[/]")
                continue
            ratio = ratios[s.name][w]
            style = "bold red" if ratio >= 1.2 else "green" if ratio <= 0.85 else ""
            cell = f"{medians[s.name][w] * 1000:.2f} ({ratio:.2f}x)"
            cells.append(f"[{style}]{cell}[/]" if style else cell)
        table.add_row(s.name, *cells)
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--python", required=True, help="a Python that imports tensorflow")
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-objdump", action="store_true", help="skip the instruction counts")
    parser.add_argument(
        "--objdump-json", type=Path, help="reuse these instruction counts, or save them there"
    )
    args = parser.parse_args()
    console = Console(stderr=True)
    flags = cpu_flags(Path("/proc/cpuinfo").read_text())
    settings, skipped = settings_for(flags)
    for name, why in skipped.items():
        console.print(f"skipped {name}: {why}")
    objects: dict[str, object] = {}
    if args.objdump_json and args.objdump_json.exists():
        objects = json.loads(args.objdump_json.read_text())
    with building():  # CPU work, but no measurement: once, so as not to queue per step
        if not args.no_objdump and not objects:
            for path in shared_objects(args.python):
                console.print(f"objdump {path.name} ...")
                objects[path.name] = disassemble(path)
            if args.objdump_json:
                atomic_write_text(args.objdump_json, json.dumps(objects, indent=2) + "\n")
        console.print("oneDNN verbose probes ...")
        probes = {"TensorFlow default": probe(args.python, None)}
        probes |= {s.name: probe(args.python, s) for s in settings}
    samples: dict[str, list[dict[str, object]]] = {s.name: [] for s in settings}
    for setting in serpentine(settings, args.rounds):
        with measuring():
            sample, _, _ = run_worker(args.python, worker_env(setting, probe=False))
        samples[setting.name].append(sample)
        console.print(f"{setting.name}: " + ", ".join(
            f"{w} {float(sample[w]) * 1000:.2f}" for w in WORKLOADS if w in sample))  # type: ignore[arg-type]  # fmt: skip
    medians, best = aggregate(samples)
    host = host_cpu()
    model = re.search(r"^model name\s*:\s*(.*)$", Path("/proc/cpuinfo").read_text(), flags=re.M)
    result: dict[str, object] = {
        "host": {
            "cpu": host.microarchitecture,
            "model_name": model.group(1) if model else "",
            "level": host.level,
            "onednn_relevant_flags": sorted(
                f for f in flags if f in {x for need in ISA_NEEDS.values() for x in need}
            ),
            "machine": platform.machine(),
            "cores": os.cpu_count(),
        },
        "tensorflow": samples[REFERENCE][0]["tensorflow"],
        "threads": THREADS,
        "rounds": args.rounds,
        "settings": {s.name: s.env() for s in settings},
        "skipped": skipped,
        "workloads_left_out": {s.name: list(s.skip) for s in settings if s.skip},
        "nice": sorted({int(s["nice"]) for runs in samples.values() for s in runs}),  # type: ignore[call-overload]
        "best_s": best,
        "slowdown_vs_reference": ratios(best),
        "median_s": medians,
        "median_slowdown_vs_reference": ratios(medians),
        "probe": probes,
        "shared_objects": objects,
        "samples": samples,
    }
    atomic_write_text(args.json, json.dumps(result, indent=2) + "\n")
    Console().print(render(result, settings))


if __name__ == "__main__":
    main()
