"""deepdeb publish: a signed apt repository, what it refuses, and apt installing from it."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import expected_level
from debian.deb822 import Deb822

from deepdeb.archive import publish
from deepdeb.cli import main
from deepdeb.cpu.levels import host_cpu, tunables_mask
from deepdeb.debian.target import SUITE
from deepdeb.errors import DeepdebError, PublishError
from deepdeb.hermetic import cleanroom
from deepdeb.report.schema import BuildReport
from deepdeb.util import sha256_file


def _out(report: BuildReport) -> Path:
    return report.packages[0].file.parent


def _gpgv(repo: Path, *files: Path) -> subprocess.CompletedProcess[str]:
    keyring = repo / publish.KEYRING
    return subprocess.run(
        ["gpgv", "--keyring", str(keyring), *map(str, files)], capture_output=True, text=True
    )


def test_publish_makes_a_signed_repository_and_repeats_idempotently(
    quick_build: BuildReport, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    result = publish.publish([_out(quick_build)], repo)
    assert sorted(result.added) == sorted(p.file.name for p in quick_build.packages)
    assert not result.private and len(result.fingerprint) == 40
    dists = repo / "dists" / SUITE
    assert _gpgv(repo, dists / "InRelease").returncode == 0
    assert _gpgv(repo, dists / "Release.gpg", dists / "Release").returncode == 0
    release = Deb822((dists / "Release").read_text())
    assert release["Origin"] == "deepdeb" and release["Suite"] == "bookworm"
    packages = list(Deb822.iter_paragraphs((dists / "main/binary-amd64/Packages").read_text()))
    lib = next(p for p in packages if p["Package"] == "libvecmath1")
    assert lib["Version"] == "1.0-1+hwcaps1"
    assert lib["SHA256"] == sha256_file(repo / lib["Filename"])
    # the signing key stays out of what is served; the public key is exported for users
    assert (repo / "conf" / "gnupg").stat().st_mode & 0o077 == 0
    assert (repo / "deepdeb-archive-keyring.asc").read_text().startswith("-----BEGIN PGP")
    before = (dists / "InRelease").read_bytes()
    again = publish.publish([_out(quick_build)], repo)
    assert again.added == [] and sorted(again.unchanged) == sorted(result.added)
    assert (dists / "InRelease").read_bytes() == before
    lintian = subprocess.run(
        ["lintian", *map(str, sorted((repo / "pool").rglob("*.deb")))],
        capture_output=True,
        text=True,
    )
    assert lintian.returncode == 0 and "\nE: " not in "\n" + lintian.stdout, lintian.stdout


def _rebuilt_copy(out: Path, dest: Path, package: str) -> Path:
    """A copy of a build's output where one package was rebuilt with other contents (same
    name and version), its report updated as a real rebuild's would be."""
    shutil.copytree(out, dest)
    report = json.loads((dest / "report.json").read_text())
    entry = next(p for p in report["packages"] if p["package"] == package)
    deb = dest / entry["file"]
    tree = dest / "unpacked"
    subprocess.run(["dpkg-deb", "-R", deb, tree], check=True)
    (tree / "usr/share/doc" / package / "NEWS").write_text("rebuilt\n")
    subprocess.run(["dpkg-deb", "--root-owner-group", "-b", tree, deb], check=True,
                   capture_output=True)  # fmt: skip
    shutil.rmtree(tree)
    entry["sha256"] = sha256_file(deb)
    (dest / "report.json").write_text(json.dumps(report))
    return dest


def test_a_different_file_under_a_published_version_is_refused(
    quick_build: BuildReport, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    publish.publish([_out(quick_build)], repo)
    index = (repo / "dists/bookworm/main/binary-amd64/Packages").read_text()
    other = _rebuilt_copy(_out(quick_build), tmp_path / "rebuilt", "vecmath-bench")
    with pytest.raises(PublishError, match=r"different file under the same name") as e:
        publish.publish([other], repo)
    assert "vecmath-bench_1.0-1+hwcaps1_amd64.deb" in str(e.value)
    assert (repo / "dists/bookworm/main/binary-amd64/Packages").read_text() == index


def test_a_package_changed_since_its_build_is_refused(
    quick_build: BuildReport, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    shutil.copytree(_out(quick_build), out)
    with open(out / quick_build.packages[0].file.name, "ab") as f:
        f.write(b"\0")
    with pytest.raises(PublishError, match="SHA-256 differs"):
        publish.publish([out], tmp_path / "repo")
    assert not (tmp_path / "repo").exists()


@pytest.fixture(scope="module")
def local_only(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """vecmath with a confidential file added: a local-only (stock) build."""
    from conftest import FIXTURES, build

    tmp = tmp_path_factory.mktemp("local-only")
    tree = tmp / "vecmath-1.0"
    shutil.copytree(FIXTURES / "vecmath-1.0", tree)
    (tree / "vendor.c").write_text("/* Confidential and proprietary. */\nint v;\n")
    (tmp / "r.toml").write_text('[source]\npath = "vecmath-1.0"\n')  # a stock build
    build(tmp / "r.toml", tmp / "out")
    return tmp / "out"


def test_not_redistributable_is_refused_unless_the_repository_is_private(
    local_only: Path, tmp_path: Path
) -> None:
    public = tmp_path / "public"
    with pytest.raises(PublishError) as e:
        publish.publish([local_only], public)
    assert "libvecmath1 1.0-1+local1: not redistributable: " in str(e.value)
    assert "vendor.c" in str(e.value)
    assert not public.exists()
    private = tmp_path / "private"
    result = publish.publish([local_only], private, local=True)
    assert result.private and result.added
    release = Deb822((private / "dists/bookworm/Release").read_text())
    assert release["Label"] == "deepdeb-private" and "never serve" in release["Description"]
    assert list((private / "pool" / "local").rglob("libvecmath1_1.0-1+local1_amd64.deb"))


def test_a_public_repository_does_not_become_private(
    quick_build: BuildReport, local_only: Path, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    publish.publish([_out(quick_build)], repo)
    with pytest.raises(PublishError, match="is a public repository"):
        publish.publish([local_only], repo, local=True)


def test_publish_cli_errors_are_clear(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["publish", str(tmp_path), "--repo", str(tmp_path / "r")]) == 1
    assert "not a deepdeb build result" in capsys.readouterr().err


def _loaded_variant(root: Path, env: dict[str, str]) -> str:
    """Which libvecmath variant the installed vecmath-bench loads, as ld.so reports it."""
    proc = cleanroom.in_root(root, ["vecmath-bench", "100"], env={"LD_DEBUG": "libs", **env})
    for line in proc.stderr.splitlines():
        if "calling init:" in line and "libvecmath" in line:
            path = line.split("calling init:")[1].strip()
            found = re.search(r"/glibc-hwcaps/([^/]+)/libvecmath", path)
            return found.group(1) if found else f"baseline {path}"
    raise AssertionError(proc.stderr)


@pytest.mark.slow
def test_apt_installs_the_hwcaps_build_in_a_fresh_chroot(
    vecmath_fat: BuildReport, tmp_path: Path
) -> None:
    """The user's side: a fresh bookworm chroot trusts the repository's key, apt installs
    the package, and the loader picks the highest variant this CPU runs, and the lower
    ones when masked."""
    repo = tmp_path / "repo"
    publish.publish([_out(vecmath_fat)], repo)
    root = tmp_path / "root"
    cleanroom.unpack_chroot(cleanroom.runtime_chroot(), root)
    keyrings = root / "etc/apt/keyrings"
    keyrings.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(repo / publish.KEYRING, keyrings / "deepdeb.gpg")
    sources = root / "etc/apt/sources.list.d/deepdeb.sources"
    sources.write_text(
        "Types: deb\nURIs: file:/srv/deepdeb\nSuites: bookworm\nComponents: main\n"
        "Signed-By: /etc/apt/keyrings/deepdeb.gpg\n"
    )
    binds = [("--ro-bind", str(repo), "/srv/deepdeb")]
    # Only our repository is refreshed: the chroot's Debian index came with its tarball.
    only_ours = [
        "-o", "Dir::Etc::SourceList=/etc/apt/sources.list.d/deepdeb.sources",
        "-o", "Dir::Etc::SourceParts=/nonexistent",
        "-o", "APT::Get::List-Cleanup=false",
    ]  # fmt: skip
    cleanroom.in_root(root, ["apt-get", "update", *only_ours], binds=binds)
    cleanroom.in_root(root, ["apt-get", "install", "-y", "vecmath-bench"], binds=binds)
    status = cleanroom.in_root(root, ["dpkg-query", "-W", "libvecmath1", "vecmath-bench"])
    assert "libvecmath1:amd64\t1.0-1+hwcaps1" in status.stdout
    kept = [lv for lv in vecmath_fat.shipped_levels if lv != "x86-64"]
    assert _loaded_variant(root, {}) == expected_level(kept, host_cpu().level)
    for level in ("x86-64-v3", "x86-64-v2"):
        if host_cpu().supports(level):
            masked = {"GLIBC_TUNABLES": tunables_mask(level)}
            assert _loaded_variant(root, masked) == expected_level(kept, level)
    base = _loaded_variant(root, {"GLIBC_TUNABLES": tunables_mask("x86-64")})
    assert base == "baseline /lib/x86_64-linux-gnu/libvecmath.so.1"


def test_a_failed_first_publish_leaves_no_half_made_repository(
    quick_build: BuildReport, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "gpg").write_text("#!/bin/sh\necho 'gpg: out of entropy' >&2\nexit 2\n")
    (bindir / "gpg").chmod(0o755)
    repo = tmp_path / "repo"
    with monkeypatch.context() as m:
        m.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
        with pytest.raises(DeepdebError, match="out of entropy"):
            publish.publish([_out(quick_build)], repo)
    assert not (repo / "conf").exists() and not (repo / ".new").exists()
    result = publish.publish([_out(quick_build)], repo)  # the real gpg: works now
    assert len(result.fingerprint) == 40


# --- a publish that goes wrong -------------------------------------------------------------


@pytest.mark.parametrize(
    "report",
    [
        "[]",
        '{"packages": {"file": "x.deb"}}',
        '{"packages": [{"file": "../../../etc/passwd.deb", "package": "x", "version": "1",'
        ' "architecture": "all", "sha256": "00"}]}',
        '{"packages": [{"file": "x_1_all.deb", "package": 5}]}',
        '{"packages": ["x_1_all.deb"]}',
    ],
)
def test_a_malformed_report_is_an_error_not_a_traceback(tmp_path: Path, report: str) -> None:
    (tmp_path / "report.json").write_text(report)
    with pytest.raises(PublishError, match="report"):
        publish.publish([tmp_path], tmp_path / "repo")
    assert not (tmp_path / "repo" / "pool").exists()


def _served(repo: Path) -> bytes:
    return (repo / "dists/bookworm/main/binary-amd64/Packages").read_bytes()


def test_an_interrupted_publish_is_undone_and_the_next_one_completes(
    quick_build: BuildReport, local_only: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = tmp_path / "repo"
    publish.publish([_out(quick_build)], repo)
    before, signed = _served(repo), (repo / "dists/bookworm/InRelease").read_bytes()
    rebuilt = _rebuilt_copy(_out(quick_build), tmp_path / "rebuilt", "vecmath-bench")
    report = json.loads((rebuilt / "report.json").read_text())
    for entry in report["packages"]:  # a newer version of every package
        old = rebuilt / entry["file"]
        entry["version"] = entry["version"].replace("+hwcaps1", "+hwcaps2")
        tree = tmp_path / "t"
        subprocess.run(["dpkg-deb", "-R", old, tree], check=True)
        control = tree / "DEBIAN/control"
        control.write_text(control.read_text().replace("+hwcaps1", "+hwcaps2"))
        entry["file"] = entry["file"].replace("+hwcaps1", "+hwcaps2")
        subprocess.run(["dpkg-deb", "--root-owner-group", "-b", tree, rebuilt / entry["file"]],
                       check=True, capture_output=True)  # fmt: skip
        shutil.rmtree(tree)
        old.unlink()
        entry["sha256"] = sha256_file(rebuilt / entry["file"])
    (rebuilt / "report.json").write_text(json.dumps(report))
    real = publish._reprepro
    calls: list[str] = []

    def killed_half_way(repo: Path, env: dict[str, str], *args: str) -> None:
        calls.append(args[-1])
        if len(calls) == 2:
            raise KeyboardInterrupt  # the publish is killed after one package went in
        real(repo, env, *args)

    monkeypatch.setattr(publish, "_reprepro", killed_half_way)
    with pytest.raises(KeyboardInterrupt):
        publish.publish([rebuilt], repo)
    assert _served(repo) == before  # nothing of the half-done publish is served
    assert (repo / "dists/bookworm/InRelease").read_bytes() == signed
    (repo / "db" / "lockfile").write_text("")  # as reprepro leaves it when killed
    monkeypatch.setattr(publish, "_reprepro", real)
    result = publish.publish([rebuilt], repo)
    assert any("undid an interrupted publish" in n for n in result.notes)
    assert any("reprepro's lock of an interrupted publish" in n for n in result.notes)
    assert sorted(result.added) == sorted(e["file"] for e in report["packages"]), result
    packages = _served(repo).decode()
    assert "+hwcaps2" in packages and "+hwcaps1" not in packages
    agents = subprocess.run(["pgrep", "-f", f"gpg-agent.*{repo}"], capture_output=True)
    assert agents.stdout == b""  # no agent left behind


def test_a_file_in_the_pool_but_not_in_the_index_is_indexed_again(
    quick_build: BuildReport, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    publish.publish([_out(quick_build)], repo)
    subprocess.run(
        ["reprepro", "-b", repo, "--keepunreferencedfiles", "remove", "bookworm", "vecmath-bench"],
        check=True, capture_output=True, env=dict(os.environ, GNUPGHOME=str(repo / "conf/gnupg")),
    )  # fmt: skip
    assert "Package: vecmath-bench\n" not in _served(repo).decode()
    result = publish.publish([_out(quick_build)], repo)
    assert [n for n in result.added if n.startswith("vecmath-bench_")]
    assert "Package: vecmath-bench" in _served(repo).decode()
