"""deepdeb inventory on fixture trees of every supported format: exact results."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import FIXTURES

from deepdeb.inventory.debmatch import SourceIndex, url_keys
from deepdeb.inventory.scan import scan

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
