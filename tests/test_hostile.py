"""Hostile inputs: wheels and recipe values written to escape, exhaust or crash deepdeb.
Each must be refused with a clear error, before anything is written where it should not be."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import pytest
from wheelmaker import make_wheel, record_hash

from deepdeb import fetch
from deepdeb.errors import SourceError
from deepdeb.pywheel import PackageSpec, build_package
from deepdeb.wheel import WheelError, open_wheel

DIST = "evil-1.0.dist-info"
METADATA = b"Metadata-Version: 2.4\nName: evil\nVersion: 1.0\n"
WHEEL = b"Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n"


def raw_wheel(dest: Path, members: dict[str, bytes], record: bool = True) -> Path:
    """A wheel with exactly ``members`` (and a correct RECORD unless ``record`` is false)."""
    members = dict(members)
    if record:
        rows = [f"{p},{record_hash(d)},{len(d)}" for p, d in members.items()]
        members[f"{DIST}/RECORD"] = ("\n".join([*rows, f"{DIST}/RECORD,,"]) + "\n").encode()
    wheel = dest / "evil-1.0-py3-none-any.whl"
    dest.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as zf:
        for path, data in members.items():
            info = zipfile.ZipInfo(path, date_time=(2026, 11, 2, 12, 0, 0))
            zf.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED)
    return wheel


def base(**changes: bytes) -> dict[str, bytes]:
    members = {f"{DIST}/METADATA": METADATA, f"{DIST}/WHEEL": WHEEL, "evil/__init__.py": b""}
    for name, data in changes.items():
        members[f"{DIST}/{name.replace('_', '.')}" if name != "module" else "evil/x.py"] = data
    return members


def test_an_entry_point_named_like_a_path_is_refused_before_writing(tmp_path: Path) -> None:
    wheel = make_wheel(
        tmp_path / "w", "evil", "1.0", {"evil/__init__.py": b"def main(): pass\n"},
        entry_points="[console_scripts]\n../../../../tmp/pwned = evil:main\n",
    )  # fmt: skip
    with pytest.raises(WheelError, match=r"entry point name '../../../../tmp/pwned' is not a file"):
        open_wheel(wheel)


@pytest.mark.parametrize(
    "target",
    ["evil:main\nimport os; os.system('id')", "os; import subprocess", "evil:main()", ""],
)
def test_an_entry_point_that_is_not_module_object_is_refused(tmp_path: Path, target: str) -> None:
    text = "[console_scripts]\nevil = " + target.replace("\n", "\n ") + "\n"
    wheel = raw_wheel(tmp_path, {**base(), f"{DIST}/entry_points.txt": text.encode()})
    with pytest.raises(WheelError, match=r"is not module:object|malformed"):
        open_wheel(wheel)


def test_a_zip_bomb_is_refused_before_extraction(tmp_path: Path) -> None:
    members = {**base(), "evil/zeros.bin": b"\0" * (300 << 20)}  # 300 MiB of zeros: ~300 KiB
    wheel = raw_wheel(tmp_path, members)
    assert wheel.stat().st_size < 2 << 20
    with pytest.raises(WheelError, match="a zip bomb"):
        open_wheel(wheel)


NO_META = {f"{DIST}/WHEEL": WHEEL, "evil/__init__.py": b""}
NO_WHEEL = {f"{DIST}/METADATA": METADATA, "evil/__init__.py": b""}
META = "Metadata-Version: 2.4\n"
BAD_B64 = b"evil/__init__.py,sha256=!!!notbase64!!!,0\n"


@pytest.mark.parametrize(
    ("members", "record", "message"),
    [
        (NO_META, True, "no evil-1.0.dist-info/METADATA"),
        (NO_WHEEL, True, "no evil-1.0.dist-info/WHEEL"),
        (base(METADATA=f"{META}Name: caf\xe9\nVersion: 1\n".encode("latin-1")), True,
         "METADATA is not UTF-8"),
        (base(METADATA=f"{META}Version: 1.0\n".encode()), True, "METADATA has no valid Name"),
        (base(METADATA=f"{META}Name: ../x\nVersion: 1.0\n".encode()), True, "no valid Name"),
        (base(METADATA=f"{META}Name: evil\n".encode()), True, "METADATA has no Version"),
        ({**base(), f"{DIST}/RECORD": BAD_B64}, False, "malformed sha256"),
        ({**base(), f"{DIST}/RECORD": b"evil/__init__.py,sha256=AAAA,0\n"}, False,
         "sha256 value of 3"),
        ({**base(), f"{DIST}/entry_points.txt": b"not an ini file\n"}, True,
         "entry_points.txt is malformed"),
    ],
)  # fmt: skip
def test_broken_wheels_are_errors_not_tracebacks(
    tmp_path: Path, members: dict[str, bytes], record: bool, message: str
) -> None:
    with pytest.raises(WheelError, match=message):
        open_wheel(raw_wheel(tmp_path, members, record))


def test_garbage_and_non_files_are_not_wheels(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage-1.0-py3-none-any.whl"
    garbage.write_bytes(b"PK\x03\x04" + b"\xff" * 100)
    with pytest.raises(WheelError, match="not a wheel"):
        open_wheel(garbage)
    with pytest.raises(WheelError, match="not a regular file"):
        open_wheel(tmp_path)


def test_package_names_that_are_paths_never_reach_the_filesystem(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious").write_text("keep me\n")
    wheel = open_wheel(make_wheel(tmp_path / "w", "fine", "1.0", {"fine/__init__.py": b""}))
    work = tmp_path / "work"
    work.mkdir()
    for name in (str(victim), "../victim", "python3-ok/../../victim"):
        with pytest.raises(WheelError, match="not a Debian package name"):
            build_package(wheel, PackageSpec(name, "1.0-1"), work, tmp_path / "out")
    assert (victim / "precious").read_text() == "keep me\n"
    assert list(work.iterdir()) == []


# --- sources ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("file:///dev/zero", "must name a regular file"),
        ("http://127.0.0.1:9/x.tar.gz", "127.0.0.1, an address of this machine"),
        ("http://localhost/x.tar.gz", "an address of this machine"),
        ("http://[::1]/x.tar.gz", "::1, an address of this machine"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254, an address"),
        ("ftp://example.org/x.tar.gz", "only https, http and file URLs"),
        ("gopher://example.org/x", "only https, http and file URLs"),
    ],
)
def test_url_sources_may_not_reach_devices_or_local_services(
    tmp_path: Path, url: str, message: str
) -> None:
    with pytest.raises(SourceError, match=re.escape(message)):
        fetch.fetch_url(url, "0" * 64, tmp_path / "cache")
    assert not list((tmp_path / "cache").rglob("*")) or all(
        p.is_dir() for p in (tmp_path / "cache").rglob("*")
    )


def test_redirects_are_held_to_the_same_rules() -> None:
    handler = fetch._CheckedRedirects()
    with pytest.raises(SourceError, match="an address of this machine"):
        handler.redirect_request(None, None, 302, "Found", {}, "http://127.0.0.1/secret")


def test_downloads_are_capped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    big = tmp_path / "big.tar"
    big.write_bytes(b"x" * (3 << 20))
    monkeypatch.setattr(fetch, "MAX_DOWNLOAD_BYTES", 2 << 20)
    with pytest.raises(SourceError, match="larger than the download limit of 2097152 bytes"):
        fetch.fetch_url(big.as_uri(), "0" * 64, tmp_path / "cache")
    assert list((tmp_path / "cache" / "sha256").iterdir()) == []


@pytest.mark.parametrize(
    "url",
    ["ext::sh -c touch% /tmp/deepdeb-pwned", "ssh://git@example.org/x.git",
     "git@example.org:x.git", "http://127.0.0.1/x.git"],
)  # fmt: skip
def test_git_sources_may_not_run_commands_or_use_the_users_keys(tmp_path: Path, url: str) -> None:
    with pytest.raises(SourceError):
        fetch.fetch_git(url, "1" * 40, tmp_path / "cache")
    assert not Path("/tmp/deepdeb-pwned").exists()
