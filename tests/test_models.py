"""ML-Policy for models and datasets nobody declared: found by format in trees, wheels and
.debs, judged by the card beside them; code that downloads weights at run time."""

from __future__ import annotations

import gzip
import io
import json
import shutil
import struct
import subprocess
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from conftest import FIXTURES
from wheelmaker import make_wheel

from deepdeb.licence.audit import audit_target, audit_wheel
from deepdeb.licence.models import (
    find_artifacts,
    find_runtime_downloads,
    is_test_fixture,
    read_card,
    sniff,
    verdicts,
)
from deepdeb.recipe.load import load_recipe

MODELS = FIXTURES / "models"


# --- writers for each format: tiny, but each with the bytes its format begins with -------


def safetensors(path: Path) -> None:
    header = json.dumps({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}).encode()
    path.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 8)


def torch_zip(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", b"\x80\x02}q\x00.")
        z.writestr("archive/data/0", b"\0" * 16)
        z.writestr("archive/version", b"3\n")


def torch_pickle(path: Path) -> None:
    path.write_bytes(b"\x80\x02\x8a\nl\xfc\x9cF\xf9 j\xa8P\x19.")


def onnx(path: Path) -> None:
    path.write_bytes(b"\x08\x07\x12\x07pytorch\x1a\x031.0")


def hdf5(path: Path) -> None:
    path.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 56)


def keras3(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("metadata.json", "{}")
        z.writestr("config.json", "{}")
        z.writestr("model.weights.h5", b"\x89HDF\r\n\x1a\n")


def tflite(path: Path) -> None:
    path.write_bytes(b"\x1c\0\0\0TFL3" + b"\0" * 24)


def gguf(path: Path) -> None:
    path.write_bytes(b"GGUF\x03\0\0\0" + b"\0" * 16)


def caffemodel(path: Path) -> None:
    path.write_bytes(b"\n\x07LeNet\x12")


def frozen_graph(path: Path) -> None:
    path.write_bytes(b"\n\x0e\n\x01x\x12\x0bPlaceholder")


def npy(path: Path) -> None:
    np.save(path, np.arange(4, dtype=np.float32))


def npz(path: Path) -> None:
    buf = io.BytesIO()
    np.savez(buf, a=np.zeros(2), b=np.ones(2))
    path.write_bytes(buf.getvalue())


def idx_gz(path: Path) -> None:
    path.write_bytes(gzip.compress(struct.pack(">HBBI", 0, 0x08, 1, 3) + b"\x01\x02\x03"))


WRITERS: dict[str, tuple[str, Callable[[Path], None]]] = {
    "w.safetensors": ("safetensors", safetensors),
    "ckpt.pt": ("pytorch-zip", torch_zip),
    "legacy.pth": ("pytorch-pickle", torch_pickle),
    "net.onnx": ("onnx", onnx),
    "weights.h5": ("hdf5", hdf5),
    "model.keras": ("keras", keras3),
    "net.tflite": ("tflite", tflite),
    "llm.gguf": ("gguf", gguf),
    "lenet.caffemodel": ("caffemodel", caffemodel),
    "graph.pb": ("tf-graph", frozen_graph),
    "embeddings.npy": ("npy", npy),
    "arrays.npz": ("npz", npz),
    "train-labels-idx1-ubyte.gz": ("idx", idx_gz),
}


@pytest.mark.parametrize("name", sorted(WRITERS))
def test_each_format_is_recognised_by_its_bytes(tmp_path: Path, name: str) -> None:
    fmt, write = WRITERS[name]
    write(tmp_path / name)
    assert sniff(tmp_path / name) == fmt


def test_names_alone_do_not_make_a_model(tmp_path: Path) -> None:
    """A text file called .pt, a zip that is no checkpoint, data that only looks alike."""
    (tmp_path / "notes.pt").write_text("not a checkpoint\n")
    (tmp_path / "random.bin").write_bytes(b"\x00\x01\x02\x03" * 8)
    (tmp_path / "net.onnx").write_text("an ONNX model would start with a varint\n")
    (tmp_path / "bogus-ubyte").write_bytes(b"\x01\x02\x03\x04")
    with zipfile.ZipFile(tmp_path / "docs.zip", "w") as z:
        z.writestr("index.html", "<p>")
    assert [sniff(p) for p in sorted(tmp_path.iterdir())] == [None] * 5


def test_a_savedmodel_is_one_model(tmp_path: Path) -> None:
    saved = tmp_path / "export" / "1"
    (saved / "variables").mkdir(parents=True)
    (saved / "saved_model.pb").write_bytes(b"\x08\x01\x12\x00")
    (saved / "variables" / "variables.index").write_bytes(b"\0" * 10)
    (saved / "variables" / "variables.data-00000-of-00001").write_bytes(b"\0" * 30)
    (found,) = find_artifacts(tmp_path)
    assert (found.path, found.format, found.kind, found.size) == (
        "export/1",
        "savedmodel",
        "model",
        44,
    )


def test_undeclared_nc_weights_are_non_free_not_the_trees_mit(tmp_path: Path) -> None:
    """The tree is MIT; the weights in models/ carry a card saying CC-BY-NC-4.0, trained on
    an internal dataset: the model is found, judged by its card, and the tree is non-free."""
    tree = tmp_path / "tinyseg"
    shutil.copytree(MODELS / "nc-tree", tree)
    safetensors(tree / "models" / "tinyseg.safetensors")
    data = audit_target(tree, tmp_path / "work").to_json()
    (model,) = data["models"]
    assert model["name"] == "models/tinyseg.safetensors"
    assert (model["license"], model["category"]) == ("CC-BY-NC-4.0", "non-free")
    assert "judged by models/README.md" in model["found"]
    assert "Licence: CC-BY-NC-4.0" in model["evidence"]
    assert any("internal dataset that is not published" in e for e in model["evidence"])
    assert (data["area"], data["redistributable"]) == ("non-free", True)
    assert "model models/tinyseg.safetensors" in data["area_reasons"][0]
    # the code that fetches more weights at run time is named, with its lines
    assert data["runtime_downloads"] == [
        "src/tinyseg.py:12: hf_hub_download()",
        "src/tinyseg.py:16: load_state_dict_from_url()",
    ]
    assert any("fetches models or data at run time" in r for r in data["area_reasons"])


def test_free_card_with_unpublished_data_is_toxic_candy(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text(
        "---\nlicense: apache-2.0\ntags: [vision]\n---\n# net\n\n"
        "Trained on a private corpus of scanned invoices.\n"
    )
    shutil.copy(MODELS / "nc-tree" / "LICENSE", tmp_path / "LICENSE")
    onnx(tmp_path / "net.onnx")
    data = audit_target(tmp_path, tmp_path.parent / "work").to_json()
    (model,) = data["models"]
    assert (model["license"], model["category"]) == ("Apache-2.0", "ToxicCandy")
    assert model["missing"][0] == "training data is not public (declared: undisclosed)"
    assert data["area"] == "non-free"


def test_card_front_matter_and_prose() -> None:
    card = MODELS / "nc-tree" / "models" / "README.md"
    license_, data, evidence = read_card(card)
    assert license_ == "CC-BY-NC-4.0"
    assert data.startswith("not public: These weights were trained on an internal dataset")
    assert len(evidence) == 2


def test_weights_without_a_card_take_the_files_licence_and_are_toxic_candy(
    tmp_path: Path,
) -> None:
    """No card: the weights are under the tree's licence, but nothing says what they were
    trained on. That is ToxicCandy, never a Free Model."""
    shutil.copy(MODELS / "nc-tree" / "LICENSE", tmp_path / "LICENSE")
    gguf(tmp_path / "llm.gguf")
    data = audit_target(tmp_path, tmp_path.parent / "work").to_json()
    (model,) = data["models"]
    assert (model["license"], model["category"]) == ("MIT", "ToxicCandy")
    assert "no model card or README beside it" in model["found"]


def test_datasets_by_format_and_a_free_card(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "README.md").write_text("Licence: CC-BY-4.0\n\nHandwritten digits.\n")
    idx_gz(tmp_path / "data" / "t10k-images-idx3-ubyte.gz")
    data = audit_target(tmp_path, tmp_path.parent / "work").to_json()
    (dataset,) = data["datasets"]
    assert (dataset["name"], dataset["category"]) == (
        "data/t10k-images-idx3-ubyte.gz",
        "free dataset",
    )
    assert data["models"] == []


def test_declared_models_are_not_counted_twice(tmp_path: Path) -> None:
    """A recipe's [[model]] with a path is the verdict for the file found there."""
    tree = tmp_path / "tinyseg"
    shutil.copytree(MODELS / "nc-tree", tree)
    safetensors(tree / "models" / "tinyseg.safetensors")
    recipe = tmp_path / "r.toml"
    recipe.write_text(
        '[source]\npath = "tinyseg"\n\n[[model]]\nname = "tinyseg"\n'
        'path = "models/tinyseg.safetensors"\nlicense = "CC-BY-NC-4.0"\n'
        'training_data = "internal"\n'
    )
    declared = {m["path"] for m in load_recipe(recipe).models}
    assert declared == {"models/tinyseg.safetensors"}
    assert verdicts(find_artifacts(tree), declared) == []
    assert [v.name for v in verdicts(find_artifacts(tree))] == ["models/tinyseg.safetensors"]


def test_models_in_a_wheel_and_its_downloads(tmp_path: Path) -> None:
    buf = tmp_path / "w.onnx"
    onnx(buf)
    wheel = make_wheel(
        tmp_path,
        "tinyseg",
        "1.0",
        {
            "tinyseg/__init__.py": b"from huggingface_hub import hf_hub_download\n"
            b"W = hf_hub_download(repo_id='x/y', filename='w.onnx')\n",
            "tinyseg/weights/net.onnx": buf.read_bytes(),
            "tinyseg/weights/README.md": b"License: CC-BY-NC-SA-4.0\n",
        },
    )
    verdict = audit_wheel(wheel, tmp_path / "unpacked")
    (model,) = verdict.ml
    assert (model.name, model.license, model.category) == (
        "tinyseg/weights/net.onnx",
        "CC-BY-NC-SA-4.0",
        "non-free",
    )
    assert verdict.runtime_downloads == ["tinyseg/__init__.py:2: hf_hub_download()"]
    assert verdict.area == "non-free"


def test_models_in_a_deb(tmp_path: Path) -> None:
    root = tmp_path / "root"
    share = root / "usr" / "share" / "tinyllm"
    share.mkdir(parents=True)
    gguf(share / "tiny.gguf")
    (share / "README.md").write_text(
        "# tiny\n\nLicensed under the Apache-2.0 licence.\n"
        "Trained on the public TinyStories dataset.\n"
    )
    (root / "DEBIAN").mkdir()
    (root / "DEBIAN" / "control").write_text(
        "Package: tinyllm-model\nVersion: 1.0\nArchitecture: all\n"
        "Maintainer: deepdeb test suite <deepdeb@example.org>\nDescription: a tiny model\n"
    )
    deb = tmp_path / "tinyllm-model_1.0_all.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "-b", root, deb], check=True)
    data = audit_target(deb, tmp_path).to_json()
    (model,) = data["models"]
    assert model["name"] == "usr/share/tinyllm/tiny.gguf"
    assert model["license"] == "Apache-2.0"
    # a public dataset, but its licence unstated: ToxicCandy, with that as the reason
    assert model["category"] == "ToxicCandy"
    assert "training data licence is not free or not declared" in model["missing"]


def test_runtime_downloads_skip_comments_and_definitions(tmp_path: Path) -> None:
    (tmp_path / "hub.py").write_text(
        "def load_state_dict_from_url(url):\n"
        "    # load_state_dict_from_url(url) downloads\n"
        "    return None\n"
        "m = keras.utils.get_file('w.h5', URL)\n"
    )
    found = find_runtime_downloads(tmp_path)
    assert [(d.path, d.line, d.call) for d in found] == [("hub.py", 4, "get_file")]


def test_a_wheels_test_data_is_not_a_model_and_weights_take_its_declared_licence(
    tmp_path: Path,
) -> None:
    """h5py ships HDF5 files of a few KiB in h5py/tests/: fixtures of its code, not models
    (they made h5py local-only). Weights of real size elsewhere, with no card, are under
    the licence the wheel's METADATA declares (the wheel's licence files are elsewhere),
    and still ToxicCandy: nothing says what they were trained on."""
    small, big = tmp_path / "small.h5", tmp_path / "big.h5"
    hdf5(small)
    big.write_bytes(small.read_bytes() + b"\0" * (2 << 20))
    wheel = make_wheel(
        tmp_path,
        "h5ish",
        "1.0",
        {
            "h5ish/__init__.py": b"",
            "h5ish/tests/data_files/fixture.h5": small.read_bytes(),
            "h5ish/tests/data_files/weights.h5": big.read_bytes(),
        },
        license_expression="BSD-3-Clause",
    )
    verdict = audit_wheel(wheel, tmp_path / "unpacked")
    (model,) = verdict.ml  # the 2 MiB file, not the 64-byte fixture
    assert model.name == "h5ish/tests/data_files/weights.h5"
    assert (model.license, model.category) == ("BSD-3-Clause", "ToxicCandy")
    assert model.evidence == ["no licence in a card: the package declares BSD-3-Clause"]
    assert is_test_fixture("h5py/tests/data_files/x.h5", 13792)
    assert not is_test_fixture("h5py/tests/data_files/x.h5", 2 << 20)
    assert not is_test_fixture("models/x.h5", 100)


def test_a_wheels_metadata_field_beats_licensecheck_reading_its_description(
    tmp_path: Path,
) -> None:
    """absl-py's METADATA declares License-Expression: Apache-2.0, and its long
    description says "the Apache license", which licensecheck reads as "Apache" (no
    version): unknown, and absl-py became local-only. The field says what it is."""
    wheel = make_wheel(
        tmp_path,
        "abslish",
        "1.0",
        {"abslish/__init__.py": b""},
        license_expression="Apache-2.0",
        description="The library is licensed under the terms of the Apache license.\n",
    )
    verdict = audit_wheel(wheel, tmp_path / "unpacked")
    metadata = next(f for f in verdict.files if f.path.endswith(".dist-info/METADATA"))
    assert (metadata.spdx, metadata.source) == ("Apache-2.0", "metadata")
    assert verdict.redistributable and verdict.area == "main"


def test_a_metadata_without_a_licence_field_takes_its_licence_files(tmp_path: Path) -> None:
    """namex's METADATA names only its License-File, tensorflow-io's has only a classifier:
    the licence file in the .dist-info says what they are, not "unknown" (which made both
    local-only)."""
    mit = (
        "MIT License\n\nCopyright (c) 2026 deepdeb test suite\n\n"
        "Permission is hereby granted, free of charge, to any person obtaining a copy of this "
        'software and associated documentation files (the "Software"), to deal in the '
        "Software without restriction, including without limitation the rights to use, copy, "
        "modify, merge, publish, distribute, sublicense, and/or sell copies of the Software, "
        "and to permit persons to whom the Software is furnished to do so, subject to the "
        "following conditions:\n\nThe above copyright notice and this permission notice "
        "shall be included in all copies or substantial portions of the Software.\n\n"
        'THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED, '
        "INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY, FITNESS FOR A "
        "PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE AUTHORS OR COPYRIGHT "
        "HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER LIABILITY, WHETHER IN AN ACTION OF "
        "CONTRACT, TORT OR OTHERWISE, ARISING FROM, OUT OF OR IN CONNECTION WITH THE SOFTWARE "
        "OR THE USE OR OTHER DEALINGS IN THE SOFTWARE.\n"
    )
    wheel = make_wheel(
        tmp_path, "namexish", "1.0", {"namexish/__init__.py": b""}, license_expression="",
        license_file=("LICENSE", mit.encode()),
    )  # fmt: skip
    verdict = audit_wheel(wheel, tmp_path / "unpacked")
    metadata = next(f for f in verdict.files if f.path.endswith(".dist-info/METADATA"))
    assert (metadata.spdx, metadata.source) == ("MIT", "license-file")
    assert verdict.redistributable and verdict.area == "main"
