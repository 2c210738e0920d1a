"""Small helpers at the edges: running commands and writing files atomically."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import stat
import subprocess
import tempfile
import tomllib
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from deepdeb.errors import ToolError, UnsafeFileError


def run(
    cmd: Sequence[str | os.PathLike[str]],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run a command, capturing text output; a missing program is a DeepdebError.

    The command gets a process group of its own, stopped whole if deepdeb is interrupted
    (lintian, for one, runs helpers that would outlive it).
    """
    try:
        proc = subprocess.Popen(
            [str(c) for c in cmd],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
    except FileNotFoundError:
        raise ToolError(f"required program not found: {cmd[0]}") from None
    try:
        out, err = proc.communicate()
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    result = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    if check and proc.returncode != 0:
        raise ToolError(
            f"command failed ({proc.returncode}): {' '.join(map(str, cmd))}\n"
            f"{(err or out).strip()[-2000:]}"
        )
    return result


def sha256_file(path: Path) -> str:
    """A file's SHA-256 in hex, read in 1 MiB blocks: wheels and .debs can be gigabytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def atomic_write_text(path: Path, text: str) -> None:
    """Write a file so that readers see either the old or the complete new content."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write a file so that readers see either the old or the complete new content."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_copy(src: Path, dest: Path) -> None:
    """Copy a file into place through a temporary name in the destination directory."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
    os.close(fd)
    try:
        shutil.copyfile(src, tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def cache_root() -> Path:
    """deepdeb's download cache: $DEEPDEB_CACHE, else $XDG_CACHE_HOME/deepdeb."""
    if "DEEPDEB_CACHE" in os.environ:
        return Path(os.environ["DEEPDEB_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "deepdeb"


def data_toml(name: str) -> dict[str, Any]:
    """One of deepdeb's knowledge files (``deepdeb/data/<name>``), parsed. Knowledge that
    changes with Debian or upstream (licences, loader paths, package names) lives there,
    each file with a schema test, so updating it is an edit to data, not to code."""
    return tomllib.loads(resources.files("deepdeb").joinpath(f"data/{name}").read_text())


def read_regular(path: Path, limit: int, *, tail: bool = True) -> bytes:
    """A file that untrusted code (a build, a recipe's tree) may have planted or replaced:
    refused unless it is a regular file, never followed if it is a symbolic link, opened
    without blocking (a FIFO would hang deepdeb, a device flood it).

    ``tail``: the last ``limit`` bytes (logs); else the whole file, refused when larger.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UnsafeFileError(f"{path}: not a regular file")
        if info.st_size > limit:
            if not tail:
                raise UnsafeFileError(f"{path}: larger than {limit} bytes")
            os.lseek(fd, info.st_size - limit, os.SEEK_SET)
        chunks = []
        while data := os.read(fd, 1 << 20):
            chunks.append(data)
        return b"".join(chunks)[-limit:]
    finally:
        os.close(fd)
