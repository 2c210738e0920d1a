"""deepdeb inventory on fixture trees of every supported format: exact results."""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest
from conftest import FIXTURES

from deepdeb.inventory.bazel_rules import maven_url
from deepdeb.inventory.debmatch import SourceIndex, url_keys
from deepdeb.inventory.expand import ManifestError, ManifestSource, expand, file_name
from deepdeb.inventory.inputs import Input
from deepdeb.inventory.scan import Inventory, _not_in_total, scan

TREE = FIXTURES / "inventory"

# (kind, name, file, line, version, hash prefix, first url, second level, size)
EXPECTED = [
    ("bazel_dep", "rules_cc", "bazel/MODULE.bazel", 3, "0.0.9", None, None, True, None),
    ("bazel_dep", "abseil-cpp", "bazel/MODULE.bazel", 4, "20230802.1", None, None, True, None),
    (
        "archive_override",
        "rules_cc",
        "bazel/MODULE.bazel",
        6,
        None,
        "integrity:sha256-IDeHW5pEVtzkp50RKorohbvEqtlo5lh9ym5k86CQDN8=",
        "https://github.com/bazelbuild/rules_cc/releases/download/0.0.9/rules_cc-0.0.9.tar.gz",
        False,
        None,
    ),
    (
        "http_archive",
        "zlib",
        "bazel/WORKSPACE",
        10,
        None,
        "sha256:9a93b2b7dfdac77ceba5a558a580e74667dd6fede4585b91eefb60f03b72df23",
        "https://zlib.net/zlib-1.3.1.tar.gz",
        False,
        None,
    ),
    (
        "tf_http_archive",
        "eigen_archive",
        "bazel/WORKSPACE",
        17,
        None,
        "sha256:8586084f71f9bde545ee7fa6d00288b264a2b7ac3607b974e54d13e7162c1c72",
        "https://gitlab.com/libeigen/eigen/-/archive/3147391d946bb4b6c68edd901f2add6ac1f31f8c/"
        "eigen-3147391d946bb4b6c68edd901f2add6ac1f31f8c.tar.gz",
        False,
        None,
    ),
    (
        "http_archive",
        "pybind11",
        "bazel/WORKSPACE",
        23,
        None,
        None,
        "https://github.com/pybind/pybind11/archive/v2.10.4.tar.gz",
        False,
        None,
    ),
    (
        "git_repository",
        "com_google_googletest",
        "bazel/WORKSPACE",
        28,
        None,
        "commit:f8d7d77c06936315286eb55f8de22cd23c188571",
        "https://github.com/google/googletest.git",
        False,
        None,
    ),
    (
        "new_git_repository",
        "flatbuffers",
        "bazel/WORKSPACE",
        34,
        "v23.5.26",
        None,
        "https://github.com/google/flatbuffers.git",
        False,
        None,
    ),
    (
        "http_file",
        "cuda_redist_manifest",
        "bazel/WORKSPACE",
        41,
        None,
        "sha256:0e3a5e3b3a3b4f0d2d6f0f0f9c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d",
        "https://developer.download.nvidia.com/compute/cuda/redist/redistrib_12.4.1.json",
        True,
        None,
    ),
    (
        "cmake_fetchcontent",
        "onnx",
        "cmake/CMakeLists.txt",
        10,
        None,
        "commit:990217f043af7222348ca8f0301e17fa7b841781",
        "https://github.com/onnx/onnx.git",
        False,
        None,
    ),
    (
        "cmake_fetchcontent",
        "fmt",
        "cmake/CMakeLists.txt",
        14,
        None,
        "sha256:1250e4cc58bf06ee631567523f48848dc4596133e163f02615c97f78bab6c811",
        "https://github.com/fmtlib/fmt/archive/refs/tags/10.2.1.tar.gz",
        False,
        None,
    ),
    (
        "cmake_externalproject",
        "protobuf",
        "cmake/CMakeLists.txt",
        18,
        "v21.12",
        None,
        "https://github.com/protocolbuffers/protobuf.git",
        False,
        None,
    ),
    (
        "cmake_file_download",
        "weights-v2.bin",
        "cmake/CMakeLists.txt",
        23,
        None,
        "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef",
        "https://example.org/models/weights-v2.bin",
        False,
        None,
    ),
    (
        "git_clone",
        "cutlass",
        "cmake/CMakeLists.txt",
        26,
        None,
        None,
        "https://github.com/NVIDIA/cutlass.git",
        False,
        None,
    ),
    (
        "manifest",
        "abseil_cpp",
        "cmake/deps.txt",
        2,
        None,
        "sha1:bc2cec6baaad67fcb6c0c38972b687d4797927e9",
        "https://github.com/abseil/abseil-cpp/archive/refs/tags/20240116.0.zip",
        False,
        None,
    ),
    (
        "manifest",
        "date",
        "cmake/deps.txt",
        3,
        None,
        "sha1:2dac0c81dc54ebdd8f8d073a75c053b04b56e159",
        "https://github.com/HowardHinnant/date/archive/refs/tags/v3.0.1.zip",
        False,
        None,
    ),
    (
        "git_submodule",
        "third_party/pybind11",
        "gitmods/.gitmodules",
        1,
        None,
        None,
        "https://github.com/pybind/pybind11.git",
        False,
        None,
    ),
    (
        "git_submodule",
        "vendor/json",
        "gitmods/.gitmodules",
        4,
        "develop",
        None,
        "https://github.com/nlohmann/json.git",
        False,
        None,
    ),
    (
        "git_submodule",
        "tests/data",
        "gitmods/vendor/json/.gitmodules",
        1,
        None,
        None,
        "https://github.com/nlohmann/json_test_data.git",
        False,
        None,
    ),
    (
        "go",
        "github.com/BurntSushi/toml",
        "go/go.sum",
        1,
        "v1.3.2",
        "h1:o7IhLm0Msx3BaB+n3Ag7L8EVlByGnpq14C4YWiu/gL8=",
        "https://proxy.golang.org/github.com/!burnt!sushi/toml/@v/v1.3.2.zip",
        False,
        None,
    ),
    (
        "go",
        "golang.org/x/sys",
        "go/go.sum",
        3,
        "v0.15.0",
        "h1:h48lPFYpsTvQJZF4EKyI4aLHaev3CxivZmv7yZig9pc=",
        "https://proxy.golang.org/golang.org/x/sys/@v/v0.15.0.zip",
        False,
        None,
    ),
    (
        "npm",
        "left-pad",
        "node/package-lock.json",
        12,
        "1.3.0",
        "integrity:sha512-XI5MPzVNApjAyhQzphX8BkmKsKUxD4LdyK24iZeQEnh6Q8ZYk2ftWJ5zxiP9mfGzvP7/9GvCNB7"
        "W54RmJBahmA==",
        "https://registry.npmjs.org/left-pad/-/left-pad-1.3.0.tgz",
        False,
        None,
    ),
    (
        "pyproject-build",
        "pybind11",
        "python/pyproject.toml",
        2,
        "==2.11.1",
        None,
        None,
        False,
        None,
    ),
    ("pyproject-build", "setuptools", "python/pyproject.toml", 2, ">=68", None, None, False, None),
    ("pyproject-build", "wheel", "python/pyproject.toml", 2, None, None, None, False, None),
    (
        "pypi",
        "numpy",
        "python/requirements.txt",
        2,
        "1.26.4",
        "sha256:2e8c3ed51e3e2a1ae4e5b6db0c5d30de0d09ec1c1d1a4b2b7b2c0a7a0f0e0c1d",
        None,
        False,
        None,
    ),
    ("pypi", "requests", "python/requirements.txt", 4, ">=2.31", None, None, False, None),
    (
        "pypi",
        "torch",
        "python/requirements.txt",
        5,
        None,
        None,
        "https://download.pytorch.org/whl/cpu/torch-2.13.0%2Bcpu-cp311-cp311-linux_x86_64.whl",
        False,
        None,
    ),
    (
        "redist_archive",
        "cuda_cudart",
        "redist/redistrib_12.4.1.json",
        3,
        "12.4.127",
        "sha256:2dcd2f6f2a8fe9e8f2e4e4f5d2b8b6b4a5c1e8f1c2d3e4f5a6b7c8d9e0f1a2b3",
        "cuda_cudart/linux-x86_64/cuda_cudart-linux-x86_64-12.4.127-archive.tar.xz",
        False,
        1054008,
    ),
    (
        "cargo",
        "libc",
        "rust/Cargo.lock",
        9,
        "0.2.153",
        "sha256:9c198f91728a82281a64e1f4f9eeb25d82cb32a5de251c6bd1b5154d63a8e7bd",
        "https://crates.io/api/v1/crates/libc/0.2.153/download",
        False,
        None,
    ),
    (
        "cargo",
        "tinyjson",
        "rust/Cargo.lock",
        15,
        "2.5.1",
        "commit:4f8c2f1e6c3b2a1d0e9f8a7b6c5d4e3f2a1b0c9d",
        "https://github.com/rhysd/tinyjson?rev=abc",
        False,
        None,
    ),
]


def test_every_format_exactly() -> None:
    result = scan(TREE)
    got = [
        (
            i.kind,
            i.name,
            i.file,
            i.line,
            i.version,
            i.hash,
            i.urls[0] if i.urls else None,
            i.second_level,
            i.size,
        )
        for i in result.inputs
    ]
    assert got == EXPECTED
    assert result.summary() == {
        "inputs": 31,
        "pinned": 17,
        "matched_in_debian": 0,
        "second_level": 3,
        "files_scanned": 14,
    }


def test_macro_plumbing_is_not_a_declaration() -> None:
    """repo.bzl's tf_http_archive body calls http_archive(urls = urls): not an input."""
    assert not [i for i in scan(TREE / "bazel").inputs if i.file.endswith("repo.bzl")]


def test_debian_matching_by_homepage_then_name() -> None:
    index = SourceIndex(
        homepages={
            "zlib.net": ["libz-mingw-w64", "zlib"],
            "github.com/pybind/pybind11": ["pybind11"],
            "eigen.tuxfamily.org": ["eigen3"],
        },
        names={
            "zlib",
            "pybind11",
            "rust-libc",
            "golang-golang-x-sys",
            "node-left-pad",
            "python-numpy",
            "protobuf",
            "googletest",
        },
    )
    result = scan(TREE, index)
    matches = {(i.file, i.name): (i.debian, i.debian_match) for i in result.inputs}
    assert matches[("bazel/WORKSPACE", "zlib")] == ("zlib", "homepage")
    assert matches[("bazel/WORKSPACE", "pybind11")] == ("pybind11", "homepage")
    assert matches[("gitmods/.gitmodules", "third_party/pybind11")] == ("pybind11", "homepage")
    assert matches[("bazel/WORKSPACE", "com_google_googletest")] == ("googletest", "name")
    assert matches[("rust/Cargo.lock", "libc")] == ("rust-libc", "name")
    assert matches[("go/go.sum", "golang.org/x/sys")] == ("golang-golang-x-sys", "name")
    assert matches[("node/package-lock.json", "left-pad")] == ("node-left-pad", "name")
    assert matches[("cmake/CMakeLists.txt", "protobuf")] == ("protobuf", "name")
    # Eigen's upstream is on gitlab, its Debian homepage elsewhere, its name differs: honest.
    assert matches[("bazel/WORKSPACE", "eigen_archive")] == (None, "no match")
    assert matches[("cmake/CMakeLists.txt", "cutlass")] == (None, "no match")
    assert result.summary()["matched_in_debian"] == 10


def test_url_keys() -> None:
    assert url_keys("https://github.com/pybind/pybind11/archive/v2.tar.gz")[0] == (
        "github.com/pybind/pybind11"
    )
    mirrored = "https://storage.googleapis.com/mirror.tensorflow.org/github.com/a/b/x.zip"
    assert url_keys(mirrored)[0] == "github.com/a/b"
    assert "github.com" not in url_keys("https://github.com/a/b")  # a forge says nothing
    assert url_keys("https://www.zlib.net/")[-1] == "zlib.net"


def test_real_apt_index_and_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEEPDEB_CACHE", str(tmp_path))
    proc = subprocess.run(
        [sys.executable, "-m", "deepdeb", "inventory", TREE / "bazel", "--format", "json"],
        capture_output=True,
        text=True,
        check=True,
        env={**__import__("os").environ, "DEEPDEB_CACHE": str(tmp_path)},
    )
    data = json.loads(proc.stdout)
    assert data["debian_index"] is True
    zlib = next(i for i in data["inputs"] if i["name"] == "zlib")
    assert (zlib["debian"], zlib["debian_match"], zlib["pinned"]) == ("zlib", "homepage", True)
    assert (tmp_path / "apt-sources-index.json").is_file()  # cached for the next run
    table = subprocess.run(
        [sys.executable, "-m", "deepdeb", "inventory", TREE / "bazel"],
        capture_output=True,
        text=True,
        check=True,
        env={**__import__("os").environ, "DEEPDEB_CACHE": str(tmp_path), "COLUMNS": "200"},
    )
    assert "9 inputs, 5 pinned," in table.stdout


def test_cmake_concat_wrappers_and_in_tree_projects() -> None:
    """string(CONCAT) is folded; an ExternalProject built from the tree downloads nothing;
    ONNX Runtime's FetchContent wrapper is a fetch; DOWNLOAD_NO_EXTRACT ends the URL list."""
    inv = scan(FIXTURES / "inventory-cmake")
    found = [(i.kind, i.name, i.file, i.line, i.urls, i.hash) for i in inv.inputs]
    assert found == [
        (
            "cmake_file_download",
            "mkl-static.tgz",
            "CMakeLists.txt",
            8,
            ["https://downloads.example.org/mkl/2024.2.0/mkl-static.tgz"],
            "sha256:1b5d0b1b7bd8a4e4c9a9a3f0d9b2a5d26b3c2e1a0f9e8d7c6b5a49382716a5f4",
        ),
        (
            "cmake_externalproject",
            "sleef_download",
            "CMakeLists.txt",
            18,
            ["https://github.com/shibatch/sleef/archive/refs/tags/3.6.tar.gz"],
            "sha256:de4f3d992cf2183a872cd397f517c1defcd3ee6cafa2ce5fa36963bd7e562446",
        ),
        (
            "cmake_fetchcontent",
            "abseil_cpp",
            "cmake/external/abseil.cmake",
            2,
            ["https://github.com/abseil/abseil-cpp/archive/refs/tags/20240722.0.zip"],
            "sha1:36ee53eb1466fb6e593fc5c286680de31f8a494a",
        ),
    ]


@pytest.mark.parametrize(
    ("kind", "name", "debian"),
    [
        ("http_archive", "com_github_grpc_grpc", "grpc"),
        ("http_archive", "com_google_absl", "abseil"),
        ("tf_http_archive", "eigen_archive", "eigen3"),
        ("http_archive", "com_googlesource_code_re2", "re2"),
        ("git_submodule", "third_party/pybind11", "pybind11"),
        ("http_archive", "org_sqlite", "sqlite3"),
        ("http_archive", "com_github_example_unknown", None),
    ],
)
def test_bazel_and_submodule_names_match_debian_sources(
    kind: str, name: str, debian: str | None
) -> None:
    index = SourceIndex({}, {"grpc", "abseil", "eigen3", "re2", "pybind11", "sqlite3", "libpng"})
    found = index.match(kind, name, [])
    assert (found.package if found else None) == debian
    assert found is None or found.via == "name"


# --- hermetic CUDA and the other Bazel download kinds; second-level manifests ------------

HERMETIC = FIXTURES / "inventory-hermetic"
HTREE = HERMETIC / "tree"
MANIFESTS = HERMETIC / "manifests"
CUDA_BZL = "third_party/gpus/cuda/hermetic/cuda_redist_versions.bzl"
RULES_BZL = "third_party/gpus/cuda/hermetic/cuda_redist_init_repositories.bzl"
NCCL_BZL = "third_party/nccl/hermetic/nccl_redist_versions.bzl"
NVIDIA = "https://developer.download.nvidia.com/compute"
PYPI = "https://files.pythonhosted.org/packages/0f/3c"

# (kind, name, file, line, version, hash (first 16 hex digits), urls, second level)
EXPECTED_HERMETIC = [
    ("http_file", "nvshmem_redist_json", "WORKSPACE", 6, None, "sha256:e017a5c0a87bf083",
     [f"{NVIDIA}/nvshmem/redist/redistrib_3.2.5.json"], True),
    ("java_import_external", "junit", "WORKSPACE", 12, None, "sha256:6cf986f5d92b3f30",
     ["https://mirror.example.org/maven2/junit/junit/4.13.2/junit-4.13.2.jar",
      "https://repo1.maven.org/maven2/junit/junit/4.13.2/junit-4.13.2.jar"], False),
    ("filegroup_external", "demo_licenses", "WORKSPACE", 22, None, "sha256:6783018c0f8ef9d5",
     ["https://raw.githubusercontent.com/example/astdemo/v1.6.3/LICENSE"], False),
    ("filegroup_external", "demo_licenses", "WORKSPACE", 22, None, "sha256:2dd25eed8c21fc14",
     ["https://raw.githubusercontent.com/example/other/v2.0/COPYING"], False),
    ("filegroup_external", "demo_licenses", "WORKSPACE", 22, None, "sha256:9aaf7c0a270be003",
     ["https://downloads.example.org/tools/closure-tool-macos.tar.gz"], False),
    ("maven_install", "androidx.annotation:annotation", "WORKSPACE", 34, "1.1.0", None,
     ["https://maven.google.com/androidx/annotation/annotation/1.1.0/annotation-1.1.0.aar",
      "https://repo1.maven.org/maven2/androidx/annotation/annotation/1.1.0/annotation-1.1.0.aar"],
     False),
    ("maven_install", "com.google.guava:guava", "WORKSPACE", 34, "32.1.2-jre", None,
     ["https://maven.google.com/com/google/guava/guava/32.1.2-jre/guava-32.1.2-jre.jar",
      "https://repo1.maven.org/maven2/com/google/guava/guava/32.1.2-jre/guava-32.1.2-jre.jar"],
     False),
    ("demo_java_import", "hamcrest", "WORKSPACE", 45, None, "sha256:3efae0cf7d9eafab",
     ["https://repo1.maven.org/maven2/org/hamcrest/hamcrest-core/1.3/hamcrest-core-1.3.jar"],
     False),
    ("repository_rule_download", "_download_redist_json", RULES_BZL, 9, None, None, [], False),
    ("repository_rule_download", "_redist_archive_impl", RULES_BZL, 20, None, None, [], False),
    ("repository_rule_download", "_license_impl", RULES_BZL, 29, None, "sha256:5b5d93d77e6ede78",
     ["https://downloads.example.org/cuda/LICENSE.txt"], False),
    ("repository_rule_download", "_mirror_impl", RULES_BZL, 33, None, None, [], False),
    ("redistrib_manifest", 'CUDA_REDIST_JSON_DICT["12.5.1"]', CUDA_BZL, 8, "12.5.1",
     "sha256:856cfbe619954788", [f"{NVIDIA}/cuda/redist/redistrib_12.5.1.json"], True),
    ("redistrib_manifest", 'CUDA_REDIST_JSON_DICT["12.6.0"]', CUDA_BZL, 12, "12.6.0",
     "sha256:154b483307970fc3", [f"{NVIDIA}/cuda/redist/redistrib_12.6.0.json"], True),
    ("redistrib_manifest", 'CUDNN_REDIST_JSON_DICT["9.3.0"]', CUDA_BZL, 19, "9.3.0",
     "sha256:4c0a4a49ad744e44", [f"{NVIDIA}/cudnn/redist/redistrib_9.3.0.json"], True),
    ("redistrib_manifest", 'MIRRORED_TARS_CUDA_REDIST_JSON_DICT["12.5.1"]', CUDA_BZL, 33,
     "12.5.1", "sha256:85febf55f7d1ea11",
     ["https://storage.googleapis.com/mirror.example.org/cuda/redistrib_12.5.1_tar.json"], True),
    ("url_constant", "_CCCL_GITHUB_ARCHIVE", CUDA_BZL, 39, None, "sha256:f2ff3720770a1910",
     ["https://github.com/NVIDIA/cccl/releases/download/v3.2.0/cccl-src-v3.2.0.tar.gz"], False),
    ("wheel", 'CUDA_12_NCCL_WHEEL_DICT["x86_64-unknown-linux-gnu"]', NCCL_BZL, 7, "2.21.5",
     "sha256:2bca0aa4cbce3abd",
     [f"{PYPI}/nvidia_nccl_cu12-2.21.5-py3-none-manylinux2014_x86_64.whl"], False),
    ("wheel", 'CUDA_12_NCCL_WHEEL_DICT["aarch64-unknown-linux-gnu"]', NCCL_BZL, 12, "2.21.5",
     "sha256:023a1cb979acef13",
     [f"{PYPI}/nvidia_nccl_cu12-2.21.5-py3-none-manylinux2014_aarch64.whl"], False),
    ("wheel", 'CUDA_13_NCCL_WHEEL_DICT["x86_64-unknown-linux-gnu"]["2.27.7"]', NCCL_BZL, 21,
     "2.27.7", "sha256:e0e1046e32f88fc6",
     [f"{PYPI}/nvidia_nccl_cu13-2.27.7-py3-none-manylinux_2_18_x86_64.whl"], False),
]  # fmt: skip

CUDA_ARCHIVES = f"{NVIDIA}/cuda/redist"
CUDNN_ARCHIVES = f"{NVIDIA}/cudnn/redist/cudnn"
CUDNN_NOTE = "listed in redistrib_9.3.0.json (platform linux-x86_64, {})"
# (name, url, version, size, counted in the total, note)
EXPANDED_X86 = [
    ("cuda_cccl", f"{CUDA_ARCHIVES}/cuda_cccl/linux-x86_64/"
     "cuda_cccl-linux-x86_64-12.5.39-archive.tar.xz", "12.5.39", 1200412, True,
     "listed in redistrib_12.5.1.json (platform linux-x86_64)"),
    ("cuda_nvcc", f"{CUDA_ARCHIVES}/cuda_nvcc/linux-x86_64/"
     "cuda_nvcc-linux-x86_64-12.5.82-archive.tar.xz", "12.5.82", 58812340, True,
     "listed in redistrib_12.5.1.json (platform linux-x86_64)"),
    ("cudnn", f"{CUDNN_ARCHIVES}/linux-x86_64/cudnn-linux-x86_64-9.3.0.75_cuda11-archive.tar.xz",
     "9.3.0.75", 561520128, False, CUDNN_NOTE.format("cuda11")),
    ("cudnn", f"{CUDNN_ARCHIVES}/linux-x86_64/cudnn-linux-x86_64-9.3.0.75_cuda12-archive.tar.xz",
     "9.3.0.75", 602112000, True, CUDNN_NOTE.format("cuda12")),
]  # fmt: skip


def _rows(inputs: list[Input]) -> list[tuple[object, ...]]:
    return [
        (i.kind, i.name, i.file, i.line, i.version, i.hash[:23] if i.hash else None, i.urls,
         i.second_level)
        for i in inputs
    ]  # fmt: skip


Archive = tuple[str, str, str | None, int | None, bool, str | None]


def _archives(inputs: list[Input]) -> list[Archive]:
    return [
        (i.name, i.urls[0], i.version, i.size, i.in_total, i.note)
        for i in inputs
        if i.kind == "redist_archive"
    ]


def test_hermetic_cuda_tree_exactly() -> None:
    """Constants with [url, sha256] pairs and url/full_path records, wheels in both NCCL
    shapes, java_import_external, filegroup_external (one per hash), maven_install (one per
    artifact), a wrapper of java_import_external and repository rules' own downloads."""
    result = scan(HTREE)
    assert _rows(result.inputs) == EXPECTED_HERMETIC
    assert result.summary() == {
        "inputs": 20,
        "pinned": 15,
        "matched_in_debian": 0,
        "second_level": 5,
        "files_scanned": 5,
    }
    assert not [i for i in result.inputs if i.size is not None]  # nothing says a size yet


def test_hermetic_duplicates_are_listed_once() -> None:
    """CCCL under two platforms, the NCCL dict under three CUDA versions and spelled out
    again, the NVSHMEM manifest both in a constant and in http_file: each once."""
    result = scan(HTREE)
    urls = [u for i in result.inputs for u in i.urls[:1]]
    assert len(urls) == len(set(urls))
    assert sum("cccl-src-v3.2.0" in u for u in urls) == 1
    assert sum("nccl_cu12-2.21.5-py3-none-manylinux2014_x86_64" in u for u in urls) == 1
    nvshmem = [i for i in result.inputs if "nvshmem" in (i.urls or [""])[0]]
    assert [(i.kind, i.name) for i in nvshmem] == [("http_file", "nvshmem_redist_json")]
    assert not [i for i in result.inputs if i.file.endswith("jars.bzl")]  # plumbing


def test_repository_rule_downloads_fold_only_their_own_constants() -> None:
    """A parameter (or loop variable) named ``url`` is not another function's local
    ``url = "..."``: only _license_impl's URL and hash are constants."""
    downloads = [i for i in scan(HTREE).inputs if i.kind == "repository_rule_download"]
    machinery = (
        "its URL is chosen when the rule runs; not counted: the machinery behind inputs "
        "listed where they are declared"
    )
    assert [(i.name, i.urls, i.pinned, i.note) for i in downloads] == [
        ("_download_redist_json", [], False, machinery),
        ("_redist_archive_impl", [], False, machinery),
        ("_license_impl", ["https://downloads.example.org/cuda/LICENSE.txt"], True, "constant URL"),
        ("_mirror_impl", [], False, machinery),
    ]
    assert [i.in_total for i in downloads] == [False, False, True, False]


def test_maven_coordinates_become_repository_urls() -> None:
    repo = "https://repo.example.org/m2/"
    assert maven_url(repo, "a.b:c:1.0") == "https://repo.example.org/m2/a/b/c/1.0/c-1.0.jar"
    assert maven_url(repo, "a.b:c:aar:1.0") == "https://repo.example.org/m2/a/b/c/1.0/c-1.0.aar"
    assert (
        maven_url(repo, "a:c:jar:sources:2") == "https://repo.example.org/m2/a/c/2/c-2-sources.jar"
    )
    assert maven_url(repo, "a:c") is None
    assert maven_url(repo, "a::1.0") is None


def test_manifests_expand_into_archives_with_sizes() -> None:
    """Manifests in the directory are hash-checked and followed (flat CUDA, nested cuDNN);
    the others say why not; the download total counts the newest cuDNN variant only."""
    result = scan(HTREE, manifests=ManifestSource(MANIFESTS))
    assert _archives(result.inputs) == EXPANDED_X86
    by_name = {i.name: i for i in result.inputs}
    cuda, cudnn = (
        by_name['CUDA_REDIST_JSON_DICT["12.5.1"]'],
        by_name['CUDNN_REDIST_JSON_DICT["9.3.0"]'],
    )
    assert cuda.size == (MANIFESTS / "redistrib_12.5.1.json").stat().st_size == 2233
    assert cudnn.size == (MANIFESTS / "redistrib_9.3.0.json").stat().st_size == 1226
    assert cuda.note == (
        f"expanded: 2 archives for linux-x86_64, read from {MANIFESTS / 'redistrib_12.5.1.json'}"
    )
    assert by_name['CUDA_REDIST_JSON_DICT["12.6.0"]'].note == (
        f"not expanded: redistrib_12.6.0.json not in {MANIFESTS}"
    )
    # each archive is listed right after the manifest that lists it
    at = [i.kind for i in result.inputs].index("redist_archive")
    assert [i.name for i in result.inputs[at - 1 : at + 6]] == [
        'CUDA_REDIST_JSON_DICT["12.5.1"]',
        "cuda_cccl",
        "cuda_nvcc",
        'CUDA_REDIST_JSON_DICT["12.6.0"]',
        'CUDNN_REDIST_JSON_DICT["9.3.0"]',
        "cudnn",
        "cudnn",
    ]
    assert result.sizes() == {
        "download_bytes": 1200412 + 58812340 + 602112000 + 2233 + 1226,
        "unsized": 14,  # machinery and a wheel for aarch64 are listed, not counted
        "by_kind": {
            "demo_java_import": {"inputs": 1, "bytes": 0, "unsized": 1},
            "filegroup_external": {"inputs": 3, "bytes": 0, "unsized": 3},
            "http_file": {"inputs": 1, "bytes": 0, "unsized": 1},
            "java_import_external": {"inputs": 1, "bytes": 0, "unsized": 1},
            "maven_install": {"inputs": 2, "bytes": 0, "unsized": 2},
            "redist_archive": {"inputs": 3, "bytes": 662124752, "unsized": 0},
            "redistrib_manifest": {"inputs": 4, "bytes": 3459, "unsized": 2},
            "repository_rule_download": {"inputs": 1, "bytes": 0, "unsized": 1},
            "url_constant": {"inputs": 1, "bytes": 0, "unsized": 1},
            "wheel": {"inputs": 2, "bytes": 0, "unsized": 2},
        },
    }
    summary = result.to_json()["summary"]
    assert (summary["inputs"], summary["download_bytes"], summary["unsized"]) == (
        24,
        662128211,
        14,
    )


def test_manifests_for_another_platform() -> None:
    result = scan(HTREE, manifests=ManifestSource(MANIFESTS), platform="linux-sbsa")
    assert [(name, size, total) for name, _, _, size, total, _ in _archives(result.inputs)] == [
        ("cuda_cccl", 1199876, True),
        ("cuda_nvcc", 52001122, True),
        ("cudnn", 598000000, True),
    ]
    assert all("/linux-sbsa/" in i.urls[0] for i in result.inputs if i.kind == "redist_archive")


def test_only_selected_manifests_are_expanded() -> None:
    result = scan(HTREE, manifests=ManifestSource(MANIFESTS, only=("redistrib_9.*",)))
    assert [a[0] for a in _archives(result.inputs)] == ["cudnn", "cudnn"]
    cuda = next(i for i in result.inputs if i.name == 'CUDA_REDIST_JSON_DICT["12.5.1"]')
    assert (cuda.note, cuda.size) == ("not expanded: not selected", None)


def test_manifest_with_another_hash_is_an_error(tmp_path: Path) -> None:
    shutil.copytree(MANIFESTS, tmp_path / "m")
    changed = tmp_path / "m/redistrib_9.3.0.json"
    changed.write_text(changed.read_text().replace("602112000", "602112001"))
    actual = hashlib.sha256(changed.read_bytes()).hexdigest()
    with pytest.raises(ManifestError) as e:
        scan(HTREE, manifests=ManifestSource(tmp_path / "m"))
    message = str(e.value)
    assert actual in message
    assert "4c0a4a49ad744e443b1083a6870df325cac54e714bfbd0b758a26e3aaeab3653" in message
    assert f"{CUDA_BZL}:19" in message


def test_manifest_links_and_odd_names_are_not_followed(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    (tmp_path / "m/redistrib_12.5.1.json").symlink_to(MANIFESTS / "redistrib_12.5.1.json")
    result = scan(HTREE, manifests=ManifestSource(tmp_path / "m"))
    cuda = next(i for i in result.inputs if i.name == 'CUDA_REDIST_JSON_DICT["12.5.1"]')
    assert cuda.note is not None and cuda.note.startswith("not expanded: ")
    assert "redistrib_12.5.1.json" in cuda.note and not _archives(result.inputs)
    assert file_name("https://example.org/a/..") == ""
    assert file_name("https://example.org/a/redistrib_1.json?x=1") == "redistrib_1.json"


class _Recorder(http.server.SimpleHTTPRequestHandler):
    """Serves a directory, quietly, and remembers every path asked for."""

    asked: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        type(self).asked.append(self.path)
        super().do_GET()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def served(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[str, Path, list[str]]]:
    """A local HTTP server (127.0.0.1 only) over a directory laid out as NVIDIA's; the
    proxy settings of the environment are not used for it."""
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    site = tmp_path / "site"
    for product, name in (("cuda", "redistrib_12.5.1.json"), ("cudnn", "redistrib_9.3.0.json")):
        (site / product / "redist").mkdir(parents=True)
        shutil.copy(MANIFESTS / name, site / product / "redist" / name)
    asked: list[str] = []
    handler = type("Handler", (_Recorder,), {"asked": asked})
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(handler, directory=str(site))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", site, asked
    finally:
        server.shutdown()
        server.server_close()


def _local_tree(tmp_path: Path, base: str) -> Path:
    tree = tmp_path / "tree"
    shutil.copytree(HTREE, tree)
    bzl = tree / CUDA_BZL
    bzl.write_text(bzl.read_text().replace("https://developer.download.nvidia.com/compute", base))
    return tree


def test_fetch_manifests_only_when_allowed(
    tmp_path: Path, served: tuple[str, Path, list[str]]
) -> None:
    base, site, asked = served
    tree = _local_tree(tmp_path, base)
    (tmp_path / "empty").mkdir()
    quiet = scan(tree, manifests=ManifestSource(tmp_path / "empty"))
    assert asked == [] and not _archives(quiet.inputs)  # no network without fetch
    result = scan(tree, manifests=ManifestSource(tmp_path / "empty", fetch=True))
    assert sorted(asked) == [
        "/cuda/redist/redistrib_12.5.1.json",
        "/cuda/redist/redistrib_12.6.0.json",  # 404: noted, not fatal
        "/cudnn/redist/redistrib_9.3.0.json",
        "/nvshmem/redist/redistrib_3.2.5.json",  # 404; the http_file manifest is followed too
    ]
    local = [
        (n, u.replace(base, NVIDIA), v, s, t, note)
        for n, u, v, s, t, note in _archives(result.inputs)
    ]
    assert local == EXPANDED_X86
    by_name = {i.name: i for i in result.inputs}
    assert by_name['CUDA_REDIST_JSON_DICT["12.5.1"]'].note == (
        "expanded: 2 archives for linux-x86_64, fetched from "
        f"{base}/cuda/redist/redistrib_12.5.1.json"
    )
    missing = by_name['CUDA_REDIST_JSON_DICT["12.6.0"]'].note or ""
    assert missing.startswith("not expanded: ") and "404" in missing
    served_file = site / "cudnn/redist/redistrib_9.3.0.json"
    served_file.write_bytes(served_file.read_bytes() + b"\n")
    with pytest.raises(ManifestError, match=hashlib.sha256(served_file.read_bytes()).hexdigest()):
        scan(tree, manifests=ManifestSource(fetch=True))


def test_redistrib_parser_variants_full_paths_and_junk(tmp_path: Path) -> None:
    """In-tree manifests list every platform and variant; only the build platform's newest
    variant counts. full_path entries are URLs as they are; malformed entries are skipped."""
    data = {
        "release_label": "1.0",
        "lib": {
            "version": "1.0.1",
            "linux-x86_64": {
                "cuda12": {"relative_path": "lib/x/lib-cuda12.tar.xz", "size": "300"},
                "cuda11": {"relative_path": "lib/x/lib-cuda11.tar.xz", "size": "200"},
            },
            "linux-sbsa": {"full_path": "https://mirror.example.org/lib-sbsa.tar.xz", "size": 7},
            "windows-x86_64": {"relative_path": 5, "size": "9"},
            "cuda_variant": ["11", "12"],
        },
        "odd": {"linux-x86_64": {"relative_path": "odd.tar.xz", "size": "lots", "sha256": 3}},
        "junk": ["not", "a", "component"],
    }
    (tmp_path / "redistrib_1.0.json").write_text(json.dumps(data))
    found = scan(tmp_path).inputs
    assert [(i.name, i.urls, i.size, i.hash, i.in_total, i.note) for i in found] == [
        ("lib", ["lib/x/lib-cuda12.tar.xz"], 300, None, True,
         "platform linux-x86_64, cuda12; path relative to the manifest's base URL"),
        ("lib", ["lib/x/lib-cuda11.tar.xz"], 200, None, False,
         "platform linux-x86_64, cuda11; path relative to the manifest's base URL"),
        ("lib", ["https://mirror.example.org/lib-sbsa.tar.xz"], 7, None, False,
         "platform linux-sbsa"),
        ("odd", ["odd.tar.xz"], None, None, True,
         "platform linux-x86_64; path relative to the manifest's base URL"),
    ]  # fmt: skip
    # followed from a declaration: full_path stays a URL, relative_path joins the base
    manifest = tmp_path / "redistrib_1.0.json"
    item = Input(
        "http_file", "m", "WORKSPACE", 1, urls=["https://example.org/r/redistrib_1.0.json"],
        hash="sha256:" + hashlib.sha256(manifest.read_bytes()).hexdigest(), second_level=True,
    )  # fmt: skip
    expanded = expand([item], ManifestSource(tmp_path), platform="linux-sbsa")
    assert [(i.kind, i.urls, i.size) for i in expanded[1:]] == [
        ("redist_archive", ["https://mirror.example.org/lib-sbsa.tar.xz"], 7)
    ]


def test_existing_tree_counts_its_in_tree_manifest() -> None:
    sizes = scan(TREE).sizes()
    assert sizes["by_kind"]["redist_archive"] == {"inputs": 1, "bytes": 1054008, "unsized": 0}
    assert (sizes["download_bytes"], sizes["unsized"]) == (1054008, 30)


def _cli(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "deepdeb", "inventory", *map(str, args), "--no-debian"],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "COLUMNS": "200"},
    )


def test_cli_inventory_download_size_and_errors(tmp_path: Path) -> None:
    table = _cli(HTREE, "--manifests", MANIFESTS)
    assert table.returncode == 0, table.stderr
    assert (
        "download: 662,128,211 bytes (631.5 MiB) where sizes are known; "
        "14 inputs of unknown size" in table.stdout
    )
    assert "│ redist_archive           │      3 │ 662,124,752 │            0 │" in table.stdout
    data = json.loads(_cli(HTREE, "--format", "json", "--platform", "linux-sbsa",
                           "--manifests", MANIFESTS).stdout)  # fmt: skip
    assert data["summary"]["by_kind"]["redist_archive"]["bytes"] == 1199876 + 52001122 + 598000000
    assert {i["in_total"] for i in data["inputs"] if i["kind"] == "redist_archive"} == {True}
    wheels = {"aarch64" in i["urls"][0]: i["in_total"] for i in data["inputs"]
              if i["kind"] == "wheel"}  # fmt: skip
    assert wheels == {False: False, True: True}  # on sbsa, only the aarch64 wheel counts
    usage = _cli(HTREE, "--expand", "redistrib_9*")
    assert usage.returncode == 1 and "--expand needs --manifests DIR" in usage.stderr
    shutil.copytree(MANIFESTS, tmp_path / "m")
    (tmp_path / "m/redistrib_12.5.1.json").write_text("{}")
    bad = _cli(HTREE, "--manifests", tmp_path / "m")
    assert bad.returncode == 1
    assert "856cfbe6199547889865c56824035e240f8a3d01cc9a904f0d1c7fdbfe20fca2" in bad.stderr
    assert hashlib.sha256(b"{}").hexdigest() in bad.stderr


def test_unpacked_locals_hide_file_constants(tmp_path: Path) -> None:
    """``(url, sha256) = pair`` inside a rule hides the file's ``url``/``sha256``."""
    (tmp_path / "rules.bzl").write_text(
        'url = "https://example.org/not-this.json"\n'
        f'sha256 = "{"a" * 64}"\n'
        "def _get_json(repository_ctx, pair):\n"
        "    (url, sha256) = pair\n"
        '    repository_ctx.download(url = url, sha256 = sha256, output = "x.json")\n'
    )
    assert [(i.kind, i.name, i.line, i.urls, i.hash) for i in scan(tmp_path).inputs] == [
        ("repository_rule_download", "_get_json", 5, [], None)
    ]


def test_structs_triples_and_what_a_build_for_this_machine_counts() -> None:
    """ROCm's struct(url, sha256) lists and SYCL's [url, sha256, prefix] are pinned inputs;
    a wheel for another machine, and a repository rule's own download of URLs it is given,
    are listed but not counted in the bytes a build would download."""
    inv = scan(FIXTURES / "inventory-hermetic" / "extra")
    found = {(i.kind, i.name, i.in_total) for i in inv.inputs}
    assert found == {
        ("url_constant", 'rocm_redist["6.2.0"][0]', True),
        ("url_constant", 'rocm_redist["6.2.0"][1]', True),
        ("url_constant", 'SYCL_REDIST["2025.1"]', True),
        ("wheel", 'NCCL_WHEELS["x86_64-unknown-linux-gnu"]', True),
        ("wheel", 'NCCL_WHEELS["aarch64-unknown-linux-gnu"]', False),
        ("repository_rule_download", "_impl", False),
    }
    rocm = next(i for i in inv.inputs if i.name == 'rocm_redist["6.2.0"][1]')
    assert rocm.hash == "sha256:" + "2" * 64 and rocm.line == 10
    assert inv.sizes()["by_kind"]["wheel"] == {"inputs": 1, "bytes": 0, "unsized": 1}
    assert "repository_rule_download" not in inv.sizes()["by_kind"]


# --- what the tree's configuration (.bazelrc) selects among hermetic CUDA downloads --------

CONFIGURED = FIXTURES / "inventory-configured"
CTREE, CMANIFESTS = CONFIGURED / "tree", CONFIGURED / "manifests"
NOT_USED = "not used by this configuration"


def _unused(result: Inventory) -> dict[str, str]:
    """Name -> the reason the configuration leaves it out, for every input it leaves out."""
    inputs = result.inputs
    return {
        i.name + ("" if i.kind != "redist_archive" else f" {i.version}"): (i.note or "").split(
            f"{NOT_USED}: "
        )[1]
        for i in inputs
        if NOT_USED in (i.note or "")
    }


def test_bazelrc_chooses_the_versions_that_count() -> None:
    """build:cuda in .bazelrc and in an imported file (a continued line) choose CUDA 12.4.1
    and cuDNN 9.1.0; another config, a test-only line, an import outside the tree and a
    self-import change nothing. Only those manifests are expanded, only the components
    with a build template count, NCCL for CUDA 11 and NVSHMEM (unset) do not."""
    result = scan(CTREE, manifests=ManifestSource(CMANIFESTS))
    assert result.configuration.to_json() == {
        "settings": {
            "HERMETIC_CUDA_VERSION": {"values": ["12.4.1"], "where": ".bazelrc:6, build:cuda"},
            "HERMETIC_CUDNN_VERSION": {
                "values": ["9.1.0"],
                "where": "tools/cuda.bazelrc:2, build:cuda",
            },
        },
        "components": ["cuda_cudart", "cuda_nvcc", "cudnn", "libcublas"],
    }
    assert _unused(result) == {
        "nsight_compute 2024.1.1.4": "no build template for nsight_compute "
        "(*VERSIONS_TO_BUILD_TEMPLATES)",
        "cuda_documentation 12.4.127": "no build template for cuda_documentation "
        "(*VERSIONS_TO_BUILD_TEMPLATES)",
        'CUDA_REDIST_JSON_DICT["12.6.0"]': "HERMETIC_CUDA_VERSION=12.4.1 (.bazelrc:6, build:cuda)",
        'MIRRORED_TARS_CUDA_REDIST_JSON_DICT["12.4.1"]': "a mirrored tar manifest, read only "
        "with USE_CUDA_TAR_ARCHIVE_FILES set",
        'CUDNN_REDIST_JSON_DICT["9.2.0"]': "HERMETIC_CUDNN_VERSION=9.1.0 "
        "(tools/cuda.bazelrc:2, build:cuda)",
        'NVSHMEM_REDIST_JSON_DICT["3.1.7"]': "HERMETIC_NVSHMEM_VERSION is not set",
        'CUDA_11_NCCL_WHEEL_DICT["x86_64-unknown-linux-gnu"]': "NCCL for CUDA 11, "
        "HERMETIC_CUDA_VERSION=12.4.1",
    }
    by_name = {i.name: i for i in result.inputs}
    unused = by_name['CUDA_REDIST_JSON_DICT["12.6.0"]']
    assert (unused.size, unused.in_total) == (None, False)  # in DIR, but not read
    assert not [i for i in result.inputs if i.kind == "redist_archive" and "12.6" in i.urls[0]]
    assert result.sizes() == {
        # cudart, nvcc, cublas (a second *VERSIONS_TO_BUILD_TEMPLATES), cuDNN for CUDA 12;
        # the two manifests read
        "download_bytes": 1_100_000 + 52_000_000 + 480_000_000 + 540_000_000 + 3021 + 738,
        "unsized": 1,
        "by_kind": {
            "redist_archive": {"inputs": 4, "bytes": 1_073_100_000, "unsized": 0},
            "redistrib_manifest": {"inputs": 2, "bytes": 3759, "unsized": 0},
            "wheel": {"inputs": 1, "bytes": 0, "unsized": 1},
        },
    }


def test_explicit_versions_replace_the_bazelrc_and_no_configuration_counts_all() -> None:
    result = scan(CTREE, manifests=ManifestSource(CMANIFESTS), versions={"cuda": "12.6.0"})
    counted = [(i.name, i.version) for i in result.inputs if i.in_total and i.size]
    assert counted == [
        ('CUDA_REDIST_JSON_DICT["12.6.0"]', "12.6.0"),
        ("cuda_cudart", "12.6.37"),
        ("cuda_nvcc", "12.6.20"),
        ("libcublas", "12.6.0.22"),
        ('CUDNN_REDIST_JSON_DICT["9.1.0"]', "9.1.0"),
        ("cudnn", "9.1.0.70"),
    ]
    assert _unused(result)['CUDA_REDIST_JSON_DICT["12.4.1"]'] == (
        "HERMETIC_CUDA_VERSION=12.6.0 (--cuda-version)"
    )
    # the hermetic fixture has no .bazelrc: every version counts, as before
    plain = scan(HTREE, manifests=ManifestSource(MANIFESTS))
    assert not plain.configuration.hermetic and not _unused(plain)


def _tree_with(tmp_path: Path, bazelrc: str) -> Path:
    tree = tmp_path / "tree"
    shutil.copytree(CTREE, tree)
    (tree / ".bazelrc").write_text(bazelrc)
    return tree


def test_bazelrc_variants(tmp_path: Path) -> None:
    """Tar manifests when USE_CUDA_TAR_ARCHIVE_FILES is set; a plain build line when no
    cuda config sets it; TF_CUDA_VERSION as the fallback; configs that disagree count
    both versions; a line Bazel could not read either is skipped."""
    tree = _tree_with(
        tmp_path,
        "build:cuda --repo_env=HERMETIC_CUDA_VERSION=12.4.1 "
        "--repo_env=USE_CUDA_TAR_ARCHIVE_FILES=1\n"
        "build --action_env=TF_CUDNN_VERSION=9.2.0\n"
        "build:cuda --repo_env=HERMETIC_NVSHMEM_VERSION='3.1.7 # unclosed\n",
    )
    result = scan(tree)
    unused = _unused(result)
    assert unused['CUDA_REDIST_JSON_DICT["12.4.1"]'] == (
        "USE_CUDA_TAR_ARCHIVE_FILES (.bazelrc:1, build:cuda) reads the mirrored tar "
        "manifest instead"
    )
    assert 'MIRRORED_TARS_CUDA_REDIST_JSON_DICT["12.4.1"]' not in unused
    assert unused['CUDNN_REDIST_JSON_DICT["9.1.0"]'] == (
        "HERMETIC_CUDNN_VERSION=9.2.0 (.bazelrc:2, build)"
    )
    assert unused['NVSHMEM_REDIST_JSON_DICT["3.1.7"]'] == "HERMETIC_NVSHMEM_VERSION is not set"
    both = scan(
        _tree_with(
            tmp_path / "2",
            "build:a --repo_env=HERMETIC_CUDA_VERSION=12.4.1\n"
            "build:b --repo_env=HERMETIC_CUDA_VERSION=12.6.0\n",
        )
    )
    setting = both.configuration.settings["HERMETIC_CUDA_VERSION"]
    assert (setting.values, setting.where) == (
        ("12.4.1", "12.6.0"),
        ".bazelrc:1, build:a; .bazelrc:2, build:b",
    )
    assert not [k for k in _unused(both) if k.startswith("CUDA_REDIST")]


def test_cli_versions_and_configuration_line() -> None:
    table = _cli(CTREE, "--manifests", CMANIFESTS)
    assert table.returncode == 0, table.stderr
    assert (
        "configuration: HERMETIC_CUDA_VERSION=12.4.1 (.bazelrc:6, build:cuda); "
        "HERMETIC_CUDNN_VERSION=9.1.0 (tools/cuda.bazelrc:2, build:cuda); "
        "7 inputs listed as not used by this configuration" in table.stdout
    )
    assert "download: 1,073,103,759 bytes" in table.stdout
    data = json.loads(
        _cli(
            CTREE, "--format", "json", "--manifests", CMANIFESTS, "--cudnn-version", "9.2.0"
        ).stdout
    )
    assert data["configuration"]["settings"]["HERMETIC_CUDNN_VERSION"] == {
        "values": ["9.2.0"],
        "where": "--cudnn-version",
    }
    cudnn = [i for i in data["inputs"] if i["name"] == "cudnn" and i["in_total"]]
    assert [(i["version"], i["size"]) for i in cudnn] == [("9.2.0.82", 560_000_000)]


@pytest.mark.parametrize(
    ("url", "x86_64", "sbsa"),
    [
        ("https://h/nvidia_nccl_cu12-2.25.1-py3-none-manylinux2014_x86_64.whl", True, False),
        ("https://h/n-1.0-py3-none-manylinux2014_aarch64.manylinux_2_17_aarch64.whl#sha256=ab",
         False, True),
        ("https://h/n-1.0-cp311-cp311-musllinux_1_2_x86_64.whl?download=1", True, False),
        ("https://h/n-1.0-cp311-cp311-win_amd64.whl", False, False),
        ("https://h/n-1.0-cp311-cp311-macosx_11_0_arm64.whl", False, False),
        ("https://h/n-1.0-py3-none-any.whl", True, True),
        ("https://h/not-a-wheel-name.whl", True, True),  # unreadable: counted, not guessed
    ],
)  # fmt: skip
def test_wheels_for_this_machine_by_their_tags(url: str, x86_64: bool, sbsa: bool) -> None:
    item = Input("wheel", "W", "f.bzl", 1, urls=[url])
    assert [not _not_in_total(item, p) for p in ("linux-x86_64", "linux-sbsa")] == [x86_64, sbsa]


def test_bazelrc_reads_only_the_trees_own_files(tmp_path: Path) -> None:
    """An import through a directory linked out of the tree is not read; an empty
    USE_CUDA_TAR_ARCHIVE_FILES is off (the rules test the string)."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "x.bazelrc").write_text("build:cuda --repo_env=HERMETIC_CUDA_VERSION=12.6.0\n")
    tree = _tree_with(
        tmp_path,
        "build:cuda --repo_env=HERMETIC_CUDA_VERSION=12.4.1 "
        "--repo_env=USE_CUDA_TAR_ARCHIVE_FILES=\n"
        "try-import %workspace%/linked/x.bazelrc\n",
    )
    (tree / "linked").symlink_to(outside)
    result = scan(tree)
    assert result.configuration.settings["HERMETIC_CUDA_VERSION"].values == ("12.4.1",)
    unused = _unused(result)
    assert 'CUDA_REDIST_JSON_DICT["12.4.1"]' not in unused
    assert unused['MIRRORED_TARS_CUDA_REDIST_JSON_DICT["12.4.1"]'].startswith("a mirrored tar")
