"""The clean-room backend: builds in a bookworm chroot that holds only what the package declares.

A build on the host sees every package installed there, so an undeclared build-dependency
goes unnoticed until Debian's build daemons fail on it. The clean room works the way they do:

1. a ``buildd`` chroot (essential packages, apt, build-essential) is made once by
   mmdebstrap from Debian's archive and cached as a tarball; a sidecar JSON records its
   SHA-256, so a corrupt or half-written tarball is detected and made again;
2. for each build the tarball is unpacked into the work directory and the source's
   Build-Depends are installed into it by apt (``apt-get build-dep``), with the network;
3. the builds then run inside it under the same sandbox as host builds: no network (the
   recording proxy still runs, from the host's Python, outside the chroot but inside the
   sandbox's network namespace), the chroot read-only except the build's own directory.

Downloaded .debs are kept in deepdeb's cache, so a chroot's packages are fetched once.
"""

from __future__ import annotations

import fcntl
import grp
import hashlib
import json
import os
import pwd
import re
import shutil
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from deepdeb.debian.target import SUITE
from deepdeb.errors import ChrootError, MissingBuildDepsError
from deepdeb.hermetic import sandbox
from deepdeb.hermetic.sandbox import BUILD_USER
from deepdeb.hermetic.sandbox import HOME as SANDBOX_HOME
from deepdeb.util import atomic_write_text, cache_root, run, sha256_file

VARIANT = "buildd"
# Roots where built packages are installed and checked (verify, sanity): essential
# packages and apt, binary indices only. Half the size of a build chroot, so quicker to
# unpack for every check.
RUNTIME_VARIANT = "apt"
APT_SOURCES = (Path("/etc/apt/sources.list"), Path("/etc/apt/sources.list.d"))


@dataclass(frozen=True)
class ChrootSpec:
    """What a cached chroot is made from; its digest names the tarball."""

    suite: str
    architecture: str
    variant: str
    sources: tuple[str, ...]  # the apt sources files' contents, in order
    include: tuple[str, ...] = ()  # packages beyond the variant's

    def key(self) -> str:
        text = json.dumps(asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Chroot:
    """A cached chroot tarball, whole (its SHA-256 matches its sidecar), and its spec."""

    tarball: Path
    sha256: str
    spec: ChrootSpec
    created_seconds: float | None  # set when this run made it


@dataclass
class CleanRoot:
    """A chroot unpacked for one build, its build-dependencies installed."""

    path: Path
    chroot: Chroot
    prepare_seconds: float
    installed: dict[str, str] = field(default_factory=dict)  # package -> version

    def build_dir(self, level: str) -> Path:
        """A level's directory, seen from the host; ``/build/<level>`` inside."""
        return self.path / "build" / level

    def inside(self, path: Path) -> str:
        """The path a host path under the chroot has inside it."""
        return "/" + path.relative_to(self.path).as_posix()


def available() -> bool:
    """Whether clean-room builds can run here: chroots are made by mmdebstrap."""
    return shutil.which("mmdebstrap") is not None


def source_files() -> list[Path]:
    """The host's active apt sources: the chroot uses the same archive (and mirror)."""
    files = [APT_SOURCES[0]] if APT_SOURCES[0].is_file() else []
    if APT_SOURCES[1].is_dir():
        files += sorted(
            p for p in APT_SOURCES[1].iterdir() if p.suffix in (".list", ".sources") and p.is_file()
        )
    return [f for f in files if f.read_text().strip()]


def default_spec() -> ChrootSpec:
    """The build chroot: bookworm's buildd variant from the host's apt sources, for the
    host's architecture."""
    arch = run(["dpkg", "--print-architecture"]).stdout.strip()
    sources = tuple(f.read_text() for f in source_files())
    # Builds run as an unprivileged user: fakeroot stands in for root where a package's
    # Rules-Requires-Root asks for it, as on Debian's build daemons.
    return ChrootSpec(SUITE, arch, VARIANT, sources, ("fakeroot",))


def binary_only(sources: str) -> str:
    """An apt sources text without its deb-src entries (one-line or deb822 format)."""
    if re.search(r"^Types:", sources, re.M):
        text = re.sub(r"^Types:(.*)$", lambda m: "Types:" + m.group(1).replace(" deb-src", ""),
                      sources, flags=re.M)  # fmt: skip
        # a stanza that only had deb-src is left without a type: drop it
        stanzas = [s for s in re.split(r"\n\s*\n", text) if not re.search(r"^Types:\s*$", s, re.M)]
        return "\n\n".join(st.strip("\n") for st in stanzas) + "\n"
    return "".join(line for line in sources.splitlines(True) if not line.startswith("deb-src"))


def runtime_spec() -> ChrootSpec:
    """The spec of the roots packages are installed into to be checked."""
    spec = default_spec()
    return ChrootSpec(spec.suite, spec.architecture, RUNTIME_VARIANT,
                      tuple(binary_only(t) for t in spec.sources), ())  # fmt: skip


def runtime_chroot() -> Chroot:
    """The cached tarball of :func:`runtime_spec` (made on first use)."""
    return ensure_chroot(runtime_spec())


def chroot_dir() -> Path:
    """Where chroot tarballs are cached, with their sidecar JSON and lock files."""
    return cache_root() / "chroots"


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Serialise chroot creation between concurrent deepdeb runs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _valid(tarball: Path, meta: Path) -> str | None:
    """The tarball's SHA-256 if it is whole (matches its sidecar), else None."""
    try:
        recorded = json.loads(meta.read_text())
        if tarball.stat().st_size != recorded["size"]:
            return None
        digest = sha256_file(tarball)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return digest if digest == recorded["sha256"] else None


def ensure_chroot(spec: ChrootSpec | None = None) -> Chroot:
    """The cached chroot tarball for ``spec``, made (atomically) if missing or corrupt."""
    if not available():
        raise ChrootError("the clean-room backend needs mmdebstrap: apt-get install mmdebstrap")
    spec = spec or default_spec()
    if not spec.sources:
        raise ChrootError("no apt sources on this machine to make a chroot from")
    name = f"{spec.suite}-{spec.architecture}-{spec.variant}-{spec.key()}"
    tarball = chroot_dir() / f"{name}.tar"
    meta = chroot_dir() / f"{name}.json"
    with _locked(chroot_dir() / f"{name}.lock"):
        digest = _valid(tarball, meta)
        if digest:
            return Chroot(tarball, digest, spec, None)
        tarball.unlink(missing_ok=True)
        meta.unlink(missing_ok=True)
        partial = tarball.with_name(f".{tarball.name}.partial.tar")
        partial.unlink(missing_ok=True)
        # mmdebstrap takes sources files as mirrors: one-line format as .list, deb822 as
        # .sources.
        mirrors: list[str] = []
        for index, text in enumerate(spec.sources):
            suffix = ".sources" if re.search(r"^Types:", text, re.M) else ".list"
            mirror = chroot_dir() / f".{name}.{index}{suffix}"
            mirror.write_text(text)
            mirrors.append(str(mirror))
        cmd = [
            "mmdebstrap",
            f"--variant={spec.variant}",
            f"--architectures={spec.architecture}",
            "--format=tar",
            "--skip=cleanup/apt/lists",  # builds install their dependencies without an update
            *(f"--include={p}" for p in spec.include),
            spec.suite,
            str(partial),
            *mirrors,
        ]
        start = time.monotonic()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        seconds = time.monotonic() - start
        for used in mirrors:
            Path(used).unlink(missing_ok=True)
        if proc.returncode != 0 or not partial.is_file():
            partial.unlink(missing_ok=True)
            raise ChrootError(
                f"mmdebstrap could not make the {spec.suite} chroot:\n{proc.stderr.strip()[-2000:]}"
            )
        digest = sha256_file(partial)
        os.replace(partial, tarball)
        record = {
            "sha256": digest,
            "size": tarball.stat().st_size,
            "spec": asdict(spec),
            "mmdebstrap": _version("mmdebstrap"),
            "seconds": round(seconds, 1),
        }
        atomic_write_text(meta, json.dumps(record, indent=2) + "\n")
        return Chroot(tarball, digest, spec, seconds)


def _version(package: str) -> str:
    proc = run(["dpkg-query", "-W", "-f", "${Version}", package], check=False)
    return proc.stdout.strip() if proc.returncode == 0 else "unknown"


def require_root(what: str) -> None:
    """Roots are set up by apt and dpkg as root (they chown files to system users)."""
    if os.geteuid() != 0:
        raise ChrootError(f"{what} needs root (apt and dpkg run inside a bookworm root): run "
                          "deepdeb as root, e.g. with sudo")  # fmt: skip


def unpack_chroot(chroot: Chroot, dest: Path) -> None:
    """Unpack the tarball; device nodes are left out (bwrap provides /dev)."""
    require_root("installing packages into a clean root")
    dest.mkdir(parents=True)
    run(["tar", "-xf", chroot.tarball, "-C", dest, "--numeric-owner", "--exclude=./dev/*"])


# What apt and dpkg need as root in a root (files owned by others, dropping to _apt,
# file capabilities set by postinst scripts). Not there: mounting, device nodes, raw I/O,
# modules, ptrace, opening files by handle: a maintainer script cannot reach the host.
ROOT_CAPS = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_SETUID", "CAP_SETGID",
    "CAP_SETPCAP", "CAP_SETFCAP", "CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT",
)  # fmt: skip


def _bwrap_root(
    root: Path, binds: Sequence[tuple[str, str, str]], caps: Sequence[str]
) -> list[str]:
    """bwrap around a command run in the unpacked chroot ``root``."""
    args = ["bwrap", "--bind", str(root), "/", "--dev", "/dev", "--proc", "/proc"]
    # /tmp must be world-writable: apt drops to the _apt user to verify signatures.
    args += ["--unshare-pid", "--unshare-ipc", "--unshare-uts", "--die-with-parent"]
    args += ["--new-session", "--perms", "1777", "--tmpfs", "/tmp", "--cap-drop", "ALL"]
    for cap in caps:
        args += ["--cap-add", cap]
    for kind, src, dest in binds:
        args += [kind, src, dest]
    return args


def in_root(
    root: Path,
    command: Sequence[str],
    binds: Sequence[tuple[str, str, str]] = (),
    env: dict[str, str] | None = None,
    check: bool = True,
    network: bool = True,
    as_build_user: bool = False,
) -> subprocess.CompletedProcess[str]:
    """Run ``command`` inside the unpacked chroot ``root``: as root with only
    :data:`ROOT_CAPS` (apt, dpkg, ldconfig), or, ``as_build_user``, as the unprivileged
    build user with no capabilities at all (anything that runs code of built packages).
    With the network unless ``network`` is false.

    Builds use the sandbox instead (:func:`deepdeb.hermetic.sandbox.wrap_chroot`).
    """
    resolv = root / "etc" / "resolv.conf"
    if resolv.is_symlink() or not resolv.exists():
        resolv.unlink(missing_ok=True)
        resolv.write_text("")
    base = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "DEBIAN_FRONTEND": "noninteractive",
        "LC_ALL": "C.UTF-8",
        "HOME": "/tmp" if as_build_user else "/root",
    }
    all_binds = [("--ro-bind", "/etc/resolv.conf", "/etc/resolv.conf"), *binds]
    caps = ROOT_CAPS[4:7] if as_build_user else ROOT_CAPS  # setpriv needs SETUID/GID/PCAP
    jail = _bwrap_root(root, all_binds, caps) + ([] if network else ["--unshare-net"])
    if as_build_user:
        drop = sandbox.drop_privileges()
        command = [*drop[drop.index("setpriv") :], *command]
    return run([*jail, *command], env={**base, **(env or {})}, check=check)


def apt_cache_binds() -> list[tuple[str, str, str]]:
    """deepdeb's cache of downloaded .debs, bound where apt keeps them in a root (apt
    checks every cached package against the signed index before it installs it)."""
    archives = cache_root() / "apt-archives"
    (archives / "partial").mkdir(parents=True, exist_ok=True)
    return [("--bind", str(archives), "/var/cache/apt/archives")]


def deb_binds(debs: Sequence[Path]) -> list[tuple[str, str, str]]:
    """Each package file bound read-only at ``/deepdeb-debs/<name>`` (no copy is made)."""
    return [("--ro-bind", str(d.resolve()), f"/deepdeb-debs/{d.name}") for d in debs]


def install_packages(
    root: Path, debs: Sequence[Path], extra: Sequence[str] = ()
) -> subprocess.CompletedProcess[str]:
    """apt-get install package files (and archive packages ``extra``) into ``root``:
    dependencies come from the archive, dpkg runs the maintainer scripts and triggers.

    The packages are untrusted: apt downloads what they need first, then installs with no
    network, so that their maintainer scripts cannot reach anything. Returns apt's result;
    the caller decides what a failure means.
    """
    # --allow-downgrades: a recipe may pin a release older than the root's (the archive's
    # point-release or security update of the same package); the files given are what is
    # being checked, so they replace it.
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "--allow-downgrades"]
    install += [f"/deepdeb-debs/{d.name}" for d in debs] + list(extra)
    binds = [*apt_cache_binds(), *deb_binds(debs)]
    with apt_cache_lock():
        return _install(root, install, binds)


@contextmanager
def apt_cache_lock() -> Iterator[None]:
    """The download cache is shared by every deepdeb run on the machine, and apt locks it
    while it works: runs take turns instead of failing on apt's lock."""
    with _locked(cache_root() / "apt-archives.lock"):
        yield


def _install(
    root: Path, install: list[str], binds: list[tuple[str, str, str]]
) -> subprocess.CompletedProcess[str]:
    fetched = in_root(root, [*install, "--download-only"], binds, check=False)
    if fetched.returncode != 0 and re.search(
        r"404\s+Not Found|Unable to fetch", fetched.stdout + fetched.stderr
    ):
        in_root(root, ["apt-get", "update", "-q"], binds, check=False)  # the archive moved on
        fetched = in_root(root, [*install, "--download-only"], binds, check=False)
    if fetched.returncode != 0:
        return fetched
    # (--no-download would be the natural flag, but apt refuses it with package files)
    return in_root(root, install, binds, check=False, network=False)


def install_build_deps(root: Path, tree: Path, source: str) -> None:
    """``apt-get build-dep`` the unpacked source ``tree`` inside ``root``.

    apt's index comes with the tarball; when the archive has moved on since (a 404), the
    index is refreshed once and the install tried again.
    """
    binds = [*apt_cache_binds(), ("--ro-bind", str(tree), "/deepdeb-src")]
    (root / "deepdeb-src").mkdir()
    install = ["apt-get", "build-dep", "-y", "-q", "--no-install-recommends", "/deepdeb-src"]
    with apt_cache_lock():
        proc = in_root(root, install, binds, check=False)
        if proc.returncode != 0 and not _unsatisfiable(proc.stdout + proc.stderr):
            in_root(root, ["apt-get", "update", "-q"], binds, check=False)
            proc = in_root(root, install, binds, check=False)
    if proc.returncode != 0:
        output = (proc.stdout + proc.stderr).strip()
        unmet = _unsatisfiable(output)
        if unmet:
            raise MissingBuildDepsError(source, f"{unmet} (not installable in the {SUITE} chroot)")
        raise ChrootError(f"installing the build-dependencies failed:\n{output[-2000:]}")
    (root / "deepdeb-src").rmdir()


def _unsatisfiable(apt_output: str) -> str | None:
    """What apt says cannot be installed, if that is why it failed."""
    found = re.findall(r"^\s*(?:builddeps:\S+ : )?Depends: (.+)$", apt_output, re.M)
    found += re.findall(r"Unable to locate package (\S+)", apt_output)
    found += re.findall(r"(Unable to satisfy dependencies.*)$", apt_output, re.M)
    return "; ".join(f.strip() for f in found) or None


def installed_packages(root: Path) -> dict[str, str]:
    """package -> version of what is fully installed in ``root``, from its own dpkg database."""
    proc = run(
        [
            "dpkg-query",
            f"--admindir={root / 'var/lib/dpkg'}",
            "-W",
            "-f",
            "${db:Status-Abbrev}\t${binary:Package}\t${Version}\n",
        ]
    )
    packages = {}
    for line in proc.stdout.splitlines():
        status, name, version = line.split("\t")
        if status.startswith("ii"):
            packages[name] = version
    return packages


def _add_build_user(root: Path) -> None:
    """The build user's name in the chroot too (tools ask for it: ``id -un``, getpwuid)."""
    entry = pwd.getpwnam(BUILD_USER)
    group = grp.getgrgid(entry.pw_gid)
    with open(root / "etc/passwd", "a") as f:
        f.write(f"{BUILD_USER}:x:{entry.pw_uid}:{entry.pw_gid}::{SANDBOX_HOME}:/bin/sh\n")
    with open(root / "etc/group", "a") as f:
        f.write(f"{group.gr_name}:x:{group.gr_gid}:\n")


def prepare(chroot: Chroot, dest: Path, tree: Path, source: str) -> CleanRoot:
    """Unpack the chroot under ``dest`` and install ``tree``'s build-dependencies in it."""
    start = time.monotonic()
    unpack_chroot(chroot, dest)
    install_build_deps(dest, tree, source)
    (dest / "build").mkdir()
    (dest / SANDBOX_HOME.lstrip("/")).mkdir(parents=True)  # where the builds' empty HOME goes
    _add_build_user(dest)
    return CleanRoot(dest, chroot, time.monotonic() - start, installed_packages(dest))


# --- Why a clean-room build failed -----------------------------------------------------


def record(root: CleanRoot) -> dict[str, object]:
    """What report.json and the buildinfo say about the chroot."""
    return {
        "tarball": root.chroot.tarball.name,
        "sha256": root.chroot.sha256,
        "suite": root.chroot.spec.suite,
        "variant": root.chroot.spec.variant,
        "created_seconds": None
        if root.chroot.created_seconds is None
        else round(root.chroot.created_seconds, 1),
        "prepare_seconds": round(root.prepare_seconds, 1),
    }
