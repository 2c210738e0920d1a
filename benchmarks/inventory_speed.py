"""How fast ``deepdeb inventory`` scans a large tree.

Generates a tree shaped like a big C++/Python project (default 30 000 files: mostly
sources, with CMake files, Bazel files and requirement files sprinkled through it), then
times the scan five times without and five times with Debian matching (apt's index
cached), and writes the medians to JSON. Usage:

    python benchmarks/inventory_speed.py --json benchmarks/results/inventory_speed.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from deepdeb.inventory.debmatch import SourceIndex
from deepdeb.inventory.scan import scan
from deepdeb.util import atomic_write_text

CMAKE = """cmake_minimum_required(VERSION 3.20)
set(DEP_VERSION 1.{n})
FetchContent_Declare(dep{n}
  URL https://github.com/example/dep{n}/archive/v${{DEP_VERSION}}.tar.gz
  URL_HASH SHA256={h})
"""
BZL = """V{n} = "2.{n}"
http_archive(
    name = "lib{n}",
    sha256 = "{h}",
    urls = ["https://example.org/lib{n}-%s.tar.gz" % V{n}],
)
"""


def make_tree(root: Path, files: int) -> int:
    declared = 0
    for i in range(files):
        directory = root / f"mod{i // 500:03d}" / f"sub{(i // 50) % 10}"
        directory.mkdir(parents=True, exist_ok=True)
        h = f"{i:064x}"
        if i % 250 == 0:
            (directory / "CMakeLists.txt").write_text(CMAKE.format(n=i, h=h))
            declared += 1
        elif i % 250 == 1:
            (directory / f"deps{i}.bzl").write_text(BZL.format(n=i, h=h))
            declared += 1
        elif i % 1000 == 2:
            (directory / "requirements.txt").write_text(f"pkg{i}==1.0 --hash=sha256:{h}\n")
            declared += 1
        else:
            (directory / f"file{i}.cc").write_text(f"int f{i}() {{ return {i}; }}\n" * 20)
    return declared


def timed(runs: int, fn: object) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=30000)
    parser.add_argument("--json", type=Path, required=True)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="deepdeb-inventory-bench-") as tmp:
        root = Path(tmp)
        declared = make_tree(root, args.files)
        found = len(scan(root).inputs)
        assert found == declared, (found, declared)
        index = SourceIndex.from_apt()  # builds or refreshes the cached index once
        plain = timed(5, lambda: scan(root))
        matched = timed(5, lambda: scan(root, SourceIndex.from_apt()))
    result = {
        "files": args.files,
        "declared_inputs": declared,
        "scan_s": {"median": statistics.median(plain), "runs": plain},
        "scan_with_debian_match_s": {"median": statistics.median(matched), "runs": matched},
        "debian_index_packages": len(index.names),
    }
    atomic_write_text(args.json, json.dumps(result, indent=2) + "\n")
    print(
        f"{args.files} files, {declared} inputs: scan {statistics.median(plain):.2f} s, "
        f"with Debian matching {statistics.median(matched):.2f} s (median of 5)"
    )


if __name__ == "__main__":
    main()
