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

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import DeepdebError
from .util import atomic_write_bytes, atomic_write_text, run, sha256_file
from .verify import lintian_tags

SUITE = "bookworm"
COMPONENTS = ("main", "contrib", "non-free")
# A private repository also takes local-only builds, in a component of their own.
LOCAL_COMPONENT = "local"
KEYRING = "deepdeb-archive-keyring.gpg"
_CONFIG = "deepdeb.json"


class PublishError(DeepdebError):
    """A package may not, or cannot, be published."""


@dataclass(frozen=True)
class Candidate:
    """One .deb a build produced, with what its report says about it."""

    file: Path
    package: str
    version: str
    architecture: str
    sha256: str
    area: str
    redistributable: bool
    reasons: tuple[str, ...]
    build_dir: Path


@dataclass
class PublishResult:
    repo: Path
    added: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    private: bool = False
    fingerprint: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "repo": str(self.repo),
            "suite": SUITE,
            "private": self.private,
            "key_fingerprint": self.fingerprint,
            "keyring": str(self.repo / KEYRING),
            "added": self.added,
            "unchanged": self.unchanged,
        }


# --- reading build results ----------------------------------------------------------------


def candidates(build_dir: Path) -> list[Candidate]:
    """The packages a ``deepdeb build --out DIR`` produced, from DIR/report.json."""
    path = build_dir / "report.json"
    try:
        report = json.loads(path.read_text())
    except OSError as e:
        raise PublishError(f"{build_dir}: not a deepdeb build result ({e.strerror})") from None
    except ValueError as e:
        raise PublishError(f"{path}: not valid JSON: {e}") from None
    licence = report.get("licence") or {}
    reasons = tuple(licence.get("redistributable_reasons") or ())
    found = []
    for p in report.get("packages", []):
        if not str(p.get("file", "")).endswith(".deb"):
            continue
        found.append(
            Candidate(
                file=build_dir / p["file"],
                package=p["package"],
                version=p["version"],
                architecture=p["architecture"],
                sha256=p["sha256"],
                area=p.get("area") or "main",
                redistributable=bool(p.get("redistributable", False)),
                # wheel builds give reasons per package; source builds one verdict for all
                reasons=tuple(p.get("licence_reasons") or reasons),
                build_dir=build_dir,
            )
        )
    if not found:
        raise PublishError(f"{path}: the report lists no packages")
    return found


def check_files(items: list[Candidate]) -> None:
    """Every .deb exists and is the file its build made."""
    problems = []
    for c in items:
        if not c.file.is_file():
            problems.append(f"{c.file}: missing")
        elif sha256_file(c.file) != c.sha256:
            problems.append(f"{c.file}: SHA-256 differs from the one in report.json")
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
    pool = repo / "pool"
    if not pool.is_dir():
        return None
    return next(iter(pool.rglob(name)), None)


def lintian_errors(debs: list[Path]) -> list[str]:
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
    unchanged: list[str] = []
    clashes = []
    for c in items:
        existing = in_pool(repo, c.file.name)
        if existing is None:
            new.append(c)
        elif sha256_file(existing) == c.sha256:
            unchanged.append(c.file.name)
        else:
            clashes.append(f"{c.file.name} (from {c.build_dir})")
    if clashes:
        raise PublishError(
            "the repository already has a different file under the same name and version; "
            "raise the version (e.g. [package] version_suffix) to publish a rebuild:\n  "
            + "\n  ".join(clashes)
        )
    errors = lintian_errors([c.file for c in new]) if new else []
    if errors:
        raise PublishError("lintian reports errors, not publishing:\n  " + "\n  ".join(errors))
    config = open_repo(repo, local)
    result = PublishResult(repo, unchanged=unchanged, private=config["private"])
    result.fingerprint = config["fingerprint"]
    env = _gnupg(repo)
    for c in new:
        component = component_of(c)
        include = ["reprepro", "-b", str(repo), "-C", component, "includedeb", SUITE, str(c.file)]
        proc = run(include, env=env, check=False)
        if proc.returncode != 0:
            raise PublishError(f"reprepro refused {c.file.name}:\n{proc.stderr.strip()[-1500:]}")
        result.added.append(c.file.name)
    run(["gpgconf", "--kill", "gpg-agent"], env=env, check=False)
    return result
