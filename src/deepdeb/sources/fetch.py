"""Fetch stage: turn a recipe's ``[source]`` into a Debian source tree, via a cache.

Sources from the Debian archive are downloaded once with ``apt-get source`` (apt checks them
against the signed Sources index) into the cache, keyed by name and version, and unpacked
afresh for every variant so that no build can see another's leftovers.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import shutil
import socket
import stat
import tempfile
import urllib.parse
import urllib.request
from dataclasses import dataclass
from http.client import HTTPMessage
from pathlib import Path
from typing import IO

from debian.changelog import Changelog
from debian.deb822 import Dsc

from deepdeb.debian import apt
from deepdeb.errors import SourceError
from deepdeb.recipe.model import Source
from deepdeb.util import cache_root, run, sha256_file


@dataclass(frozen=True)
class SourcePackage:
    """A source package ready to be unpacked into build directories."""

    name: str
    version: str
    tree: Path | None = None  # a local source tree, copied per build
    dsc: Path | None = None  # a .dsc in the cache, unpacked per build
    archive: Path | None = None  # a verified tarball in the cache, unpacked per build

    @property
    def upstream_version(self) -> str:
        version = self.version.split(":", 1)[-1]
        return version.rsplit("-", 1)[0] if "-" in version else version


def read_changelog(tree: Path) -> tuple[str, str]:
    """Source name and version from a tree's debian/changelog."""
    path = tree / "debian" / "changelog"
    try:
        with open(path, encoding="utf-8") as f:
            changelog = Changelog(f, max_blocks=1, strict=True)
    except OSError as e:
        raise SourceError(f"{tree}: not a Debian source tree ({path}: {e.strerror})") from None
    except Exception as e:  # python-debian raises its own ChangelogParseError
        raise SourceError(f"{path}: cannot parse: {e}") from None
    return str(changelog.package), str(changelog.version)


def obtain(source: Source, cache: Path | None = None) -> SourcePackage:
    """Locate or download the source package a recipe names."""
    if source.path is not None:
        if not (source.path / "debian" / "control").is_file():
            raise SourceError(f"{source.path}: not a Debian source tree (no debian/control)")
        name, version = read_changelog(source.path)
        return SourcePackage(name=name, version=version, tree=source.path)
    cache = cache or cache_root()
    if source.url is not None and source.sha256 is not None:
        return _from_archive(fetch_url(source.url, source.sha256, cache), source.url)
    if source.git is not None and source.commit is not None:
        return _from_archive(fetch_git(source.git, source.commit, cache), source.git)
    assert source.debian is not None
    return _download(source.debian, cache / "debian")


# The largest download a recipe may ask for (a source tarball; the biggest Debian sources
# are a few GiB). Larger ones are cut off with an error rather than filling the disk.
MAX_DOWNLOAD_BYTES = 8 << 30
# git transports a recipe may use: never ext:: (it runs a command) or ssh (the user's keys).
GIT_PROTOCOLS = "file:git:http:https"


def check_host(host: str) -> None:
    """Refuse a host that is this machine or its link (loopback, link-local, e.g. a cloud
    metadata service): a recipe may not reach the host's own services."""
    try:
        addresses = {str(a[4][0]) for a in socket.getaddrinfo(host, None)}
    except (socket.gaierror, UnicodeError):
        return  # the download itself reports a host it cannot resolve
    for address in sorted(addresses):
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if ip.is_loopback or ip.is_link_local or ip.is_unspecified or ip.is_multicast:
            raise SourceError(
                f"{host} is {ip}, an address of this machine or its link: refused (a recipe "
                "may not reach local services)"
            )


def check_url(url: str) -> None:
    """Refuse what a source URL may not be: another scheme than http(s) or file, a file
    that is not a regular file (``file:///dev/zero``), a local service."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "file":
        path = Path(urllib.parse.unquote(parts.path))
        try:
            regular = stat.S_ISREG(path.stat().st_mode)
        except OSError as e:
            raise SourceError(f"cannot download {url}: {e.strerror}") from None
        if not regular:
            raise SourceError(f"{url}: a file: URL must name a regular file")
    elif parts.scheme in ("http", "https"):
        if not parts.hostname:
            raise SourceError(f"{url}: no host")
        check_host(parts.hostname)
    else:
        raise SourceError(f"{url}: only https, http and file URLs are fetched")


class _CheckedRedirects(urllib.request.HTTPRedirectHandler):
    """Follow a redirect only to a URL the recipe could have named itself."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: HTTPMessage,
        newurl: str,
    ) -> urllib.request.Request | None:
        check_url(newurl)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def fetch_url(url: str, sha256: str, cache: Path) -> Path:
    """Download ``url`` into the content-addressed cache, verified against ``sha256``.

    The file is written under a temporary name and renamed into place only once its hash
    matches, so the cache never holds a partial or wrong file under a digest's name.
    """
    final = cache / "sha256" / sha256
    if final.is_file() and sha256_file(final) == sha256:
        return final
    check_url(url)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=final.parent, prefix=".download-")
    tmp = Path(name)
    digest = hashlib.sha256()
    opener = urllib.request.build_opener(_CheckedRedirects)
    size = 0
    try:
        with os.fdopen(fd, "wb") as out, opener.open(url, timeout=60) as response:
            for block in iter(lambda: response.read(1 << 20), b""):
                size += len(block)
                if size > MAX_DOWNLOAD_BYTES:
                    raise SourceError(
                        f"{url}: larger than the download limit of {MAX_DOWNLOAD_BYTES} "
                        "bytes; the download was not kept"
                    )
                digest.update(block)
                out.write(block)
        if digest.hexdigest() != sha256:
            raise SourceError(
                f"checksum mismatch for {url}\n  expected sha256 {sha256}\n"
                f"  actual   sha256 {digest.hexdigest()}\nThe download was not kept."
            )
        os.replace(tmp, final)
    except (OSError, ValueError) as e:
        raise SourceError(f"cannot download {url}: {e}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return final


def check_git_url(url: str) -> None:
    """A git source is a local repository or an http(s)/git URL to another machine."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme in ("http", "https", "git"):
        if not parts.hostname:
            raise SourceError(f"{url}: no host")
        check_host(parts.hostname)
    elif parts.scheme == "file" or (not parts.scheme and url.startswith("/")):
        return
    else:
        raise SourceError(f"{url}: git sources are local repositories or https, http or git URLs")


def fetch_git(url: str, commit: str, cache: Path) -> Path:
    """Export ``commit`` of a git repository as a tarball in the cache (named by the commit,
    which is itself a content hash)."""
    final = cache / "git" / f"{commit}.tar"
    if final.is_file():
        return final
    check_git_url(url)
    final.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, GIT_TERMINAL_PROMPT="0", GIT_ALLOW_PROTOCOL=GIT_PROTOCOLS)
    with tempfile.TemporaryDirectory(dir=final.parent, prefix=".clone-") as tmp:
        repo = Path(tmp) / "repo.git"
        run(["git", "init", "-q", "--bare", repo], env=env)
        got = run(
            ["git", "-C", repo, "fetch", "-q", "--no-tags", url, commit], env=env, check=False
        )
        if got.returncode != 0:  # servers that refuse fetching by id: take everything
            got = run(
                ["git", "-C", repo, "fetch", "-q", url, "+refs/*:refs/remotes/r/*"],
                env=env,
                check=False,
            )
        if got.returncode != 0:
            raise SourceError(f"cannot fetch {url}: {got.stderr.strip()}")
        if (
            run(
                ["git", "-C", repo, "cat-file", "-e", f"{commit}^{{commit}}"], check=False, env=env
            ).returncode
            != 0
        ):
            raise SourceError(f"{url} has no commit {commit}")
        tar = Path(tmp) / "export.tar"
        run(
            ["git", "-C", repo, "archive", "--format=tar", "--prefix=src/", "-o", tar, commit],
            env=env,
        )
        os.replace(tar, final)
    return final


def _changelog_in(archive: Path) -> str:
    """Path of the top-most debian/changelog inside a tarball."""
    names = run(["tar", "-tf", archive]).stdout.splitlines()
    candidates = [n for n in names if n.endswith("debian/changelog")]
    if not candidates:
        raise SourceError(f"{archive}: no debian/changelog inside; not a Debian source tree")
    return min(candidates, key=lambda n: n.count("/"))


def _from_archive(archive: Path, origin: str) -> SourcePackage:
    text = run(["tar", "-xOf", archive, _changelog_in(archive)]).stdout
    try:
        changelog = Changelog(text, max_blocks=1, strict=True)
    except Exception as e:
        raise SourceError(f"{origin}: cannot parse debian/changelog: {e}") from None
    return SourcePackage(str(changelog.package), str(changelog.version), archive=archive)


def _download(spec: str, cache: Path) -> SourcePackage:
    name, _, pinned = spec.partition("=")
    if pinned:
        cached = _cached_dsc(cache, name, pinned)
        if cached is not None:
            return SourcePackage(name=name, version=pinned, dsc=cached)
    cache.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=cache, prefix=".download-"))
    try:
        status, output = apt.download_source(spec, tmp)
        if status != 0:
            raise SourceError(_explain_apt_failure(spec, output))
        dscs = sorted(tmp.glob("*.dsc"))
        if len(dscs) != 1:
            raise SourceError(f"apt-get source {spec}: expected one .dsc, got {len(dscs)}")
        with open(dscs[0], encoding="utf-8") as f:
            dsc = Dsc(f)
        version = dsc["Version"]
        final = cache / _cache_key(name, version)
        if not final.exists():
            os.replace(tmp, final)  # atomic: the cache entry appears complete or not at all
        return SourcePackage(name=name, version=version, dsc=final / dscs[0].name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _cache_key(name: str, version: str) -> str:
    return f"{name}_{version.replace(':', '%3a')}"


def _cached_dsc(cache: Path, name: str, version: str) -> Path | None:
    entry = cache / _cache_key(name, version)
    dscs = sorted(entry.glob("*.dsc")) if entry.is_dir() else []
    return dscs[0] if dscs else None


def _explain_apt_failure(spec: str, output: str) -> str:
    if "deb-src" in output:
        return (
            f"cannot fetch source package {spec}: apt has no deb-src entries.\n"
            "Add 'deb-src' to the 'Types:' line of /etc/apt/sources.list.d/debian.sources "
            "(or a deb-src line to /etc/apt/sources.list), then run apt-get update."
        )
    if "Unable to find a source package" in output or "Can not find version" in output:
        return f"unknown source package {spec}: not in apt's source index.\n{output.strip()}"
    return f"apt-get source {spec} failed:\n{output.strip()[-2000:]}"


def unpack(package: SourcePackage, dest: Path) -> Path:
    """Put a fresh copy of the source tree at ``dest`` (which must not exist)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if package.tree is not None:
        shutil.copytree(package.tree, dest, symlinks=True)
    elif package.archive is not None:
        top = _changelog_in(package.archive).removesuffix("debian/changelog").rstrip("/")
        with tempfile.TemporaryDirectory(
            dir=dest.parent, prefix=".unpack-", ignore_cleanup_errors=True
        ) as tmp:
            run(["tar", "-xf", package.archive, "-C", tmp, "--no-same-owner"])
            os.replace(Path(tmp) / top if top else Path(tmp), dest)
    else:
        assert package.dsc is not None
        proc = run(["dpkg-source", "-x", package.dsc, dest], check=False)
        if proc.returncode != 0:
            raise SourceError(f"dpkg-source -x {package.dsc} failed:\n{proc.stderr.strip()}")
    return dest
