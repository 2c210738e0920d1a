"""Build stage: one dpkg-buildpackage run per ISA level, each in its own directory.

The package's own build system does the work; deepdeb only appends ``-march=<level>``
(and the recipe's profile flags) through dpkg-buildflags' ``DEB_*FLAGS_APPEND`` variables,
which every debhelper-based package honours. Whether a package really honoured them is then
checked in the binaries (see :func:`check_flags_applied`), never assumed.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import stat
import subprocess
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from debian.deb822 import Deb822

from deepdeb.cpu.levels import BASELINE, BuildPlan, compiler_flags
from deepdeb.cpu.quiet import building
from deepdeb.debian.debpkg import elf_files, extract
from deepdeb.debian.elf import read_elf
from deepdeb.debian.target import GCC_VERSION
from deepdeb.errors import BuildError, DeepdebError, FlagsNotAppliedError, MissingBuildDepsError
from deepdeb.hermetic import diagnose, sandbox
from deepdeb.hermetic.cleanroom import CleanRoot
from deepdeb.hermetic.sandbox import NetworkAttempt
from deepdeb.recipe.model import Isa
from deepdeb.sources.fetch import SourcePackage, unpack
from deepdeb.util import read_regular, run

FLAG_VARIABLES = ("CFLAGS", "CXXFLAGS", "FFLAGS", "FCFLAGS", "OBJCFLAGS", "OBJCXXFLAGS")

# Lines that dh (and make, for override targets) print when a step starts.
_STEP = re.compile(r"^\s+(dh_[a-z_]+|debian/rules [a-z_-]+)", re.M)

Progress = Callable[[str, str], None]  # (level, what it is doing now)


@dataclass
class VariantBuild:
    """The outcome of building one level."""

    level: str
    directory: Path
    log: Path
    flags: str
    tests_passed: bool
    seconds: float  # the whole dpkg-buildpackage run, tests included
    test_seconds: float = 0.0  # of which the package's own tests (dh_auto_test)
    tests_tail: str = ""
    built: bool = True  # False: a level allowed to fail (above the host's) did not build
    failure: str = ""  # why it did not build, or why its tests failed
    network_attempts: list[NetworkAttempt] = field(default_factory=list)
    debs: dict[str, Path] = field(default_factory=dict)  # binary package -> .deb or .ddeb
    tests_run: bool = True  # False: built with nocheck, its tests wait for run_tests
    tree: Path | None = None  # the unpacked, built source, where run_tests runs them
    private: Path | None = None  # deepdeb's files for its sandbox (the build cannot write)
    jobs: int = 1


def uses_dh(tree: Path) -> bool:
    """Does debian/rules hand its targets to dh? Only then can the tests be run on their
    own after the build (see :func:`run_tests`)."""
    rules = (tree / "debian" / "rules").read_text(errors="replace")
    return re.search(r"^\s+dh\s+\$[@(]", rules, re.M) is not None


def architecture_dependent(tree: Path) -> bool:
    """Does the source build any ``Architecture: any`` (or amd64...) package?

    A source with only ``Architecture: all`` packages has nothing to rebuild per level:
    dpkg-buildpackage -B would even fail, with "no binary artifacts".
    """
    with open(tree / "debian" / "control", encoding="utf-8") as f:
        paragraphs = list(Deb822.iter_paragraphs(f))
    return any(p.get("Architecture", "any").strip() != "all" for p in paragraphs[1:])


def check_build_deps(tree: Path, label: str) -> None:
    """Fail early, naming what is missing, instead of four builds failing alike."""
    proc = run(["dpkg-checkbuilddeps"], cwd=tree, check=False)
    if proc.returncode == 0:
        return
    unmet = re.search(r"Unmet build dependencies: (.*)", proc.stderr)
    conflicts = re.search(r"Build conflicts: (.*)", proc.stderr)
    if unmet:
        raise MissingBuildDepsError(label, unmet.group(1).strip())
    if conflicts:
        raise MissingBuildDepsError(label, "conflicting packages installed: " + conflicts.group(1))
    raise BuildError(BASELINE, tree / "debian" / "control", proc.stderr.strip(), "cannot start")


def level_flags(level: str, isa: Isa) -> str:
    """The flags a level's build appends, for the release's GCC (none for the baseline)."""
    return compiler_flags(level, isa.tune, isa.profile, gcc_version=GCC_VERSION)


def flags_environment(
    flags: str, jobs: int, base: dict[str, str], options: tuple[str, ...] = ()
) -> dict[str, str]:
    """Environment for dpkg-buildpackage with ``flags`` appended to every language's
    flags (none: the stock build), whatever the caller's environment appended before;
    ``options`` are added to DEB_BUILD_OPTIONS."""
    env = dict(base)
    env["LC_ALL"] = "C.UTF-8"
    kept = [o for o in env.get("DEB_BUILD_OPTIONS", "").split() if not o.startswith("parallel=")]
    kept += [o for o in options if o not in kept]
    env["DEB_BUILD_OPTIONS"] = " ".join([*kept, f"parallel={jobs}"])
    for var in FLAG_VARIABLES:
        env.pop(f"DEB_{var}_APPEND", None)
        if flags:
            env[f"DEB_{var}_APPEND"] = flags
    return env


# The steps that run the package's own tests: dh's, and an override of it in debian/rules.
TEST_STEPS = frozenset({"dh_auto_test", "debian/rules override_dh_auto_test"})


class StepClock:
    """How long a build spent in each dh step, from the moments its log showed them start.

    Steps shorter than the log polling interval may go unseen; their time is counted in
    the step before them. That is precise enough to tell users where their hours go
    (a test suite is minutes, not a fraction of a second).
    """

    def __init__(self, now: Callable[[], float] = time.monotonic) -> None:
        self._now = now
        self._current = ""
        self._since = now()
        self.spent: dict[str, float] = {}

    def step(self, name: str) -> None:
        """The build is now in step ``name`` ("" once it has ended)."""
        if name == self._current:
            return
        now = self._now()
        if self._current:
            self.spent[self._current] = self.spent.get(self._current, 0.0) + now - self._since
        self._current, self._since = name, now

    def seconds(self, steps: frozenset[str]) -> float:
        return round(sum(v for k, v in self.spent.items() if k in steps), 1)


def tail(path: Path, lines: int = 25) -> str:
    """The last lines of a log (read from its end, however long the log is)."""
    try:
        text = read_regular(path, 256 * 1024).decode("utf-8", "replace")
    except (OSError, DeepdebError):
        return ""
    return "\n".join(text.splitlines()[-lines:])


def failed_in_tests(log_text: str) -> bool:
    """Did the build fail in the package's test step rather than while compiling?

    dh announces each step before running it, so the last announced step is the one that
    failed; an ``override_dh_auto_test`` target counts as the test step too.
    """
    steps = _STEP.findall(log_text)
    return bool(steps) and "dh_auto_test" in steps[-1]


# How a build log shows that a program died of an illegal instruction: the shell's and
# make's messages, exit status 128+4, test harnesses' reports, and autoconf giving up
# after its test program crashed (configure exits 77).
_ILLEGAL = re.compile(
    r"Illegal instruction|\bSIGILL\b|killed by signal 4\b|\bError 132\b"
    r"|(?:exit|return) (?:code|status):? 132\b|Exception: Illegal"
    r"|cannot run C\+?\+? compiled programs"
)


def illegal_instruction(log_text: str) -> str | None:
    """The log lines showing that something died of SIGILL (the first two), if any."""
    lines: list[str] = []
    for match in _ILLEGAL.finditer(log_text):
        start = log_text.rfind("\n", 0, match.start()) + 1
        end = log_text.find("\n", match.end())
        line = log_text[start : end if end != -1 else len(log_text)].strip()
        if line not in lines:
            lines.append(line)
        if len(lines) == 2:
            break
    return " / ".join(lines) or None


def describe_failure(level: str, log_text: str, in_tests: bool) -> str:
    """One line for the report on why a level did not build or pass its tests."""
    what = "the package's tests" if in_tests else "the build"
    evidence = illegal_instruction(log_text)
    if evidence:
        return f"{what} died of an illegal instruction (SIGILL) at {level}: {evidence[:160]}"
    return f"{what} failed at {level}" if in_tests else f"failed to build at {level}"


class _Cancelled(Exception):
    """A build stopped because another one failed first."""


class _OutOfDisk(Exception):
    """A build was stopped because it used too much disk, or the disk was nearly full."""


def _disk_problem(directory: Path, limits: sandbox.Limits) -> str:
    """Why a build must stop for its disk use, or ""."""
    free = shutil.disk_usage(directory).free
    if free < limits.free_disk_bytes:
        return (
            f"less than {limits.free_disk_bytes >> 20} MiB was left on the disk of "
            f"{directory} (DEEPDEB_LIMIT_FREE_DISK_BYTES)"
        )
    used = _usage(directory)
    if used > limits.disk_bytes:
        return (
            f"it wrote more than {limits.disk_bytes >> 20} MiB into its directory "
            "(DEEPDEB_LIMIT_DISK_BYTES)"
        )
    return ""


def _usage(directory: Path) -> int:
    """Bytes allocated below a directory (no links followed)."""
    total = 0
    for parent, _, files in os.walk(directory):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(parent, name)).st_blocks * 512
    return total


def _run_logged(
    jail: sandbox.Jail,
    tree: Path,
    env: dict[str, str],
    log: Path,
    on_step: Callable[[str], None],
    cancel: threading.Event,
    disk: Path,
    limits: sandbox.Limits,
) -> int:
    """Run a build with its output in ``log``, reporting each dh step as it starts.

    The log is deepdeb's own file, outside the directory the build may write: the build
    writes to it through its output, but cannot replace it. The build gets its own process
    group, and is stopped whole (its PID namespace) when cancelled, when ``disk`` (its
    directory) holds more than ``limits.disk_bytes`` or when less than
    ``limits.free_disk_bytes`` is left on its filesystem.
    """
    if cancel.is_set():  # never start a sandbox only to stop it while it sets up
        raise _Cancelled()
    with open(log, "ab") as out, open(log, "rb") as reader:
        reader.seek(0, os.SEEK_END)
        proc = subprocess.Popen(
            jail.command,
            cwd="/",
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            pass_fds=jail.pass_fds,
        )
        pending = ""
        checked = 0.0
        while proc.poll() is None:
            if cancel.is_set():
                sandbox.stop(proc.pid)
                proc.wait()
                raise _Cancelled()
            if time.monotonic() - checked > 2:
                checked = time.monotonic()
                why = _disk_problem(disk, limits)
                if why:
                    sandbox.stop(proc.pid)
                    proc.wait()
                    raise _OutOfDisk(why)
            time.sleep(0.3)
            pending += reader.read(1 << 20).decode("utf-8", "replace")
            steps = _STEP.findall(pending)
            if steps:
                on_step(steps[-1].strip())
            pending = pending[-200:]  # a step name cut at the end is found next time
    return proc.returncode


def _jail(
    cmd: list[str],
    env: dict[str, str],
    directory: Path,
    tree: Path,
    private: Path,
    attempts_fd: int,
    clean: CleanRoot | None,
) -> tuple[sandbox.Jail, dict[str, str]]:
    """The sandbox a level's build (or its tests) runs in, and the environment it gets."""
    env = dict(env)
    if clean:
        inside = Path(clean.inside(tree))
        jail = sandbox.wrap_chroot(cmd, clean.path, directory, inside, attempts_fd, private)
        env["PATH"] = "/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin"
    else:
        jail = sandbox.wrap(cmd, directory, tree, attempts_fd, private)
    return jail, sandbox.scrubbed_env(env, home=Path(sandbox.HOME), tmp=Path("/tmp"))


def _build_one(
    package: SourcePackage,
    level: str,
    root: Path,
    flags: str,
    jobs: int,
    progress: Progress,
    cancel: threading.Event,
    clean: CleanRoot | None,
    may_fail: bool,
    options: tuple[str, ...] = (),
) -> VariantBuild:
    directory = clean.build_dir(level) if clean else root / level
    directory.mkdir(parents=True)
    private = root.parent / "sandbox" / level  # deepdeb's: the build cannot write here
    private.mkdir(parents=True)
    progress(level, "unpacking source")
    tree = unpack(package, directory / "src")
    sandbox.hand_over(directory)
    log = root.parent / "logs" / f"{level}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    attempts_log = private / "network-attempts.jsonl"
    env = flags_environment(flags, jobs, dict(os.environ), options)
    # Rebuilt levels only need the architecture-dependent packages.
    cmd = ["dpkg-buildpackage", "-b" if level == BASELINE else "-B", "--no-sign", "--no-pre-clean"]
    log.write_text(f"# deepdeb: {' '.join(cmd)}\n# flags appended: {flags or '(none)'}\n")
    attempts_fd = sandbox.open_attempts(attempts_log)
    limits = sandbox.current_limits()
    try:
        jail, env = _jail(cmd, env, directory, tree, private, attempts_fd, clean)
        start = time.monotonic()
        clock = StepClock()

        def on_step(step: str) -> None:
            clock.step(step)
            progress(level, step)

        try:
            with building():
                status = _run_logged(jail, tree, env, log, on_step, cancel, directory, limits)
        except _OutOfDisk as e:
            cancel.set()
            raise BuildError(level, log, tail(log), f"was stopped: {e}") from None
    finally:
        os.close(attempts_fd)
    seconds = time.monotonic() - start
    clock.step("")
    result = VariantBuild(level, directory, log, flags, tests_passed=True, seconds=seconds)
    result.test_seconds = clock.seconds(TEST_STEPS)
    result.network_attempts = sandbox.read_attempts(attempts_log)
    result.tests_run = "nocheck" not in options
    result.tree, result.private, result.jobs = tree, private, jobs
    if status != 0:
        text = tail(log, 400)
        in_tests = failed_in_tests(text)
        result.failure = describe_failure(level, text, in_tests)
        result.tests_tail = tail(log)
        if in_tests and level != BASELINE:
            # A variant that fails the package's own tests is dropped, not fatal: -O3 or
            # FMA contraction legitimately changes floating-point results.
            progress(level, "tests failed")
            result.tests_passed = False
            return result
        if may_fail:
            # A level above this CPU's, named explicitly: reported, never fatal.
            progress(level, "failed (reported)")
            result.built = result.tests_passed = False
            return result
        cancel.set()
        diagnosis = ""
        group = sandbox.current_cgroup()
        if group is not None and group.out_of_memory():
            diagnosis = (
                "\nthe kernel stopped processes of the run for lack of memory: the run may use "
                f"{group.memory_limit() >> 20} MiB (DEEPDEB_LIMIT_MEMORY_BYTES)"
            )
        elif clean and not in_tests:
            diagnosis = diagnose.describe(diagnose.explain_failure(text))
        elif illegal_instruction(text):
            diagnosis = f"\n{result.failure}"
        raise BuildError(
            level,
            log,
            tail(log),
            "fails its own test suite" if in_tests else "failed to build",
            [str(a) for a in result.network_attempts],
            diagnosis,
        )
    result.debs = _packages(directory, level, log)
    progress(level, "done")
    return result


def _packages(directory: Path, level: str, log: Path) -> dict[str, Path]:
    """The packages a build left in its directory: regular files only (the build could
    have planted links to anything), keyed by package name."""
    debs: dict[str, Path] = {}
    for deb in sorted([*directory.glob("*.deb"), *directory.glob("*.ddeb")]):
        info = deb.lstat()
        if not stat.S_ISREG(info.st_mode):
            raise BuildError(level, log, f"{deb.name} is not a regular file", "left no package")
        debs[deb.name.split("_", 1)[0]] = deb
    return debs


def build_all(
    package: SourcePackage,
    isa: Isa,
    plan: BuildPlan,
    root: Path,
    progress: Progress,
    cpus: int | None = None,
    clean: CleanRoot | None = None,
    defer_tests: bool = False,
    levels: list[str] | None = None,
) -> dict[str, VariantBuild]:
    """Build the baseline and every planned level (or only ``levels`` of them: one, in a
    stack's per-level task), in parallel on all cores.

    With ``defer_tests``, the levels that will be measured build with nocheck: their tests
    wait for :func:`run_tests`, which runs them only for the levels worth shipping. The
    baseline, always shipped, and levels above this CPU (never measured, so their tests are
    the only sign of whether they run at all) build with their tests.

    With ``clean``, every level builds in that clean-room chroot (read-only, shared by the
    levels, each writing only its own ``/build/<level>``); otherwise on the host's system.

    Builds share the cores: with as many builds as cores each build runs one job, which
    keeps every core busy through the serial parts (configure, dh_* steps) of each build.
    A level in ``plan.may_fail`` that fails is returned with ``built=False``; any other
    failure stops the other builds and is raised.
    """
    levels = levels or [BASELINE, *plan.levels]
    cpus = cpus or os.cpu_count() or 1
    workers = min(cpus, len(levels))
    jobs = max(1, cpus // workers)
    cancel = threading.Event()

    def deferred(level: str) -> bool:
        return defer_tests and level != BASELINE and level not in plan.may_fail

    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {
            level: pool.submit(
                _build_one,
                package,
                level,
                root,
                level_flags(level, isa),
                jobs,
                progress,
                cancel,
                clean,
                level in plan.may_fail,
                ("nocheck",) if deferred(level) else (),
            )
            for level in levels
        }
        results: dict[str, VariantBuild] = {}
        errors: list[BaseException] = []
        try:
            for level, future in futures.items():
                try:
                    results[level] = future.result()
                except _Cancelled:
                    pass
                except DeepdebError as e:
                    cancel.set()
                    errors.append(e)
        except BaseException:
            # Interrupted (Ctrl-C) or a bug: stop every running build before leaving.
            cancel.set()
            raise
    if errors:
        raise errors[0]
    return results


def build_with_flags(
    package: SourcePackage,
    name: str,
    flags: str,
    root: Path,
    progress: Progress = lambda name, what: None,
    cpus: int | None = None,
    check: bool = True,
) -> VariantBuild:
    """One sandboxed build of the source's architecture-dependent packages with ``flags``
    appended to all of it, programs included: a flat rebuild, as a distribution that
    raised its whole baseline would ship, for comparison with deepdeb's packages.
    ``check=False`` skips the package's own tests (DEB_BUILD_OPTIONS=nocheck).

    It never raises for the package's own failures: a build that fails has ``built``
    False, one whose tests fail ``tests_passed`` False, with the reason in ``failure``.
    """
    return _build_one(
        package, name, root, flags, cpus or os.cpu_count() or 1, progress, threading.Event(),
        None, may_fail=True, options=() if check else ("nocheck",),
    )  # fmt: skip


# dh's plan of a build (DH_NO_ACT=1): one indented line per command, shell-quoted.
_PLANNED = re.compile(r"^   (\S.*)$", re.M)


def test_script(plan: str) -> str:
    """The shell commands that run a package's own tests, from dh's plan of its build.

    dh skips the test step entirely under nocheck, so the build's log never shows it; its
    plan without nocheck does: ``dh_auto_test`` with the options dh gives every command
    (``-a -O--buildsystem=cmake``), or ``debian/rules override_dh_auto_test[-arch]``. An
    override is run the way dh runs it, with those options in DH_INTERNAL_OPTIONS so that
    the ``dh_auto_test`` inside it sees them too. "" when the build has no test step.
    """
    lines = _PLANNED.findall(plan)
    options: list[str] = []
    for line in lines:
        words = shlex.split(line)
        if words[0].startswith("dh_"):
            options = words[1:]
            break
    script = []
    for line in lines:
        words = shlex.split(line)
        if words[0] == "dh_auto_test":
            script.append(line)
        elif words[:1] == ["debian/rules"] and words[1].startswith("override_dh_auto_test"):
            internal = shlex.quote("\x1e".join(options))
            script.append(
                f"DH_INTERNAL_OPTIONS={internal} DH_INTERNAL_OVERRIDE=dh_auto_test {line}"
            )
    return "\n".join(script)


def run_tests(
    variant: VariantBuild,
    progress: Progress = lambda level, what: None,
    clean: CleanRoot | None = None,
    jobs: int | None = None,
) -> None:
    """Run the package's own tests in the tree of a level built with nocheck, in place.

    This is what lets a level be measured before its test suite runs, and the suite run
    only for the levels worth shipping (a package's tests can take many times its build):
    the tests run on the very build whose packages were measured and will be shipped. dh
    is asked for its plan (DH_NO_ACT) and the test step of that plan is run, sandboxed like
    the build, with the build's flags and without nocheck. The outcome is recorded in
    ``variant`` as a build's would be: ``tests_passed``, ``failure``, ``tests_tail``.
    """
    if variant.tests_run or variant.tree is None or variant.private is None:
        return
    tree, directory, log, private = variant.tree, variant.directory, variant.log, variant.private
    attempts_log = private / "network-attempts.jsonl"
    env = flags_environment(variant.flags, jobs or variant.jobs, dict(os.environ))
    env["DEB_BUILD_OPTIONS"] = " ".join(
        o for o in env["DEB_BUILD_OPTIONS"].split() if o != "nocheck"
    )
    target = "build" if variant.level == BASELINE else "build-arch"
    limits = sandbox.current_limits()
    attempts_fd = sandbox.open_attempts(attempts_log)
    progress(variant.level, "tests")
    start = time.monotonic()
    try:
        plan_log = private / "dh-plan.log"
        plan_log.write_text("")
        jail, jail_env = _jail(
            ["env", "DH_NO_ACT=1", "debian/rules", target],
            env, directory, tree, private, attempts_fd, clean,
        )  # fmt: skip
        status = _run_logged(
            jail, tree, jail_env, plan_log, lambda step: None, threading.Event(), directory, limits
        )
        plan = plan_log.read_text(errors="replace")
        script = test_script(plan)
        with open(log, "a") as f:
            f.write(f"\n# deepdeb: the package's tests, run after measuring:\n{script}\n")
            if status != 0:
                f.write(plan)
                variant.failure = f"dh could not plan the tests at {variant.level}"
        if script and status == 0:
            body = f'set -e\neval "$(dpkg-buildflags --export=sh)"\n{script}\n'
            jail, jail_env = _jail(
                ["sh", "-c", body], env, directory, tree, private, attempts_fd, clean
            )
            with building():
                status = _run_logged(
                    jail, tree, jail_env, log, lambda step: None, threading.Event(),
                    directory, limits,
                )  # fmt: skip
    except _OutOfDisk as e:
        status, variant.failure = 1, f"the package's tests were stopped: {e}"
    finally:
        os.close(attempts_fd)
    variant.tests_run = True
    variant.test_seconds = round(time.monotonic() - start, 1)
    variant.seconds += variant.test_seconds
    variant.network_attempts = sandbox.read_attempts(attempts_log)
    if status != 0:
        variant.tests_passed = False
        variant.failure = variant.failure or describe_failure(
            variant.level, tail(log, 400), in_tests=True
        )
        variant.tests_tail = tail(log)
    progress(variant.level, "done" if variant.tests_passed else "tests failed")


def check_flags_applied(variant: VariantBuild, scratch: Path) -> None:
    """Prove from the binaries that ``-march=<level>`` reached the compiler.

    Every rebuilt level is compiled with ``-mneeded``, so each shared library built from
    C, C++ or Fortran carries an "x86 ISA needed" property naming the level. A library
    without it was compiled without the flags: the package's build system ignores
    dpkg-buildflags, and a "variant" would silently be the baseline again.
    """
    if variant.level == BASELINE or not variant.tests_passed or not variant.built:
        return
    missing = []
    libraries = 0
    for name, deb in variant.debs.items():
        root = extract(deb, scratch / name)
        for path in elf_files(root):
            info = read_elf(path)
            if not info.is_shared_library:
                continue
            libraries += 1
            if info.isa_needed != variant.level:
                rel = path.relative_to(root)
                missing.append(f"{name}: /{rel} (ISA needed: {info.isa_needed})")
    if missing:
        raise FlagsNotAppliedError(
            f"level {variant.level}: the flags '{variant.flags}' did not reach the compiler "
            f"for {len(missing)} of {libraries} shared libraries (no {variant.level} ISA "
            "marker):\n  " + "\n  ".join(missing) + "\nThe build system probably ignores "
            f"dpkg-buildflags (CFLAGS/CXXFLAGS). Log: {variant.log}"
        )
