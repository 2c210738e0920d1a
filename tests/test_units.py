"""Pure functions of each stage: levels, decisions, control fields, loader expectations."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from debian.debian_support import version_compare

from deepdeb.cpu.levels import (
    BASELINE,
    HOST_LEVEL_ENV,
    LOADER,
    compiler_flags,
    host_cpu,
    loader_supported_levels,
    rank,
    tunables_mask,
)
from deepdeb.debian.debpkg import AssembledPackage, deb_filename
from deepdeb.debian.elf import isa_needed
from deepdeb.debian.lintian import lintian_tags
from deepdeb.debian.target import GCC_VERSION
from deepdeb.errors import LintianError, MissingBuildDepsError, UsageError, VerifyError
from deepdeb.isa.assemble import addon_control, hwcaps_path, require_glibc, rewrite_relations
from deepdeb.isa.build import (
    TEST_STEPS,
    StepClock,
    failed_in_tests,
    flags_environment,
    level_flags,
)
from deepdeb.isa.measure import (
    ALPHA,
    SECOND_LOOK_ALPHA,
    decide,
    look_alpha,
    round_order,
    rounds_needed,
    sign_test,
    undecided,
)
from deepdeb.isa.verify import (
    expected_file,
    hwcaps_mask_option,
    installable_together,
    run_lintian,
)
from deepdeb.recipe.model import Isa
from deepdeb.report.schema import DIRECTORY, LevelResult, Reach

# --- isa ---------------------------------------------------------------------------------


def test_tunables_masks() -> None:
    assert tunables_mask("x86-64-v4") == ""
    assert tunables_mask("x86-64-v3") == "glibc.cpu.hwcaps=-AVX512F"
    assert tunables_mask("x86-64-v2") == "glibc.cpu.hwcaps=-AVX2,-AVX512F"
    assert tunables_mask(BASELINE) == "glibc.cpu.hwcaps=-SSE4_2,-AVX2,-AVX512F"


@pytest.mark.parametrize("level", ["x86-64", "x86-64-v2", "x86-64-v3"])
def test_masks_really_cap_the_loader(level: str) -> None:
    """The loader itself confirms each mask (on any CPU at or above the level)."""
    if level != BASELINE and level not in loader_supported_levels(LOADER):
        pytest.skip(f"this CPU cannot run {level}")
    env = {"GLIBC_TUNABLES": tunables_mask(level)}
    supported = loader_supported_levels(LOADER, env)
    expected = [
        lv
        for lv in ("x86-64-v4", "x86-64-v3", "x86-64-v2")
        if int(lv[-1]) <= int(level[-1] if level != BASELINE else 1)
    ]
    assert supported == expected


def test_host_level_agrees_with_loader() -> None:
    out = subprocess.run([LOADER, "--help"], capture_output=True, text=True).stdout
    best = BASELINE
    for level in ("x86-64-v2", "x86-64-v3", "x86-64-v4"):
        if f"{level} (supported, searched)" in out:
            best = level
    capped = os.environ.get(HOST_LEVEL_ENV)  # a simulated lower host
    if capped and rank(capped) < rank(best):
        best = capped
    assert host_cpu().level == best


def test_compiler_flags() -> None:
    gcc = GCC_VERSION
    assert compiler_flags(BASELINE, "generic", "-O3", gcc_version=gcc) == ""
    assert compiler_flags("x86-64-v3", "generic", "", gcc_version=gcc) == (
        "-march=x86-64-v3 -mtune=generic -mneeded"
    )
    assert compiler_flags("x86-64-v4", "znver4", "-O3", gcc_version=gcc) == (
        "-march=x86-64-v4 -mtune=znver4 -mneeded -O3"
    )


def test_compiler_flags_follow_what_the_gcc_release_understands() -> None:
    """archspec spells a level as feature flags for a GCC that predates -march=x86-64-v3,
    and refuses a level that GCC cannot target at all."""
    old = compiler_flags("x86-64-v3", "generic", "", gcc_version="10.2.0").split()
    assert old[0] == "-march=x86-64" and {"-mavx2", "-mfma", "-mbmi2"} <= set(old)
    assert old[-2:] == ["-mtune=generic", "-mneeded"]
    with pytest.raises(UsageError, match="x86-64-v4"):
        compiler_flags("x86-64-v4", "generic", "", gcc_version="4.9")


def test_target_gcc_is_the_one_installed() -> None:
    """The flags are chosen for the release's GCC; on that release, it is the host's."""
    proc = subprocess.run(["gcc", "-dumpfullversion"], capture_output=True, text=True)
    assert proc.stdout.strip() == GCC_VERSION


def test_build_environment_appends_flags_for_every_language() -> None:
    isa = Isa(levels=("x86-64-v3",), profile="-O3")
    env = flags_environment(
        level_flags("x86-64-v3", isa), 2, {"DEB_BUILD_OPTIONS": "nocheck parallel=9"}
    )
    for var in ("CFLAGS", "CXXFLAGS", "FFLAGS", "FCFLAGS"):
        assert env[f"DEB_{var}_APPEND"] == "-march=x86-64-v3 -mtune=generic -mneeded -O3"
    assert env["DEB_BUILD_OPTIONS"] == "nocheck parallel=2"
    base = flags_environment(level_flags(BASELINE, isa), 1, {"DEB_CFLAGS_APPEND": "-O0"})
    assert "DEB_CFLAGS_APPEND" not in base  # the baseline is the stock build


def test_flags_environment_adds_build_options_once() -> None:
    """A flat comparison build: its flags for every language, nocheck added once."""
    env = flags_environment("-march=native -O3", 4, {"DEB_BUILD_OPTIONS": "nocheck"}, ("nocheck",))
    assert env["DEB_BUILD_OPTIONS"] == "nocheck parallel=4"
    assert env["DEB_FFLAGS_APPEND"] == env["DEB_CXXFLAGS_APPEND"] == "-march=native -O3"
    assert flags_environment("", 1, {})["DEB_BUILD_OPTIONS"] == "parallel=1"


def test_step_clock_counts_the_time_of_each_step() -> None:
    """Repeated reports of one step count once; the test steps add up, override or not."""
    now = [0.0]
    clock = StepClock(lambda: now[0])
    for t, step in [
        (1, "dh_auto_build"), (5, "dh_auto_build"), (9, "dh_auto_test"), (12, "dh_auto_test"),
        (20, "dh_auto_install"), (21, "debian/rules override_dh_auto_test"), (24, ""),
    ]:  # fmt: skip
        now[0] = t
        clock.step(step)
    assert clock.spent["dh_auto_build"] == 8.0
    assert clock.seconds(TEST_STEPS) == 11.0 + 3.0
    assert clock.seconds(frozenset({"dh_strip"})) == 0.0


def test_isa_needed_parsing() -> None:
    notes = "      Properties: x86 ISA needed: x86-64-baseline, x86-64-v2, x86-64-v3\n"
    assert isa_needed(notes) == "x86-64-v3"
    assert isa_needed("      Properties: x86 ISA needed: x86-64-baseline\n") == BASELINE
    assert isa_needed("no notes") == BASELINE


# --- build -------------------------------------------------------------------------------


def test_failed_in_tests_looks_at_the_last_step() -> None:
    log = "   dh_auto_build\n...\n   dh_auto_test\nmake: *** [check] Error 1\n"
    assert failed_in_tests(log)
    assert failed_in_tests("   dh_auto_build\n   debian/rules override_dh_auto_test\nError\n")
    assert not failed_in_tests("   dh_auto_configure\n   dh_auto_build\nerror: boom\n")
    assert not failed_in_tests("no dh steps at all")


def test_missing_build_deps_message() -> None:
    # dpkg-checkbuilddeps' own format: dependencies separated by spaces, not commas
    unmet = "libbar-dev (>= 2) libbaz-dev | libqux-dev debhelper-compat (= 13) libz-dev:native"
    err = MissingBuildDepsError("libfoo", unmet)
    assert f"unmet build dependencies: {unmet}" in str(err)
    assert "apt-get install libbar-dev libbaz-dev debhelper-compat libz-dev)" in str(err)
    assert "apt-get build-dep libfoo" in str(err)


# --- measure -----------------------------------------------------------------------------


def levels(*names: str) -> list[LevelResult]:
    return [LevelResult(level=n) for n in names]


def test_decide_keeps_levels_that_pay() -> None:
    results = levels(BASELINE, "x86-64-v2", "x86-64-v3", "x86-64-v4")
    times = {
        BASELINE: [1.0, 1.1, 0.9, 1.0, 1.0],
        "x86-64-v2": [0.99, 1.0, 1.01, 1.0, 1.0],  # 1.0x: dropped
        "x86-64-v3": [0.5, 0.5, 0.6, 0.5, 0.5],  # 2.0x: kept
        "x86-64-v4": [0.49, 0.49, 0.5, 0.49, 0.49],  # only 1.02x over v3: dropped
    }
    decide(results, times, 1.05)
    by = {r.level: r for r in results}
    assert by[BASELINE].kept and by[BASELINE].speedup == 1.0
    assert not by["x86-64-v2"].kept and "below min_speedup 1.05" in by["x86-64-v2"].reason
    assert by["x86-64-v3"].kept and by["x86-64-v3"].speedup == pytest.approx(2.0)
    assert by["x86-64-v3"].faster_rounds == 5 and by["x86-64-v3"].p_value == 1 / 32
    assert "in 5 of 5 rounds" in by["x86-64-v3"].reason
    assert not by["x86-64-v4"].kept
    assert by["x86-64-v4"].gain_over_lower == pytest.approx(1.0 / 0.49 / 2.0)
    assert "over the level below it" in by["x86-64-v4"].reason


def test_decide_v4_must_beat_the_kept_level_not_the_dropped_one() -> None:
    results = levels(BASELINE, "x86-64-v3", "x86-64-v4")
    decide(results, {BASELINE: [3.0] * 5, "x86-64-v3": [2.0] * 5, "x86-64-v4": [1.0] * 5}, 1.05)
    by = {r.level: r for r in results}
    assert by["x86-64-v3"].kept and by["x86-64-v4"].kept
    assert by["x86-64-v4"].gain_over_lower == pytest.approx(2.0)


def test_a_median_gain_that_the_rounds_do_not_confirm_is_noise() -> None:
    """1.25x in the median, but faster in only 3 of 5 paired rounds: a gain the machine's
    noise explains (p = 0.5) is not shipped; the same median with every round won is."""
    base = [1.0, 1.0, 1.0, 1.0, 1.0]
    noisy = [0.8, 1.3, 0.7, 1.2, 0.8]
    steady = [0.8, 0.81, 0.79, 0.8, 0.8]
    results = levels(BASELINE, "x86-64-v3")
    decide(results, {BASELINE: base, "x86-64-v3": noisy}, 1.05)
    v3 = results[1]
    assert v3.speedup == pytest.approx(1.25) and not v3.kept
    assert v3.faster_rounds == 3 and v3.p_value == pytest.approx(0.5)
    assert "in only 3 of 5 rounds" in v3.reason and "not beyond the noise" in v3.reason
    results = levels(BASELINE, "x86-64-v3")
    decide(results, {BASELINE: base, "x86-64-v3": steady}, 1.05)
    assert results[1].kept


def test_a_higher_level_must_win_its_rounds_against_the_level_below() -> None:
    """v4 is 1.2x over v3 in the median, but the rounds against v3 are a coin toss."""
    results = levels(BASELINE, "x86-64-v3", "x86-64-v4")
    times = {
        BASELINE: [2.0] * 5,
        "x86-64-v3": [1.0, 1.0, 1.0, 1.0, 1.0],
        "x86-64-v4": [0.8, 1.1, 0.8, 1.1, 0.8],
    }
    decide(results, times, 1.05)
    v4 = results[2]
    assert not v4.kept and "faster than x86-64-v3 in only 3 of 5" in v4.reason


def test_too_few_rounds_keep_nothing() -> None:
    results = levels(BASELINE, "x86-64-v3")
    decide(results, {BASELINE: [2.0] * 3, "x86-64-v3": [1.0] * 3}, 1.05)
    assert not results[1].kept and "repeat must be at least 5" in results[1].reason


def test_sign_test() -> None:
    assert sign_test([1.0] * 5, [0.5] * 5) == (5, 1 / 32)
    assert sign_test([1.0] * 5, [1.0] * 5) == (0, 1.0)  # ties are losses
    wins, p = sign_test([1.0] * 15, [0.9] * 12 + [1.1] * 3)
    assert wins == 12 and p == pytest.approx(576 / 32768)
    assert rounds_needed(0.05) == 5 and rounds_needed(0.01) == 7


def test_undecided_levels_gain_in_the_median_but_not_in_enough_rounds() -> None:
    """v2 wins 3 rounds of 5 by 1.5x in the median: more rounds could decide it. v3 is
    slower, v4 wins 5 of 5: both are decided. Then 15 rounds, held to the second look's
    level: 12 of 15 keeps v2 (p=0.018 <= 0.025), 11 of 15 (p=0.059) does not."""
    results = levels(BASELINE, "x86-64-v2", "x86-64-v3")
    base = [3.0] * 5
    v2, v3 = [2.0] * 3 + [4.0] * 2, [4.0] * 5
    decide(results, {BASELINE: base, "x86-64-v2": v2, "x86-64-v3": v3}, 1.05)
    assert [r.kept for r in results] == [True, False, False]
    assert undecided(results, 1.05) == ["x86-64-v2"]
    assert undecided(results, 2.0) == []  # 1.5x in the median is under this min_speedup
    assert look_alpha(5, 5) == ALPHA and look_alpha(15, 5) == SECOND_LOOK_ALPHA == ALPHA / 2
    for wins, kept in ((12, True), (11, False)):
        again = levels(BASELINE, "x86-64-v2")
        v2 = [2.0] * wins + [4.0] * (15 - wins)
        decide(again, {BASELINE: [3.0] * 15, "x86-64-v2": v2}, 1.05, SECOND_LOOK_ALPHA)
        assert again[1].kept is kept, wins
    won = levels(BASELINE, "x86-64-v4")
    decide(won, {BASELINE: base, "x86-64-v4": [2.0] * 5}, 1.05)
    assert won[1].kept and undecided(won, 1.05) == []


def test_decide_leaves_unmeasurable_levels_with_their_reason() -> None:
    results = levels(BASELINE, "x86-64-v4")
    results[1].reason = "cannot run here"
    decide(results, {BASELINE: [1.0]}, 1.05)
    assert not results[1].kept and results[1].reason == "cannot run here"
    assert results[1].speedup is None


def test_round_order_is_serpentine() -> None:
    names = [BASELINE, "x86-64-v3", "x86-64-v4"]
    assert round_order(names, 0) == names
    assert round_order(names, 1) == names[::-1]
    assert round_order(names, 2) == names


# --- assemble ----------------------------------------------------------------------------


def test_deb_filename_drops_epoch() -> None:
    assert deb_filename("zlib1g", "1:1.2.13-1+hwcaps1", "amd64") == (
        "zlib1g_1.2.13-1+hwcaps1_amd64.deb"
    )


def test_suffix_sorts_above_stock() -> None:
    assert version_compare("1.0-1+hwcaps1", "1.0-1") > 0
    assert version_compare("1.0-1+hwcaps1", "1.0-2") < 0  # a newer stock upload wins


def test_rewrite_relations_only_touches_exact_sibling_versions() -> None:
    value = "libfoo1 (= 1.0-1), libbar (= 1.0-1), libfoo1 (>= 1.0), libc6 (>= 2.34) | x"
    assert rewrite_relations(value, {"libfoo1"}, "1.0-1", "1.0-1+hwcaps1") == (
        "libfoo1 (= 1.0-1+hwcaps1), libbar (= 1.0-1), libfoo1 (>= 1.0), libc6 (>= 2.34) | x"
    )


@pytest.mark.parametrize(
    ("depends", "expected"),
    [
        (None, "libc6 (>= 2.33)"),
        ("", "libc6 (>= 2.33)"),
        ("libc6 (>= 2.14)", "libc6 (>= 2.33)"),
        ("libc6 (>= 2.34), libm (>= 1)", "libc6 (>= 2.34), libm (>= 1)"),
        ("libgcc-s1", "libgcc-s1, libc6 (>= 2.33)"),
        ("libc6", "libc6 (>= 2.33)"),
    ],
)
def test_require_glibc(depends: str | None, expected: str) -> None:
    assert require_glibc(depends) == expected


def test_hwcaps_path() -> None:
    assert hwcaps_path("usr/lib/x86_64-linux-gnu/libz.so.1.2.13", "x86-64-v3") == (
        "usr/lib/x86_64-linux-gnu/glibc-hwcaps/x86-64-v3/libz.so.1.2.13"
    )


def test_addon_control() -> None:
    base = {
        "Package": "libfoo1",
        "Version": "1:1.0-1",
        "Architecture": "amd64",
        "Maintainer": "M <m@example.org>",
        "Multi-Arch": "same",
        "Section": "libs",
        "Description": "foo library\n long text",
    }
    control = addon_control(base, "x86-64-v3", "+hwcaps1", "foo")
    assert control["Package"] == "libfoo1-x86-64-v3"
    assert control["Version"] == "1:1.0-1+hwcaps1"
    assert control["Source"] == "foo (1:1.0-1)"
    assert control["Depends"] == "libfoo1 (= 1:1.0-1), libc6 (>= 2.33)"
    assert control["Multi-Arch"] == "same"
    assert control["Description"].startswith("foo library (x86-64-v3 libraries)\n")


# --- verify ------------------------------------------------------------------------------


def test_expected_file_falls_back_to_lower_levels() -> None:
    lib = "/usr/lib/x86_64-linux-gnu"
    reach = Reach("libfoo1", f"{lib}/libfoo.so.1.2", "libfoo.so.1", DIRECTORY, "")
    copies = {f"{lib[1:]}/glibc-hwcaps/x86-64-v2/libfoo.so.1.2"}
    assert expected_file(reach, "x86-64-v4", copies) == (
        f"{lib}/glibc-hwcaps/x86-64-v2/libfoo.so.1.2"
    )
    assert expected_file(reach, BASELINE, copies) == f"{lib}/libfoo.so.1.2"


def test_hwcaps_mask_option() -> None:
    assert hwcaps_mask_option("x86-64-v3") == "x86-64-v2:x86-64-v3"
    assert hwcaps_mask_option(BASELINE) == "none"


def test_lintian_errors_are_reported_as_tags_not_as_a_failure_to_run(tmp_path: Path) -> None:
    """lintian exits 2 when it finds errors: that is a verdict, not lintian failing."""
    tree = tmp_path / "bad"
    (tree / "DEBIAN").mkdir(parents=True)
    (tree / "DEBIAN/control").write_text(
        "Package: bad\nVersion: 1\nArchitecture: all\nMaintainer: x <x@example.org>\n"
        "Description: x\n"
    )
    deb = tmp_path / "bad_1_all.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "-b", tree, deb], check=True,
                   capture_output=True)  # fmt: skip
    errors, _ = lintian_tags([deb])
    assert "bad: no-copyright-file" in errors
    package = AssembledPackage("bad", "1", "all", deb)
    with pytest.raises(VerifyError, match=r"lintian reports errors:\n  bad: "):
        run_lintian([package])
    with pytest.raises(LintianError, match="lintian failed to run"):
        lintian_tags([tmp_path / "missing.deb"])


def test_conflicting_siblings_are_installed_apart() -> None:
    fields = {
        "libfoo1": {"Version": "1.0-1"},
        "libfoo-openssl-dev": {"Version": "1.0-1", "Conflicts": "libfoo-gnutls-dev"},
        "libfoo-gnutls-dev": {"Version": "1.0-1"},
        "foo-tools": {"Version": "1.0-1", "Breaks": "libfoo1 (<< 0.9)"},  # not this version
    }
    chosen, left_out = installable_together(fields, {"libfoo1"})
    assert chosen[0] == "libfoo1" and "foo-tools" in chosen
    assert left_out == {"libfoo-openssl-dev": "it conflicts with libfoo-gnutls-dev"}
