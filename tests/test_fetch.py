"""Fetch stage: pinned downloads into the content-addressed cache."""

from __future__ import annotations

import hashlib
import subprocess
import tarfile
from pathlib import Path

import pytest
from conftest import FIXTURES, build

from deepdeb.errors import RecipeError, SourceError
from deepdeb.recipe.load import load_recipe
from deepdeb.recipe.model import Source
from deepdeb.sources.fetch import obtain, unpack


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("DEEPDEB_CACHE", str(cache))
    return cache


def tarball(tmp_path: Path) -> tuple[Path, str]:
    path = tmp_path / "vecmath-1.0.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        tar.add(FIXTURES / "vecmath-1.0", arcname="vecmath-1.0")
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


def test_url_source_is_verified_cached_and_unpacked(tmp_path: Path, private_cache: Path) -> None:
    path, digest = tarball(tmp_path)
    package = obtain(Source(url=path.as_uri(), sha256=digest))
    assert (package.name, package.version) == ("vecmath", "1.0-1")
    assert package.archive == private_cache / "sha256" / digest
    path.unlink()  # from now on only the cache has it
    again = obtain(Source(url=path.as_uri(), sha256=digest))
    tree = unpack(again, tmp_path / "work" / "src")
    assert (tree / "debian" / "control").is_file() and (tree / "vecmath.c").is_file()


def test_checksum_mismatch_is_refused_and_not_kept(tmp_path: Path, private_cache: Path) -> None:
    path, digest = tarball(tmp_path)
    wrong = "0" * 64
    with pytest.raises(SourceError) as info:
        obtain(Source(url=path.as_uri(), sha256=wrong))
    assert f"expected sha256 {wrong}" in str(info.value)
    assert f"actual   sha256 {digest}" in str(info.value)
    assert list((private_cache / "sha256").iterdir()) == []


def git(repo: Path, *args: str) -> str:
    env = {
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.org",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.org",
        "PATH": "/usr/bin:/bin",
        "HOME": str(repo),
    }
    return subprocess.run(
        ["git", "-C", repo, *args], check=True, capture_output=True, text=True, env=env
    ).stdout.strip()


def test_git_source_pinned_by_commit(tmp_path: Path, private_cache: Path) -> None:
    repo = tmp_path / "repo"
    subprocess.run(["cp", "-r", FIXTURES / "vecmath-1.0", repo], check=True)
    git(repo, "init", "-q")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "import")
    commit = git(repo, "rev-parse", "HEAD")
    package = obtain(Source(git=str(repo), commit=commit))
    assert package.version == "1.0-1"
    assert package.archive == private_cache / "git" / f"{commit}.tar"
    tree = unpack(package, tmp_path / "w" / "src")
    assert (tree / "debian" / "rules").stat().st_mode & 0o111
    with pytest.raises(SourceError, match="has no commit " + "1" * 40):
        obtain(Source(git=str(repo), commit="1" * 40))


def test_unpinned_remote_sources_are_refused(tmp_path: Path) -> None:
    recipe = tmp_path / "r.toml"
    recipe.write_text(
        '[source]\nurl = "https://example.org/x.tar.gz"\n'
        '[isa]\nlevels = ["x86-64-v3"]\n[benchmark]\ncommand = "true"\n'
    )
    with pytest.raises(RecipeError, match="url needs 'sha256': unpinned downloads are refused"):
        load_recipe(recipe)


@pytest.mark.slow
def test_build_from_a_url_source(tmp_path: Path) -> None:
    path, digest = tarball(tmp_path)
    recipe = tmp_path / "r.toml"
    recipe.write_text(
        (FIXTURES / "vecmath.toml")
        .read_text()
        .replace('path = "vecmath-1.0"', f'url = "{path.as_uri()}"\nsha256 = "{digest}"')
    )
    report = build(recipe, tmp_path / "out", levels=["x86-64-v3"])
    assert "x86-64-v3" in report.shipped_levels
    assert report.source_origin == f"{path.as_uri()} (sha256 {digest})"
