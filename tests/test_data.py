"""deepdeb's knowledge files (``src/deepdeb/data``): each must have the shape the code
reads, and say what is true of bookworm, since the code trusts them without checking."""

from __future__ import annotations

import ast
import re
import subprocess
from importlib import resources
from pathlib import Path

import pytest
from license_expression import get_spdx_licensing
from packaging.utils import canonicalize_name

from deepdeb.cpu.levels import LOADER
from deepdeb.debian import apt
from deepdeb.licence.table import SEVERITY, classify, normalise, table
from deepdeb.util import data_toml
from deepdeb.wheel.depends import debian_name, debian_names
from deepdeb.wheel.sanity import DATASET_PACKAGE, write_test

DATA = Path(str(resources.files("deepdeb").joinpath("data")))


def test_every_data_file_is_known() -> None:
    """A file added to data/ needs a schema test here."""
    files = {p.relative_to(DATA).as_posix() for p in DATA.rglob("*") if p.is_file()}
    assert files == {
        "debian-names.toml",
        "licence-clauses.toml",
        "licenses.toml",
        "loader.toml",
        "loadprobe.c",
        "sanity/frameworks.toml",
        "sanity/fashion-mnist-torch.py",
        "sanity/fashion-mnist-tensorflow.py",
        "sanity/fashion-mnist-jax.py",
    }


def test_licence_table_schema() -> None:
    data = data_toml("licenses.toml")
    assert set(data) == {"license", "debian", "alias", "fingerprint"}
    licensing = get_spdx_licensing()
    for spdx, entry in data["license"].items():
        assert set(entry) == {"class", "reason"}, spdx
        # "unknown" is what the table does not list: listing it would hide the gap
        assert entry["class"] in set(SEVERITY) - {"unknown"}, spdx
        assert entry["reason"].strip(), spdx
        if not spdx.startswith("LicenseRef-"):
            assert not licensing.validate(spdx).errors, spdx
    for short, spdx in data["debian"].items():
        assert spdx in data["license"], f"debian name {short} maps to unlisted {spdx}"
    for alias, spdx in data["alias"].items():
        assert alias == alias.lower() and spdx in data["license"], alias
        assert classify(normalise(alias.upper()))[0] == data["license"][spdx]["class"]
    for fingerprint in data["fingerprint"]:
        assert set(fingerprint) <= {"scope", "pattern", "requires", "spdx"}
        assert fingerprint["scope"] in ("license", "header")
        pattern = re.compile(fingerprint["pattern"])
        re.compile(fingerprint.get("requires", ""))
        spdx = fingerprint["spdx"]
        if spdx.startswith("$"):  # the licence is named by a group of the match
            assert 1 <= int(spdx[1:]) <= pattern.groups, fingerprint
        else:
            assert spdx in data["license"], spdx
    loaded = table()
    assert len(loaded.classes) == len(data["license"])
    assert len(loaded.fingerprints) == len(data["fingerprint"])


def test_debian_names_are_canonical_exceptions_bookworm_has() -> None:
    names = debian_names()
    assert names and set(data_toml("debian-names.toml")) == {"python", "upstream", "bazel"}
    for pypi, package in names.items():
        assert canonicalize_name(pypi) == pypi, f"{pypi}: not a PEP 503 name"
        assert re.fullmatch(r"python3-[a-z0-9][a-z0-9.+-]*", package), package
        assert package != f"python3-{pypi}", f"{pypi}: the default needs no entry"
    assert debian_name("PyYAML") == "python3-yaml"
    assert debian_name("Some_Thing") == "python3-some-thing"
    found = apt.versions(sorted(names.values()))
    assert [p for p, versions in found.items() if not versions] == []


def test_loader_directories_data_matches_the_loader() -> None:
    amd64 = data_toml("loader.toml")["arch"]["amd64"]
    assert set(amd64) == {"multiarch", "system", "conf"}
    assert all(d.startswith("/") and not d.endswith("/") for d in amd64["system"] + amd64["conf"])
    help_text = subprocess.run([LOADER, "--help"], capture_output=True, text=True).stdout
    system = [
        line.split("(")[0].strip()
        for line in help_text.splitlines()
        if line.strip().endswith("(system search path)")
    ]
    assert system == amd64["system"]
    assert all(amd64["multiarch"] in d for d in amd64["system"][:2])


def test_sanity_frameworks_have_scripts_and_real_package_names() -> None:
    """Every framework has a script per dataset; every script a framework; the Depends
    parse as Debian relations; a wheel name defaults to one framework only."""
    from debian.deb822 import PkgRelation

    data = data_toml("sanity/frameworks.toml")
    assert set(data) == {"framework"}
    scripts = {p.name.removesuffix(".py") for p in (DATA / "sanity").glob("*.py")}
    assert scripts == {f"{d}-{f}" for d in DATASET_PACKAGE for f in data["framework"]}
    wheels: list[str] = []
    for name, entry in data["framework"].items():
        assert set(entry) == {"depends", "wheels", "packages"}, name
        relations = PkgRelation.parse_relations(entry["depends"])
        named = {alt["name"] for group in relations for alt in group}
        assert named and all(re.fullmatch(r"python3-[a-z0-9.+-]+", n) for n in named), name
        assert all(canonicalize_name(w) == w for w in entry["wheels"]), name
        assert set(entry["packages"]) & named, f"{name}: its packages are what it depends on"
        wheels += entry["wheels"]
    assert len(wheels) == len(set(wheels))


@pytest.mark.parametrize("framework", ["torch", "tensorflow", "jax"])
def test_sanity_script_is_filled_in_completely(tmp_path: Path, framework: str) -> None:
    script = write_test(tmp_path, "fashion-mnist", 12.5, 0.75, framework)
    text = script.read_text()
    assert re.search(r"@[A-Z_]+@", text) is None  # every @NAME@ default filled in
    ast.parse(text)
    assert '"/usr/share/datasets/fashion-mnist"' in text
    assert '"12.5"' in text and '"0.75"' in text
    control = (tmp_path / "control").read_text()
    assert control.startswith(f"Tests: fashion-mnist-{framework}\n")
    # the fields SanityResult reads, written by every script
    for key in ("accuracy", "train_seconds", "cpu_capability", "framework", "version",
                "epochs_completed", "steps", "threads"):  # fmt: skip
        assert f'"{key}":' in text, key


def test_upstream_names_are_hosts_and_bazel_prefixes() -> None:
    upstream = data_toml("debian-names.toml")["upstream"]
    assert set(upstream) == {"forges", "name_prefixes"}
    for host in upstream["forges"]:
        assert re.fullmatch(r"[a-z0-9-]+(\.[a-z0-9-]+)+", host), host
    assert len(set(upstream["forges"])) == len(upstream["forges"])
    for prefix in upstream["name_prefixes"]:
        assert re.fullmatch(r"[a-z]+_([a-z]+_)*", prefix), prefix
    # Longer prefixes first: com_github_ must be tried before com_.
    prefixes = upstream["name_prefixes"]
    for i, longer in enumerate(prefixes):
        assert not any(longer.startswith(p) for p in prefixes[:i]), longer


def test_bazel_names_map_to_debian_source_names() -> None:
    bazel = data_toml("debian-names.toml")["bazel"]
    assert bazel
    for name, source in bazel.items():
        assert re.fullmatch(r"[a-z0-9][a-z0-9.+-]*", name), name
        assert re.fullmatch(r"[a-z0-9][a-z0-9.+-]+", source), source  # Policy 5.6.1


def test_the_licences_tensorflows_wheel_vendors_are_free() -> None:
    """tensorflow-cpu's wheel carries curl's COPYING and ICU's data LICENSE (licensecheck
    names them curl and Unicode-DFS-2016); unlisted, they made TensorFlow local-only."""
    for spdx in ("curl", "Unicode-DFS-2016", "Unicode-3.0"):
        assert classify(spdx)[0] == "free", spdx
    assert classify("LicenseRef-not-in-the-table")[0] == "unknown"
