"""Publish stage: add built packages to a signed apt repository (reprepro).

The repository is reprepro's, signed with an ed25519 key that deepdeb makes on first use
and keeps in the repository's ``conf/gnupg`` (never served: only ``dists/`` and ``pool/``
are). The public key is exported next to them as ``deepdeb-archive-keyring.gpg`` (for
``Signed-By``) and ``.asc``.

What may go in is decided from each build's report.json, not from file names:

* every .deb must match the SHA-256 its report recorded (a file changed or half-copied
  since the build is refused);
* a package whose licence verdict says it is not redistributable is refused, naming the
  package and the reasons, unless the repository is *private* (made with ``--local``):
  its Release file says so, and deepdeb refuses to turn a public repository private;
* lintian must report no errors;
* publishing the same file again changes nothing; a different file under a name and
  version the repository already has is refused (apt clients would see two different
  packages with one identity).

Each package goes to the component of its archive area (main, contrib or non-free).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deepdeb.debian.lintian import lintian_tags
from deepdeb.debian.target import SUITE
from deepdeb.errors import PublishError, ReportError
from deepdeb.report.schema import PackageRecord, read_packages
from deepdeb.util import atomic_write_bytes, atomic_write_text, run, sha256_file

COMPONENTS = ("main", "contrib", "non-free")
# A private repository also takes local-only builds, in a component of their own.
LOCAL_COMPONENT = "local"
KEYRING = "deepdeb-archive-keyring.gpg"
_CONFIG = "deepdeb.json"


@dataclass(frozen=True)
class Candidate(PackageRecord):
    """One .deb a build produced, with what its report says about it."""

    build_dir: Path

    @property
    def path(self) -> Path:
        """The .deb itself, in its build's directory."""
        return self.build_dir / self.file


@dataclass
class PublishResult:
    """What a publish did to the repository: packages added or already there, its key, notes."""

    repo: Path
    added: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    private: bool = False
    fingerprint: str = ""
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "repo": str(self.repo),
            "suite": SUITE,
            "private": self.private,
            "key_fingerprint": self.fingerprint,
            "keyring": str(self.repo / KEYRING),
            "added": self.added,
            "unchanged": self.unchanged,
            "notes": self.notes,
        }


# --- reading build results ----------------------------------------------------------------


def candidates(build_dir: Path) -> list[Candidate]:
    """The packages a ``deepdeb build --out DIR`` produced, as its report.json lists them."""
    try:
        records = read_packages(build_dir)
    except ReportError as e:
        raise PublishError(str(e)) from None
    return [Candidate(**vars(r), build_dir=build_dir) for r in records]


def check_files(items: list[Candidate]) -> None:
    """Every .deb exists, as a regular file, and is the file its build made."""
    problems = []
    for c in items:
        if c.path.is_symlink() or not c.path.is_file():
            problems.append(f"{c.path}: missing, or not a regular file")
        elif sha256_file(c.path) != c.sha256:
            problems.append(f"{c.path}: SHA-256 differs from the one in report.json")
    if problems:
        raise PublishError("packages do not match their build report:\n  " + "\n  ".join(problems))


def refused(items: list[Candidate], private: bool) -> list[str]:
    """Why each package may not go into this repository (empty: all may)."""
    out = []
    for c in items:
        if c.area not in (*COMPONENTS, "local-only"):
            out.append(f"{c.package} {c.version}: unknown archive area {c.area!r}")
        elif not c.redistributable and not private:
            why = "; ".join(c.reasons) or "the licence verdict says so"
            out.append(f"{c.package} {c.version}: not redistributable: {why}")
    return out


def component_of(c: Candidate) -> str:
    """The repository component for a package: its archive area, or ``local``."""
    return LOCAL_COMPONENT if c.area == "local-only" else c.area


# --- the repository -----------------------------------------------------------------------


def _gnupg(repo: Path) -> dict[str, str]:
    return dict(os.environ, GNUPGHOME=str(repo / "conf" / "gnupg"))


def _config(repo: Path) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads((repo / "conf" / _CONFIG).read_text())
    except (OSError, ValueError):
        return None
    return data


def _distributions(fingerprint: str, private: bool) -> str:
    label = "deepdeb-private" if private else "deepdeb"
    components = [*COMPONENTS, LOCAL_COMPONENT] if private else list(COMPONENTS)
    description = (
        "PRIVATE deepdeb builds: may contain packages that must not be redistributed; "
        "never serve this repository publicly"
        if private
        else "deepdeb builds: Debian packages with glibc-hwcaps variants"
    )
    return (
        f"Origin: deepdeb\nLabel: {label}\nSuite: {SUITE}\nCodename: {SUITE}\n"
        f"Architectures: amd64\nComponents: {' '.join(components)}\n"
        f"Description: {description}\nSignWith: {fingerprint}\n"
    )


def create_key(repo: Path, conf: Path) -> str:
    """Make the repository's signing key (ed25519, no passphrase) in ``conf/gnupg`` and
    export its public half into ``repo``."""
    home = conf / "gnupg"
    home.mkdir(parents=True, mode=0o700)
    env = dict(os.environ, GNUPGHOME=str(home))
    uid = f"deepdeb repository {repo.resolve().name} <deepdeb@localhost>"
    run(["gpg", "--batch", "--passphrase", "", "--quick-gen-key", uid, "ed25519", "sign", "never"],
        env=env)  # fmt: skip
    listing = run(["gpg", "--batch", "--with-colons", "--list-secret-keys"], env=env).stdout
    fingerprint = str(re.findall(r"^fpr:+([0-9A-F]{40}):", listing, re.M)[0])
    public = subprocess.run(
        ["gpg", "--batch", "--export", fingerprint], env=env, capture_output=True, check=True
    ).stdout
    armored = run(["gpg", "--batch", "--armor", "--export", fingerprint], env=env).stdout
    atomic_write_bytes(repo / KEYRING, public)
    atomic_write_text(repo / f"{KEYRING.removesuffix('.gpg')}.asc", armored)
    run(["gpgconf", "--kill", "gpg-agent"], env=env, check=False)
    return fingerprint


def open_repo(repo: Path, local: bool) -> dict[str, Any]:
    """The repository's configuration, making the repository (and key) on first use.

    ``conf/`` is assembled under a temporary name and renamed into place, so a failure
    half-way (gpg, a full disk) leaves no ``conf/`` that a later run would refuse.
    """
    config = _config(repo)
    if config is not None:
        if local and not config["private"]:
            raise PublishError(
                f"{repo} is a public repository; --local packages need a private one "
                "(publish them to another --repo with --local)"
            )
        return config
    if (repo / "conf").exists():
        raise PublishError(f"{repo}: has a conf/ directory that deepdeb did not make")
    if shutil.which("reprepro") is None:
        raise PublishError("publishing needs reprepro: apt-get install reprepro")
    repo.mkdir(parents=True, exist_ok=True)
    # A name no longer than "conf": gpg-agent's socket path under it must stay short.
    conf = repo / ".new"
    shutil.rmtree(conf, ignore_errors=True)  # left by an interrupted first publish
    conf.mkdir()
    try:
        fingerprint = create_key(repo, conf)
        atomic_write_text(conf / "distributions", _distributions(fingerprint, local))
        atomic_write_text(conf / "options", "verbose\n")
        config = {"private": local, "fingerprint": fingerprint, "suite": SUITE}
        atomic_write_text(conf / _CONFIG, json.dumps(config, indent=2) + "\n")
        conf.chmod(0o755)
        os.replace(conf, repo / "conf")
    except BaseException:
        shutil.rmtree(conf, ignore_errors=True)
        raise
    return config


def in_pool(repo: Path, name: str) -> Path | None:
    """The pool's file of this name, whatever component it is under (None: not in the pool)."""
    pool = repo / "pool"
    if not pool.is_dir():
        return None
    return next(iter(pool.rglob(name)), None)


def indexed(repo: Path, env: dict[str, str]) -> dict[tuple[str, str, str], str]:
    """(component, architecture, package) -> version, as reprepro's database has them."""
    if not (repo / "db").is_dir():
        return {}
    out = run(["reprepro", "-b", str(repo), "list", SUITE], env=env).stdout
    found = {}
    for line in out.splitlines():  # "bookworm|main|amd64: libfoo1 1.0-1+hwcaps1"
        where, _, what = line.partition(": ")
        parts, fields = where.split("|"), what.split()
        if len(parts) == 3 and len(fields) == 2:
            found[(parts[1], parts[2], fields[0])] = fields[1]
    return found


# --- one transaction per publish --------------------------------------------------------

_LOCK = ".deepdeb-publish.lock"
_JOURNAL = ".deepdeb-pending.json"  # what an unfinished publish changed, to undo it


@contextlib.contextmanager
def _locked(repo: Path, notes: list[str]) -> Iterator[None]:
    """One deepdeb publish at a time per repository. Holding this lock, a reprepro lock
    left behind can only be a killed run's: it is removed, and said so."""
    repo.mkdir(parents=True, exist_ok=True)
    with open(repo / _LOCK, "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise PublishError(f"{repo}: another deepdeb publish is running") from None
        stale = repo / "db" / "lockfile"
        if stale.exists():
            stale.unlink()
            notes.append(f"removed {stale}: reprepro's lock of an interrupted publish")
        yield


def _reprepro(repo: Path, env: dict[str, str], *args: str) -> None:
    cmd = ["reprepro", "-b", str(repo), "--export=silent-never", "--keepunreferencedfiles"]
    proc = run([*cmd, *args], env=env, check=False)
    if proc.returncode != 0:
        raise PublishError(f"reprepro {args[0]} failed:\n{proc.stderr.strip()[-1500:]}")


def _undo(repo: Path, env: dict[str, str], notes: list[str]) -> None:
    """Take back what an interrupted publish had included but not yet exported: the
    repository's index returns to what was served before it."""
    journal = repo / _JOURNAL
    if not journal.exists():
        return
    pending = json.loads(journal.read_text())
    for entry in pending:
        # out first (reprepro never replaces a version by an older one), then the old back
        _reprepro(repo, env, "-C", entry["component"], "remove", SUITE, entry["package"])
        if entry["previous"]:
            previous = str(repo / entry["previous"])
            _reprepro(repo, env, "-C", entry["component"], "includedeb", SUITE, previous)
    run(["reprepro", "-b", str(repo), "export", SUITE], env=env)
    journal.unlink()
    notes.append(f"undid an interrupted publish of {len(pending)} package(s)")


def lintian_errors(debs: list[Path]) -> list[str]:
    """lintian's errors for the packages to publish: any one refuses them (warnings do not)."""
    if shutil.which("lintian") is None:
        raise PublishError("publishing checks every package with lintian: apt-get install lintian")
    return lintian_tags(debs)[0]


def publish(build_dirs: list[Path], repo: Path, local: bool = False) -> PublishResult:
    """Add every package of ``build_dirs`` to ``repo``; all or nothing is checked first."""
    items = [c for d in build_dirs for c in candidates(d)]
    check_files(items)
    config = _config(repo)
    private = local or bool(config and config["private"])
    problems = refused(items, private)
    if problems:
        raise PublishError(
            "refusing to publish (use --local for a private repository that is never served "
            "publicly, or build these from the recipe on the machine that uses them):\n  "
            + "\n  ".join(problems)
        )
    new: list[Candidate] = []
    clashes = []
    for c in items:
        existing = in_pool(repo, c.file)
        if existing is None:
            new.append(c)
        elif sha256_file(existing) != c.sha256:
            clashes.append(f"{c.file} (from {c.build_dir})")
    if clashes:
        raise PublishError(
            "the repository already has a different file under the same name and version; "
            "raise the version (e.g. [package] version_suffix) to publish a rebuild:\n  "
            + "\n  ".join(clashes)
        )
    errors = lintian_errors([c.path for c in new]) if new else []
    if errors:
        raise PublishError("lintian reports errors, not publishing:\n  " + "\n  ".join(errors))
    notes: list[str] = []
    with _locked(repo, notes):
        config = open_repo(repo, local)
        env = _gnupg(repo)
        try:
            _undo(repo, env, notes)
            result = PublishResult(repo, unchanged=[], private=config["private"])
            result.fingerprint = config["fingerprint"]
            _include(repo, env, items, result)
        finally:
            run(["gpgconf", "--kill", "gpg-agent"], env=env, check=False)
    result.notes = notes
    return result


@dataclass(frozen=True)
class _Pending:
    """A package this publish includes, and what it replaces (to undo it if interrupted)."""

    candidate: Candidate
    component: str
    previous: str | None  # the replaced version's file, relative to the repository

    def journal(self) -> dict[str, str | None]:
        c = self.candidate
        return {"package": c.package, "component": self.component, "previous": self.previous}


def _include(
    repo: Path, env: dict[str, str], items: list[Candidate], result: PublishResult
) -> None:
    """Include every package, then export and sign once: the index users see changes from
    before to after in one step. A package already in the pool but missing from the index
    (an interrupted run) is included again rather than taken as published."""
    have = indexed(repo, env)
    pending: list[_Pending] = []
    for c in items:
        key = (component_of(c), c.architecture, c.package)
        if have.get(key) == c.version and in_pool(repo, c.file) is not None:
            result.unchanged.append(c.file)
            continue
        previous = None
        if key in have:
            name = f"{c.package}_{have[key].split(':')[-1]}_*.deb"
            old = next(iter((repo / "pool").rglob(name)), None)
            previous = str(old.relative_to(repo)) if old else None
        pending.append(_Pending(c, key[0], previous))
    if not pending:
        return
    atomic_write_text(repo / _JOURNAL, json.dumps([p.journal() for p in pending], indent=2))
    for p in pending:
        _reprepro(repo, env, "-C", p.component, "includedeb", SUITE, str(p.candidate.path))
        result.added.append(p.candidate.file)
    run(["reprepro", "-b", str(repo), "export", SUITE], env=env)
    (repo / _JOURNAL).unlink()
    run(["reprepro", "-b", str(repo), "deleteunreferenced"], env=env, check=False)
