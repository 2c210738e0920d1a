"""cuDNN-style licences: the audit reads the clauses, local-only packages get ``+local1``,
publish refuses them for public repositories, and a cuda flavour depends on one.

The wheels are of our own making (tests/wheelmaker.py) with licence texts written for
these tests in the style of NVIDIA's SDK agreements (tests/fixtures/licences/): one grants
distribution only inside the licensee's application, the other adds a grant to copy and
redistribute unmodified files. Their METADATA declares ``LicenseRef-NVIDIA-Proprietary``,
as NVIDIA's wheels do, which the licence table alone classes non-free and redistributable:
only the clauses make the first one local-only. One live test reads the real cuDNN wheel's
licence out of PyPI by range requests (658 MB wheel, one 256 KiB block read).
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from conftest import FIXTURES, contents, control, in_root, installed_root, pypi_reachable
from debian.deb822 import Deb822
from rich.console import Console
from wheelmaker import compile_so, make_wheel

from deepdeb.archive import publish
from deepdeb.errors import PublishError
from deepdeb.licence import clauses
from deepdeb.licence.audit import audit_target, licence_evidence
from deepdeb.recipe.load import load_recipe
from deepdeb.recipe.model import WheelRecipe
from deepdeb.util import sha256_file
from deepdeb.wheel.pipeline import run_wheel_build

LICENCES = FIXTURES / "licences"
APP_ONLY = (LICENCES / "app-only.txt").read_text()
WITH_COPIES = (LICENCES / "with-copies.txt").read_text()
NVIDIA = "LicenseRef-NVIDIA-Proprietary"
GRANT_SENTENCE = (
    "distribute the files of the Library named in this agreement as distributable, as "
    "incorporated in binary form into a software application that satisfies the conditions "
    "of section 1.2."
)
FUNCTIONALITY_SENTENCE = (
    "Your application must have material additional functionality, beyond the parts of the "
    "Library it includes."
)


# --- reading the clauses ------------------------------------------------------------------


def test_sections_headings_items_and_parts_are_found() -> None:
    paras = clauses.paragraphs(APP_ONLY)
    grant = next(p for p in paras if p.body.startswith("distribute the files"))
    assert (grant.part, grant.section, grant.heading, grant.item) == (
        "TINYDNN LIBRARY LICENSE AGREEMENT", "1.1", "Grant", "(c)"
    )  # fmt: skip
    restriction = next(p for p in paras if p.body.startswith("Except as this agreement"))
    assert (restriction.section, restriction.heading, restriction.item) == (
        "2.1",
        "Restrictions",
        "",
    )
    files = next(p for p in paras if p.body.startswith("The following files"))
    assert files.part == "TINYDNN GPU SUPPLEMENT TO THE LIBRARY LICENSE AGREEMENT"
    assert (files.section, files.heading) == ("2", "Distributable Files")


def test_an_application_only_grant_is_not_redistributable_and_cited() -> None:
    reading = clauses.read(APP_ONLY, "non-free")
    assert reading is not None and reading.classification == "not-redistributable"
    cited = {c.rule: c for c in reading.citations}
    assert list(cited) == [
        "application-only-grant",
        "material-additional-functionality",
        "only-accessed-by-your-application",
        "distributable-portions",
    ]
    grant = cited["application-only-grant"]
    assert grant.cite() == (
        f'§1.1 "Grant" (c) of TINYDNN LIBRARY LICENSE AGREEMENT: "{GRANT_SENTENCE}"'
    )
    assert cited["material-additional-functionality"].sentence == FUNCTIONALITY_SENTENCE
    assert reading.reason.startswith(
        "distribution is granted only as part of your own application, not as a package on "
        "its own: distribution is granted only as incorporated into your own application, "
        '§1.1 "Grant" (c)'
    )


def test_a_grant_to_copy_and_redistribute_is_non_free() -> None:
    reading = clauses.read(WITH_COPIES, "non-free")
    assert reading is not None and reading.classification == "non-free"
    assert [c.rule for c in reading.citations] == [
        "copied-and-redistributed", "unmodified-only", "distributable-portions"
    ]  # fmt: skip
    assert reading.citations[0].section == "3" and reading.citations[0].heading == "Linux Copies"
    # one sentence holds both the grant and its condition: cited once
    assert reading.reason.count("may be copied and redistributed") == 1


def test_clauses_never_free_a_text_nor_decide_for_an_unclassified_one() -> None:
    assert clauses.read(APP_ONLY, "free") is None  # free texts are not read
    assert clauses.read("MIT License\n\nPermission is hereby granted.\n", "non-free") is None
    # a grant in a text nobody has classified is one sentence, not a review
    assert clauses.read(WITH_COPIES, "unknown") is None
    unknown = clauses.read(APP_ONLY, "unknown")
    assert unknown is not None and unknown.classification == "not-redistributable"


# --- the audit of a wheel -----------------------------------------------------------------


def dnn_wheel(
    dest: Path, licence: str = APP_ONLY, version: str = "9.1.0.7", requires: tuple[str, ...] = ()
) -> Path:
    """tinydnn-cu12: a native library in a namespace directory, as NVIDIA's wheels lay
    out theirs (no Python module), with a licence text of ours."""
    build = dest / "build"
    build.mkdir(parents=True, exist_ok=True)
    code = '#include <stdlib.h>\nint tinydnn_version(void) { return atoi("9107"); }\n'
    lib = compile_so(build, "libtinydnn.so.9", code, ("-s", "-Wl,-soname,libtinydnn.so.9"))
    return make_wheel(
        dest,
        "tinydnn-cu12",
        version,
        {
            "tinydnn/lib/libtinydnn.so.9": lib,
            "tinydnn/include/tinydnn.h": b"int tinydnn_version(void);\n",
        },
        requires=requires,
        tag="py3-none-manylinux_2_27_x86_64",
        license_expression=NVIDIA,
        license_file=("License.txt", licence.encode()),
    )


def test_audit_of_the_wheel_cites_the_clause_in_reasons_and_json(tmp_path: Path) -> None:
    result = audit_target(dnn_wheel(tmp_path / "dist"), tmp_path / "work").to_json()
    assert (result["area"], result["redistributable"]) == ("local-only", False)
    licence = "tinydnn_cu12-9.1.0.7.dist-info/licenses/License.txt"
    (why,) = result["redistributable_reasons"]
    assert why.startswith(f"may not be redistributed: {licence} ({NVIDIA}, as its text reads: ")
    assert f'§1.1 "Grant" (c) of TINYDNN LIBRARY LICENSE AGREEMENT: "{GRANT_SENTENCE}"' in why
    assert FUNCTIONALITY_SENTENCE in why
    (text,) = [f for f in result["files"] if f["path"] == licence]
    assert text["classification"] == "not-redistributable"
    assert [(c["section"], c["heading"], c["item"]) for c in text["clauses"]] == [
        ("1.1", "Grant", "(c)"),
        ("1.2", "Conditions for Distribution", "(a)"),
        ("1.2", "Conditions for Distribution", "(b)"),
        ("2", "Distributable Files", ""),
    ]
    assert result["files_excluded"] == [licence]


def test_the_same_metadata_with_a_copy_grant_is_non_free(tmp_path: Path) -> None:
    result = audit_target(dnn_wheel(tmp_path / "dist", WITH_COPIES), tmp_path / "w").to_json()
    assert (result["area"], result["redistributable"]) == ("non-free", True)
    assert '§3 "Linux Copies" of TINYDNN GPU SUPPLEMENT' in result["area_reasons"][0]


# --- a local-only package, publish, and a cuda flavour that depends on it ------------------


APP = (
    "import ctypes, os\n"
    "HERE = os.path.dirname(__file__)\n"
    "LIB = os.path.join(HERE, os.pardir, 'tinydnn', 'lib', 'libtinydnn.so.9')\n"
    "def dnn_version():\n"
    "    return ctypes.CDLL(os.path.normpath(LIB)).tinydnn_version()\n"
)


@pytest.fixture(scope="module")
def cuda_build(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """dnnapp's cuda flavour requires tinydnn-cu12==9.1.0.7 (``package``) and loads its
    library from where the wheel puts it, as torch loads NVIDIA's. The dnn wheel is found
    in deepdeb's wheel cache, where pip would have put it, so nothing is fetched."""
    tmp = tmp_path_factory.mktemp("cudnn")
    cache = tmp / "cache"
    dnn = dnn_wheel(tmp / "dnn", requires=("tinyblas-cu12==12.9.1",))  # as cuDNN needs cuBLAS
    blas = make_wheel(tmp / "blas", "tinyblas-cu12", "12.9.1", {"tinyblas/lib/README": b"x\n"})
    for wheel in (dnn, blas):
        cached = cache / "wheels" / sha256_file(wheel) / wheel.name
        cached.parent.mkdir(parents=True)
        cached.write_bytes(wheel.read_bytes())
    cuda = make_wheel(tmp / "cuda-dist", "dnnapp", "1.2.0", {"dnnapp/__init__.py": APP.encode()},
                      requires=("tinydnn-cu12==9.1.0.7",))  # fmt: skip
    recipe = tmp / "recipe.toml"
    recipe.write_text(
        f'[flavor.cuda]\nwheel = "{cuda}"\n'
        'requires = { "tinydnn-cu12" = "package", "tinyblas-cu12" = "package" }\n'
    )
    parsed = load_recipe(recipe)
    assert isinstance(parsed, WheelRecipe)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DEEPDEB_CACHE", str(cache))
        run_wheel_build(parsed, tmp / "out", Console(file=io.StringIO()))
    return tmp / "out", json.loads((tmp / "out" / "report.json").read_text())


def _packages(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {p["package"]: p for p in report["packages"]}


def test_the_dnn_package_is_local_only_with_local1(cuda_build: tuple[Path, dict[str, Any]]) -> None:
    out, report = cuda_build
    dnn = _packages(report)["python3-tinydnn-cu12"]
    assert (dnn["area"], dnn["redistributable"]) == ("local-only", False)
    assert dnn["version"] == "9.1.0.7-1~deepdeb1+local1"
    assert dnn["file"] == "python3-tinydnn-cu12_9.1.0.7-1~deepdeb1+local1_amd64.deb"
    fields = control(out / dnn["file"])
    assert fields["Version"] == "9.1.0.7-1~deepdeb1+local1"
    assert "/usr/lib/python3/dist-packages/tinydnn/lib/libtinydnn.so.9" in contents(
        out / dnn["file"]
    )
    assert any(r.startswith("may not be redistributed: ") for r in dnn["licence_reasons"])
    cited = {
        (c["file"].rsplit("/", 1)[-1], c["section"], c["item"]) for c in dnn["licence_clauses"]
    }
    assert ("License.txt", "1.1", "(c)") in cited
    assert any(c["cite"].endswith(f'"{GRANT_SENTENCE}"') for c in dnn["licence_clauses"])


def test_the_cuda_flavour_is_contrib_and_depends_on_the_local_version(
    cuda_build: tuple[Path, dict[str, Any]],
) -> None:
    """Debian's contrib holds free packages that need what main cannot hold, including
    what the user must get elsewhere: depending on cuDNN is not distributing it."""
    out, report = cuda_build
    flavour = _packages(report)["python3-dnnapp-cuda"]
    assert (flavour["area"], flavour["redistributable"]) == ("contrib", True)
    assert "python3-tinydnn-cu12 (local-only)" in " ".join(flavour["licence_reasons"])
    depends = control(out / flavour["file"])["Depends"]
    assert "python3-tinydnn-cu12 (= 9.1.0.7-1~deepdeb1+local1)" in depends
    assert flavour["version"] == "1.2.0-1"  # its own licence is free: no +local1


def test_what_a_packaged_requirement_needs_is_packaged_by_the_same_choices(
    cuda_build: tuple[Path, dict[str, Any]],
) -> None:
    """tinydnn needs tinyblas, which the archive lacks: the recipe's choice builds it too
    (the real cuDNN needs cuBLAS, which needs NVRTC), and tinydnn depends on it."""
    out, report = cuda_build
    packages = _packages(report)
    assert sorted(packages) == [
        "python3-dnnapp-cuda",
        "python3-tinyblas-cu12",
        "python3-tinydnn-cu12",
    ]
    blas = packages["python3-tinyblas-cu12"]
    assert (blas["version"], blas["area"], blas["redistributable"]) == (
        "12.9.1-1~deepdeb1",
        "main",
        True,
    )
    dnn_depends = control(out / packages["python3-tinydnn-cu12"]["file"])["Depends"]
    assert "python3-tinyblas-cu12 (= 12.9.1-1~deepdeb1)" in dnn_depends


def test_publish_refuses_it_publicly_and_a_local_repository_takes_it(
    cuda_build: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    out, _ = cuda_build
    public = tmp_path / "public"
    with pytest.raises(PublishError) as refused:
        publish.publish([out], public)
    message = str(refused.value)
    assert "python3-tinydnn-cu12 9.1.0.7-1~deepdeb1+local1: not redistributable: " in message
    assert "as incorporated in binary form into a software application" in message
    assert "python3-dnnapp-cuda" not in message  # contrib, redistributable
    assert not public.exists()
    private = tmp_path / "private"
    result = publish.publish([out], private, local=True)
    assert sorted(result.added) == sorted(p.name for p in out.glob("*.deb"))
    pool = private / "pool"
    assert list((pool / "local").rglob("python3-tinydnn-cu12_9.1.0.7-1~deepdeb1+local1_*.deb"))
    assert list((pool / "contrib").rglob("python3-dnnapp-cuda_1.2.0-1_all.deb"))
    index = (private / "dists/bookworm/local/binary-amd64/Packages").read_text()
    (entry,) = Deb822.iter_paragraphs(index)
    assert entry["Package"] == "python3-tinydnn-cu12"


@pytest.mark.slow
def test_apt_installs_both_and_the_flavour_imports_and_loads_the_library(
    cuda_build: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    """No GPU here: the flavour's code runs, and the local-only library it depends on is
    installed where the wheel put it and loads."""
    out, _ = cuda_build
    root = installed_root(sorted(out.glob("*.deb")), tmp_path / "root")
    script = "import dnnapp; print(dnnapp.__file__, dnnapp.dnn_version())"
    assert in_root(root, "python3", "-c", script).split() == [
        "/usr/lib/python3/dist-packages/dnnapp/__init__.py", "9107"
    ]  # fmt: skip
    status = in_root(root, "dpkg-query", "-W", "python3-tinydnn-cu12", "python3-dnnapp-cuda")
    assert "9.1.0.7-1~deepdeb1+local1" in status


# --- the data, the examples, and the real licence ------------------------------------------


def test_the_examples_pin_cudnn_and_package_it_for_the_cuda_flavour() -> None:
    examples = Path(__file__).parent.parent / "examples"
    cudnn = load_recipe(examples / "cudnn" / "recipe.toml")
    assert isinstance(cudnn, WheelRecipe)
    assert cudnn.flavors[0].source.pypi == "nvidia-cudnn-cu12==9.20.0.48"
    assert dict(cudnn.python.requires) == {
        "nvidia-cublas-cu12": "package", "nvidia-cuda-nvrtc-cu12": "package"
    }  # fmt: skip
    torch = load_recipe(examples / "pytorch-cuda" / "recipe.toml")
    assert isinstance(torch, WheelRecipe)
    flavours = {f.name: f for f in torch.flavors}
    assert sorted(flavours) == ["cpu", "cuda"]
    cuda = dict(flavours["cuda"].python.requires)
    assert cuda["nvidia-cudnn-cu12"] == "package"
    assert "nvidia" not in " ".join(dict(flavours["cpu"].python.requires))


def test_clause_rules_schema() -> None:
    from deepdeb.util import data_toml

    data = data_toml("licence-clauses.toml")
    assert set(data) == {"clause"}
    ids = [c["id"] for c in data["clause"]]
    assert len(ids) == len(set(ids))
    for c in data["clause"]:
        assert set(c) == {"id", "effect", "pattern", "meaning"}, c
        assert c["effect"] in clauses.EFFECTS
        assert re.fullmatch(r"[a-z][a-z-]+", c["id"])
        re.compile(c["pattern"])
        assert c["meaning"] and not c["meaning"].endswith(".")
    effects = {c["effect"] for c in data["clause"]}
    assert effects == set(clauses.EFFECTS)  # every effect the code decides on has a rule


@pytest.mark.slow  # reaches PyPI, as the suite's other network tests (the fast suite is offline)
def test_live_the_real_cudnn_licence_is_local_only(tmp_path: Path) -> None:
    """The licence evidence of nvidia-cudnn-cu12 9.20.0.48 (the cuDNN PyTorch 2.13.0
    pins), read out of the 658 MB wheel by range requests and audited as a wheel is. The
    reachability probe runs here, not at collection: a deselected test touches nothing."""
    from deepdeb.wheel import pypi

    if not pypi_reachable():
        pytest.skip("pypi.org cannot be reached from here")

    (release,) = [
        r for r in pypi.PyPI().releases("nvidia-cudnn-cu12") if str(r.version) == "9.20.0.48"
    ]
    assert release.wheel is not None
    members = pypi.remote_members(release.wheel.url, release.wheel.size, licence_evidence)
    assert sorted(members) == [
        "nvidia_cudnn_cu12-9.20.0.48.dist-info/METADATA",
        "nvidia_cudnn_cu12-9.20.0.48.dist-info/licenses/License.txt",
    ]
    for name, data in members.items():
        (tmp_path / "tree" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "tree" / name).write_bytes(data)
    result = audit_target(tmp_path / "tree", tmp_path / "work").to_json()
    assert (result["area"], result["redistributable"]) == ("local-only", False)
    (text,) = [f for f in result["files"] if f["path"].endswith("License.txt")]
    grant = text["clauses"][0]
    assert (grant["section"], grant["heading"], grant["item"]) == ("1.1", "Grant", "(iii)")
    assert grant["sentence"].startswith(
        "Distribute those portions of the SDK that are identified in this Agreement as "
        "distributable, as incorporated in object code format into a software application"
    )
    cited = {c["rule"]: c for c in text["clauses"]}
    assert cited["material-additional-functionality"]["section"] == "1.2"
    assert cited["distributable-portions"]["part"].startswith("cuDNN SUPPLEMENT")
    assert "copied-and-redistributed" not in cited  # what the CUDA runtime's text has


def test_the_cuda_runtime_licence_stays_non_free_by_its_clauses(tmp_path: Path) -> None:
    """The real nvidia-cuda-runtime-cu12 wheel (scripts/setup fetches it): its EULA has
    the same application-only grant, and also section 2.3's grant to copy and redistribute
    the Linux parts unmodified, which cuDNN's lacks."""
    inputs = Path(__file__).parent.parent / ".cache" / "test-inputs"
    (wheel,) = sorted(inputs.glob("nvidia_cuda_runtime_cu12-*.whl"))
    result = audit_target(wheel, tmp_path).to_json()
    assert (result["area"], result["redistributable"]) == ("non-free", True)
    (text,) = [f for f in result["files"] if f["path"].endswith("License.txt")]
    assert text["classification"] == "non-free"
    grant = text["clauses"][0]
    assert (grant["rule"], grant["section"], grant["heading"]) == (
        "copied-and-redistributed", "2.3", "Operating Systems"
    )  # fmt: skip
    assert "provided that the object code files are not modified" in grant["sentence"]


def test_subprocess_audit_prints_the_citation(tmp_path: Path) -> None:
    """``deepdeb audit`` on the wheel, as a user runs it."""
    import sys

    wheel = dnn_wheel(tmp_path / "dist")
    proc = subprocess.run(
        [sys.executable, "-m", "deepdeb", "audit", str(wheel), "--format", "json"],
        capture_output=True, text=True, env=dict(os.environ), cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["redistributable"] is False
    assert "§1.2" in data["redistributable_reasons"][0]
