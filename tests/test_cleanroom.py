"""The clean-room backend: a cached chroot, only declared build-dependencies, same bytes."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from conftest import build, control
from debian.deb822 import Deb822

from deepdeb.errors import BuildError, ChrootError
from deepdeb.hermetic import cleanroom, diagnose
from deepdeb.util import sha256_file

FAKE_MMDEBSTRAP = """#!/bin/sh
# Stands in for mmdebstrap: counts its calls, writes a small tar at its output argument.
echo run >> "$DEEPDEB_FAKE_CALLS"
[ -n "$DEEPDEB_FAKE_FAIL" ] && { echo "E: cannot reach the mirror" >&2; exit 1; }
n=0; for arg; do case "$arg" in --*) ;; *) n=$((n+1)); [ $n = 2 ] && out="$arg";; esac; done
tmp=$(mktemp -d); mkdir -p "$tmp/etc"; echo 12 > "$tmp/etc/debian_version"
tar -cf "$out" -C "$tmp" .
"""


@pytest.fixture
def fake_mmdebstrap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    script = bindir / "mmdebstrap"
    script.write_text(FAKE_MMDEBSTRAP)
    script.chmod(0o755)
    calls = tmp_path / "calls"
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    monkeypatch.setenv("DEEPDEB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("DEEPDEB_FAKE_CALLS", str(calls))
    return calls


SPEC = cleanroom.ChrootSpec("bookworm", "amd64", "buildd", ("deb http://x bookworm main\n",))


def _calls(log: Path) -> int:
    return len(log.read_text().splitlines()) if log.exists() else 0


def test_chroot_tarball_is_made_once_and_reused(fake_mmdebstrap: Path) -> None:
    first = cleanroom.ensure_chroot(SPEC)
    assert first.created_seconds is not None and first.tarball.is_file()
    meta = json.loads(first.tarball.with_suffix(".json").read_text())
    assert meta["sha256"] == sha256_file(first.tarball) == first.sha256
    again = cleanroom.ensure_chroot(SPEC)
    assert again.created_seconds is None and again.sha256 == first.sha256
    assert _calls(fake_mmdebstrap) == 1


def test_corrupt_or_half_written_chroot_is_made_again(fake_mmdebstrap: Path) -> None:
    made = cleanroom.ensure_chroot(SPEC)
    with open(made.tarball, "ab") as f:  # corrupted after it was recorded
        f.write(b"junk")
    remade = cleanroom.ensure_chroot(SPEC)
    assert remade.created_seconds is not None and sha256_file(remade.tarball) == remade.sha256
    made.tarball.with_suffix(".json").unlink()  # a tarball without its record: half-written
    cleanroom.ensure_chroot(SPEC)
    assert _calls(fake_mmdebstrap) == 3


def test_failed_chroot_creation_leaves_nothing(
    fake_mmdebstrap: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEEPDEB_FAKE_FAIL", "1")
    with pytest.raises(ChrootError, match="cannot reach the mirror"):
        cleanroom.ensure_chroot(SPEC)
    left = [p.name for p in cleanroom.chroot_dir().iterdir() if not p.name.endswith(".lock")]
    assert left == []


def test_a_different_archive_gets_a_different_chroot() -> None:
    other = cleanroom.ChrootSpec("bookworm", "amd64", "buildd", ("deb http://y bookworm main\n",))
    assert other.key() != SPEC.key()


def test_failure_diagnosis_names_what_the_build_looked_for() -> None:
    log = (
        "zcheck.c:4:10: fatal error: zlib.h: No such file or directory\n"
        "/usr/bin/ld: cannot find -lpng16: No such file or directory\n"
        "Package 'libfoo', required by 'virtual:world', not found\n"
        "debian/rules:5: /bin/sh: 1: protoc: not found\n"
    )
    assert diagnose.missing_inputs(log) == [
        ("header", "zlib.h"),
        ("library", "png16"),
        ("pkg-config module", "libfoo"),
        ("command", "protoc"),
    ]
    assert diagnose.host_providers("header", "zlib.h") == ("zlib1g-dev",)


@pytest.mark.slow
def test_undeclared_build_dependency_fails_in_the_clean_room(tmp_path: Path) -> None:
    """zcheck uses zlib without declaring zlib1g-dev: fine on this host, not in a clean room."""
    host = build("zcheck.toml", tmp_path / "host")  # the host has zlib1g-dev installed
    assert host.backend == "host"
    with pytest.raises(BuildError) as caught:
        build("zcheck.toml", tmp_path / "clean", backend="cleanroom")
    message = str(caught.value)
    assert "header zlib.h (installed on this host by zlib1g-dev" in message
    assert "add zlib1g-dev to Build-Depends" in message
    assert not (tmp_path / "clean" / "report.json").exists()


@pytest.mark.slow
def test_clean_room_builds_are_reproducible_and_labelled(tmp_path: Path) -> None:
    """Two clean-room builds of one recipe: the same .debs, byte for byte, and the same
    build record, which names the chroot and the toolchain that was installed in it."""
    reports = [
        build("vecmath.toml", tmp_path / name, levels=["x86-64-v3"], backend="cleanroom")
        for name in ("one", "two")
    ]
    first, second = ({p.file.name: p.sha256 for p in r.packages} for r in reports)
    assert first == second and len(first) >= 3
    one, two = (r.buildinfo for r in reports)
    assert one is not None and two is not None
    assert one.read_bytes() == two.read_bytes()
    report = json.loads((tmp_path / "one" / "report.json").read_text())
    assert report["backend"] == "cleanroom"
    assert report["chroot"]["sha256"] and report["chroot"]["prepare_seconds"] > 0
    info = Deb822(one.read_text())
    assert info["Backend"] == "cleanroom" and info["Source"] == "vecmath"
    assert report["chroot"]["sha256"] in info["Chroot"]
    # debhelper was not in the chroot's base: it came from Build-Depends, and is recorded
    assert "debhelper (=" in info["Installed-Build-Depends"]
    assert "zlib1g-dev" not in info["Installed-Build-Depends"]
    for p in reports[0].packages:
        assert p.sha256 in info["Binary-Checksums-Sha256"]
    lib = next(p.file for p in reports[0].packages if p.package == "libvecmath1")
    assert control(lib)["Version"] == "1.0-1+hwcaps1"


@pytest.mark.slow
def test_build_paths_do_not_leak_into_the_packages(tmp_path: Path) -> None:
    """The work directory's random name must not appear in any shipped file."""
    report = build("vecmath.toml", tmp_path / "out", levels=["x86-64-v3"], keep_work=True)
    assert report.work_dir is not None
    needle = report.work_dir.name.encode()
    for package in report.packages:
        data = subprocess.run(
            ["dpkg-deb", "--fsys-tarfile", package.file], check=True, capture_output=True
        ).stdout
        assert needle not in data, package.file.name


def test_runtime_roots_index_binary_packages_only() -> None:
    deb822 = "Types: deb deb-src\nURIs: http://a\n\nTypes: deb-src\nURIs: http://b\n"
    assert cleanroom.binary_only(deb822) == "Types: deb\nURIs: http://a\n"
    one_line = "deb http://a bookworm main\ndeb-src http://a bookworm main\n"
    assert cleanroom.binary_only(one_line) == "deb http://a bookworm main\n"
    assert cleanroom.runtime_spec().variant == "apt"
    assert cleanroom.runtime_spec().key() != cleanroom.default_spec().key()


def test_roots_need_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    chroot = cleanroom.Chroot(tmp_path / "t.tar", "0" * 64, SPEC, None)
    with pytest.raises(ChrootError, match=r"needs root .* run deepdeb as root"):
        cleanroom.unpack_chroot(chroot, tmp_path / "root")
    assert not (tmp_path / "root").exists()
