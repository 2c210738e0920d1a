"""deepdeb against wheel2deb on one wheel: time, size, and whether the result is installable.

Both convert the same wheel on the same machine, one after the other (wheel2deb first).
For each resulting ``python3-<name>`` package the script records: wall time of the
conversion, .deb size, Installed-Size, the Depends field, whether libc6/libstdc++6 are
depended on, whether a ``shlibs`` control file is shipped (and which sonames it claims),
and every Depends entry apt's index for bookworm cannot satisfy. Usage:

    python benchmarks/wheel2deb_compare.py --wheel torch-2.13.0+cpu-...whl \\
        --recipe examples/pytorch/recipe.toml --wheel2deb /path/to/venv/bin/wheel2deb \\
        --json benchmarks/results/wheel2deb_compare.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path
from typing import Any

from debian.deb822 import Deb822, PkgRelation
from debian.debian_support import version_compare

from deepdeb.util import atomic_write_text
from deepdeb.wheel.depends import archive_versions

_OPS = {
    "=": lambda c: c == 0,
    ">=": lambda c: c >= 0,
    "<=": lambda c: c <= 0,
    ">>": lambda c: c > 0,
    "<<": lambda c: c < 0,
}


def unsatisfiable(depends: str, own: set[str]) -> list[str]:
    """Depends entries no version in apt's index satisfies (packages built alongside,
    ``own``, count as available)."""
    bad = []
    for alternatives in PkgRelation.parse_relations(depends):
        names = [a["name"] for a in alternatives]
        if any(n in own for n in names):
            continue
        offered = archive_versions(names)
        ok = False
        for a in alternatives:
            for have in offered[a["name"]]:
                if a["version"] is None or _OPS[a["version"][0]](
                    version_compare(have, a["version"][1])
                ):
                    ok = True
        if not ok:
            text = " | ".join(
                n + (f" ({a['version'][0]} {a['version'][1]})" if a["version"] else "")
                for n, a in zip(names, alternatives, strict=True)
            )
            have = ", ".join(f"{n} {' '.join(offered[n]) or 'none'}" for n in names)
            bad.append(f"{text} (archive: {have})")
    return bad


def describe(deb: Path, seconds: float, own: set[str]) -> dict[str, Any]:
    fields = Deb822(subprocess.run(["dpkg-deb", "-f", deb], capture_output=True, text=True,
                                   check=True).stdout)  # fmt: skip
    members = subprocess.run(
        f"dpkg-deb --ctrl-tarfile {deb} | tar -t", shell=True, capture_output=True, text=True
    ).stdout.split()
    shlibs = ""
    if "./shlibs" in members:
        shlibs = subprocess.run(
            ["dpkg-deb", "-I", deb, "shlibs"], capture_output=True, text=True
        ).stdout.strip()
    depends = fields.get("Depends", "")
    return {
        "file": deb.name,
        "seconds": round(seconds, 1),
        "size_bytes": deb.stat().st_size,
        "installed_size_kib": int(fields.get("Installed-Size", "0")),
        "depends": depends,
        "depends_on_libc6": bool(re.search(r"\blibc6\b", depends)),
        "depends_on_libstdcxx": "libstdc++6" in depends,
        "shlibs_file": shlibs,
        "unsatisfiable_in_bookworm": unsatisfiable(depends, own),
    }


def run_wheel2deb(wheel2deb: str, wheel: Path, work: Path) -> dict[str, Any]:
    search = work / "w2d-in"
    search.mkdir()
    shutil.copyfile(wheel, search / wheel.name)
    start = time.monotonic()
    proc = subprocess.run(
        [wheel2deb, "default", "-x", str(search), "-o", str(work / "w2d-out")],
        capture_output=True, text=True,
    )  # fmt: skip
    seconds = time.monotonic() - start
    debs = sorted((work / "w2d-out").rglob("python3-*.deb"))
    if not debs:
        return {"error": (proc.stdout + proc.stderr)[-2000:], "seconds": round(seconds, 1)}
    result = describe(debs[0], seconds, set())
    # wheel2deb exits non-zero when requirements are unsatisfiable, but still builds
    result["exit_status"] = proc.returncode
    result["log_tail"] = (proc.stdout + proc.stderr)[-600:].replace(str(work), "<work>")
    return result


def run_deepdeb(recipe: Path, wheel: Path, work: Path) -> dict[str, Any]:
    """deepdeb build on a copy of the recipe whose source is this wheel (no sanity test)."""
    data = tomllib.loads(recipe.read_text())
    python = data.get("python", {})
    lines = [f'[source]\nwheel = "{wheel}"\n', "[python]"]
    for key in ("drop", "extras"):
        if key in python:
            lines.append(f"{key} = {json.dumps(python[key])}")
    lines.append("[python.requires]")
    lines += [f'{k} = "{v}"' for k, v in python.get("requires", {}).items()]
    copy = work / "recipe.toml"
    copy.write_text("\n".join(lines) + "\n")
    out = work / "deepdeb-out"
    start = time.monotonic()
    subprocess.run(
        [sys.executable, "-m", "deepdeb", "build", str(copy), "--out", str(out)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    seconds = time.monotonic() - start
    report = json.loads((out / "report.json").read_text())
    own = {p["package"] for p in report["packages"]}
    main = report["packages"][0]
    result = describe(out / main["file"], seconds, own)
    result["also_built"] = [p["file"] for p in report["packages"][1:]]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--wheel", type=Path, required=True)
    parser.add_argument("--recipe", type=Path, required=True)
    parser.add_argument("--wheel2deb", required=True)
    parser.add_argument("--json", type=Path, required=True)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="deepdeb-w2d-") as tmp:
        work = Path(tmp)
        (work / "a").mkdir()
        (work / "b").mkdir()
        w2d = run_wheel2deb(args.wheel2deb, args.wheel.resolve(), work / "a")
        ours = run_deepdeb(args.recipe, args.wheel.resolve(), work / "b")
    result = {
        "wheel": args.wheel.name,
        "cores": os.cpu_count(),
        "wheel2deb": w2d,
        "deepdeb": ours,
    }
    atomic_write_text(args.json, json.dumps(result, indent=2) + "\n")
    for name in ("wheel2deb", "deepdeb"):
        r = result[name]
        assert isinstance(r, dict)
        print(
            f"{name:10} {r.get('seconds')} s, {r.get('size_bytes', 0) / 1e6:.1f} MB, "
            f"{r.get('installed_size_kib', 0) / 1024:.0f} MiB installed, libc6: "
            f"{r.get('depends_on_libc6')}, shlibs: {bool(r.get('shlibs_file'))}, "
            f"unsatisfiable: {r.get('unsatisfiable_in_bookworm')}"
        )


if __name__ == "__main__":
    main()
