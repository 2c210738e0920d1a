"""Errors that deepdeb reports to its user.

Every failure a user can cause or fix (a bad recipe, a missing build-dependency, a level that
does not build) is a :class:`DeepdebError` whose message alone tells them what went wrong and
what to do. The CLI prints the message and exits non-zero; anything else is a bug.
"""

from __future__ import annotations

import re
from pathlib import Path


class DeepdebError(Exception):
    """Base class: an error whose message is meant for the user."""


class RecipeError(DeepdebError):
    """A recipe that cannot be used: names the file, the line when known, and the problem."""

    def __init__(self, path: Path, message: str, line: int | None = None) -> None:
        self.path = path
        self.line = line
        self.message = message
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {message}")


class SourceError(DeepdebError):
    """The source package could not be obtained (no deb-src, unknown package, bad path)."""


class MissingBuildDepsError(DeepdebError):
    """Build-dependencies of the source package are not installed."""

    def __init__(self, source: str, unmet: str) -> None:
        self.unmet = unmet
        super().__init__(
            f"{source}: unmet build dependencies: {unmet}\n"
            f"Install them with: apt-get build-dep {source}   "
            f"(or: apt-get install {' '.join(_package_names(unmet))})"
        )


def _package_names(unmet: str) -> list[str]:
    """Package names from dpkg-checkbuilddeps' unmet list: one per dependency (the first of
    its alternatives), without versions, architectures or profiles.

    dpkg-checkbuilddeps separates dependencies with spaces, not commas:
    ``libogg-dev (>= 1.0rc3) debhelper-compat (= 13) libfoo-dev | libbar-dev``.
    """
    text = re.sub(r"\([^)]*\)|\[[^\]]*\]|<[^>]*>", " ", unmet)
    words = text.replace("|", " | ").replace(",", " ").split()
    names: list[str] = []
    i = 0
    while i < len(words):
        if words[i] != "|":
            names.append(words[i].split(":")[0])
        i += 1
        while i < len(words) and words[i] == "|":
            i += 2  # skip the alternative after "|"
    return names


class BuildError(DeepdebError):
    """dpkg-buildpackage failed for one ISA level."""

    def __init__(
        self,
        level: str,
        log: Path,
        tail: str,
        what: str = "failed to build",
        network: list[str] | None = None,
        diagnosis: str = "",
    ) -> None:
        self.level = level
        self.log = log
        self.network = network or []
        tried = ""
        if self.network:
            tried = (
                "\n--- the build tried to reach the network (refused in the sandbox) ---\n"
                + "\n".join(self.network)
            )
        super().__init__(
            f"level {level} {what}; full log: {log}{tried}{diagnosis}\n"
            f"--- last lines of the log ---\n{tail}"
        )


class FlagsNotAppliedError(DeepdebError):
    """A variant was built, but the ISA flags never reached the compiler."""


class BenchmarkError(DeepdebError):
    """The benchmark command failed or could not be run."""


class AssembleError(DeepdebError):
    """A package could not be assembled, or would be wrong (an ISA marker outside
    glibc-hwcaps, a library dpkg-shlibdeps cannot resolve)."""


class VerifyError(DeepdebError):
    """The dynamic loader did not pick the expected variant."""


class UsageError(DeepdebError):
    """How deepdeb was asked to run is wrong: a path, an option, an environment variable."""


class ToolError(DeepdebError):
    """A program deepdeb needs is missing, or failed where it must not."""


class SandboxError(DeepdebError):
    """The build sandbox cannot be set up as it must be (user, limits, network guard)."""


class UnsafeFileError(DeepdebError):
    """A file deepdeb must read is not a plain regular file (a link, a FIFO, a device) or is
    too large: refused, never followed."""


class AuditError(DeepdebError):
    """The licence audit could not run (a scanner missing or failing, a target it cannot read)."""


class ReportError(DeepdebError):
    """A report.json that is not one deepdeb wrote: missing, not JSON, or of the wrong shape."""


class WheelError(DeepdebError):
    """A wheel that cannot be trusted or used."""


class ChrootError(DeepdebError):
    """The clean-room chroot could not be made or prepared."""


class LintianError(DeepdebError):
    """lintian could not check the packages (not the packages failing its checks)."""


class SanityError(DeepdebError):
    """The sanity test could not run, or the network did not learn well enough."""


class UnsatisfiedRequirements(DeepdebError):
    """Requirements bookworm cannot satisfy and the recipe says nothing about."""


class PublishError(DeepdebError):
    """A package may not, or cannot, be published."""


class ArchiveConflict(DeepdebError):
    """Replacing an archive package with a newer one would break archive packages that
    depend on it (a versioned relation, or a C ABI the new version does not provide)."""


class PackageIndexError(DeepdebError):
    """The Python package index could not answer (unreachable, not found, bad answer) and
    nothing usable is in the cache."""
