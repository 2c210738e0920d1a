"""Hostile inputs: wheels and recipe values written to escape, exhaust or crash deepdeb.
Each must be refused with a clear error, before anything is written where it should not be."""

from __future__ import annotations

import io
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from http.client import HTTPMessage
from pathlib import Path

import pytest
from conftest import FIXTURES, build, vecmath_recipe
from wheelmaker import make_wheel, record_hash

from deepdeb.errors import BuildError, SourceError, WheelError
from deepdeb.hermetic import sandbox
from deepdeb.inventory import scan as inventory
from deepdeb.licence import audit
from deepdeb.sources import fetch
from deepdeb.sources.wheelfile import open_wheel
from deepdeb.util import cache_root
from deepdeb.wheel.package import PackageSpec, build_package

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
        handler.redirect_request(
            urllib.request.Request("http://example.org/x.tar.gz"), io.BytesIO(), 302, "Found",
            HTTPMessage(), "http://127.0.0.1/secret",
        )  # fmt: skip


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


# --- builds that attack their host ----------------------------------------------------------


def hostile(tmp_path: Path, mode: str, *targets: str) -> Path:
    """A copy of the hostile fixture set to ``mode``; returns its recipe."""
    shutil.copytree(FIXTURES / "hostile-1.0", tmp_path / "hostile-1.0")
    (tmp_path / "hostile-1.0" / "mode").write_text("\n".join([mode, *targets]) + "\n")
    shutil.copyfile(FIXTURES / "hostile.toml", tmp_path / "hostile.toml")
    return tmp_path / "hostile.toml"


def probes(error: BuildError) -> dict[str, str]:
    """The PROBE lines of the failed build's log: what the attack tried, and the outcome."""
    text = error.log.read_text()
    return dict(re.findall(r"^PROBE (.+?): (.+)$", text, flags=re.M))


def no_build_processes_left() -> bool:
    return subprocess.run(["pgrep", "-u", "deepdeb-build"], capture_output=True).stdout == b""


@pytest.mark.slow
def test_a_build_cannot_escape_or_see_the_hosts_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"  # the invoking user's home, with the usual secrets in it
    for secret in (".gnupg/private-keys-v1.d/key", ".ssh/id_ed25519", ".netrc"):
        (home / secret).parent.mkdir(parents=True, exist_ok=True)
        (home / secret).write_text("SECRET\n")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "SECRET")
    repo_key = tmp_path / "repo/conf/gnupg/private-keys-v1.d/signing.key"
    repo_key.parent.mkdir(parents=True)
    repo_key.write_text("SECRET\n")
    with (
        socket.socket(socket.AF_UNIX) as unix,
        socket.socket(socket.AF_UNIX) as abstract,
        socket.socket() as tcp,
    ):
        unix.bind(str(tmp_path / "host.sock"))
        abstract.bind(f"\0deepdeb-test-{os.getpid()}")
        tcp.bind(("127.0.0.1", 0))
        for server in (unix, abstract, tcp):
            server.listen()
        targets = [
            f"file {home}/.gnupg/private-keys-v1.d/key", f"dir {home}/.ssh",
            f"file {home}/.netrc", f"file {repo_key}", "dir /root", "dir /var/log",
            f"dir {cache_root()}", f"dir {tmp_path}", "file /etc/shadow", "file /etc/gshadow",
            f"socket {tmp_path / 'host.sock'}", f"abstract deepdeb-test-{os.getpid()}",
            f"tcp {tcp.getsockname()[1]}",
        ]  # fmt: skip
        with pytest.raises(BuildError) as failed:
            build(hostile(tmp_path, "escape", *targets), tmp_path / "out")
    found = probes(failed.value)
    assert len(found) >= 10 + len(targets), found
    escaped = {what: how for what, how in found.items() if how != "contained"}
    assert escaped == {}
    assert "SECRET" not in failed.value.log.read_text()
    assert not Path("/usr/deepdeb-escaped").exists() and not Path("/etc/deepdeb-escaped").exists()
    assert no_build_processes_left()


@pytest.mark.slow
def test_a_fork_bomb_stops_at_the_process_limit(tmp_path: Path) -> None:
    with pytest.raises(BuildError) as failed:
        build(hostile(tmp_path, "fork"), tmp_path / "out")
    started = int(probes(failed.value)["fork"].split()[-1])
    assert 0 < started < 4096  # RLIMIT_NPROC of the build user, shared by both builds
    time.sleep(0.5)
    assert no_build_processes_left()


@pytest.mark.slow
def test_a_build_that_fills_the_disk_is_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEEPDEB_LIMIT_DISK_BYTES", "256M")
    free = shutil.disk_usage(tmp_path).free
    with pytest.raises(BuildError, match=r"was stopped: it wrote more than 256 MiB into its"):
        build(hostile(tmp_path, "disk"), tmp_path / "out")
    assert no_build_processes_left()
    # it was stopped long before its 20 GB: at most the limit plus two seconds of writing
    assert free - shutil.disk_usage(tmp_path).free < 8 << 30


@pytest.mark.slow
def test_a_build_that_eats_memory_is_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEEPDEB_LIMIT_MEMORY_BYTES", "256M")
    probe = sandbox.make_cgroup(sandbox.current_limits())
    if probe is None:
        pytest.skip("this kernel lets deepdeb make no cgroup: no memory limit to test")
    sandbox.remove_cgroup(probe)
    with pytest.raises(BuildError, match=r"lack of memory: the run may use 256 MiB") as failed:
        build(hostile(tmp_path, "memory"), tmp_path / "out")
    assert "memory" not in probes(failed.value)  # it never got its 16 GiB
    assert no_build_processes_left()


@pytest.mark.slow
def test_tmp_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEEPDEB_LIMIT_TMP_BYTES", "64M")
    with pytest.raises(BuildError) as failed:
        build(hostile(tmp_path, "tmp"), tmp_path / "out")
    assert probes(failed.value) == {"tmp": "contained"}


@pytest.mark.slow
def test_packages_planted_as_links_are_refused(tmp_path: Path) -> None:
    with pytest.raises(BuildError, match=r"hostile_1.0-1_amd64.deb is not a regular file"):
        build(hostile(tmp_path, "links"), tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_a_benchmark_sees_no_secrets_and_no_privileges(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh/id_ed25519").write_text("SECRET\n")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "SECRET")
    checks = (
        'test -z "$AWS_SECRET_ACCESS_KEY" || exit 11; '
        f"! ls {home}/.ssh 2>/dev/null || exit 12; "
        "! cat /etc/shadow 2>/dev/null || exit 13; "
        'test "$(id -u)" != 0 || exit 14; '
        "! touch /usr/deepdeb-escaped 2>/dev/null || exit 15; "
        "vecmath-bench 100"
    )
    report = build(vecmath_recipe(tmp_path, checks), tmp_path / "out", levels=["x86-64-v2"])
    assert report.levels[1].measured  # every check passed at every run


POSTINST = """#!/bin/sh
# A built package's maintainer script, run by dpkg as root in the check root.
probe() { name=$1; shift
    if "$@" >/dev/null 2>&1; then echo "$name: escaped"; else echo "$name: contained"; fi; }
{
    probe mount mount -t tmpfs none /mnt
    probe mknod mknod /dev/deepdeb-disk b 8 0
    probe network python3 -c "import socket; socket.create_connection(('1.1.1.1', 53), timeout=3)"
    probe module modprobe -n dummy
    probe raw-disk sh -c 'ls /dev | grep -Eq "^(sd|vd|nvme)"'
} > /postinst-probes
exit 0
"""


@pytest.mark.slow
def test_maintainer_scripts_of_built_packages_stay_in_their_root(tmp_path: Path) -> None:
    """The loader checks install the built packages, so dpkg runs their maintainer scripts
    as root: with no network and without the capabilities to mount, make devices or
    load modules."""
    from deepdeb.hermetic import cleanroom

    tree = tmp_path / "pkg"
    (tree / "DEBIAN").mkdir(parents=True)
    (tree / "DEBIAN/control").write_text(
        "Package: hostile-postinst\nVersion: 1.0\nArchitecture: all\n"
        "Maintainer: deepdeb test suite <deepdeb@example.org>\nDepends: python3\n"
        "Description: a package whose postinst attacks (test)\n"
    )
    (tree / "DEBIAN/postinst").write_text(POSTINST)
    (tree / "DEBIAN/postinst").chmod(0o755)
    deb = tmp_path / "hostile-postinst_1.0_all.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "-b", tree, deb], check=True,
                   capture_output=True)  # fmt: skip
    root = tmp_path / "root"
    cleanroom.unpack_chroot(cleanroom.runtime_chroot(), root)
    proc = cleanroom.install_packages(root, [deb])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = dict(line.split(": ") for line in (root / "postinst-probes").read_text().splitlines())
    assert results == dict.fromkeys(
        ("mount", "mknod", "network", "module", "raw-disk"), "contained"
    )


# --- parsers that must not crash or hang --------------------------------------------------


def test_inventory_reads_hostile_trees_without_crashing_or_hanging(tmp_path: Path) -> None:
    (tmp_path / "WORKSPACE").write_bytes(b'http_archive(name = "x\0y", url = "http://a")\n')
    (tmp_path / "deep").mkdir()
    (tmp_path / "deep/deps.bzl").write_text("X = " + "[" * 5000 + "]" * 5000 + "\n")
    (tmp_path / "rust").mkdir()
    (tmp_path / "rust/Cargo.lock").write_text(
        '[[package]]\nname = 5\nversion = "1"\nsource = "registry+https://example.org"\n'
    )
    (tmp_path / "fifo").mkdir()
    os.mkfifo(tmp_path / "fifo/WORKSPACE")  # a plain open() would wait forever
    os.mkfifo(tmp_path / "fifo/requirements.txt")
    (tmp_path / "fifo/CMakeLists.txt").symlink_to("/dev/zero")  # would never end
    result = inventory.scan(tmp_path)
    notes = {i.file: i.note or "" for i in result.inputs if i.kind == "unparsed"}
    assert "null bytes" in notes["WORKSPACE"]
    assert "deep/deps.bzl" in notes
    assert "name and version must be strings" in notes["rust/Cargo.lock"]
    assert not any(i.file.startswith("fifo/") for i in result.inputs)


def test_audit_of_hostile_trees_is_a_verdict_not_a_hang(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    verdict = audit.audit_target(empty, tmp_path / "w1").verdict
    assert (verdict.area, verdict.redistributable) == ("local-only", False)
    assert "needs human review" in " ".join(verdict.redistributable_reasons)
    fifo = tmp_path / "fifo"
    fifo.mkdir()
    (fifo / "mit.c").write_text("// SPDX-License-Identifier: MIT\nint x;\n")
    os.mkfifo(fifo / "LICENSE")
    (fifo / "COPYING").symlink_to("/dev/zero")
    result = audit.audit_target(fifo, tmp_path / "w2")
    assert [f.path for f in result.verdict.files] == ["mit.c"]
    garbage = tmp_path / "garbage-1.0-py3-none-any.whl"
    garbage.write_bytes(b"not a zip")
    with pytest.raises(WheelError, match="not a wheel"):
        audit.audit_target(garbage, tmp_path / "w3")


# --- interrupted runs -----------------------------------------------------------------------


def _start_and_stop(recipe: Path, out: Path, env: dict[str, str], how: int) -> str:
    """Start a build of the sleeping fixture, send ``how`` once it builds; its stderr."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "deepdeb", "build", str(recipe), "--out", str(out)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    logs = Path(env["TMPDIR"]).glob
    deadline = time.monotonic() + 120
    while not list(logs("deepdeb-hostile-*/logs/*.log")) and time.monotonic() < deadline:
        time.sleep(0.5)
    time.sleep(3)  # the builds are in their sandboxes now
    proc.send_signal(how)
    _, err = proc.communicate(timeout=60)
    time.sleep(0.5)
    return err


@pytest.mark.slow
def test_interrupted_runs_stop_their_builds_and_leave_nothing_unsaid(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = out / ".staging-killed"  # complete packages a killed run left half-published
    stale.mkdir()
    (stale / ".deepdeb-pid").write_text(f"{dead.pid}\n")
    (stale / "libfoo1_1.0-1_amd64.deb").write_bytes(b"!<arch>\n")
    recipe = hostile(tmp_path, "sleep")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    env = dict(os.environ, TMPDIR=str(scratch))
    # SIGTERM: like Ctrl-C, the builds stop and the scratch directory is named
    err = _start_and_stop(recipe, out, env, signal.SIGTERM)
    assert f"removing {stale}, left by an interrupted run" in err.replace("\n", "")
    assert "interrupted" in err and "work directory kept for inspection:" in err
    assert no_build_processes_left()
    assert list(out.iterdir()) == []
    for kept in scratch.glob("deepdeb-hostile-*"):
        shutil.rmtree(kept)
    # SIGKILL: nothing can run then; the builds die with it, and the next run names the
    # scratch directory it left
    _start_and_stop(recipe, out, env, signal.SIGKILL)
    assert no_build_processes_left()
    (killed,) = scratch.glob("deepdeb-hostile-*")
    (recipe.parent / "hostile-1.0" / "mode").write_text("tmp\n")  # a quick failure now
    again = subprocess.run(
        [sys.executable, "-m", "deepdeb", "build", str(recipe), "--out", str(out)],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert f"{killed} was left by an interrupted run" in again.stderr.replace("\n", "")


def test_leftovers_are_those_of_dead_runs(tmp_path: Path) -> None:
    from deepdeb.isa.pipeline import leftovers

    dead = subprocess.Popen(["true"])
    dead.wait()
    for name, pid in (("deepdeb-a-1", dead.pid), ("deepdeb-b-2", os.getpid())):
        (tmp_path / name).mkdir()
        (tmp_path / name / ".deepdeb-pid").write_text(f"{pid}\n")
    (tmp_path / "deepdeb-c-3").mkdir()  # not deepdeb's (no owner): never touched
    assert leftovers(tmp_path, "deepdeb-") == [tmp_path / "deepdeb-a-1"]
