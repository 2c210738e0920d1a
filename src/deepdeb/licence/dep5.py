"""A DEP-5 ``debian/copyright`` draft from a verdict."""

from __future__ import annotations

import re
from typing import Any

from debian.copyright import Copyright, FilesParagraph, License, LicenseParagraph

from deepdeb.licence.table import classify, table
from deepdeb.licence.verdict import Verdict

_COMMON = {
    "Apache-2.0": "Apache-2.0",
    "GPL-2.0-only": "GPL-2",
    "GPL-2.0-or-later": "GPL-2",
    "GPL-3.0-only": "GPL-3",
    "GPL-3.0-or-later": "GPL-3",
    "LGPL-2.1-only": "LGPL-2.1",
    "LGPL-2.1-or-later": "LGPL-2.1",
    "LGPL-3.0-only": "LGPL-3",
    "LGPL-3.0-or-later": "LGPL-3",
    "MPL-2.0": "MPL-2.0",
    "CC0-1.0": "CC0-1.0",
}


def _dep5_name(spdx: str) -> str:
    reverse = {v: k for k, v in table().debian.items() if k != v}
    for key, short in sorted(reverse.items(), key=lambda kv: -len(kv[0])):
        spdx = re.sub(rf"(?<![\w.+-]){re.escape(key)}(?![\w.+-])", short, spdx)
    return spdx.replace(" OR ", " or ").replace(" AND ", " and ")


def copyright_file(verdict: Verdict, upstream_name: str, source: str) -> str:
    """A DEP-5 debian/copyright draft: files grouped by licence and copyright holder."""
    copyright_ = Copyright()
    header: Any = copyright_.header  # python-debian's typed properties are descriptors
    header.upstream_name = upstream_name
    header.source = source
    disclaimers = [
        f"{m.name} is a {m.category} model under Debian's ML-Policy: " + "; ".join(m.missing)
        for m in verdict.ml
        if m.kind == "model" and m.missing
    ]
    if verdict.area != "main" or disclaimers:
        lines = [f"This package is not part of Debian's main area ({verdict.area}).", *disclaimers]
        header.disclaimer = "\n ".join(lines)  # continuation lines start with a space
    if verdict.files_excluded:
        header.files_excluded = verdict.files_excluded
    groups: dict[tuple[str, str], list[str]] = {}
    for f in verdict.files:
        if f.path in verdict.files_excluded:
            continue
        key = (_dep5_name(f.spdx) if f.spdx else "UNKNOWN", f.copyright or "UNKNOWN")
        groups.setdefault(key, []).append(f.path.replace(" ", "?"))
    for (license_, holder), paths in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        copyright_.add_files_paragraph(
            FilesParagraph.create(paths, holder, _license(license_, None))
        )
    for license_ in sorted({k[0] for k in groups}):
        spdx = next(
            (f.spdx for f in verdict.files if f.spdx and _dep5_name(f.spdx) == license_), None
        )
        copyright_.add_license_paragraph(LicenseParagraph.create(_license(license_, spdx)))
    return str(copyright_.dump())


def _license(name: str, spdx: str | None) -> License:
    if spdx is None:
        return License(name)
    common = _COMMON.get(spdx.split()[0])
    if common:
        text = (
            f"On Debian systems, the full text of this licence is in\n"
            f"/usr/share/common-licenses/{common}."
        )
    else:
        reason = classify(spdx)[1]
        text = f"{reason}.\nThe full text is in the upstream sources."
    return License(name, text)
