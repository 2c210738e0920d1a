"""Any CPU: level planning for v2, v3 and v4 hosts, SIGILL in build logs, the host override."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from deepdeb.cpu.levels import (
    BASELINE,
    HOST_LEVEL_ENV,
    LEVELS,
    HostCpu,
    cap_level,
    host_cpu,
    level_features,
    missing_features,
    plan_builds,
    rank,
)
from deepdeb.errors import DeepdebError
from deepdeb.isa.build import describe_failure, illegal_instruction
from deepdeb.isa.measure import plan_levels

ALL = ("x86-64-v2", "x86-64-v3", "x86-64-v4")


def fake_host(level: str, micro: str = "zen3", capped_by: str = "") -> HostCpu:
    """A host at ``level`` whose feature list is exactly what that level needs."""
    features = sorted({f for lv in LEVELS[: rank(level) + 1] for f in level_features(lv)})
    return HostCpu(
        microarchitecture=micro,
        vendor="AuthenticAMD",
        level=level,
        loader_levels=tuple(lv for lv in reversed(ALL) if rank(lv) <= rank(level)),
        features=tuple(features),
        capped_by=capped_by,
    )


@pytest.mark.parametrize(
    ("level", "built"),
    [
        ("x86-64-v4", ALL),
        ("x86-64-v3", ("x86-64-v2", "x86-64-v3")),
        ("x86-64-v2", ("x86-64-v2",)),
        (BASELINE, ()),
    ],
)
def test_default_plan_builds_only_what_the_host_runs(level: str, built: tuple[str, ...]) -> None:
    plan = plan_builds(ALL, fake_host(level), explicit=False)
    assert plan.levels == built
    assert plan.may_fail == frozenset()
    assert set(plan.not_built) == set(ALL) - set(built)
    for why in plan.not_built.values():
        assert why.startswith("not built: needs ") and "--levels" in why


def test_v4_on_a_v3_host_names_the_missing_features() -> None:
    plan = plan_builds(ALL, fake_host("x86-64-v3"), explicit=False)
    why = plan.not_built["x86-64-v4"]
    assert "needs AVX512F, " in why and "AVX512BW" in why
    assert why.endswith("this CPU is zen3, x86-64-v3 (name it with --levels to build it anyway)")
    assert "AVX2" not in why  # what the CPU has is not listed


def test_levels_named_explicitly_are_built_and_may_fail() -> None:
    plan = plan_builds(("x86-64-v3", "x86-64-v4"), fake_host("x86-64-v3"), explicit=True)
    assert plan.levels == ("x86-64-v3", "x86-64-v4")
    assert plan.may_fail == {"x86-64-v4"} and plan.not_built == {}
    on_v2 = plan_builds(ALL, fake_host("x86-64-v2"), explicit=True)
    assert on_v2.may_fail == {"x86-64-v3", "x86-64-v4"}


def test_why_not_for_a_masked_or_capped_host() -> None:
    everything = fake_host("x86-64-v4")
    masked = HostCpu(
        "zen4",
        "AuthenticAMD",
        "x86-64-v3",
        ("x86-64-v3", "x86-64-v2"),
        everything.features,
        "loader",
    )
    assert "the loader does not use x86-64-v4 here" in masked.why_not("x86-64-v4")
    capped = HostCpu(
        "zen4", "AuthenticAMD", "x86-64-v2", ("x86-64-v2",), everything.features, HOST_LEVEL_ENV
    )
    assert (
        capped.why_not("x86-64-v3")
        == f"above x86-64-v2, the level {HOST_LEVEL_ENV} sets for this host"
    )


def test_missing_features_accumulate_over_levels() -> None:
    v2 = fake_host("x86-64-v2")
    missing = missing_features("x86-64-v4", v2.features)
    assert missing.index("avx2") < missing.index("avx512f")  # lowest level first
    assert missing_features("x86-64-v2", v2.features) == []


def test_cap_level_only_lowers() -> None:
    assert cap_level("x86-64-v4", "", "x86-64-v2") == ("x86-64-v2", HOST_LEVEL_ENV)
    assert cap_level("x86-64-v3", "loader", "x86-64-v3") == ("x86-64-v3", "loader")
    with pytest.raises(DeepdebError, match="can only lower"):
        cap_level("x86-64-v3", "", "x86-64-v4")
    with pytest.raises(DeepdebError, match="not a level"):
        cap_level("x86-64-v3", "", "v3")


@pytest.fixture
def fresh_host() -> Iterator[None]:
    host_cpu.cache_clear()
    yield
    host_cpu.cache_clear()


@pytest.mark.parametrize("level", [BASELINE, "x86-64-v2", "x86-64-v3"])
def test_host_override_simulates_a_lower_cpu(
    level: str, monkeypatch: pytest.MonkeyPatch, fresh_host: None
) -> None:
    monkeypatch.setenv(HOST_LEVEL_ENV, level)
    host = host_cpu()
    assert host.level == level
    assert all(rank(lv) <= rank(level) for lv in host.loader_levels)
    assert not host.supports("x86-64-v4")


def test_cpu_command_reports_the_override() -> None:
    env = dict(os.environ, **{HOST_LEVEL_ENV: "x86-64-v2"})
    deepdeb = [sys.executable, "-m", "deepdeb", "cpu"]
    proc = subprocess.run([*deepdeb, "--json"], env=env, capture_output=True, text=True, check=True)
    assert '"level": "x86-64-v2"' in proc.stdout
    env[HOST_LEVEL_ENV] = "x86-64-v9"
    bad = subprocess.run(deepdeb, env=env, capture_output=True, text=True)
    assert bad.returncode == 1 and "is not a level" in bad.stderr


# --- SIGILL in build logs -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("log", "evidence"),
    [
        ("./conftest\nIllegal instruction\nconfigure: error: cannot run C compiled programs.\n",
         "Illegal instruction / configure: error: cannot run C compiled programs."),
        ("make[1]: *** [Makefile:9: check] Illegal instruction (core dumped)\n",
         "make[1]: *** [Makefile:9: check] Illegal instruction (core dumped)"),
        ("make: *** [check] Error 132\n", "make: *** [check] Error 132"),
        ("1/3 vec_test  FAIL  0.01s  killed by signal 4 SIGILL\n",
         "1/3 vec_test  FAIL  0.01s  killed by signal 4 SIGILL"),
        ("  2/5 Test #2: simd ......***Exception: Illegal  0.00 sec\n",
         "2/5 Test #2: simd ......***Exception: Illegal  0.00 sec"),
        ("dh_auto_test: error: make -j2 test returned exit code 132\n",
         "dh_auto_test: error: make -j2 test returned exit code 132"),
    ],
)  # fmt: skip
def test_illegal_instruction_is_recognised(log: str, evidence: str) -> None:
    assert illegal_instruction(log) == evidence


def test_ordinary_failures_and_package_names_are_not_sigill() -> None:
    assert illegal_instruction("dpkg-buildpackage: info: source package sigill\nError 1\n") is None
    assert illegal_instruction("make: *** [all] Error 2\n") is None
    assert describe_failure("x86-64-v4", "error: boom\n", in_tests=False) == (
        "failed to build at x86-64-v4"
    )
    assert describe_failure("x86-64-v4", "make: *** [check] Error 132\n", in_tests=True) == (
        "the package's tests died of an illegal instruction (SIGILL) at x86-64-v4: "
        "make: *** [check] Error 132"
    )


def test_results_say_why_each_level_is_out() -> None:
    from deepdeb.isa.build import VariantBuild

    base = VariantBuild(BASELINE, Path("/b"), Path("/b.log"), "", True, 1.0)
    died = "died of an illegal instruction (SIGILL)"
    v3 = VariantBuild("x86-64-v3", Path("/3"), Path("/3.log"), "", False, 1.0,
                      failure=f"the package's tests {died}")  # fmt: skip
    v4 = VariantBuild("x86-64-v4", Path("/4"), Path("/4.log"), "", False, 1.0, built=False,
                      failure=f"the build {died} at x86-64-v4")  # fmt: skip
    host = fake_host("x86-64-v2")
    results = plan_levels(
        {BASELINE: base, "x86-64-v3": v3, "x86-64-v4": v4},
        ALL,
        host,
        {"x86-64-v2": "not built: testing"},
    )
    by = {r.level: r for r in results}
    assert by["x86-64-v2"].reason == "not built: testing" and not by["x86-64-v2"].built
    assert by["x86-64-v3"].reason.startswith("the package's tests died of an illegal")
    assert "needs AVX2" in by["x86-64-v3"].reason
    assert not by["x86-64-v4"].built and by["x86-64-v4"].reason.endswith("; not fatal)")
