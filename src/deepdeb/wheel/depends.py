"""A wheel's requirements as Debian relations, checked against the archive.

``Requires-Dist`` becomes Debian relations (``python3-<name>``, or the name in
``data/debian-names.toml`` where Debian's differs, versions in Debian's syntax), each
checked against apt's index so an unsatisfiable one is named, not shipped. PEP 440
versions become Debian versions that sort the same way (``2.13.0+cpu``, ``1.0~rc1``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

from debian.debian_support import version_compare
from packaging.markers import default_environment
from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import Specifier
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from deepdeb.debian import apt
from deepdeb.debian.target import PYTHON
from deepdeb.errors import WheelError
from deepdeb.sources.wheelfile import Wheel
from deepdeb.util import data_toml


@functools.cache
def debian_names() -> dict[str, str]:
    """PyPI names (PEP 503) whose Debian package is not ``python3-<name>``."""
    return dict(data_toml("debian-names.toml")["python"])


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


def relation_name(relation: str) -> str:
    """The package a Depends entry names (``python3-numpy (>= 1:1.24)``: python3-numpy;
    ``python3:any``: python3)."""
    return relation.split()[0].split(":")[0]


def debian_name(requirement: str) -> str:
    """The Debian package for a PyPI name: ``python3-<name>`` (PEP 503 normalised) unless
    ``data/debian-names.toml`` says otherwise."""
    name = canonicalize_name(requirement)
    return debian_names().get(name, f"python3-{name}")


def _next_release(version: str, keep: int) -> str:
    parts = [int(p) for p in Version(version).release[:keep]]
    parts[-1] += 1
    return ".".join(map(str, parts))


def _past(version: str) -> str:
    """The first Debian version above every package of upstream ``version``: ``V.~``
    sorts after ``V-1``, ``V-1~deepdeb1`` and ``V+cpu`` (a local label, which PEP 440's
    ``==V`` also accepts) and before ``V.1`` and ``V.1~rc1``."""
    return version + ".~"


def relations(spec: Specifier) -> list[tuple[str, str]]:
    """A PEP 440 specifier as Debian (operator, version) pairs; [] when not expressible.

    A Debian version carries a revision (``0.4.38-1``) that the upstream one has not:
    ``==0.4.38`` as ``(= 0.4.38)`` or ``<=0.4.38`` as ``(<= 0.4.38)`` would refuse every
    package of 0.4.38, so both end just past it (:func:`_past`), and ``>0.4.38`` starts
    there.
    """
    op, version = spec.operator, spec.version
    if op in ("==", "===") and version.endswith(".*"):
        base = version[:-2]
        return [
            (">=", debian_version(base)),
            ("<<", _next_release(base, len(base.split("."))) + "~"),
        ]
    if op in ("==", "==="):
        return [(">=", debian_version(version)), ("<<", _past(debian_version(version)))]
    if op == "~=":
        keep = max(1, len(Version(version).release) - 1)
        return [(">=", debian_version(version)), ("<<", _next_release(version, keep) + "~")]
    if op == "<=":
        return [("<<", _past(debian_version(version)))]
    if op == ">":
        return [(">=", _past(debian_version(version)))]
    mapping = {">=": ">=", "<": "<<"}
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
        """Whether an archive version meets every constraint, compared with the archive's
        epoch: bookworm's numpy is ``1:1.24.2``, and ``(>= 1.26)`` without the epoch would
        be met by it."""
        return any(
            all(
                satisfies(v, op, with_epoch(want, archive_epoch(self.archive_versions)))
                for op, want in self.constraints
            )
            for v in self.archive_versions
        )

    def relation(self, with_versions: bool = True) -> str:
        """The Depends entry. Versions carry the archive's epoch, as the package meeting
        them does (the archive's, or a replacement, which keeps it): against numpy
        ``1:1.24.2``, ``(>= 1.26)`` would hold and ``(>= 1:1.26)`` does not."""
        if not with_versions or not self.constraints:
            return self.package
        epoch = archive_epoch(self.archive_versions)
        return ", ".join(
            f"{self.package} ({op} {with_epoch(v, epoch)})" for op, v in self.constraints
        )

    def why_not(self) -> str:
        if not self.archive_versions:
            return f"{self.package} is not in the archive"
        return f"the archive has {self.package} {', '.join(self.archive_versions)}"


def satisfies(have: str, op: str, want: str) -> bool:
    """Whether Debian version ``have`` meets ``(op want)`` (``=``, ``>=``, ``<=``, ``>>``,
    ``<<``; dpkg's obsolete ``<`` and ``>`` mean ``<=`` and ``>=``)."""
    c = version_compare(have, want)
    op = {"<": "<=", ">": ">="}.get(op, op)
    return {"=": c == 0, ">=": c >= 0, "<=": c <= 0, ">>": c > 0, "<<": c < 0}[op]


def epoch_of(version: str) -> int:
    """A Debian version's epoch (``1:1.24.2-1`` is 1, ``1.24`` is 0)."""
    head, sep, _ = version.partition(":")
    return int(head) if sep and head.isdigit() else 0


def archive_epoch(versions: list[str]) -> int:
    """The epoch of the archive's newest version of a package: upstream versions compare
    with the archive's only under the same epoch."""
    newest = max(versions, key=functools.cmp_to_key(version_compare), default="0")
    return epoch_of(newest)


def with_epoch(version: str, epoch: int) -> str:
    """``version`` under ``epoch`` unless it has an epoch of its own."""
    return version if epoch == 0 or ":" in version else f"{epoch}:{version}"


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


def dependency(req: Requirement) -> Dependency:
    """One requirement as a Debian relation (markers already evaluated by the caller)."""
    constraints: list[tuple[str, str]] = []
    dropped = []
    for spec in req.specifier:
        mapped = relations(spec)
        constraints += mapped
        if not mapped:
            dropped.append(str(spec))
    return Dependency(
        str(req),
        canonicalize_name(req.name),
        debian_name(req.name),
        constraints,
        dropped_specifiers=dropped,
    )


def applies(req: Requirement, envs: list[dict[str, str]]) -> bool:
    """Whether a requirement's marker holds on the target (no marker: always)."""
    return req.marker is None or any(req.marker.evaluate(e) for e in envs)


def dependencies(wheel: Wheel, extras: tuple[str, ...] = ()) -> list[Dependency]:
    """The wheel's runtime requirements for bookworm, mapped to Debian packages."""
    envs = target_environment(extras)
    found: list[Dependency] = []
    for text in wheel.requires:
        try:
            req = Requirement(text)
        except InvalidRequirement as e:
            raise WheelError(f"{wheel.path.name}: bad Requires-Dist {text!r}: {e}") from None
        if applies(req, envs):
            found.append(dependency(req))
    return found


def archive_versions(packages: list[str]) -> dict[str, list[str]]:
    """Versions apt's index has of each package (empty list: not in the archive)."""
    return apt.versions(packages)


def check_archive(deps: list[Dependency]) -> None:
    """Fill in what the archive offers for each dependency."""
    if not deps:
        return
    offered = archive_versions([d.package for d in deps])
    for d in deps:
        d.archive_versions = offered[d.package]
