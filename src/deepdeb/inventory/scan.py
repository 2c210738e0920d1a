"""``deepdeb inventory``: every external download a source tree's build declares.

A static scan: no build, no network, nothing executed. Each input is reported with what
it is, where it comes from, whether it is pinned by a hash or commit, the file and line
that declares it, and the Debian source package that already ships it, if any.
"""

from __future__ import annotations

import json
import os
import re
import stat
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from deepdeb.inventory import bazel as starlark
from deepdeb.inventory import cmake
from deepdeb.inventory.debmatch import SourceIndex
from deepdeb.util import run

SKIP_DIRS = {".git", ".hg", ".svn", "node_modules", "__pycache__", ".tox", ".venv"}
_HEX = re.compile(r"[0-9a-f]+")


@dataclass
class Input:
    """One external input, as the JSON output shows it (see the README for the schema)."""

    kind: str
    name: str
    file: str  # relative to the scanned root
    line: int
    urls: list[str] = field(default_factory=list)
    version: str | None = None
    hash: str | None = None  # "sha256:…", "sha1:…", "commit:…", "integrity:…", "h1:…"
    size: int | None = None
    second_level: bool = False  # its real contents are listed in another download
    note: str | None = None
    debian: str | None = None
    debian_match: str = "no match"  # "homepage", "name" or "no match"

    @property
    def pinned(self) -> bool:
        return self.hash is not None

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "pinned": self.pinned}


def _hash_of(value: str) -> str | None:
    """ "ALGO=hex" or bare hex (by length) as "algo:hex"."""
    algo, _, digest = value.partition("=")
    if not digest:
        algo, digest = {40: "sha1", 64: "sha256", 128: "sha512"}.get(len(value), ""), value
    digest = digest.lower()
    return f"{algo.lower()}:{digest}" if algo and _HEX.fullmatch(digest) else None


def _second_level(url: str) -> bool:
    return urlpath_suffix(url) == ".json"


def urlpath_suffix(url: str) -> str:
    path = url.split("?", 1)[0].split("#", 1)[0]
    return os.path.splitext(path)[1].lower()


# --- Bazel --------------------------------------------------------------------------------


def _bazel_inputs(rel: str, call: starlark.RuleCall) -> Input | None:
    a = call.args
    name = str(a.get("name") or a.get("module_name") or "")
    urls = a.get("urls") or ([a["url"]] if "url" in a else [])
    urls = [u for u in urls if isinstance(u, str)] if isinstance(urls, list) else []
    if call.rule == "bazel_dep":
        return Input(
            "bazel_dep",
            name,
            rel,
            call.line,
            version=a.get("version"),
            second_level=True,
            note="archive and hash come from the Bazel registry",
        )
    if "remote" in a or call.rule in ("git_repository", "new_git_repository", "git_override"):
        commit = a.get("commit")
        hash_ = f"commit:{commit}" if isinstance(commit, str) and _HEX.fullmatch(commit) else None
        ref = a.get("tag") or a.get("branch")
        return Input(
            call.rule,
            name,
            rel,
            call.line,
            urls=[str(a.get("remote", ""))],
            version=str(ref) if ref else None,
            hash=hash_,
            note=None if hash_ else "tag or branch: moves upstream",
        )
    if not urls:
        return None
    hash_ = None
    if isinstance(a.get("sha256"), str) and a["sha256"]:
        hash_ = f"sha256:{a['sha256']}"
    elif isinstance(a.get("integrity"), str):
        hash_ = f"integrity:{a['integrity']}"
    return Input(
        call.rule,
        name,
        rel,
        call.line,
        urls=urls,
        hash=hash_,
        second_level=any(_second_level(u) for u in urls),
    )


# Files larger than this are not declarations anyone writes by hand: not read.
MAX_FILE_BYTES = 16 << 20
_UNPARSEABLE = (SyntaxError, ValueError, RecursionError, MemoryError)


def read(path: Path) -> str:
    """A file of the scanned tree as text: at most MAX_FILE_BYTES, and only a regular file
    (a FIFO would hang the scan, a device flood it)."""
    with open(path, "rb", opener=_nonblocking) as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise ValueError("not a regular file")
        data = f.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise ValueError(f"larger than {MAX_FILE_BYTES} bytes")
    return data.decode("utf-8", "replace")


def _nonblocking(path: str, flags: int) -> int:
    return os.open(path, flags | os.O_NONBLOCK | os.O_NOFOLLOW)


def scan_bazel(root: Path, files: list[Path]) -> Iterator[Input]:
    """All Bazel files together: constants in one file are often used in another."""
    sources: dict[Path, str] = {}
    known: dict[str, Any] = {}
    for path in files:
        try:
            sources[path] = read(path)
            tree = starlark.parse(sources[path])
        except (OSError, *_UNPARSEABLE):
            continue
        known.update(starlark.constants(tree, known))
    for path, text in sources.items():
        rel = path.relative_to(root).as_posix()
        try:
            calls = list(starlark.rule_calls(text, known))
        except _UNPARSEABLE as e:
            line = e.lineno or 0 if isinstance(e, SyntaxError) else 0
            why = e.msg if isinstance(e, SyntaxError) else str(e) or type(e).__name__
            yield Input("unparsed", path.name, rel, line, note=f"not parseable as Starlark: {why}")
            continue
        for call in calls:
            found = _bazel_inputs(rel, call)
            if found is not None:
                yield found


# --- CMake and manifests -------------------------------------------------------------------

_FETCH_KEYWORDS = {
    "GIT_REPOSITORY",
    "GIT_TAG",
    "URL",
    "URL_HASH",
    "URL_MD5",
    "SOURCE_DIR",
    "BINARY_DIR",
    "DOWNLOAD_COMMAND",
    "CONFIGURE_COMMAND",
    "BUILD_COMMAND",
    "INSTALL_COMMAND",
    "PATCH_COMMAND",
    "UPDATE_COMMAND",
    "CMAKE_ARGS",
    "SOURCE_SUBDIR",
    "DOWNLOAD_EXTRACT_TIMESTAMP",
    "GIT_SHALLOW",
    "GIT_PROGRESS",
    "FIND_PACKAGE_ARGS",
    "OVERRIDE_FIND_PACKAGE",
    "EXCLUDE_FROM_ALL",
    "TLS_VERIFY",
    "DOWNLOAD_NAME",
    "PREFIX",
    "TEST_COMMAND",
}


def scan_cmake(root: Path, files: list[Path]) -> Iterator[Input]:
    parsed = []
    variables: dict[str, str] = {}
    for path in files:
        cmds = list(cmake.commands(read(path)))
        parsed.append((path, cmds))
        for c in cmds:
            if c.name == "set" and len(c.args) >= 2:
                variables.setdefault(c.args[0], cmake.expand(" ".join(c.args[1:]), variables))
    for path, cmds in parsed:
        rel = path.relative_to(root).as_posix()
        for c in cmds:
            args = [cmake.expand(a, variables) for a in c.args]
            if c.name in ("fetchcontent_declare", "externalproject_add") and args:
                yield _cmake_fetch(rel, c, args)
            elif c.name == "file" and len(args) >= 2 and args[0] == "DOWNLOAD":
                kw = cmake.keyword_args(args[2:], {"EXPECTED_HASH", "EXPECTED_MD5"})
                hash_ = (
                    _hash_of(kw["EXPECTED_HASH"][0])
                    if kw.get("EXPECTED_HASH")
                    else _hash_of("MD5=" + kw["EXPECTED_MD5"][0])
                    if kw.get("EXPECTED_MD5")
                    else None
                )
                yield Input(
                    "cmake_file_download",
                    os.path.basename(args[1].split("?")[0]),
                    rel,
                    c.line,
                    urls=[args[1]],
                    hash=hash_,
                    second_level=_second_level(args[1]),
                )
            elif c.name == "execute_process" and "clone" in args:
                at = args.index("clone")
                urls = [a for a in args[at + 1 :] if "://" in a or a.startswith("git@")]
                if urls and at > 0 and args[at - 1].endswith("git"):
                    yield Input(
                        "git_clone",
                        urls[0].rstrip("/").rsplit("/", 1)[-1].removesuffix(".git"),
                        rel,
                        c.line,
                        urls=urls[:1],
                        note="cloned at configure time, whatever the branch holds",
                    )


def _cmake_fetch(rel: str, c: cmake.Command, args: list[str]) -> Input:
    kw = cmake.keyword_args(args[1:], _FETCH_KEYWORDS)
    kind = "cmake_fetchcontent" if c.name == "fetchcontent_declare" else "cmake_externalproject"
    if kw.get("GIT_REPOSITORY"):
        tag = kw["GIT_TAG"][0] if kw.get("GIT_TAG") else None
        pinned = tag is not None and re.fullmatch(r"[0-9a-f]{40}", tag) is not None
        return Input(
            kind,
            args[0],
            rel,
            c.line,
            urls=kw["GIT_REPOSITORY"][:1],
            version=None if pinned else tag,
            hash=f"commit:{tag}" if pinned else None,
        )
    hash_ = (
        _hash_of(kw["URL_HASH"][0])
        if kw.get("URL_HASH")
        else (_hash_of("MD5=" + kw["URL_MD5"][0]) if kw.get("URL_MD5") else None)
    )
    urls = kw.get("URL", [])
    return Input(
        kind,
        args[0],
        rel,
        c.line,
        urls=urls,
        hash=hash_,
        second_level=any(_second_level(u) for u in urls),
    )


def scan_deps_txt(root: Path, path: Path) -> Iterator[Input]:
    """``name;url;hash`` manifests (as onnxruntime's cmake/deps.txt)."""
    rel = path.relative_to(root).as_posix()
    for number, line in enumerate(read(path).splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split(";")
        if len(fields) >= 2 and "://" in fields[1]:
            yield Input(
                "manifest",
                fields[0],
                rel,
                number,
                urls=[fields[1]],
                hash=_hash_of(fields[2]) if len(fields) > 2 else None,
            )


def scan_redistrib_json(root: Path, path: Path) -> Iterator[Input]:
    """NVIDIA-style manifests of redistributable archives: the sizes are known here."""
    rel = path.relative_to(root).as_posix()
    try:
        data = json.loads(read(path))
    except ValueError:
        return
    lines = read(path).splitlines()
    for component, entry in data.items() if isinstance(data, dict) else []:
        if not isinstance(entry, dict):
            continue
        for platform, archive in entry.items():
            if not (isinstance(archive, dict) and "relative_path" in archive):
                continue
            line = next((i for i, t in enumerate(lines, 1) if f'"{component}"' in t), 1)
            yield Input(
                "redist_archive",
                component,
                rel,
                line,
                urls=[archive["relative_path"]],
                version=entry.get("version"),
                hash=f"sha256:{archive['sha256']}" if "sha256" in archive else None,
                size=int(archive["size"]) if "size" in archive else None,
                note=f"platform {platform}; path relative to the manifest's base URL",
            )


# --- language ecosystems -------------------------------------------------------------------

_REQ = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*(.*)$")


def scan_requirements(root: Path, path: Path) -> Iterator[Input]:
    rel = path.relative_to(root).as_posix()
    logical: list[tuple[int, str]] = []
    pending, start = "", 0
    for number, raw in enumerate(read(path).splitlines(), start=1):
        text = raw.split(" #", 1)[0].strip() if not raw.lstrip().startswith("#") else ""
        if not pending:
            start = number
        if text.endswith("\\"):
            pending += text[:-1] + " "
            continue
        logical.append((start, pending + text))
        pending = ""
    for number, line in logical:
        if not line or line.startswith("-"):
            continue
        hashes = re.findall(r"--hash[= ](\w+):([0-9a-f]+)", line)
        spec = re.sub(r"--hash[= ]\S+", "", line).split(";")[0].strip()
        if "://" in spec:
            name, _, url = spec.partition("@")
            url = url.strip() or spec
            commit = re.search(r"@([0-9a-f]{40})(?:#|$)", url)
            yield Input(
                "pypi",
                name.strip() or url,
                rel,
                number,
                urls=[url],
                hash=f"commit:{commit.group(1)}" if commit else None,
            )
            continue
        match = _REQ.match(spec)
        if not match:
            continue
        version = re.fullmatch(r"==\s*([^,\s]+)", match.group(3).strip())
        yield Input(
            "pypi",
            match.group(1),
            rel,
            number,
            version=version.group(1) if version else match.group(3).strip() or None,
            hash=f"{hashes[0][0]}:{hashes[0][1]}" if hashes else None,
        )


def scan_pyproject(root: Path, path: Path) -> Iterator[Input]:
    rel = path.relative_to(root).as_posix()
    try:
        data = tomllib.loads(read(path))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError):
        return
    lines = read(path).splitlines()
    for requirement in data.get("build-system", {}).get("requires", []):
        match = _REQ.match(requirement)
        if match:
            line = next((i for i, t in enumerate(lines, 1) if requirement in t), 1)
            yield Input(
                "pyproject-build",
                match.group(1),
                rel,
                line,
                version=match.group(3).strip() or None,
                note="build requirement, resolved by the installer",
            )


def scan_cargo_lock(root: Path, path: Path) -> Iterator[Input]:
    rel = path.relative_to(root).as_posix()
    text = read(path)
    starts = [i for i, t in enumerate(text.splitlines(), 1) if t.strip() == "[[package]]"]
    for line, pkg in zip(starts, tomllib.loads(text).get("package", []), strict=False):
        source = pkg.get("source")
        if not source:
            continue  # a member of this workspace
        name, version = pkg["name"], pkg["version"]
        if not isinstance(name, str) or not isinstance(version, str):
            raise ValueError(f"package at line {line}: name and version must be strings")
        if source.startswith("git+"):
            url, _, commit = source[4:].partition("#")
            hash_ = f"commit:{commit}" if commit else None
        else:
            url = f"https://crates.io/api/v1/crates/{name}/{version}/download"
            hash_ = f"sha256:{pkg['checksum']}" if "checksum" in pkg else None
        yield Input("cargo", name, rel, line, urls=[url], version=version, hash=hash_)


def scan_go_sum(root: Path, path: Path) -> Iterator[Input]:
    rel = path.relative_to(root).as_posix()
    for number, line in enumerate(read(path).splitlines(), start=1):
        parts = line.split()
        if len(parts) != 3 or parts[1].endswith("/go.mod"):
            continue
        module, version, digest = parts
        escaped = re.sub(r"[A-Z]", lambda m: "!" + m.group(0).lower(), module)
        yield Input(
            "go",
            module,
            rel,
            number,
            version=version,
            hash=digest,
            urls=[f"https://proxy.golang.org/{escaped}/@v/{version}.zip"],
        )


def scan_package_lock(root: Path, path: Path) -> Iterator[Input]:
    rel = path.relative_to(root).as_posix()
    text = read(path)
    data = json.loads(text)
    lines = text.splitlines()

    def line_of(key: str) -> int:
        return next((i for i, t in enumerate(lines, 1) if f'"{key}"' in t), 1)

    packages = data.get("packages")
    if isinstance(packages, dict):  # lockfile v2 and v3
        entries = [(k.rsplit("node_modules/", 1)[-1], k, v) for k, v in packages.items() if k]
    else:  # v1: nested "dependencies"
        entries = []
        todo = list(data.get("dependencies", {}).items())
        while todo:
            name, value = todo.pop(0)
            entries.append((name, name, value))
            todo += list(value.get("dependencies", {}).items())
    for name, key, value in entries:
        if value.get("link") or not value.get("resolved"):
            continue
        integrity = value.get("integrity")
        yield Input(
            "npm",
            name,
            rel,
            line_of(key),
            urls=[value["resolved"]],
            version=value.get("version"),
            hash=f"integrity:{integrity}" if integrity else None,
        )


def scan_gitmodules(root: Path, path: Path) -> Iterator[Input]:
    rel = path.relative_to(root).as_posix()
    sections: list[tuple[str, int, dict[str, str]]] = []
    for number, raw in enumerate(read(path).splitlines(), start=1):
        line = raw.strip()
        header = re.match(r'\[submodule\s+"([^"]+)"\]', line)
        if header:
            sections.append((header.group(1), number, {}))
        elif "=" in line and sections:
            key, _, value = line.partition("=")
            sections[-1][2][key.strip()] = value.strip()
    for name, number, values in sections:
        commit = _gitlink(path.parent, values.get("path", name))
        yield Input(
            "git_submodule",
            name,
            rel,
            number,
            urls=[values.get("url", "")],
            version=values.get("branch"),
            hash=f"commit:{commit}" if commit else None,
            note=None if commit else "commit is in the superproject's git index",
        )


def _gitlink(repo: Path, sub: str) -> str | None:
    """The commit a submodule is pinned to, from the git index, when there is one."""
    if not (repo / ".git").exists():
        return None
    out = run(["git", "-C", repo, "ls-files", "-s", "--", sub], check=False).stdout.split()
    return out[1] if len(out) >= 2 and out[0] == "160000" else None


# --- the walk ----------------------------------------------------------------------------

Scanner = Callable[[Path, Path], Iterator[Input]]
_BY_NAME: dict[str, Scanner] = {
    ".gitmodules": scan_gitmodules,
    "Cargo.lock": scan_cargo_lock,
    "go.sum": scan_go_sum,
    "package-lock.json": scan_package_lock,
    "pyproject.toml": scan_pyproject,
    "deps.txt": scan_deps_txt,
}
_BAZEL = ("WORKSPACE", "WORKSPACE.bazel", "WORKSPACE.bzlmod", "MODULE.bazel")


def _per_file_scanner(name: str) -> Scanner | None:
    if name in _BY_NAME:
        return _BY_NAME[name]
    if re.fullmatch(r"requirements.*\.(txt|in)", name):
        return scan_requirements
    if re.fullmatch(r"redistrib.*\.json", name):
        return scan_redistrib_json
    return None


@dataclass
class Inventory:
    root: Path
    inputs: list[Input]
    files_scanned: int
    debian_index: bool  # whether apt's source index was available for matching

    def summary(self) -> dict[str, int]:
        return {
            "inputs": len(self.inputs),
            "pinned": sum(i.pinned for i in self.inputs),
            "matched_in_debian": sum(i.debian is not None for i in self.inputs),
            "second_level": sum(i.second_level for i in self.inputs),
            "files_scanned": self.files_scanned,
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "root": str(self.root),
            "summary": self.summary(),
            "debian_index": self.debian_index,
            "inputs": [i.to_json() for i in self.inputs],
        }


def scan(root: Path, index: SourceIndex | None = None) -> Inventory:
    """Scan a tree; ``index`` (apt's Sources) adds Debian matches when given."""
    root = root.resolve()
    bazel: list[Path] = []
    cmake_files: list[Path] = []
    inputs: list[Input] = []
    count = 0
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
        for name in sorted(filenames):
            count += 1
            path = Path(dirpath) / name
            if not stat.S_ISREG(path.lstat().st_mode):
                continue  # links, FIFOs, devices: no declarations to read
            if name in _BAZEL or name.endswith(".bzl"):
                bazel.append(path)
            elif name == "CMakeLists.txt" or name.endswith(".cmake"):
                cmake_files.append(path)
            else:
                scanner = _per_file_scanner(name)
                if scanner is not None:
                    try:
                        inputs.extend(scanner(root, path))
                    except (OSError, KeyError, TypeError, AttributeError, *_UNPARSEABLE) as e:
                        inputs.append(
                            Input(
                                "unparsed",
                                name,
                                path.relative_to(root).as_posix(),
                                0,
                                note=f"could not be read: {e}",
                            )
                        )
    inputs.extend(scan_bazel(root, bazel))
    inputs.extend(scan_cmake(root, cmake_files))
    inputs.sort(key=lambda i: (i.file, i.line, i.name))
    if index is not None:
        for item in inputs:
            found = index.match(item.kind, item.name, item.urls)
            if found is not None:
                item.debian, item.debian_match = found.package, found.via
    return Inventory(root, inputs, count, index is not None and not index.empty)
