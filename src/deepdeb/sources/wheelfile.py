"""A wheel file, read and verified before anything trusts it.

Nothing in a wheel is taken on trust: every file must be listed in its RECORD with a
matching SHA-256, no path may leave the wheel's root (absolute, ``..``, drive letters), the
unpacked size is capped (absolutely and relative to the archive, against zip bombs), and
entry points must name a plain script and a Python object. A wheel that fails is refused
with the reason. The model is pypa/installer's ``WheelFile``.
"""

from __future__ import annotations

import base64
import binascii
import configparser
import csv
import io
import re
import stat
import zipfile
from dataclasses import dataclass
from email.message import Message
from email.parser import HeaderParser
from pathlib import Path, PurePosixPath

from packaging.tags import Tag, parse_tag
from packaging.utils import canonicalize_name

from deepdeb.errors import WheelError


@dataclass(frozen=True)
class Wheel:
    """A wheel whose structure and RECORD were checked, with the metadata deepdeb uses."""

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
    def tag_set(self) -> frozenset[Tag]:
        """The WHEEL file's tags as ``packaging`` reads them (compressed sets such as
        ``py2.py3-none-any`` expanded); a line that is no tag is left out."""
        found: set[Tag] = set()
        for line in self.tags:
            try:
                found |= parse_tag(line)
            except ValueError:
                continue
        return frozenset(found)


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


def _check_members(zf: zipfile.ZipFile, wheel: str) -> None:
    """No member may land outside the install root or be a link to anywhere."""
    for info in zf.infolist():
        if not safe_member(info.filename):
            raise WheelError(f"{wheel}: path escapes the wheel's root: {info.filename!r}")
        if stat.S_ISLNK(info.external_attr >> 16):
            raise WheelError(f"{wheel}: symbolic link in the wheel: {info.filename!r}")


def _dist_info(names: list[str], wheel: str) -> str:
    """The one ``.dist-info`` directory (PEP 427): two would make the metadata ambiguous."""
    found = {n.split("/", 1)[0] for n in names if n.split("/", 1)[0].endswith(".dist-info")}
    if len(found) != 1:
        raise WheelError(f"{wheel}: expected one .dist-info directory, found {len(found)}")
    return found.pop()


def _check_record(names: list[str], record: dict[str, str | None], wheel: str) -> None:
    """RECORD and the archive list the same files: an unlisted file could not be verified."""
    unlisted = [n for n in names if n not in record]
    if unlisted:
        raise WheelError(f"{wheel}: files not in RECORD: {', '.join(unlisted[:5])}")
    missing = [n for n in record if n not in names]
    if missing:
        raise WheelError(f"{wheel}: RECORD lists missing files: {', '.join(missing[:5])}")


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
        _check_members(zf, path.name)
        dist_info = _dist_info(names, path.name)
        if f"{dist_info}/RECORD" not in names:
            raise WheelError(f"{path.name}: no {dist_info}/RECORD: its files cannot be verified")
        record = read_record(_text(zf, f"{dist_info}/RECORD", path.name))
        _check_record(names, record, path.name)
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
