"""A quiet CPU for measurements: builds share the machine, a measurement has it alone.

Two Dask workers on one machine (or two deepdeb runs) would otherwise time a benchmark
while a compiler runs on the other core: interleaving keeps that from favouring one level,
but the noise it adds hides real gains and invents false ones. So every build step holds
a shared lock and every measurement an exclusive one, both on host-wide files (flock(2),
released by the kernel even when a process is killed). A turnstile lock in front gives a
waiting measurement priority: builds that start after it wait until it is done, so a busy
machine cannot starve it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

TURNSTILE = "deepdeb-quiet-turnstile.lock"
ROOM = "deepdeb-quiet-room.lock"


def lock_dir() -> Path:
    """Where the lock files live: host-wide even for workers with their own TMPDIR."""
    override = os.environ.get("DEEPDEB_QUIET_LOCK_DIR")
    if override:
        return Path(override)
    shm = Path("/dev/shm")
    return shm if shm.is_dir() and os.access(shm, os.W_OK) else Path(tempfile.gettempdir())


@contextlib.contextmanager
def _flock(name: str, mode: int) -> Iterator[None]:
    fd = os.open(lock_dir() / name, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, mode)
        yield
    finally:
        os.close(fd)  # closing releases the lock


@contextlib.contextmanager
def building() -> Iterator[None]:
    """Hold while compiling or testing: any number at once, never during a measurement."""
    with _flock(TURNSTILE, fcntl.LOCK_EX):
        pass  # wait here while a measurement waits or runs
    with _flock(ROOM, fcntl.LOCK_SH):
        yield


@contextlib.contextmanager
def measuring() -> Iterator[None]:
    """Hold while timing a benchmark: waits for running builds, holds new ones back."""
    with _flock(TURNSTILE, fcntl.LOCK_EX), _flock(ROOM, fcntl.LOCK_EX):
        yield
