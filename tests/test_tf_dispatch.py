"""benchmarks/tf_dispatch.py's pure parts: which settings a CPU can run, what a oneDNN
verbose log says each workload executed, and whose vector code a disassembly holds."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "tf_dispatch.py"


@pytest.fixture(scope="module")
def tfd() -> ModuleType:
    spec = importlib.util.spec_from_file_location("tf_dispatch", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["tf_dispatch"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


V3 = "fpu sse sse2 ssse3 sse4_1 sse4_2 avx f16c fma avx2 bmi1 bmi2"
V4_BF16 = V3 + " avx512f avx512dq avx512bw avx512vl avx512_vnni avx512_bf16"


def test_a_v3_cpu_skips_the_avx512_caps_and_says_what_it_lacks(tfd: ModuleType) -> None:
    flags = tfd.cpu_flags(f"processor\t: 0\nflags\t\t: {V3}\nbogomips\t: 1\n")
    runnable, skipped = tfd.settings_for(flags)
    names = [s.name for s in runnable]
    assert names == [
        "oneDNN",
        "oneDNN, AVX2",
        "oneDNN, AVX",
        "oneDNN, SSE41",
        "oneDNN ops off",
        "oneDNN ops off, SSE41",
    ]
    assert set(skipped) == {
        "oneDNN, AVX512_CORE_AMX",
        "oneDNN, AVX512_CORE_BF16",
        "oneDNN, AVX512_CORE",
    }
    assert "avx512f" in skipped["oneDNN, AVX512_CORE"]
    assert runnable[-1].env() == {"TF_ENABLE_ONEDNN_OPTS": "0", "ONEDNN_MAX_CPU_ISA": "SSE41"}
    assert runnable[0].env() == {"TF_ENABLE_ONEDNN_OPTS": "1"}  # no cap: oneDNN's own pick
    # oneDNN has no bfloat16 matmul below AVX512_CORE, and TensorFlow would abort trying
    assert {s.name for s in runnable if "bf16_matmul" in s.skip} == {
        "oneDNN, AVX2",
        "oneDNN, AVX",
        "oneDNN, SSE41",
    }


def test_a_bf16_cpu_without_amx_runs_every_cap_but_amx(tfd: ModuleType) -> None:
    runnable, skipped = tfd.settings_for(tfd.cpu_flags(f"flags : {V4_BF16}\n"))
    assert "oneDNN, AVX512_CORE_BF16" in [s.name for s in runnable]
    assert list(skipped) == ["oneDNN, AVX512_CORE_AMX"]
    assert "amx_tile" in skipped["oneDNN, AVX512_CORE_AMX"]


def test_serpentine_reverses_every_other_round(tfd: ModuleType) -> None:
    a, b, c = (tfd.Setting(n, True) for n in "abc")
    assert [s.name for s in tfd.serpentine([a, b, c], 3)] == list("abccbaabc")


def test_only_the_steady_state_call_of_each_workload_is_counted(tfd: ModuleType) -> None:
    log = "\n".join(
        [
            "onednn_verbose,info,cpu,isa:Intel AVX-512",
            "@@ matmul",
            "onednn_verbose,primitive,exec,cpu,reorder,jit:uni,undef,src,,,1x1,0.1",
            "@@@ matmul",
            "onednn_verbose,primitive,exec,cpu,gemm_api,,undef,src_f32,,,4x4:4x4,0.3",
            "onednn_verbose,primitive,exec,cpu,gemm_api,,undef,src_f32,,,4x4:4x4,0.2",
            "@@ end",
            "onednn_verbose,primitive,exec,cpu,reorder,jit:uni,undef,src,,,1x1,0.1",
            "@@ softmax",
            "@@@ softmax",
            "onednn_verbose,v1,primitive,exec,cpu,softmax,jit:avx512_core,fwd,src,,,1x1,0.1",
            "@@ end",
            "@@ reduce_sum",
            "@@@ reduce_sum",
            "@@ end",
        ]
    )
    assert tfd.primitives_by_workload(log) == {
        "matmul": {"gemm_api": 2},
        "softmax": {"softmax:jit:avx512_core": 1},
        "reduce_sum": {},
    }


def test_the_wheels_baseline_is_read_from_tensorflows_warning(tfd: ModuleType) -> None:
    err = (
        "I cpu_feature_guard.cc:210] This TensorFlow binary is optimized to use available CPU "
        "instructions in performance-critical operations.\nTo enable the following "
        "instructions: AVX2 AVX512F FMA, in other operations, rebuild TensorFlow with the "
        "appropriate compiler flags.\n"
    )
    assert tfd.baseline_message(err) == "AVX2 AVX512F FMA"
    assert tfd.baseline_message("no warning") == ""


def test_vector_code_above_the_baseline_is_attributed_to_its_library(tfd: ModuleType) -> None:
    rows = [
        ("<void Eigen::internal::pack<tensorflow::bfloat16>(float*)>", 100, 40, 0, 0),
        ("<dnnl::impl::cpu::x64::gemm_kernel(long)>", 50, 0, 30, 10),
        ("<xnn_f32_gemm_minmax_ukernel_avx512f>", 20, 0, 12, 12),
        ("<tensorflow::functor::Add<Eigen::ThreadPoolDevice>(int)>", 10, 0, 0, 4),
        ("<frame_dummy>", 5, 0, 0, 0),
    ]
    summary = tfd.summarise_disassembly(rows)
    assert summary["instructions"] == 185 and summary["ymm"] == 40
    assert summary["zmm_by_library"] == {"dnnl": 30, "xnn": 12}
    assert summary["fma_by_library"] == {"xnn": 12, "dnnl": 10, "tensorflow": 4}
    assert summary["functions_with_zmm"] == 2 and summary["functions_with_fma"] == 3
    assert tfd.owner("<frame_dummy>") == "other"


def test_the_fastest_calls_median_over_rounds_is_compared_to_the_reference(
    tfd: ModuleType,
) -> None:
    """A left-out workload stays out of its setting's figures instead of reading as 0."""

    def run(t: float, fastest: float, *, bf16: bool = True) -> dict[str, object]:
        times = {w: t for w in tfd.WORKLOADS if bf16 or w != "bf16_matmul"}
        return {**times, "best": {w: fastest for w in times}, "nice": -10}

    samples = {
        "oneDNN": [run(0.010, 0.008), run(0.030, 0.009), run(0.011, 0.010)],
        "oneDNN, AVX2": [run(0.020, 0.018, bf16=False), run(0.021, 0.020, bf16=False)],
    }
    medians, best = tfd.aggregate(samples)
    assert medians["oneDNN"]["matmul"] == 0.011 and best["oneDNN"]["matmul"] == 0.009
    assert "bf16_matmul" not in best["oneDNN, AVX2"]
    slow = tfd.ratios(best)
    assert slow["oneDNN, AVX2"]["softmax"] == round(0.019 / 0.009, 3)
    assert slow["oneDNN"]["softmax"] == 1.0
