"""deepdeb audit: per-file licences, classes, archive area, ML-Policy, DEP-5 drafts."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, cast

import pytest
from conftest import FIXTURES, build
from debian.copyright import Copyright

from deepdeb.archive import publish
from deepdeb.errors import AuditError
from deepdeb.licence.audit import audit_target
from deepdeb.licence.dep5 import copyright_file
from deepdeb.licence.mlpolicy import ml_verdict
from deepdeb.licence.scan import Finding, is_licence_file, licence_role
from deepdeb.licence.table import classify, normalise
from deepdeb.licence.verdict import decide

AUDIT = FIXTURES / "audit"
INPUTS = Path(__file__).parent.parent / ".cache" / "test-inputs"  # fetched by scripts/setup


def run_audit(target: Path, tmp_path: Path) -> dict:  # type: ignore[type-arg]
    return audit_target(target, tmp_path).to_json()


def files(data: dict) -> list[tuple[str, str | None, str]]:  # type: ignore[type-arg]
    return [(f["path"], f["spdx"], f["classification"]) for f in data["files"]]


def real_input(pattern: str) -> Path:
    found = sorted(INPUTS.glob(pattern))
    assert found, f"{INPUTS}/{pattern} missing: run scripts/setup, which downloads it"
    return found[0]


def test_normalise_debian_and_licensecheck_names() -> None:
    assert normalise("GPL-2+") == "GPL-2.0-or-later"
    assert normalise("Expat") == "MIT"
    assert normalise("MIT and/or GPL-2.0-or-later") == "MIT OR GPL-2.0-or-later"
    assert normalise("BSD-3-clause and Apache-2.0") == "BSD-3-Clause AND Apache-2.0"
    assert normalise("UNKNOWN") is None


@pytest.mark.parametrize(
    ("path", "role"),
    [
        ("LICENSE", "declaration"),
        ("src/COPYING.LIB", "declaration"),
        ("third_party/blob/LICENSES.txt", "declaration"),
        ("torch-2.1.dist-info/licenses/vendored-zlib.txt", "declaration"),
        ("NOTICE", "notice"),
        ("README.md", "document"),
        ("model_card.md", "document"),
        ("licensing.c", None),
        ("src/license_check.py", None),
        ("docs/readme_helpers/x.c", None),
    ],
)
def test_one_rule_says_what_a_file_is_by_its_name(path: str, role: str | None) -> None:
    assert licence_role(path) == role
    assert is_licence_file(path) == (role in ("declaration", "notice"))


def test_classify_expressions() -> None:
    assert classify("MIT OR LicenseRef-Proprietary")[0] == "free"  # a free choice exists
    assert classify("MIT AND LicenseRef-NVIDIA-Proprietary")[0] == "non-free"
    assert classify("MIT AND LicenseRef-NVIDIA-cuDNN")[0] == "not-redistributable"
    assert classify("LicenseRef-Whatever") == (
        "unknown",
        "LicenseRef-Whatever is not in deepdeb's licence table: needs human review",
    )
    assert classify(None)[0] == "unknown"  # never silently free


def test_mixed_free_headers_go_to_main(tmp_path: Path) -> None:
    data = run_audit(AUDIT / "mixed", tmp_path)
    assert files(data) == [
        ("apache.py", "Apache-2.0", "free"),
        ("gpl.c", "GPL-2.0-or-later", "free"),
        ("mit.c", "MIT", "free"),
    ]
    assert (data["area"], data["redistributable"]) == ("main", True)
    assert data["area_reasons"] == ["all free, and everything it needs is in main"]


def test_file_without_licence_needs_review(tmp_path: Path) -> None:
    data = run_audit(AUDIT / "nolicense", tmp_path)
    assert files(data) == [("helper.c", None, "unknown"), ("mit.c", "MIT", "free")]
    assert (data["area"], data["redistributable"]) == ("local-only", False)
    assert data["redistributable_reasons"] == ["licence unknown, needs human review: helper.c"]


DEP5_HEADER = "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\n"


def test_maintainer_dep5_names_what_the_headers_do_not(tmp_path: Path) -> None:
    tree = tmp_path / "src"
    shutil.copytree(AUDIT / "nolicense", tree)
    (tree / "debian").mkdir(exist_ok=True)
    (tree / "debian" / "copyright").write_text(
        DEP5_HEADER + "Files: *\nCopyright: 2024 Someone\nLicense: MIT\n Permission is granted.\n"
    )
    result = audit_target(tree, tmp_path / "work")
    sources = {f.path: (f.spdx, f.source) for f in result.verdict.files}
    assert sources["helper.c"] == ("MIT", "debian-copyright")


def test_free_form_copyright_is_read_as_no_dep5(tmp_path: Path) -> None:
    """Policy 12.5 allows a free-form debian/copyright: not DEP-5, so not used, no error."""
    tree = tmp_path / "src"
    shutil.copytree(AUDIT / "nolicense", tree)
    (tree / "debian").mkdir(exist_ok=True)
    (tree / "debian" / "copyright").write_text("helper.c is in the public domain, we think.\n")
    assert audit_target(tree, tmp_path / "work").verdict.area == "local-only"


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (DEP5_HEADER + "Files *\nLicense: MIT\n", "declares the DEP-5 format but does not parse"),
        (DEP5_HEADER.encode() + b"Files: *\nCopyright: \xe9\nLicense: MIT\n", "must be UTF-8"),
        (None, "cannot be read as a copyright file"),  # a FIFO: an error, never a hang
    ],
)
def test_broken_dep5_is_an_error_not_ignored(
    tmp_path: Path, content: str | bytes | None, why: str
) -> None:
    tree = tmp_path / "src"
    shutil.copytree(AUDIT / "nolicense", tree)
    (tree / "debian").mkdir(exist_ok=True)
    target = tree / "debian" / "copyright"
    if content is None:
        os.mkfifo(target)
    elif isinstance(content, bytes):
        target.write_bytes(content)
    else:
        target.write_text(content)
    with pytest.raises(AuditError, match=why):
        audit_target(tree, tmp_path / "work")


def test_confidential_file_is_not_redistributable(tmp_path: Path) -> None:
    data = run_audit(AUDIT / "confidential", tmp_path)
    assert files(data) == [
        ("mit.c", "MIT", "free"),
        ("secret.c", "LicenseRef-Proprietary", "not-redistributable"),
    ]
    assert (data["area"], data["redistributable"]) == ("local-only", False)
    assert data["redistributable_reasons"] == [
        "may not be redistributed: secret.c (proprietary or confidential: no licence grants "
        "redistribution)"
    ]
    assert data["files_excluded"] == ["secret.c"]


def test_toxic_candy_model(tmp_path: Path) -> None:
    data = run_audit(AUDIT / "toxic.toml", tmp_path)
    assert [(m["name"], m["category"], m["missing"]) for m in data["models"]] == [
        ("tinynet", "ToxicCandy", ["training data is not public (declared: undisclosed)"])
    ]
    assert (data["area"], data["redistributable"]) == ("non-free", True)
    assert data["area_reasons"] == [
        "not DFSG-free: model tinynet (tinynet is ToxicCandy: training data is not public "
        "(declared: undisclosed))"
    ]


def test_free_model_and_dataset(tmp_path: Path) -> None:
    data = run_audit(AUDIT / "freemodel.toml", tmp_path)
    assert [(m["name"], m["category"]) for m in data["models"]] == [
        ("tinynet-fmnist", "Free Model")
    ]
    assert [(d["name"], d["category"]) for d in data["datasets"]] == [
        ("fashion-mnist", "free dataset")
    ]
    assert (data["area"], data["redistributable"]) == ("main", True)
    assert data["dependencies"] == {"debhelper-compat": "main", "python3": "main"}


def test_cc_by_nc_model_card(tmp_path: Path) -> None:
    data = run_audit(AUDIT / "nc.toml", tmp_path)
    assert ("README.md", "CC-BY-NC-4.0", "non-free") in files(data)
    assert [(m["name"], m["category"]) for m in data["models"]] == [("tinynet-nc", "non-free")]
    assert (data["area"], data["redistributable"]) == ("non-free", True)


def test_free_but_needs_something_outside_main_is_contrib(tmp_path: Path) -> None:
    data = run_audit(AUDIT / "contrib.toml", tmp_path)
    assert (data["area"], data["redistributable"]) == ("contrib", True)
    assert data["area_reasons"][0].startswith(
        "free, but needs packages outside main: nvidia-cuda-toolkit ("
    )


def test_ml_policy_names_every_missing_condition() -> None:
    verdict = ml_verdict(
        "model",
        {"name": "m", "license": "Apache-2.0", "training_data": "private", "training_program": ""},
    )
    assert verdict.category == "ToxicCandy"
    assert verdict.missing == [
        "training data is not public (declared: private)",
        "training program is not available",
    ]


def test_debian_fashion_mnist_is_free_in_main(tmp_path: Path) -> None:
    data = run_audit(real_input("dataset-fashion-mnist_*.deb"), tmp_path)
    assert (data["area"], data["redistributable"]) == ("main", True)
    assert data["summary"] == {"free": 14, "non-free": 0, "unknown": 0, "not-redistributable": 0}
    idx = [f for f in data["files"] if f["path"].endswith("train-images-idx3-ubyte.gz")]
    assert idx[0]["spdx"] == "MIT" and idx[0]["source"] == "package"


def test_nvidia_runtime_wheel_is_not_dfsg_free(tmp_path: Path) -> None:
    data = run_audit(real_input("nvidia_cuda_runtime_cu12-*.whl"), tmp_path)
    assert (data["area"], data["redistributable"]) == ("non-free", True)
    assert data["summary"]["free"] == 0 and data["summary"]["unknown"] == 0
    assert {f["spdx"] for f in data["files"]} == {"LicenseRef-NVIDIA-Proprietary"}
    assert (
        "NVIDIA software licence (CUDA EULA): no modification, use restrictions"
        in (data["area_reasons"][0])
    )


def test_copyright_draft_parses_back(tmp_path: Path) -> None:
    result = audit_target(AUDIT / "toxic.toml", tmp_path / "w")
    text = copyright_file(result.verdict, result.upstream_name, "https://example.org/tinynet")
    parsed = Copyright(text.splitlines(True), strict=True)
    header: Any = parsed.header  # python-debian's fields are untyped descriptors
    assert header.upstream_name == "modelsrc"
    assert "ToxicCandy model under Debian's ML-Policy" in header.disclaimer
    listed = {f for p in parsed.all_files_paragraphs() for f in p.files}
    assert listed == {f.path for f in result.verdict.files}
    licences = {cast(Any, p.license).synopsis for p in parsed.all_license_paragraphs()}
    assert licences == {"Expat"}
    excluded = audit_target(AUDIT / "confidential", tmp_path / "c")
    parsed = Copyright(copyright_file(excluded.verdict, "c", "x").splitlines(True), strict=True)
    assert cast(Any, parsed.header).files_excluded == ("secret.c",)


def test_cli_json_and_copyright(tmp_path: Path) -> None:
    out = tmp_path / "copyright"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "deepdeb",
            "audit",
            AUDIT / "mixed",
            "--format",
            "json",
            "--write-copyright",
            out,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    data = json.loads(proc.stdout)
    assert {
        "area",
        "redistributable",
        "area_reasons",
        "redistributable_reasons",
        "files",
    } <= data.keys()
    assert Copyright(out.read_text().splitlines(True), strict=True)


@pytest.mark.slow
def test_build_report_carries_the_verdict_and_marks_local_builds(tmp_path: Path) -> None:
    tree = tmp_path / "vecmath-1.0"
    shutil.copytree(FIXTURES / "vecmath-1.0", tree)
    (tree / "vendor.c").write_text("/* Confidential and proprietary. */\nint v;\n")
    (tmp_path / "r.toml").write_text((FIXTURES / "vecmath.toml").read_text())
    report = build(tmp_path / "r.toml", tmp_path / "out", levels=["x86-64-v3"])
    data = json.loads((tmp_path / "out" / "report.json").read_text())
    assert data["licence"]["area"] == "local-only"
    assert data["licence"]["redistributable"] is False
    for package in data["packages"]:
        assert package["redistributable"] is False and package["area"] == "local-only"
        assert package["version"].endswith("+local1")
    refused = publish.refused(publish.candidates(tmp_path / "out"), private=False)
    assert refused and all("not redistributable: " in r for r in refused)
    assert any("Confidential" in r or "vendor.c" in r for r in refused), refused
    assert report.licence is not None


@pytest.mark.slow
def test_generated_copyright_passes_lintian(tmp_path: Path) -> None:
    """The draft replaces a fixture's debian/copyright; the build's lintian run accepts it."""
    tree = tmp_path / "vecmath-1.0"
    shutil.copytree(FIXTURES / "vecmath-1.0", tree)
    result = audit_target(tree, tmp_path / "w")
    (tree / "debian" / "copyright").write_text(
        copyright_file(result.verdict, "vecmath", "https://example.org/vecmath")
    )
    (tmp_path / "r.toml").write_text((FIXTURES / "vecmath.toml").read_text())
    report = build(tmp_path / "r.toml", tmp_path / "out", levels=["x86-64-v3"])
    assert report.lintian is not None and report.lintian.ran
    assert report.lintian.errors == []
    assert not [w for w in report.lintian.warnings if "copyright" in w]


def test_deep_scan_needs_scancode_and_says_so(tmp_path: Path) -> None:
    if shutil.which("scancode") is not None:
        data = audit_target(AUDIT / "mixed", tmp_path, deep=True).to_json()
        assert files(data)[0] == ("apache.py", "Apache-2.0", "free")
        return
    proc = subprocess.run(
        [sys.executable, "-m", "deepdeb", "audit", AUDIT / "mixed", "--deep"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1
    assert "--deep needs scancode-toolkit, which is not installed" in proc.stderr


def test_exceptions_follow_their_licence_and_autotools_licences_are_free() -> None:
    assert classify("GPL-2.0-or-later WITH Autoconf-exception-generic")[0] == "free"
    assert classify("FSFULLR")[0] == "free" and classify("FSFUL")[0] == "free"


def test_archive_review_settles_what_the_table_does_not_know() -> None:
    found = [
        Finding("a.c", "MIT", "free", "licensecheck"),
        Finding("doc/rfc.txt", "RFC-special", "unknown", "debian-copyright"),
    ]
    alone = decide(found)
    assert (alone.area, alone.redistributable) == ("local-only", False)
    reviewed = decide(found, archive_area="main")
    assert (reviewed.area, reviewed.redistributable) == ("main", True)
    assert reviewed.area_reasons[0] == (
        "deepdeb cannot classify doc/rfc.txt; the Debian archive carries this source in "
        "main, as reviewed by its ftp team"
    )
    secret = [*found, Finding("x.c", "LicenseRef-Proprietary", "not-redistributable", "f")]
    assert decide(secret, archive_area="main").area == "local-only"  # no review excuses that
