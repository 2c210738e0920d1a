"""Reading a proprietary licence's clauses: may the package be redistributed, and why.

A licence's name (``LicenseRef-NVIDIA-Proprietary`` in a wheel's METADATA) does not say
what its text grants. The rules in ``data/licence-clauses.toml`` find the clauses that
decide it (an application-only distribution grant; a grant to copy and redistribute), and
every decision cites them as a maintainer would: the part of the document, the section
number and heading, the list item, and the sentence itself, so that the verdict can be
checked against the text without trusting deepdeb.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from deepdeb.util import data_toml

EFFECTS = ("application-only", "grant", "lists", "condition")
_SECTION = re.compile(r"(\d+(?:\.\d+)*)\.?\s+(.*)", re.S)
_ITEM = re.compile(r"\s*(\(?[ivx]+\)|\(?[a-z]\)|\d+\.|\(\d+\))\s+(.*)", re.S)
_SENTENCE_END = re.compile(r"(?<=[.;])\s+(?=[A-Z(“\"])")
MAX_QUOTE = 400


@dataclass(frozen=True)
class Rule:
    """One clause the rules look for (see ``data/licence-clauses.toml``)."""

    id: str
    effect: str
    pattern: re.Pattern[str]
    meaning: str


@dataclass(frozen=True)
class Citation:
    """A clause found in a licence text: where it stands and what it says."""

    rule: str
    effect: str
    meaning: str
    part: str  # the document's title above it ("cuDNN SUPPLEMENT TO ..."), or ""
    section: str  # "1.2", or "" before any numbered section
    heading: str  # "Distribution Requirements", or ""
    item: str  # "(i)", "1.", or ""
    sentence: str

    def cite(self) -> str:
        """``§1.2 "Distribution Requirements" (i) [part]: "sentence"``."""
        where = f"§{self.section}" if self.section else "preamble"
        if self.heading:
            where += f' "{self.heading}"'
        if self.item:
            where += f" {self.item}"
        if self.part:
            where += f" of {self.part}"
        return f'{where}: "{self.sentence}"'


@dataclass(frozen=True)
class Reading:
    """What the clauses decide: the class (non-free or not-redistributable), why, and the
    clauses relied on."""

    classification: str
    reason: str
    citations: tuple[Citation, ...]


@functools.cache
def rules() -> tuple[Rule, ...]:
    """The clause rules, compiled once per process."""
    return tuple(
        Rule(c["id"], c["effect"], re.compile(c["pattern"], re.I), c["meaning"])
        for c in data_toml("licence-clauses.toml")["clause"]
    )


def _collapse(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def _is_part_title(para: str) -> bool:
    """A document title: a few words, nearly all capitals, not a sentence
    ("LICENSE AGREEMENT FOR ...", "cuDNN SUPPLEMENT TO ...", not the warranty text)."""
    letters = [c for c in para if c.isalpha()]
    words = para.split()
    return (
        3 <= len(words) <= 16
        and not para.rstrip().endswith((".", ",", ";"))
        and sum(c.isupper() for c in letters) >= 0.8 * len(letters)
    )


def _heading(rest: str) -> tuple[str, str] | None:
    """(heading, body) of a numbered paragraph: a heading alone ("Grant"), or inline
    ("Distribution. The following ..."); None for a numbered clause without heading."""
    words = rest.split()
    titled = rest and len(words) <= 8 and not rest.endswith((",", ";", ":")) and rest[0].isupper()
    if titled and rest.count(".") <= 1 and (rest.endswith(".") or "." not in rest):
        return rest.rstrip(". "), ""
    inline = re.match(r"([A-Z][\w'\u2019 -]{0,48}?)\.\s+(.*)", rest, re.S)
    if inline and len(inline.group(1).split()) <= 5:
        return inline.group(1), inline.group(2)
    return None


@dataclass(frozen=True)
class _Paragraph:
    part: str
    section: str
    heading: str
    item: str
    body: str  # whitespace collapsed


def paragraphs(text: str) -> list[_Paragraph]:
    """The text's paragraphs, each with the part, section, heading and item it falls in.

    Sections are numbered paragraphs that start at the left margin ("1.1 Grant",
    "2.3. Operating Systems", "2. Distribution. The following ..."); indented numbers and
    "(i)" labels are list items of the section above them.
    """
    found: list[_Paragraph] = []
    part, section = "", ""
    headings: dict[str, str] = {}
    for raw in re.split(r"\n[ \t]*\n", text.replace("\r\n", "\n")):
        if not raw.strip():
            continue
        body, item = _collapse(raw), ""
        indented = raw.lstrip("\n")[:1] in (" ", "\t")
        numbered = _SECTION.fullmatch(body)
        if _is_part_title(body):
            part, section, headings = body, "", {}
            continue
        if numbered and not indented and not re.fullmatch(r"[\d.]+\s*%?", body):
            section = numbered.group(1)
            heading = _heading(numbered.group(2))
            if heading is None:
                body = numbered.group(2)
            else:
                headings[section] = heading[0]
                body = heading[1]
        elif item_match := _ITEM.fullmatch(body):
            item, body = item_match.group(1), item_match.group(2)
        if body:
            found.append(_Paragraph(part, section, _title(section, headings), item, body))
    return found


def _title(section: str, headings: dict[str, str]) -> str:
    """The heading of a section, or of the nearest section above it that has one."""
    parts = section.split(".")
    for n in range(len(parts), 0, -1):
        if (key := ".".join(parts[:n])) in headings:
            return headings[key]
    return ""


def _sentence(body: str, start: int) -> str:
    """The sentence of ``body`` that holds position ``start``, at most MAX_QUOTE long."""
    begin = 0
    for m in _SENTENCE_END.finditer(body):
        if m.end() > start:
            end = m.start()
            break
        begin = m.end()
    else:
        end = len(body)
    quote = body[begin:end].strip()
    return quote if len(quote) <= MAX_QUOTE else quote[: MAX_QUOTE - 1].rstrip() + "…"


def citations(text: str) -> list[Citation]:
    """Every rule's first match in the text, cited where it stands."""
    found: list[Citation] = []
    seen: set[str] = set()
    for para in paragraphs(text):
        for rule in rules():
            if rule.id in seen or not (m := rule.pattern.search(para.body)):
                continue
            seen.add(rule.id)
            found.append(
                Citation(rule.id, rule.effect, rule.meaning, para.part, para.section,
                         para.heading, para.item, _sentence(para.body, m.start()))
            )  # fmt: skip
    return found


def read(text: str, known_class: str) -> Reading | None:
    """The clauses' decision on a licence text the table classed ``known_class``; None
    when they decide nothing (no clause found, or a free text, which they never read).

    An application-only grant makes the package not redistributable, whatever the table
    said; a grant to redistribute copies makes a known proprietary text non-free (a text
    nobody has classified stays unknown: one sentence is not a review).
    """
    if known_class == "free":
        return None
    found = citations(text)
    by_effect = {e: [c for c in found if c.effect == e] for e in EFFECTS}
    if by_effect["grant"] and known_class in ("non-free", "not-redistributable"):
        relied = by_effect["grant"] + by_effect["condition"] + by_effect["lists"]
        return Reading("non-free", _reason("redistribution of unmodified copies is granted",
                                           relied), tuple(relied))  # fmt: skip
    if by_effect["application-only"] and not by_effect["grant"]:
        relied = by_effect["application-only"] + by_effect["lists"]
        why = (
            "distribution is granted only as part of your own application, not as a "
            "package on its own"
        )
        return Reading("not-redistributable", _reason(why, relied), tuple(relied))
    return None


def _reason(decision: str, relied: list[Citation]) -> str:
    """The decision, then each clause relied on (one sentence cited once, with everything
    the rules read in it)."""
    meanings: dict[str, list[str]] = {}
    for c in relied:
        meanings.setdefault(c.cite(), []).append(c.meaning)
    return f"{decision}: " + "; ".join(
        f"{' and '.join(m)}, {where}" for where, m in meanings.items()
    )
