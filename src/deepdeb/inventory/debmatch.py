"""Which Debian source package already ships an upstream input, from apt's source index.

The index is apt's own (``apt-get indextargets``, read through ``apt-helper cat-file`` so
that any compression apt chose works), parsed with python-debian and cached as JSON next
to deepdeb's other caches until apt's lists change. Matching is deliberately strict:
first the upstream URL against each package's ``Homepage`` (host and path), then the
name against source package names under Debian's naming conventions. Anything else is
"no match", said plainly, never a guess.
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from debian.deb822 import Sources

from deepdeb.debian import apt
from deepdeb.util import atomic_write_text, cache_root, data_toml

_UPSTREAM = data_toml("debian-names.toml")["upstream"]
_FORGES = frozenset(_UPSTREAM["forges"])  # hosts that say nothing about a project
_NAME_PREFIXES = tuple(_UPSTREAM["name_prefixes"])  # Bazel's reversed-domain prefixes
_BAZEL_NAMES: dict[str, str] = data_toml("debian-names.toml")["bazel"]
_REPO_SUFFIXES = ("_archive", "_repo", "_git", "_src", "_sources")


@dataclass(frozen=True)
class Match:
    """The Debian source package that ships an input, and whether its Homepage or name matched."""

    package: str
    via: str  # "homepage" or "name"


def url_keys(url: str) -> list[str]:
    """Normalised host/path prefixes of a URL, longest first (github.com/o/r, ...).

    Mirror URLs that embed the upstream host in their path
    (``storage.googleapis.com/mirror.tensorflow.org/github.com/o/r/...``) are read from
    the embedded host on.
    """
    parts = urlsplit(url.strip())
    path = f"{parts.netloc}{parts.path}".lower()
    embedded = re.search(r"(?:^|/)((?:github\.com|gitlab\.com|bitbucket\.org)/.*)", path)
    if embedded:
        path = embedded.group(1)
    path = re.sub(r"^www\.", "", path).removesuffix(".git").rstrip("/")
    segments = path.split("/")
    host = segments[0]
    keys = []
    depth = 3 if host in ("github.com", "gitlab.com", "bitbucket.org") else len(segments)
    for n in range(min(depth, len(segments)), 0, -1):
        key = "/".join(segments[:n])
        if n == 1 and key in _FORGES:
            continue
        if host in ("github.com", "gitlab.com", "bitbucket.org") and n < 3:
            continue
        keys.append(key)
    return keys


def name_candidates(kind: str, name: str) -> list[str]:
    """Debian source names an upstream name would likely have (Debian's conventions)."""
    base = name.lower()
    for prefix in _NAME_PREFIXES:
        if base.startswith(prefix):
            base = base[len(prefix) :]
            break
    base = re.sub(r"[^a-z0-9.+-]+", "-", base).strip("-")
    if kind == "pypi" or kind == "pyproject-build":
        return [f"python-{base}", base]
    if kind == "cargo":
        return [f"rust-{base}"]
    if kind == "go":  # github.com/foo/bar -> golang-github-foo-bar (host without its TLD)
        host, _, path = name.lower().partition("/")
        labels = host.split(".")
        hosts = [labels[0], "-".join(labels[:-1]), "-".join(labels)]
        rest = re.sub(r"[/._]", "-", path)
        return [f"golang-{h}-{rest}".rstrip("-") for h in dict.fromkeys(hosts)]
    if kind == "npm":
        return [f"node-{base.lstrip('@').replace('/', '-')}"]
    return _archive_candidates(name)


def _archive_candidates(name: str) -> list[str]:
    """Candidates for a C/C++ dependency named the Bazel way (``com_github_grpc_grpc``,
    ``com_google_absl``, ``eigen_archive``) or by its place in the tree (a submodule at
    ``third_party/pybind11``): the name without its domain prefix and repository suffix,
    each trailing part of it (``grpc_grpc`` is owner and project), and the Debian name the
    data file gives such a name."""
    base = name.lower().rstrip("/").rsplit("/", 1)[-1]
    had_prefix = False
    for prefix in _NAME_PREFIXES:
        if base.startswith(prefix):
            base, had_prefix = base[len(prefix) :], True
            break
    for suffix in _REPO_SUFFIXES:
        base = base.removesuffix(suffix)
    parts = [p for p in re.split(r"[^a-z0-9.+]+", base) if p]
    tails = ["-".join(parts[i:]) for i in range(len(parts))] if had_prefix else ["-".join(parts)]
    found: list[str] = []
    for tail in tails:
        if tail in _BAZEL_NAMES:
            found.append(_BAZEL_NAMES[tail])
        found += [tail, f"lib{tail}", tail.removeprefix("lib")]
    return [c for c in dict.fromkeys(found) if c]


class SourceIndex:
    """Homepage and name look-ups over apt's Sources index."""

    def __init__(self, homepages: dict[str, list[str]], names: set[str]) -> None:
        self.homepages = homepages
        self.names = names

    @classmethod
    def from_apt(cls, cache: Path | None = None) -> SourceIndex:
        files = apt.source_index_files()
        stamp = [[str(f), f.stat().st_size, f.stat().st_mtime] for f in files]
        path = (cache or cache_root()) / "apt-sources-index.json"
        try:
            cached = json.loads(path.read_text())
            if cached["stamp"] == stamp:
                return cls(cached["homepages"], set(cached["names"]))
        except (OSError, ValueError, KeyError):
            pass
        homepages: dict[str, list[str]] = {}
        names: set[str] = set()
        for f in files:
            text = apt.read_index(f)
            for para in Sources.iter_paragraphs(
                io.StringIO(text), fields=["Package", "Homepage"], use_apt_pkg=False
            ):
                names.add(para["Package"])
                if "Homepage" in para:
                    for key in url_keys(para["Homepage"])[:1]:
                        homepages.setdefault(key, []).append(para["Package"])
        atomic_write_text(
            path, json.dumps({"stamp": stamp, "homepages": homepages, "names": sorted(names)})
        )
        return cls(homepages, names)

    @property
    def empty(self) -> bool:
        return not self.names

    def match(self, kind: str, name: str, urls: list[str]) -> Match | None:
        candidates = name_candidates(kind, name)
        for url in urls:
            for key in url_keys(url):
                if key in self.homepages:
                    return Match(_best(self.homepages[key], candidates), "homepage")
        for candidate in candidates:
            if candidate in self.names:
                return Match(candidate, "name")
        return None


def _best(packages: list[str], candidates: list[str]) -> str:
    """Of several source packages sharing a homepage (zlib and libz-mingw-w64), the one
    named as the input is, else the shortest name."""
    for candidate in candidates:
        if candidate in packages:
            return candidate
    return min(packages, key=lambda p: (len(p), p))
