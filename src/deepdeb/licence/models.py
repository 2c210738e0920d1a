"""Models and datasets nobody declared: found by their format, judged by their model card.

A recipe may declare its models and datasets (see :mod:`deepdeb.licence.mlpolicy`), but
most trees, wheels and .debs do not: weights sit in ``models/`` under the tree's code
licence while the model card beside them says "CC-BY-NC-4.0, trained on an internal
dataset". So the audit looks for the files themselves, by their bytes rather than their
names where a format has a signature, reads the licence and the training-data statement
from the model card or README nearest to them, and hands each to the same ML-Policy
verdict as a declared model. Code that fetches weights at run time
(``torch.hub.load_state_dict_from_url``, ``hf_hub_download``, ``keras.utils.get_file``, ...)
is found by reading it, never by running it.
"""

from __future__ import annotations

import gzip
import os
import re
import struct
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from deepdeb.licence.mlpolicy import MlVerdict, ml_verdict
from deepdeb.licence.scan import Finding

# Formats: name -> (kind, what it is). The kind decides the ML-Policy verdict used.
FORMATS = {
    "safetensors": ("model", "safetensors weights"),
    "pytorch-zip": ("model", "PyTorch checkpoint (torch.save zip)"),
    "pytorch-pickle": ("model", "PyTorch checkpoint (legacy pickle)"),
    "onnx": ("model", "ONNX model"),
    "hdf5": ("model", "HDF5 / Keras weights"),
    "keras": ("model", "Keras v3 model archive"),
    "savedmodel": ("model", "TensorFlow SavedModel"),
    "tf-graph": ("model", "TensorFlow frozen graph (.pb)"),
    "tflite": ("model", "TensorFlow Lite model"),
    "gguf": ("model", "GGUF model"),
    "caffemodel": ("model", "Caffe model"),
    "npy": ("dataset", "NumPy array"),
    "npz": ("dataset", "NumPy arrays (.npz)"),
    "idx": ("dataset", "IDX (ubyte) data, as MNIST ships"),
}

_PICKLE_EXTS = {".pt", ".pth", ".bin", ".ckpt", ".pkl"}
_CARDS = ("MODEL_CARD.md", "model_card.md", "MODELCARD.md", "README.md", "README", "README.txt")
_READ = 64 * 1024  # bytes of a card read, at most


@dataclass
class Artifact:
    """One model or dataset found in a tree, with what its card says of it."""

    path: str  # relative to the tree (a SavedModel: its directory)
    format: str
    kind: str  # "model" or "dataset"
    size: int
    card: str | None = None  # the card it was judged by, relative to the tree
    license: str | None = None
    training_data: str = ""
    evidence: list[str] = field(default_factory=list)  # the card's lines relied on

    def entry(self) -> dict[str, str]:
        """As a recipe would declare it, for :func:`deepdeb.licence.mlpolicy.ml_verdict`."""
        return {
            "name": self.path,
            "license": self.license or "",
            "training_data": self.training_data,
            "training_data_license": "",  # a card rarely states it: never assumed free
            "training_program": "",
        }


@dataclass(frozen=True)
class RuntimeDownload:
    """A call that fetches weights or data when the program runs."""

    path: str
    line: int
    call: str
    text: str


# Signatures at the start of a file (TFLite's sits at byte 4).
_MAGIC = (
    (b"GGUF", "gguf"),
    (b"\x93NUMPY", "npy"),
    (b"\x89HDF\r\n\x1a\n", "hdf5"),
)


def sniff(path: Path) -> str | None:
    """The format of a file, from its first bytes (and its name where a format has no
    signature: Caffe's and TensorFlow's protobufs, legacy pickles); None if not a model or
    dataset format."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError:
        return None
    for magic, fmt in _MAGIC:
        if head.startswith(magic):
            return fmt
    if head[4:8] == b"TFL3":
        return "tflite"
    if _safetensors(head):
        return "safetensors"
    if head.startswith(b"PK\x03\x04"):
        return _zip_format(path)
    return _by_name(path, head)


def _by_name(path: Path, head: bytes) -> str | None:
    """Formats without a signature of their own, told by their name and first byte."""
    name, suffix = path.name.lower(), path.suffix.lower()
    if suffix in _PICKLE_EXTS and head[:1] == b"\x80" and head[1:2] in b"\x02\x03\x04\x05":
        return "pytorch-pickle"
    if suffix == ".onnx" and head[:1] == b"\x08":  # field 1 (ir_version), a varint
        return "onnx"
    if suffix == ".caffemodel":
        return "caffemodel"
    if suffix == ".pb" and name != "saved_model.pb":
        return "tf-graph"
    if "ubyte" in name and _idx(path):
        return "idx"
    return None


def _safetensors(head: bytes) -> bool:
    """An 8-byte little-endian header length, then the JSON header itself."""
    if len(head) < 10:
        return False
    (length,) = struct.unpack("<Q", head[:8])
    return 2 <= length < 100 << 20 and head[8:10] in (b'{"', b"{ ", b"{\n")


def _zip_format(path: Path) -> str | None:
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError):
        return None
    if any(n.endswith("/data.pkl") or n == "data.pkl" for n in names):
        return "pytorch-zip"
    if "config.json" in names and any(n.endswith(".weights.h5") for n in names):
        return "keras"
    if names and all(n.endswith(".npy") for n in names):
        return "npz"
    return None


def _idx(path: Path) -> bool:
    """IDX: two zero bytes, a type code (0x08 unsigned byte ... 0x0E double), the number
    of dimensions; MNIST's files are often gzipped."""
    try:
        opener = gzip.open if path.name.endswith(".gz") else open
        with opener(path, "rb") as f:
            head = f.read(4)
    except (OSError, EOFError):
        return False
    return len(head) == 4 and head[:2] == b"\0\0" and head[2] in range(8, 15) and head[3] > 0


def find_artifacts(tree: Path, files: Sequence[Finding] = ()) -> list[Artifact]:
    """Every model and dataset file under ``tree`` (a SavedModel counts once, as its
    directory), with the licence and training data its nearest card states. Where no card
    states a licence, the file's licence as the audit found it (``files``) stands, or
    else what the wheel's METADATA declares: the weights are then covered by the code's
    licence, but nothing says what they were trained on. A package's own small test
    files (:func:`is_test_fixture`) are not models or datasets, and are left out."""
    found = [a for a in _walk(tree) if not is_test_fixture(a.path, a.size)]
    licences = {f.path: f.spdx for f in files}
    declared = next(
        (f.spdx for f in files if f.spdx and f.path.endswith(".dist-info/METADATA")), None
    )
    for art in found:
        if art.license is None and licences.get(art.path):
            art.license = licences[art.path]
            art.evidence.append(f"no licence in a card: the audit found {art.license}")
        elif art.license is None and declared:
            art.license = declared
            art.evidence.append(f"no licence in a card: the package declares {declared}")
    return found


# A test suite's data files (h5py ships HDF5 files of a few KiB in h5py/tests/) are
# fixtures of the code, under its licence; weights of real size are judged wherever
# they are.
_TEST_DIRS = frozenset({"tests", "test", "testing", "testdata", "test_data"})
TEST_FIXTURE_BYTES = 1 << 20


def is_test_fixture(path: str, size: int) -> bool:
    """Whether an artifact is a small file in a test directory."""
    return size <= TEST_FIXTURE_BYTES and any(part in _TEST_DIRS for part in Path(path).parts[:-1])


def _walk(tree: Path) -> list[Artifact]:
    found: list[Artifact] = []
    for parent, dirs, files in os.walk(tree):
        here = Path(parent)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".git"))
        if "saved_model.pb" in files:
            size = sum(p.stat().st_size for p in here.rglob("*") if p.is_file())
            found.append(_artifact(tree, here, "savedmodel", size))
            dirs[:] = []
            continue
        for name in sorted(files):
            path = here / name
            if path.is_symlink() or not path.is_file():
                continue
            fmt = sniff(path)
            if fmt:
                found.append(_artifact(tree, path, fmt, path.stat().st_size))
    return found


def _artifact(tree: Path, path: Path, fmt: str, size: int) -> Artifact:
    art = Artifact(str(path.relative_to(tree)), fmt, FORMATS[fmt][0], size)
    card = nearest_card(tree, path if path.is_dir() else path.parent)
    if card is not None:
        art.card = str(card.relative_to(tree))
        art.license, art.training_data, art.evidence = read_card(card)
    return art


def nearest_card(tree: Path, directory: Path) -> Path | None:
    """The model card or README in ``directory`` or the nearest directory above it,
    within the tree."""
    directory = directory.resolve()
    top = tree.resolve()
    while True:
        for name in _CARDS:
            card = directory / name
            if card.is_file() and not card.is_symlink():
                return card
        if directory == top or top not in directory.parents:
            return None
        directory = directory.parent


_FRONT = re.compile(r"\A---\s*\n(.*?)\n---\s*\n", re.S)
_LICENCE_LINE = re.compile(
    r"^\W*licen[cs]e[d]?\W*(?:under\s+(?:the\s+)?)?[:=]?\s*\**\s*([A-Za-z][\w.+\- ]{1,60}?)\W*$",
    re.I | re.M,
)
_LICENSED_UNDER = re.compile(
    r"licen[cs]ed under (?:the )?([A-Za-z][\w.+\-]*(?: [\w.+\-]+){0,4})", re.I
)
_TRAINED = re.compile(r"[^.\n]*\btrain(?:ed|ing)\b[^.\n]*(?:data|dataset|corpus|on)\b[^.\n]*", re.I)
_NOT_PUBLIC = re.compile(
    r"\b(internal|not (?:been )?(?:publicly )?(?:published|released|available|public)|"
    r"private|proprietary|undisclosed|confidential|in-house|not public)\b",
    re.I,
)


def read_card(card: Path) -> tuple[str | None, str, list[str]]:
    """The licence a model card states, its training-data statement ("" when it makes
    none; "not public: ..." when it says the data is internal or unpublished), and the
    lines it relied on.

    Hugging Face cards carry ``license:`` and ``datasets:`` in YAML front matter; other
    cards say it in prose ("Licence: CC-BY-NC-4.0", "licensed under the MIT licence",
    "trained on an internal dataset that is not published").
    """
    text = card.read_bytes()[:_READ].decode("utf-8", "replace")
    evidence: list[str] = []
    license_: str | None = None
    data = ""
    front = _FRONT.match(text)
    if front:
        try:
            meta = yaml.safe_load(front.group(1))
        except yaml.YAMLError:
            meta = None
        if isinstance(meta, dict):
            if isinstance(meta.get("license"), str):
                license_ = meta["license"]
                evidence.append(f"license: {license_}")
            datasets = meta.get("datasets")
            if isinstance(datasets, list) and datasets:
                data = ", ".join(str(d) for d in datasets)
                evidence.append(f"datasets: {data}")
        text = text[front.end() :]
    if license_ is None:
        match = _LICENCE_LINE.search(text) or _LICENSED_UNDER.search(text)
        if match:
            license_ = re.sub(r"\s+licen[cs]e$", "", match.group(1).strip().rstrip("."), flags=re.I)
            evidence.append(match.group(0).strip())
    trained = _TRAINED.search(text)
    if trained:
        statement = trained.group(0).strip()
        evidence.append(statement)
        data = f"not public: {statement}" if _NOT_PUBLIC.search(statement) else data or statement
    return license_, data, evidence


def verdicts(
    artifacts: list[Artifact], declared: frozenset[str] | set[str] = frozenset()
) -> list[MlVerdict]:
    """The ML-Policy verdict of every artifact not already declared (by path) in the
    recipe. A training-data statement that says the data is not public counts as none; no
    card at all means no licence and no training data: never a Free Model."""
    found = []
    for art in artifacts:
        if art.path in declared:
            continue
        entry = art.entry()
        if art.training_data.startswith("not public"):
            entry["training_data"] = "undisclosed"
        verdict = ml_verdict(art.kind, entry)
        verdict.found = f"{FORMATS[art.format][1]}, {art.size} bytes; " + (
            f"judged by {art.card}" if art.card else "no model card or README beside it"
        )
        verdict.evidence = art.evidence
        found.append(verdict)
    return found


# Calls that fetch weights or data at run time, by library.
_DOWNLOADS = re.compile(
    r"\b(load_state_dict_from_url|torch\.hub\.load|download_url_to_file|hf_hub_download|"
    r"snapshot_download|from_pretrained|get_file|tensorflow_hub\.load|hub\.load|"
    r"hub\.KerasLayer|gdown\.download|urlretrieve)\s*\("
)
_CODE = {".py", ".pyx", ".ipynb"}


# Wheel members worth extracting to look for models: a format's usual names, and cards.
MODEL_NAMES = re.compile(
    r"\.(safetensors|pt|pth|bin|ckpt|pkl|onnx|h5|hdf5|keras|pb|tflite|gguf|caffemodel|npy|npz)$"
    r"|ubyte|(^|/)(MODEL_?CARD\.md|model_card\.md|README(\.md|\.txt)?)$|\.py$",
    re.I,
)


def find_runtime_downloads(tree: Path) -> list[RuntimeDownload]:
    """Code under ``tree`` that downloads weights or data when it runs."""
    found = []
    for path in sorted(tree.rglob("*")):
        if path.suffix not in _CODE or path.is_symlink() or not path.is_file():
            continue
        try:
            text = path.read_bytes()[: 4 << 20].decode("utf-8", "replace")
        except OSError:
            continue
        for number, line in enumerate(text.splitlines(), 1):
            stripped = line.strip()
            if stripped.startswith(("#", "def ", ">>>", "...")):  # comments, definitions, docs
                continue
            for match in _DOWNLOADS.finditer(line):
                rel = str(path.relative_to(tree))
                found.append(RuntimeDownload(rel, number, match.group(1), stripped[:160]))
    return found
