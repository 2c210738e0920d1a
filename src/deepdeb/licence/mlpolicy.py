"""Debian's ML-Policy for declared models and datasets: Free Model, ToxicCandy, non-free."""

from __future__ import annotations

from dataclasses import dataclass, field

from deepdeb.licence.table import classify, normalise

UNAVAILABLE = {"", "unknown", "private", "undisclosed", "none", "proprietary"}


@dataclass
class MlVerdict:
    """The ML-Policy category of one declared model or dataset, and what keeps it from free."""

    kind: str  # "model" or "dataset"
    name: str
    license: str | None
    category: str  # Free Model / ToxicCandy / non-free; free dataset / non-free dataset
    classification: str
    missing: list[str] = field(default_factory=list)
    found: str = ""  # for one nobody declared: its format, and the card it was judged by
    evidence: list[str] = field(default_factory=list)  # the card's lines relied on


def ml_verdict(kind: str, entry: dict[str, str]) -> MlVerdict:
    """Debian ML-Policy: Free Model needs a free licence, free and public training data,
    and the free training program; free licence without those is ToxicCandy."""
    license_ = normalise(entry.get("license"))
    cls, reason = classify(license_)
    name = entry.get("name", "?")
    if kind == "dataset":
        if cls == "free":
            return MlVerdict(kind, name, license_, "free dataset", "free")
        return MlVerdict(kind, name, license_, "non-free dataset", cls, [f"licence: {reason}"])
    if cls != "free":
        return MlVerdict(kind, name, license_, "non-free", cls, [f"licence: {reason}"])
    missing = []
    data = entry.get("training_data", "").strip()
    if data.lower() in UNAVAILABLE:
        missing.append(f"training data is not public (declared: {data or 'nothing'})")
    else:
        data_cls = classify(normalise(entry.get("training_data_license")))[0]
        if data_cls != "free":
            missing.append("training data licence is not free or not declared")
    if entry.get("training_program", "").strip().lower() in UNAVAILABLE:
        missing.append("training program is not available")
    if missing:
        return MlVerdict(kind, name, license_, "ToxicCandy", "non-free", missing)
    return MlVerdict(kind, name, license_, "Free Model", "free")
