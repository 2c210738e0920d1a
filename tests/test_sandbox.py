"""The build sandbox: no network (attempts recorded), scrubbed environment, read-only system."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import FIXTURES, build, vecmath_recipe

from deepdeb.errors import BenchmarkError, BuildError
from deepdeb.hermetic import sandbox
from deepdeb.report.schema import BuildReport

pytestmark = pytest.mark.slow


def netfetch(tmp_path: Path, method: str) -> Path:
    """A copy of the netfetch fixture set to download with ``method``; returns its recipe."""
    shutil.copytree(FIXTURES / "netfetch-1.0", tmp_path / "netfetch-1.0")
    (tmp_path / "netfetch-1.0" / "method").write_text(method + "\n")
    recipe = tmp_path / "netfetch.toml"
    shutil.copyfile(FIXTURES / "netfetch.toml", recipe)
    return recipe


@pytest.mark.parametrize(
    ("method", "attempt"),
    [
        ("curl", "HTTPS/CONNECT to downloads.example.org:443"),
        ("git", "HTTPS/CONNECT to git.example.org:443"),
        ("pip", "HTTPS/CONNECT to pypi.org:443"),
        ("urllib", "HTTP request http://data.example.org/weights.bin"),
        ("cmake", "HTTPS/CONNECT to archive.example.org:443"),
    ],
)
def test_downloads_fail_and_are_named(tmp_path: Path, method: str, attempt: str) -> None:
    with pytest.raises(BuildError) as info:
        build(netfetch(tmp_path, method), tmp_path / "out")
    assert attempt in info.value.network
    message = str(info.value)
    tried = message.index("tried to reach the network")
    assert tried < message.index(attempt) < message.index("--- last lines of the log ---")
    assert not (tmp_path / "out").exists()


def test_writing_outside_the_build_tree_fails(tmp_path: Path) -> None:
    with pytest.raises(BuildError, match=r"\.ssh.*Read-only file system"):
        build(netfetch(tmp_path, "home"), tmp_path / "out")
    assert not (Path.home() / ".ssh" / "id_deepdeb").exists()


def test_successful_build_that_probed_the_network_is_reported(tmp_path: Path) -> None:
    report = build(netfetch(tmp_path, "probe"), tmp_path / "out")
    data = json.loads((tmp_path / "out" / "report.json").read_text())
    assert data["network_attempts"] == report.network_attempts
    assert {
        "level": "x86-64",
        "kind": "connect",
        "host": "telemetry.example.org",
        "port": 443,
        "url": None,
    } in data["network_attempts"]


def test_clean_build_makes_no_attempts(vecmath_fat: BuildReport) -> None:
    assert vecmath_fat.network_attempts == []


def run_in_sandbox(tmp_path: Path, script: str, env: dict[str, str]) -> tuple[str, list[str]]:
    """Run a shell script as a build would run: returns its output and the attempts."""
    work = tmp_path / "box"
    work.mkdir()
    sandbox.hand_over(work)
    log = tmp_path / "attempts.jsonl"
    fd = sandbox.open_attempts(log)
    try:
        jail = sandbox.wrap(["sh", "-c", script], work, work, fd, tmp_path / "private")
        clean = sandbox.scrubbed_env(env, home=Path(sandbox.HOME), tmp=Path("/tmp"))
        proc = subprocess.run(
            jail.command, env=clean, capture_output=True, text=True, timeout=60,
            pass_fds=jail.pass_fds,
        )  # fmt: skip
    finally:
        os.close(fd)
    return proc.stdout, [str(a) for a in sandbox.read_attempts(log)]


def test_environment_and_filesystem_are_scrubbed(tmp_path: Path) -> None:
    host_env = dict(
        os.environ,
        PIP_INDEX_URL="https://mirror.example.org/simple",
        HTTP_PROXY="http://corp-proxy.example.org:3128",
        GITHUB_TOKEN="secret",
        DEB_BUILD_OPTIONS="parallel=2",
    )
    script = (
        'env | sort; echo "home=$HOME"; '
        "touch /usr/deepdeb-probe 2>/dev/null && echo wrote-usr || echo usr-read-only; "
        "touch ./inside && echo wrote-inside; "
        "getent hosts deb.debian.org || echo no-dns"
    )
    out, attempts = run_in_sandbox(tmp_path, script, host_env)
    assert "PIP_INDEX_URL" not in out and "GITHUB_TOKEN" not in out
    assert "corp-proxy" not in out
    assert "https_proxy=http://127.0.0.1:" in out and "HTTP_PROXY=http://127.0.0.1:" in out
    assert "DEB_BUILD_OPTIONS=parallel=2" in out
    assert f"home={sandbox.HOME}" in out
    assert "usr-read-only" in out and "wrote-inside" in out
    assert "no-dns" in out and "DNS lookup of deb.debian.org" in attempts


def test_nothing_outlives_the_sandbox(tmp_path: Path) -> None:
    marker = f"deepdeb-sleeper-{os.getpid()}"
    run_in_sandbox(tmp_path, f"(exec -a {marker} sleep 300) & echo started", dict(os.environ))
    left = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True)
    assert left.stdout.strip() == ""


def test_host_config_files_are_hidden(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"  # the invoking user's home, never the real one
    (home / ".ssh").mkdir(parents=True)
    (home / ".netrc").write_text("machine example.org login me password secret\n")
    (home / ".ssh" / "id_ed25519").write_text("PRIVATE KEY\n")
    monkeypatch.setenv("HOME", str(home))
    build_dir = tmp_path / "b"
    build_dir.mkdir()
    out, _ = run_in_sandbox(
        build_dir, f"cat {home}/.netrc; ls {home}/.ssh; echo end", dict(os.environ)
    )
    assert "secret" not in out and out.strip() == "end"


def test_benchmark_runs_without_network(tmp_path: Path) -> None:
    recipe = vecmath_recipe(
        tmp_path, "getent hosts deb.debian.org || { echo offline >&2; exit 7; }"
    )
    with pytest.raises(BenchmarkError, match=r"\(exit 7\)(.|\n)*offline"):
        build(recipe, tmp_path / "out", levels=["x86-64-v3"])
