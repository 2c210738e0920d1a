"""The build sandbox: no network, a scrubbed environment, a read-only system.

Recipes are untrusted code, and a Debian build must not use the network. Every build runs
under bubblewrap in new network, mount, PID, IPC and UTS namespaces:

* the network namespace has loopback only; inside it ``netguard.py`` runs an HTTP/CONNECT
  proxy (set through ``http_proxy``/``https_proxy``, both cases) and a DNS stub that
  record every attempt and refuse it, so a build that *tried* to download is visible even
  when it went on without the download;
* the whole filesystem is mounted read-only except the build's own directory and private
  ``/tmp`` and ``/var/tmp``; HOME is an empty read-only directory, and the host's
  ``~/.netrc``, ``~/.gitconfig``, ``~/.ssh``, pip/npm/cargo configuration are hidden;
* the environment is rebuilt from a short allow-list, so no host ``PIP_*``, proxy or
  token variables leak in;
* the PID namespace ends with the build: nothing it started survives it.

There is no switch to run a recipe's build with the network.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

from .errors import DeepdebError

# Variables a build may inherit; everything else is dropped.
_KEEP = ("PATH", "LANG", "LC_ALL", "TERM", "SOURCE_DATE_EPOCH", "TZ")
_KEEP_PREFIXES = ("DEB_", "DH_", "DPKG_")
# Per-user and system configuration that would change what a build fetches or sends.
_HIDDEN_HOME = (
    ".netrc",
    ".gitconfig",
    ".git-credentials",
    ".ssh",
    ".pip",
    ".config/pip",
    ".npmrc",
    ".cargo/config",
    ".cargo/config.toml",
    ".cargo/credentials",
    ".cargo/credentials.toml",
    ".docker",
    ".aws",
    ".pypirc",
    ".wgetrc",
    ".curlrc",
    ".config/git",
)
_HIDDEN_SYSTEM = (
    "/etc/pip.conf",
    "/etc/xdg/pip",
    "/etc/npmrc",
    "/etc/gitconfig",
    "/etc/wgetrc",
    "/usr/etc/npmrc",
)


# What every sandbox shares: no network but loopback, own PID and IPC namespaces, the
# host's filesystem read-only, and the whole tree of processes killed with its parent.
_BWRAP_BASE = (
    "bwrap", "--unshare-net", "--unshare-pid", "--unshare-ipc", "--die-with-parent",
    "--new-session", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
)  # fmt: skip


@dataclass(frozen=True)
class NetworkAttempt:
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
        }[self.kind]


def available() -> bool:
    return shutil.which("bwrap") is not None


def home(writable: Path) -> Path:
    """The sandbox's HOME: an empty directory that the build cannot write to."""
    return writable / ".deepdeb-empty"


def scrubbed_env(env: Mapping[str, str], home: Path, tmp: Path) -> dict[str, str]:
    """The environment a sandboxed build starts from (netguard adds the proxy)."""
    clean = {k: v for k, v in env.items() if k in _KEEP or k.startswith(_KEEP_PREFIXES)}
    clean.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin")
    clean.update(HOME=str(home), TMPDIR=str(tmp), LC_ALL=env.get("LC_ALL", "C.UTF-8"))
    return clean


def _python() -> str:
    """A Python for netguard: the system one, whose path stays visible in the sandbox."""
    for candidate in ("/usr/bin/python3", sys.executable):
        if os.access(candidate, os.X_OK):
            return candidate
    raise DeepdebError("no python3 to run the sandbox's network guard")


# The sandbox's resolver: netguard's DNS stub, which records and refuses every lookup.
_RESOLV = "nameserver 127.0.0.1\noptions attempts:1 timeout:1\n"


def _require_bwrap() -> None:
    if not available():
        raise DeepdebError(
            "bubblewrap (bwrap) is required to run builds without network: apt-get install "
            "bubblewrap"
        )


def _netguard(writable: Path, attempts_log: Path) -> list[str]:
    """The command prefix that runs a command under netguard (written into ``writable``)."""
    guard = writable / ".deepdeb-netguard.py"
    guard.write_text(resources.files("deepdeb").joinpath("netguard.py").read_text())
    return [_python(), "-I", str(guard), str(attempts_log), "--"]


def wrap(command: Sequence[str], writable: Path, cwd: Path, attempts_log: Path) -> list[str]:
    """The bwrap command line that runs ``command`` sandboxed, ``writable`` its only
    writable directory. Call :func:`scrubbed_env` for the environment to pass."""
    _require_bwrap()
    guard = _netguard(writable, attempts_log)
    empty = home(writable)
    empty.mkdir(exist_ok=True)
    # Hidden files are covered by an empty regular file: a device node such as /dev/null
    # is unreadable on the nodev bind mount, which some tools (git) treat as fatal.
    empty_file = writable / ".deepdeb-empty-file"
    empty_file.write_text("")
    resolv = writable / ".deepdeb-resolv.conf"
    resolv.write_text(_RESOLV)
    args = [
        *_BWRAP_BASE, "--unshare-uts", "--unshare-cgroup-try",
        "--tmpfs", "/tmp", "--tmpfs", "/var/tmp",
        "--ro-bind", str(resolv), "/etc/resolv.conf",
    ]  # fmt: skip
    real_home = Path(os.path.expanduser("~"))
    for hidden in [*(str(real_home / h) for h in _HIDDEN_HOME), *_HIDDEN_SYSTEM]:
        if os.path.isdir(hidden) and not os.path.islink(hidden):
            args += ["--ro-bind", str(empty), hidden]
        elif os.path.lexists(hidden):
            args += ["--ro-bind", str(empty_file), hidden]
    args += ["--bind", str(writable), str(writable), "--ro-bind", str(empty), str(empty)]
    return [*args, "--chdir", str(cwd), *guard, *command]


def wrap_chroot(
    command: Sequence[str], root: Path, writable: Path, cwd: Path, attempts_log: Path
) -> list[str]:
    """Like :func:`wrap`, but the build runs in the clean-room chroot ``root``.

    netguard runs from the host's Python in the sandbox's network namespace and the build
    enters the chroot below it, so the recording proxy applies unchanged. The chroot is
    read-only; ``writable`` (a directory inside it) is the build's only writable place.
    ``cwd`` and the environment's paths are as seen inside the chroot.
    """
    _require_bwrap()
    guard = _netguard(writable, attempts_log)
    home(writable).mkdir(exist_ok=True)
    (root / "etc" / "resolv.conf").write_text(_RESOLV)
    r = str(root)
    args = [
        *_BWRAP_BASE, "--unshare-uts", "--unshare-cgroup-try", "--cap-add", "CAP_SYS_CHROOT",
        "--dev", f"{r}/dev", "--proc", f"{r}/proc",
        "--tmpfs", f"{r}/tmp", "--tmpfs", f"{r}/var/tmp",
        "--bind", str(writable), str(writable),
    ]  # fmt: skip
    enter = ["chroot", r, "/bin/sh", "-c", 'cd "$0" && exec "$@"', str(cwd), *command]
    return [*args, *guard, *enter]


def wrap_benchmark(command: Sequence[str], scratch: Path, cwd: Path) -> list[str]:
    """bwrap around a benchmark run: no network, read-only system, ``scratch`` writable.

    ``/tmp`` stays the host's, read-only: the unpacked variants being measured live there.

    Lighter than the build sandbox (no proxy to start: about 3 ms per run, measured), so
    that what is timed is the benchmark; ``scratch`` persists across runs so that inputs a
    benchmark generates once are reused rather than timed again.
    """
    _require_bwrap()
    scratch.mkdir(parents=True, exist_ok=True)
    return [*_BWRAP_BASE, "--bind", str(scratch), str(scratch), "--chdir", str(cwd), *command]


def read_attempts(log: Path) -> list[NetworkAttempt]:
    """The attempts netguard recorded, in order, without repeats."""
    try:
        lines = log.read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    seen: list[NetworkAttempt] = []
    for line in lines:
        data = json.loads(line)
        attempt = NetworkAttempt(data["kind"], data["host"], int(data["port"]), data.get("url"))
        if attempt not in seen:
            seen.append(attempt)
    return seen


def attempts_to_json(attempts: Sequence[NetworkAttempt]) -> list[dict[str, object]]:
    return [asdict(a) for a in attempts]
