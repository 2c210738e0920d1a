"""The Debian release deepdeb builds for, named once.

Everything that depends on the target distribution (its suite, architecture, multiarch
triplet, Python) reads it from here, so that another release is one change, not a search.
"""

from __future__ import annotations

SUITE = "bookworm"
ARCHITECTURE = "amd64"
MULTIARCH = "x86_64-linux-gnu"
PYTHON = "3.11"  # the release's python3
GCC_VERSION = "12.2.0"  # the release's gcc (gcc-12): which -march spellings it takes
PYTHON_ABI = "cp311"
GLIBC = (2, 36)  # the release's libc6: the newest manylinux its Python loads
DIST_PACKAGES = "usr/lib/python3/dist-packages"  # where its python3-* packages install
# The wheel platforms pip is asked for: what an amd64 system with glibc 2.36 runs.
PLATFORMS = (
    "manylinux_2_28_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux2014_x86_64",
    "linux_x86_64",
)
