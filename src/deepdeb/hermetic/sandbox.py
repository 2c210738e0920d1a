"""The sandbox: no network, no privileges, and only what the job needs in sight.

Recipes are untrusted code, and so are the packages built from them. Every build, every
benchmark run and every program deepdeb runs from a built package runs:

* as the unprivileged user ``deepdeb-build`` (deepdeb itself runs as root and gives each
  job a directory of its own, owned by that user), with no capabilities, ``no_new_privs``
  (setuid programs and file capabilities do nothing), no core dumps and limits on
  processes and file size (:class:`Limits`);
* under bubblewrap, in new mount, PID, IPC, UTS, cgroup and network namespaces: loopback
  only, where ``netguard.py`` runs a proxy and a DNS stub that record every attempt and
  refuse it (its log is a file deepdeb opened, handed over as a descriptor: the build
  can neither forge nor erase it);
* on a filesystem made from an allow-list: ``/usr`` (and the merged-/usr links), ``/etc``
  and ``/var/lib`` read-only, where the usual file permissions keep ``/etc/shadow`` and
  the like out of reach of an unprivileged user; a private ``/tmp``, ``/var/tmp`` and
  ``/run`` of bounded size; the job's own directory, the only writable place; an empty,
  read-only HOME. The invoking user's home, ``/root``, ``/home``, ``/srv``, ``/opt``,
  other builds' work directories, deepdeb's cache and keys, host sockets: not there;
* with an environment rebuilt from an allow-list.

bubblewrap itself is started by root, keeping only the capabilities the trusted code at
the top of the sandbox needs: netguard binds port 53 and, like the clean room's
``chroot``, hands over to the unprivileged user with ``setpriv``. Nothing of the recipe
runs before that. There is no switch to run a recipe's build with the network.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import re
import shutil
import signal
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from deepdeb.errors import SandboxError

BUILD_USER = "deepdeb-build"

# Variables a build may inherit; everything else is dropped.
_KEEP = ("PATH", "LANG", "LC_ALL", "TERM", "SOURCE_DATE_EPOCH", "TZ")
_KEEP_PREFIXES = ("DEB_", "DH_", "DPKG_")
# System configuration that would change what a build fetches or sends.
_HIDDEN_SYSTEM = (
    "/etc/pip.conf",
    "/etc/xdg/pip",
    "/etc/npmrc",
    "/etc/gitconfig",
    "/etc/wgetrc",
)
# What the trusted top of a sandbox needs, and nothing more: netguard binds the DNS port;
# setpriv drops to the build user (and clears the bounding set); the clean room chroots.
_TOP_CAPS = ("CAP_NET_BIND_SERVICE", "CAP_SETUID", "CAP_SETGID", "CAP_SETPCAP", "CAP_SYS_CHROOT")


@dataclass(frozen=True)
class Limits:
    """Resource limits of one sandboxed job. Each can be set with an environment variable
    ``DEEPDEB_LIMIT_<NAME>`` (sizes take K, M, G suffixes): e.g. a build that needs more
    than 64 GiB of disk, or tests that want a small limit to hit."""

    processes: int = 4096  # RLIMIT_NPROC of the build user: a fork bomb stops here
    file_bytes: int = 64 << 30  # RLIMIT_FSIZE: the largest file a job may write
    tmp_bytes: int = 2 << 30  # each of /tmp and /var/tmp (RAM-backed)
    disk_bytes: int = 64 << 30  # what one build may put in its directory
    free_disk_bytes: int = 2 << 30  # a build is stopped when less is left on its disk
    memory_bytes: int = 0  # all jobs of a run together (cgroup); 0: 3/4 of the machine's


def _size(text: str) -> int:
    units = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    match = re.fullmatch(r"\s*(\d+)\s*([KMGT]?)i?B?\s*", text, re.I)
    if match is None:
        raise ValueError(text)
    return int(match.group(1)) * units[match.group(2).upper()]


def current_limits() -> Limits:
    """The limits in force: the defaults, with any ``DEEPDEB_LIMIT_*`` variable applied."""
    values: dict[str, int] = {}
    for name in Limits.__dataclass_fields__:
        raw = os.environ.get(f"DEEPDEB_LIMIT_{name.upper()}")
        if raw is None:
            continue
        try:
            values[name] = _size(raw)
        except ValueError:
            raise SandboxError(
                f"DEEPDEB_LIMIT_{name.upper()}={raw!r}: expected a number, e.g. 4096 or 20G"
            ) from None
    return Limits(**values)


@dataclass(frozen=True)
class NetworkAttempt:
    """One attempt of a sandboxed job to reach the network, as netguard recorded and refused it."""

    kind: str  # "dns", "http" or "connect"
    host: str
    port: int
    url: str | None

    def __str__(self) -> str:
        what = self.url or f"{self.host}:{self.port}"
        return {
            "dns": f"DNS lookup of {self.host}",
            "connect": f"HTTPS/CONNECT to {what}",
            "http": f"HTTP request {what}",
        }.get(self.kind, f"{self.kind} {what}")


@dataclass(frozen=True)
class Identity:
    """The uid and gid of the unprivileged build user that sandboxed jobs run as."""

    uid: int
    gid: int


def available() -> bool:
    """Whether jobs can be sandboxed here: that needs bubblewrap (``bwrap``)."""
    return shutil.which("bwrap") is not None


def identity() -> Identity:
    """The unprivileged user jobs run as; deepdeb must run as root to switch to it."""
    if os.geteuid() != 0:
        raise SandboxError(
            "deepdeb runs builds as the unprivileged user deepdeb-build and must itself run "
            "as root to switch to it: run it as root, e.g. with sudo"
        )
    try:
        entry = pwd.getpwnam(BUILD_USER)
    except KeyError:
        raise SandboxError(
            f"there is no user {BUILD_USER} to run builds as: run scripts/setup, or "
            f"adduser --system --group --no-create-home --home /nonexistent {BUILD_USER}"
        ) from None
    if entry.pw_uid == 0 or entry.pw_gid == 0:
        raise SandboxError(f"user {BUILD_USER} must not be root (uid {entry.pw_uid})")
    return Identity(entry.pw_uid, entry.pw_gid)


def hand_over(path: Path, who: Identity | None = None) -> None:
    """Give a directory deepdeb made for a job, and everything in it, to the build user.

    Symlinks are changed themselves, never followed.
    """
    who = who or identity()
    os.lchown(path, who.uid, who.gid)
    for parent, dirs, files in os.walk(path):
        for name in [*dirs, *files]:
            os.lchown(os.path.join(parent, name), who.uid, who.gid)


def drop_privileges(limits: Limits | None = None, who: Identity | None = None) -> list[str]:
    """Command prefix that sets the limits and becomes the build user, with no
    capabilities left (ambient, inheritable or bounding) and no way to gain any."""
    who = who or identity()
    limits = limits or current_limits()
    return [
        "prlimit", f"--nproc={limits.processes}", f"--fsize={limits.file_bytes}", "--core=0",
        "--",
        "setpriv", f"--reuid={who.uid}", f"--regid={who.gid}", "--clear-groups",
        "--inh-caps=-all", "--ambient-caps=-all", "--bounding-set=-all", "--no-new-privs", "--",
    ]  # fmt: skip


def scrubbed_env(env: Mapping[str, str], home: Path, tmp: Path) -> dict[str, str]:
    """The environment a sandboxed job starts from (netguard adds the proxy)."""
    clean = {k: v for k, v in env.items() if k in _KEEP or k.startswith(_KEEP_PREFIXES)}
    clean.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin")
    clean.update(HOME=str(home), TMPDIR=str(tmp), LC_ALL=env.get("LC_ALL", "C.UTF-8"))
    return clean


def _python() -> str:
    """A Python for netguard: the system one, whose path stays visible in the sandbox."""
    for candidate in ("/usr/bin/python3", sys.executable):
        if os.access(candidate, os.X_OK):
            return candidate
    raise SandboxError("no python3 to run the sandbox's network guard")


# The sandbox's resolver: netguard's DNS stub, which records and refuses every lookup.
_RESOLV = "nameserver 127.0.0.1\noptions attempts:1 timeout:1\n"
HOME = "/home/deepdeb-build"  # empty and read-only in every sandbox


def _require_bwrap() -> None:
    if not available():
        raise SandboxError(
            "bubblewrap (bwrap) is required to run builds without network: apt-get install "
            "bubblewrap"
        )


def _base(caps: Sequence[str]) -> list[str]:
    """What every sandbox shares: its own namespaces (network: loopback only), a fresh
    /dev and /proc, bounded private /tmp, /var/tmp and /run, an empty read-only HOME, and
    no capability beyond ``caps`` for the trusted program at its top."""
    args = [
        "bwrap", "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
        "--unshare-cgroup-try", "--die-with-parent", "--new-session", "--cap-drop", "ALL",
    ]  # fmt: skip
    for cap in caps:
        args += ["--cap-add", cap]
    return args


def _private_dirs(prefix: str, limits: Limits) -> list[str]:
    """/dev, /proc, bounded /tmp and /var/tmp, /run and HOME below ``prefix`` ("" or a
    chroot's path)."""
    size = str(limits.tmp_bytes)
    return [
        "--dev", f"{prefix}/dev", "--proc", f"{prefix}/proc",
        "--perms", "1777", "--size", size, "--tmpfs", f"{prefix}/tmp",
        "--perms", "1777", "--size", size, "--tmpfs", f"{prefix}/var/tmp",
        "--size", "16777216", "--tmpfs", f"{prefix}/run",
        "--size", "65536", "--tmpfs", f"{prefix}{HOME}", "--remount-ro", f"{prefix}{HOME}",
    ]  # fmt: skip


def _system(empty_file: Path) -> list[str]:
    """The host system, read-only and from an allow-list."""
    args = ["--ro-bind", "/usr", "/usr", "--ro-bind", "/etc", "/etc"]
    # (bubblewrap would make /var 0700 on its own, shutting the build user out of it)
    args += ["--perms", "0755", "--dir", "/var", "--ro-bind-try", "/var/lib", "/var/lib"]
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        path = Path("/") / name
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), str(path)]
        elif path.is_dir():
            args += ["--ro-bind", str(path), str(path)]
    for hidden in _HIDDEN_SYSTEM:
        if os.path.isdir(hidden) and not os.path.islink(hidden):
            args += ["--tmpfs", hidden, "--remount-ro", hidden]
        elif os.path.lexists(hidden):
            args += ["--ro-bind", str(empty_file), hidden]
    return args


def _cgroup() -> list[str]:
    group = current_cgroup()
    return group.enter() if group is not None else []


def _parents(path: Path, made: set[Path]) -> list[str]:
    """Directories above a bind's mount point, made traversable (bubblewrap makes them
    0700, which would shut the build user out): the host's names, none of its contents."""
    args: list[str] = []
    for parent in reversed(path.parents):
        if parent in made or str(parent) in ("/", "/tmp", "/usr", "/etc", "/var"):
            continue
        made.add(parent)
        args += ["--perms", "0755", "--dir", str(parent)]
    return args


@dataclass(frozen=True)
class Jail:
    """A sandboxed command: the argument list and the descriptors it must inherit."""

    command: list[str]
    pass_fds: tuple[int, ...] = ()


def _support(private: Path) -> tuple[Path, Path, Path]:
    """Files deepdeb writes for a sandbox, outside anything the job can write: netguard,
    the resolver configuration, an empty file to hide host configuration behind."""
    private.mkdir(parents=True, exist_ok=True)
    guard = private / "netguard.py"
    guard.write_text(resources.files("deepdeb.hermetic").joinpath("netguard.py").read_text())
    resolv = private / "resolv.conf"
    resolv.write_text(_RESOLV)
    empty = private / "empty"
    empty.write_text("")
    for path in (guard, resolv, empty):
        path.chmod(0o644)
    return guard, resolv, empty


def wrap(
    command: Sequence[str],
    writable: Path,
    cwd: Path,
    attempts_fd: int,
    private: Path,
    limits: Limits | None = None,
) -> Jail:
    """A build on the host's system: ``writable`` (owned by the build user, see
    :func:`hand_over`) is the only writable directory, seen as ``/build/<its name>``;
    ``cwd`` lies in it. ``private`` is a
    directory of deepdeb's for the sandbox's support files; netguard logs network attempts
    to ``attempts_fd``. Call :func:`scrubbed_env` for the environment to pass."""
    _require_bwrap()
    limits = limits or current_limits()
    guard, resolv, empty = _support(private)
    inside = f"/build/{writable.name}"  # the same path for every build, as in the clean room
    args = [*_base(_TOP_CAPS), *_system(empty), *_private_dirs("", limits)]
    args += ["--ro-bind", str(resolv), "/etc/resolv.conf", "--ro-bind", str(guard), "/.netguard"]
    args += ["--perms", "0755", "--dir", "/build", "--bind", str(writable), inside]
    args += ["--chdir", f"{inside}/{cwd.relative_to(writable)}".rstrip("/.")]
    top = [_python(), "-I", "/.netguard", "--attempts-fd", str(attempts_fd), "--"]
    return Jail([*_cgroup(), *args, *top, *drop_privileges(limits), *command], (attempts_fd,))


def wrap_chroot(
    command: Sequence[str],
    root: Path,
    writable: Path,
    cwd: Path,
    attempts_fd: int,
    private: Path,
    limits: Limits | None = None,
) -> Jail:
    """Like :func:`wrap`, but the build runs in the clean-room chroot ``root``.

    netguard runs from the host's Python in the sandbox's network namespace; below it the
    build enters the chroot (read-only but for ``writable``, a directory inside it) and
    becomes the build user there. ``cwd`` and the environment's paths are as seen inside.
    """
    _require_bwrap()
    limits = limits or current_limits()
    guard, _, empty = _support(private)
    (root / "etc" / "resolv.conf").write_text(_RESOLV)
    r = str(root)
    args = [*_base(_TOP_CAPS), *_system(empty), "--ro-bind", r, r]
    args += [*_private_dirs(r, limits), "--bind", str(writable), str(writable)]
    args += ["--ro-bind", str(guard), "/.netguard"]
    top = [_python(), "-I", "/.netguard", "--attempts-fd", str(attempts_fd), "--"]
    drop = drop_privileges(limits)
    enter = ["chroot", r, *drop[drop.index("setpriv") :]]  # prlimit before chroot (host's)
    inside = ["/bin/sh", "-c", 'cd "$0" && exec "$@"', str(cwd), *command]
    jailed = [*_cgroup(), *args, *top, *drop[: drop.index("setpriv")], *enter, *inside]
    return Jail(jailed, (attempts_fd,))


def wrap_benchmark(
    command: Sequence[str],
    scratch: Path,
    cwd: Path,
    visible: Sequence[Path],
    private: Path,
    limits: Limits | None = None,
) -> Jail:
    """A benchmark run: no network, the host system read-only, the unpacked variants and
    the recipe's directory (``visible``, ``cwd``) read-only, ``scratch`` (owned by the
    build user) writable. No netguard to start: about 3 ms per run, the same for every
    level. ``scratch`` persists across runs, so inputs a benchmark makes once are reused."""
    _require_bwrap()
    limits = limits or current_limits()
    empty = private / "empty"
    if not empty.exists():
        _support(private)
    args = [*_base(_TOP_CAPS[1:4]), *_system(empty), *_private_dirs("", limits)]
    made: set[Path] = set()
    for path in [*visible, cwd, scratch]:
        args += _parents(path, made)
    for path in visible:
        args += ["--ro-bind", str(path), str(path)]
    args += ["--ro-bind", str(cwd), str(cwd), "--bind", str(scratch), str(scratch)]
    return Jail([*_cgroup(), *args, "--chdir", str(cwd), *drop_privileges(limits), *command])


def open_attempts(path: Path) -> int:
    """A file for netguard's records, deepdeb's own: the descriptor to hand over."""
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)


MAX_ATTEMPTS_BYTES = 4 << 20


def read_attempts(log: Path) -> list[NetworkAttempt]:
    """The attempts netguard recorded, in order, without repeats; lines that are not
    netguard's records are skipped, and at most the first 4 MiB are read."""
    try:
        with open(log, "rb") as f:
            text = f.read(MAX_ATTEMPTS_BYTES).decode("utf-8", "replace")
    except OSError:
        return []
    seen: list[NetworkAttempt] = []
    for line in text.splitlines():
        try:
            data = json.loads(line)
            attempt = NetworkAttempt(
                str(data["kind"]), str(data["host"]), int(data["port"]),
                None if data.get("url") is None else str(data["url"]),
            )  # fmt: skip
        except (ValueError, KeyError, TypeError):
            continue
        if attempt not in seen:
            seen.append(attempt)
    return seen


def _children(pid: int) -> list[int]:
    """Direct children of a process, from /proc."""
    found = []
    for entry in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = entry.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(entry.parent.name))
    return found


def stop(pid: int) -> None:
    """Stop a sandboxed job started in its own session: its PID namespace and all.

    bubblewrap's process inside the new PID namespace is that namespace's init, which a
    SIGTERM from outside does not stop and which survives its parent; SIGKILL to it ends
    every process in the namespace. Then the job's own process group goes.
    """
    for child in _children(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


# --- memory and processes of the whole run: a cgroup, where the kernel lets deepdeb make one


@dataclass(frozen=True)
class CGroup:
    """The cgroup every sandboxed job of this run joins: a memory cap for all of them
    together (the machine keeps memory for itself), and a process cap that does not depend
    on the user's other processes. cgroup v2 (Debian 12's default) or v1's memory and pids
    controllers."""

    directories: tuple[Path, ...]
    version: int

    def enter(self) -> list[str]:
        """Prefix that moves the job into the cgroup before anything of it runs."""
        files = " ".join(f'"{d}/cgroup.procs"' for d in self.directories)
        return ["sh", "-c", f'for f in {files}; do echo $$ > "$f" || exit 125; done; exec "$@"',
                "deepdeb-cgroup"]  # fmt: skip

    def memory_limit(self) -> int:
        name = "memory.max" if self.version == 2 else "memory.limit_in_bytes"
        try:
            return int((self.directories[0] / name).read_text())
        except (OSError, ValueError):
            return 0

    def out_of_memory(self) -> bool:
        """Did the kernel kill something in it for lack of memory?"""
        for directory in self.directories:
            events = directory / ("memory.events" if self.version == 2 else "memory.failcnt")
            with contextlib.suppress(OSError, ValueError):
                text = events.read_text()
                if self.version == 2:
                    counts = dict(line.split() for line in text.splitlines() if " " in line)
                    return int(counts.get("oom_kill", "0")) > 0
                return int(text) > 0
        return False


_GROUP: list[CGroup] = []  # the current run's, if it has one


def _own_cgroup(controller: str) -> str | None:
    """This process's cgroup path for a v1 controller ("" for v2), from /proc/self/cgroup."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        hierarchy, controllers, path = line.split(":", 2)
        if (controller == "" and hierarchy == "0") or controller in controllers.split(","):
            return path
    return None


def _memory_total() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return 0


def make_cgroup(limits: Limits) -> CGroup | None:
    """A new cgroup with the run's memory and process limits; None where the kernel does
    not let deepdeb make one (then only the per-user process limit holds)."""
    memory = limits.memory_bytes or _memory_total() * 3 // 4
    name = f"deepdeb-{os.getpid()}-{time.monotonic_ns()}"
    made: list[Path] = []
    try:
        v2 = Path("/sys/fs/cgroup/cgroup.controllers")
        if v2.is_file() and {"memory", "pids"} <= set(v2.read_text().split()):
            own = _own_cgroup("") or "/"
            directory = Path("/sys/fs/cgroup") / own.lstrip("/") / name
            directory.mkdir()
            made.append(directory)
            (directory / "memory.max").write_text(str(memory))
            (directory / "pids.max").write_text(str(limits.processes))
            return CGroup((directory,), 2)
        mem, pids = _own_cgroup("memory"), _own_cgroup("pids")
        if mem is None or pids is None:
            return None
        memory_dir = Path("/sys/fs/cgroup/memory") / mem.lstrip("/") / name
        pids_dir = Path("/sys/fs/cgroup/pids") / pids.lstrip("/") / name
        for directory in (memory_dir, pids_dir):
            directory.mkdir()
            made.append(directory)
        (memory_dir / "memory.limit_in_bytes").write_text(str(memory))
        (pids_dir / "pids.max").write_text(str(limits.processes))
        return CGroup((memory_dir, pids_dir), 1)
    except OSError:
        for directory in reversed(made):
            with contextlib.suppress(OSError):
                directory.rmdir()
        return None


@contextlib.contextmanager
def run_limits() -> Iterator[CGroup | None]:
    """Every job started inside joins one cgroup with the run's limits; removed after."""
    group = make_cgroup(current_limits())
    if group is not None:
        _GROUP.append(group)
    try:
        yield group
    finally:
        if group is not None:
            _GROUP.remove(group)
            remove_cgroup(group)


def current_cgroup() -> CGroup | None:
    """The cgroup of the innermost :func:`run_limits` now open (None: none, or no cgroup)."""
    return _GROUP[-1] if _GROUP else None


def remove_cgroup(group: CGroup) -> None:
    """Remove the cgroup's directories, waiting up to 5 seconds each for its last jobs to
    exit (the kernel refuses to remove a cgroup with processes in it)."""
    for directory in group.directories:
        for _ in range(50):  # empty once every job has ended: the last may still exit
            try:
                directory.rmdir()
                break
            except FileNotFoundError:
                break
            except OSError:
                time.sleep(0.1)
