"""Prebuilt wheels: read and verify one, map its metadata to Debian's, lay it out for dpkg.

Building PyTorch from source takes hours; repacking the upstream wheel takes a minute. The
repack is only acceptable if it is honest, so nothing here is taken on trust:

* every file of the wheel must be listed in its RECORD with a matching SHA-256, and no path
  may leave the wheel's root (absolute, ``..``, symlinks): a wheel that fails is refused;
* ``Requires-Dist`` becomes Debian relations (``python3-<name>``, versions in Debian's
  syntax), each checked against apt's index so an unsatisfiable one is named, not shipped;
* PEP 440 versions become Debian versions that sort the same way (``2.13.0+cpu``,
  ``1.0~rc1``).

The pure functions here do the mapping; :mod:`deepdeb.wheel.package` assembles the package.
"""

from __future__ import annotations

import base64
import binascii
import configparser
import csv
import hashlib
import io
import re
import stat
import zipfile
from dataclasses import dataclass, field
from email.message import Message
from email.parser import HeaderParser
from pathlib import Path, PurePosixPath

from debian.debian_support import version_compare
from packaging.markers import default_environment
from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import Specifier
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from deepdeb.errors import DeepdebError
from deepdeb.util import run

# Debian bookworm's Python, which the packages are for.
PYTHON = "3.11"
DIST_PACKAGES = "usr/lib/python3/dist-packages"

# PyPI names whose Debian package is not python3-<normalised name>.
DEBIAN_NAMES = {
    "pyyaml": "python3-yaml",
    "pillow": "python3-pil",
    "scikit-learn": "python3-sklearn",
    "opencv-python": "python3-opencv",
    "beautifulsoup4": "python3-bs4",
    "attrs": "python3-attr",
    "pyzmq": "python3-zmq",
    "python-dateutil": "python3-dateutil",
    "protobuf": "python3-protobuf",
    "msgpack-python": "python3-msgpack",
    "pyjwt": "python3-jwt",
    "pycryptodome": "python3-pycryptodome",
    "tensorboard": "python3-tensorboard",
    "torch": "python3-torch",
    "opt-einsum": "python3-opt-einsum",
}


class WheelError(DeepdebError):
    """A wheel that cannot be trusted or used."""


@dataclass(frozen=True)
class Wheel:
    path: Path
    name: str  # canonical (PEP 503) name
    version: str  # as the wheel says (PEP 440)
    dist_info: str  # "<name>-<version>.dist-info"
    tags: tuple[str, ...]
    purelib: bool
    metadata: Message
    entry_points: dict[str, dict[str, str]]  # group -> script name -> "module:func"
    record: dict[str, str | None]  # member -> SHA-256 from RECORD, checked when extracting

    @property
    def requires(self) -> list[str]:
        return list(self.metadata.get_all("Requires-Dist") or [])

    @property
    def python_tags(self) -> set[str]:
        return {t.split("-")[0] for t in self.tags}


# --- verifying ----------------------------------------------------------------------------


# What a wheel may unpack to: a cap on the total, and on the total relative to the file (a
# "zip bomb" declares gigabytes in a few megabytes; real wheels, PyTorch's included,
# expand a few times over).
MAX_UNPACKED_BYTES = 16 << 30
MAX_EXPANSION = 100
# Entry points become /usr/bin/<name> and a Python line importing <module>:<attr>.
_SCRIPT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")
_OBJECT_REF = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*(:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*)?")


def _record_hash(data_hash: str) -> str:
    """RECORD's ``sha256=<urlsafe base64, no padding>`` as hex."""
    algo, _, value = data_hash.partition("=")
    if algo != "sha256":
        raise WheelError(f"RECORD uses {algo or 'no'} hash; only sha256 is accepted")
    try:
        digest = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        raise WheelError(f"RECORD has a malformed sha256 value: {value[:60]!r}") from None
    if len(digest) != 32:
        raise WheelError(f"RECORD has a sha256 value of {len(digest)} bytes: {value[:60]!r}")
    return digest.hex()


def safe_member(name: str) -> bool:
    """A path that stays inside the wheel's root when extracted."""
    path = PurePosixPath(name)
    return (
        bool(name)
        and not path.is_absolute()
        and "\\" not in name
        and ".." not in path.parts
        and not re.match(r"^[A-Za-z]:", name)
    )


def read_record(text: str) -> dict[str, str | None]:
    """path -> hex sha256 (None for the RECORD itself and its signatures)."""
    entries: dict[str, str | None] = {}
    try:
        rows = list(csv.reader(io.StringIO(text)))
    except csv.Error as e:
        raise WheelError(f"RECORD is not valid CSV: {e}") from None
    for row in rows:
        if not row:
            continue
        name, digest = row[0], row[1] if len(row) > 1 else ""
        if not safe_member(name):
            raise WheelError(f"RECORD lists a path outside the wheel: {name!r}")
        entries[name] = _record_hash(digest) if digest else None
    return entries


def _text(zf: zipfile.ZipFile, member: str, wheel: str) -> str:
    """A metadata file of the wheel as text; a clear error when it is missing or not UTF-8
    (the core metadata specification requires UTF-8)."""
    try:
        return zf.read(member).decode("utf-8")
    except KeyError:
        raise WheelError(f"{wheel}: no {member}: not a complete wheel") from None
    except UnicodeDecodeError as e:
        raise WheelError(f"{wheel}: {member} is not UTF-8 text (byte {e.start})") from None


def check_size(infos: list[zipfile.ZipInfo], archive_size: int, wheel: str) -> None:
    """Refuse a wheel whose declared contents are implausibly large, before extracting."""
    total = sum(i.file_size for i in infos)
    limit = min(MAX_UNPACKED_BYTES, max(archive_size, 1 << 20) * MAX_EXPANSION)
    if total > limit:
        raise WheelError(
            f"{wheel}: unpacks to {total} bytes from {archive_size}: over the limit of "
            f"{limit} bytes ({MAX_EXPANSION}x the file, at most {MAX_UNPACKED_BYTES >> 30} "
            "GiB); a zip bomb?"
        )


def entry_points_of(text: str, wheel: str) -> dict[str, dict[str, str]]:
    """entry_points.txt, with every script name and object reference validated: the names
    become file names in /usr/bin, the references a line of Python."""
    parser = configparser.ConfigParser(delimiters=("=",), interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    try:
        parser.read_string(text)
    except configparser.Error as e:
        raise WheelError(f"{wheel}: entry_points.txt is malformed: {e}") from None
    groups = {s: dict(parser[s]) for s in parser.sections()}
    for group in ("console_scripts", "gui_scripts"):
        for name, target in groups.get(group, {}).items():
            if not _SCRIPT_NAME.fullmatch(name):
                raise WheelError(f"{wheel}: entry point name {name!r} is not a file name")
            ref = target.split("[", 1)[0].strip()
            if not _OBJECT_REF.fullmatch(ref):
                raise WheelError(f"{wheel}: entry point {name} = {target!r} is not module:object")
    return groups


def open_wheel(path: Path) -> Wheel:
    """Read a wheel's metadata, refusing one whose structure is unsafe or incomplete.

    File hashes are checked while extracting (:func:`extract`), in the same pass.
    """
    try:
        if not stat.S_ISREG(path.stat().st_mode):
            raise WheelError(f"{path}: not a regular file")
        zf = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError) as e:
        raise WheelError(f"{path}: not a wheel (zip) file: {e}") from None
    with zf:
        names = [i.filename for i in zf.infolist() if not i.is_dir()]
        for info in zf.infolist():
            if not safe_member(info.filename):
                raise WheelError(f"{path.name}: path escapes the wheel's root: {info.filename!r}")
            if stat.S_ISLNK(info.external_attr >> 16):
                raise WheelError(f"{path.name}: symbolic link in the wheel: {info.filename!r}")
        dist_infos = {
            n.split("/", 1)[0] for n in names if n.split("/", 1)[0].endswith(".dist-info")
        }
        if len(dist_infos) != 1:
            raise WheelError(
                f"{path.name}: expected one .dist-info directory, found {len(dist_infos)}"
            )
        dist_info = dist_infos.pop()
        if f"{dist_info}/RECORD" not in names:
            raise WheelError(f"{path.name}: no {dist_info}/RECORD: its files cannot be verified")
        record = read_record(_text(zf, f"{dist_info}/RECORD", path.name))
        unlisted = [n for n in names if n not in record]
        if unlisted:
            raise WheelError(f"{path.name}: files not in RECORD: {', '.join(unlisted[:5])}")
        missing = [n for n in record if n not in names]
        if missing:
            raise WheelError(f"{path.name}: RECORD lists missing files: {', '.join(missing[:5])}")
        metadata = HeaderParser().parsestr(_text(zf, f"{dist_info}/METADATA", path.name))
        wheel_meta = HeaderParser().parsestr(_text(zf, f"{dist_info}/WHEEL", path.name))
        check_size(zf.infolist(), path.stat().st_size, path.name)
        entry_points: dict[str, dict[str, str]] = {}
        if f"{dist_info}/entry_points.txt" in names:
            text = _text(zf, f"{dist_info}/entry_points.txt", path.name)
            entry_points = entry_points_of(text, path.name)
    name, version = metadata.get("Name"), metadata.get("Version")
    if not name or not re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?", str(name)):
        raise WheelError(f"{path.name}: METADATA has no valid Name: {name!r}")
    if not version:
        raise WheelError(f"{path.name}: METADATA has no Version")
    return Wheel(
        path=path,
        name=canonicalize_name(str(name)),
        version=str(version),
        dist_info=dist_info,
        tags=tuple(str(t) for t in wheel_meta.get_all("Tag") or []),
        purelib=str(wheel_meta.get("Root-Is-Purelib", "false")).lower() == "true",
        metadata=metadata,
        entry_points=entry_points,
        record=record,
    )


def install_path(wheel: Wheel, member: str) -> str | None:
    """Where a wheel member goes in the Debian package (None: left out)."""
    data_dir = f"{wheel.dist_info.removesuffix('.dist-info')}.data/"
    if member == f"{wheel.dist_info}/RECORD" or member.startswith(f"{wheel.dist_info}/RECORD."):
        return None  # files move and get byte-compiled: pip's RECORD would be wrong
    if member.startswith(data_dir):
        kind, _, rest = member[len(data_dir) :].partition("/")
        if kind in ("purelib", "platlib"):
            return f"{DIST_PACKAGES}/{rest}"
        if kind == "scripts":
            return f"usr/bin/{rest}"
        if kind == "data":
            return f"usr/{rest}"
        if kind == "headers":
            return f"usr/include/python{PYTHON}/{wheel.name}/{rest}"
        raise WheelError(f"{wheel.path.name}: unknown .data directory {kind!r}")
    return f"{DIST_PACKAGES}/{member}"


def extract(wheel: Wheel, root: Path, drop: list[str] | None = None) -> list[str]:
    """Extract into a package root, verifying every file's hash as it is written.

    Returns the members left out by ``drop`` (glob patterns on wheel paths, for test-only
    libraries and the like).
    """
    dropped = []
    with zipfile.ZipFile(wheel.path) as zf:
        for info in zf.infolist():
            if info.is_dir():
                continue
            target = install_path(wheel, info.filename)
            expected = wheel.record.get(info.filename)
            if target is None:
                continue
            if drop and any(PurePosixPath(info.filename).match(p) for p in drop):
                dropped.append(info.filename)
                continue
            dest = root / target
            dest.parent.mkdir(parents=True, exist_ok=True)
            digest = hashlib.sha256()
            with zf.open(info) as src, open(dest, "wb") as out:
                for block in iter(lambda: src.read(1 << 20), b""):
                    digest.update(block)
                    out.write(block)
            if expected is not None and digest.hexdigest() != expected:
                raise WheelError(
                    f"{wheel.path.name}: {info.filename}: SHA-256 does not match RECORD "
                    "(the wheel was altered or damaged)"
                )
            mode = (info.external_attr >> 16) & 0o777
            dest.chmod(0o755 if mode & 0o111 or target.startswith("usr/bin/") else 0o644)
            if target.startswith("usr/bin/"):
                _fix_shebang(dest)
    return dropped


def _fix_shebang(script: Path) -> None:
    """Wheel scripts start with ``#!python``; Debian's must name /usr/bin/python3."""
    first, _, rest = script.read_bytes().partition(b"\n")
    if first.startswith(b"#!python"):
        script.write_bytes(b"#!/usr/bin/python3\n" + rest)


def entry_point_script(target: str) -> str:
    """A console script for ``module:func``, as pip and dh-python write them."""
    module, _, func = target.partition(":")
    func = func.split("[", 1)[0].strip()
    head = func.split(".")[0]
    return (
        "#!/usr/bin/python3\nimport sys\n"
        f"from {module.strip()} import {head}\n"
        f"if __name__ == '__main__':\n    sys.exit({func}())\n"
    )


# --- versions and relations ---------------------------------------------------------------


def debian_version(pep440: str) -> str:
    """A Debian upstream version that sorts like the PEP 440 one.

    ``2.13.0+cpu`` stays (both sort it after 2.13.0); pre-releases get ``~`` (``1.0~rc1``,
    ``1.0~a1~dev0``); ``.devN`` of a final release gets ``~~`` to sort before its alphas;
    post-releases become ``+postN`` (``.post1`` would sort after ``.1``); an epoch ``N!``
    becomes ``N:``.
    """
    try:
        v = Version(pep440)
    except InvalidVersion:
        raise WheelError(f"not a PEP 440 version: {pep440!r}") from None
    out = ".".join(str(p) for p in v.release)
    if v.pre is not None:
        out += f"~{v.pre[0]}{v.pre[1]}"
    if v.post is not None:
        out += f"+post{v.post}"
    if v.dev is not None:
        out += f"~dev{v.dev}" if (v.pre is not None or v.post is not None) else f"~~dev{v.dev}"
    if v.local is not None:
        out += f"+{v.local}"
    if v.epoch:
        out = f"{v.epoch}:{out}"
    return out


def debian_name(requirement: str) -> str:
    name = canonicalize_name(requirement)
    return DEBIAN_NAMES.get(name, f"python3-{name}")


def _next_release(version: str, keep: int) -> str:
    parts = [int(p) for p in Version(version).release[:keep]]
    parts[-1] += 1
    return ".".join(map(str, parts))


def relations(spec: Specifier) -> list[tuple[str, str]]:
    """A PEP 440 specifier as Debian (operator, version) pairs; [] when not expressible."""
    op, version = spec.operator, spec.version
    if op in ("==", "===") and version.endswith(".*"):
        base = version[:-2]
        return [
            (">=", debian_version(base)),
            ("<<", _next_release(base, len(base.split("."))) + "~"),
        ]
    if op in ("==", "==="):
        return [("=", debian_version(version))]
    if op == "~=":
        keep = max(1, len(Version(version).release) - 1)
        return [(">=", debian_version(version)), ("<<", _next_release(version, keep) + "~")]
    mapping = {">=": ">=", "<=": "<=", ">": ">>", "<": "<<"}
    if op in mapping:
        return [(mapping[op], debian_version(version))]
    return []  # "!=": Debian cannot say "anything but"; left to the archive's versions


@dataclass
class Dependency:
    """One Requires-Dist, mapped to Debian, with what the archive offers."""

    requirement: str
    pypi_name: str
    package: str
    constraints: list[tuple[str, str]]
    archive_versions: list[str] = field(default_factory=list)
    dropped_specifiers: list[str] = field(default_factory=list)

    @property
    def satisfiable(self) -> bool:
        return any(
            all(_satisfies(v, op, want) for op, want in self.constraints)
            for v in self.archive_versions
        )

    def relation(self, with_versions: bool = True) -> str:
        if not with_versions or not self.constraints:
            return self.package
        return ", ".join(f"{self.package} ({op} {v})" for op, v in self.constraints)

    def why_not(self) -> str:
        if not self.archive_versions:
            return f"{self.package} is not in the archive"
        return f"the archive has {self.package} {', '.join(self.archive_versions)}"


def _satisfies(have: str, op: str, want: str) -> bool:
    c = version_compare(have, want)
    return {"=": c == 0, ">=": c >= 0, "<=": c <= 0, ">>": c > 0, "<<": c < 0}[op]


def target_environment(extras: tuple[str, ...] = ()) -> list[dict[str, str]]:
    """Marker environments for bookworm's Python 3.11 on amd64, one per selected extra."""
    env: dict[str, str] = {str(k): str(v) for k, v in default_environment().items()}
    env.update(
        python_version=PYTHON,
        python_full_version=f"{PYTHON}.2",
        implementation_name="cpython",
        platform_python_implementation="CPython",
        sys_platform="linux",
        platform_system="Linux",
        platform_machine="x86_64",
        os_name="posix",
    )
    return [{**env, "extra": e} for e in ("", *extras)]


def dependencies(wheel: Wheel, extras: tuple[str, ...] = ()) -> list[Dependency]:
    """The wheel's runtime requirements for bookworm, mapped to Debian packages."""
    envs = target_environment(extras)
    found: list[Dependency] = []
    for text in wheel.requires:
        try:
            req = Requirement(text)
        except InvalidRequirement as e:
            raise WheelError(f"{wheel.path.name}: bad Requires-Dist {text!r}: {e}") from None
        if req.marker is not None and not any(req.marker.evaluate(e) for e in envs):
            continue
        constraints: list[tuple[str, str]] = []
        dropped = []
        for spec in req.specifier:
            mapped = relations(spec)
            constraints += mapped
            if not mapped:
                dropped.append(str(spec))
        found.append(
            Dependency(
                str(req),
                canonicalize_name(req.name),
                debian_name(req.name),
                constraints,
                dropped_specifiers=dropped,
            )
        )
    return found


def archive_versions(packages: list[str]) -> dict[str, list[str]]:
    """Versions apt's index has of each package (empty list: not in the archive)."""
    proc = run(["apt-cache", "madison", *packages], check=False)
    versions: dict[str, list[str]] = {p: [] for p in packages}
    for line in proc.stdout.splitlines():
        parts = [p.strip() for p in line.split("|")]
        known = len(parts) >= 3 and parts[0] in versions and "Packages" in parts[2]
        if known and parts[1] not in versions[parts[0]]:
            versions[parts[0]].append(parts[1])
    return versions


def check_archive(deps: list[Dependency]) -> None:
    """Fill in what the archive offers for each dependency."""
    if not deps:
        return
    offered = archive_versions([d.package for d in deps])
    for d in deps:
        d.archive_versions = offered[d.package]
