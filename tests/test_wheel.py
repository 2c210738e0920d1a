"""Wheels to Debian packages: verification, metadata mapping and the package itself."""

from __future__ import annotations

import functools
import io
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from conftest import contents, control
from debian.debian_support import version_compare
from packaging.specifiers import Specifier
from packaging.version import Version
from wheelmaker import make_wheel, native_wheel

from deepdeb.errors import WheelError
from deepdeb.hermetic import cleanroom
from deepdeb.recipe.model import WheelRecipe
from deepdeb.sources.wheelfile import open_wheel
from deepdeb.wheel.depends import (
    check_archive,
    debian_version,
    dependencies,
    relations,
    satisfies,
)
from deepdeb.wheel.layout import extract
from deepdeb.wheel.package import PackageSpec, build_package

PURE = {"tinypkg/__init__.py": b"VALUE = 42\n"}


def test_pep440_versions_map_to_debian_versions_that_sort_the_same() -> None:
    pep = [
        "1.0.dev0", "1.0a1.dev0", "1.0a1", "1.0b2", "1.0rc1", "1.0", "1.0+cpu",
        "1.0.post1", "1.0.1", "1!0.5",
    ]  # fmt: skip
    assert pep == sorted(pep, key=Version)
    deb = [debian_version(v) for v in pep]
    assert deb == sorted(deb, key=functools.cmp_to_key(version_compare))
    assert debian_version("2.13.0+cpu") == "2.13.0+cpu"
    assert debian_version("1.0rc1") == "1.0~rc1"
    assert debian_version("1!0.5") == "1:0.5"


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (">=4.10.0", [(">=", "4.10.0")]),
        ("<2", [("<<", "2")]),
        ("==1.2.*", [(">=", "1.2"), ("<<", "1.3~")]),
        ("~=1.4.2", [(">=", "1.4.2"), ("<<", "1.5~")]),
        ("==2.0rc1", [(">=", "2.0~rc1"), ("<<", "2.0~rc1.~")]),
        ("==0.4.38", [(">=", "0.4.38"), ("<<", "0.4.38.~")]),
        ("<=0.4.38", [("<<", "0.4.38.~")]),
        (">0.7", [(">=", "0.7.~")]),
        ("!=1.3", []),
    ],
)
def test_specifiers_become_debian_relations(spec: str, expected: list[tuple[str, str]]) -> None:
    assert relations(Specifier(spec)) == expected


@pytest.mark.parametrize(
    ("spec", "inside", "outside"),
    [
        ("==0.4.38", ["0.4.38-1", "0.4.38-1~deepdeb1", "0.4.38+cpu-1"],
         ["0.4.38~rc1-1", "0.4.38.1-1", "0.4.39-1"]),
        ("<=0.4.38", ["0.4.37-1", "0.4.38-1~deepdeb1", "0.4.38+cpu-1"],
         ["0.4.38.1-1", "0.4.39~rc1-1"]),
        (">0.7", ["0.7.1-1", "0.8~rc1-1"], ["0.7-1", "0.7-1~deepdeb1"]),
    ],
)  # fmt: skip
def test_relations_hold_for_debian_revisions_of_the_upstream_version(
    spec: str, inside: list[str], outside: list[str]
) -> None:
    """A package of 0.4.38 is 0.4.38-1 (or -1~deepdeb1 when deepdeb packaged it): pins
    and upper bounds must accept it, as dpkg compares (jax 0.4.38 pins jaxlib so)."""
    pairs = relations(Specifier(spec))
    for version in inside:
        assert all(satisfies(version, op, want) for op, want in pairs), (version, pairs)
    for version in outside:
        assert not all(satisfies(version, op, want) for op, want in pairs), (version, pairs)
        dpkg = subprocess.run(
            ["dpkg", "--compare-versions", version, {"<<": "lt", ">=": "ge"}[pairs[-1][0]],
             pairs[-1][1]],
        )  # fmt: skip
        assert (dpkg.returncode == 0) == satisfies(version, *pairs[-1])


def test_a_relation_under_the_archive_epoch_reads_as_tensorflow_needs() -> None:
    """bookworm's numpy is 1:1.24.2: TensorFlow's numpy<2.0.0 must say (<< 1:2.0.0)."""
    from deepdeb.wheel.depends import Dependency

    dep = Dependency("numpy<2.0.0,>=1.23.5", "numpy", "python3-numpy",
                     [("<<", "2.0.0"), (">=", "1.23.5")], ["1:1.24.2-1+deb12u1"])  # fmt: skip
    assert dep.relation() == "python3-numpy (<< 1:2.0.0), python3-numpy (>= 1:1.23.5)"
    assert dep.satisfiable
    new = Dependency("jaxlib==0.4.38", "jaxlib", "python3-jaxlib", [(">=", "0.4.38")], [])
    assert new.relation() == "python3-jaxlib (>= 0.4.38)"


def test_wheel_without_record_is_refused(tmp_path: Path) -> None:
    whl = make_wheel(tmp_path, "tinypkg", "1.0", PURE, record=False)
    with pytest.raises(WheelError, match=r"no tinypkg-1\.0\.dist-info/RECORD"):
        open_wheel(whl)


def test_wheel_with_a_bad_hash_is_refused(tmp_path: Path) -> None:
    whl = make_wheel(tmp_path, "tinypkg", "1.0", PURE, tamper="tinypkg/__init__.py")
    opened = open_wheel(whl)
    with pytest.raises(WheelError, match=r"tinypkg/__init__.py: SHA-256 does not match"):
        extract(opened, tmp_path / "root")


@pytest.mark.parametrize("evil", ["../../etc/cron.d/x", "/etc/passwd", "tinypkg/../../up"])
def test_wheel_with_a_path_escaping_its_root_is_refused(tmp_path: Path, evil: str) -> None:
    whl = make_wheel(tmp_path, "tinypkg", "1.0", PURE, extra_members={evil: b"x"})
    with pytest.raises(WheelError, match="escapes the wheel's root"):
        open_wheel(whl)
    assert not (tmp_path / "etc").exists()


def test_file_missing_from_record_is_refused(tmp_path: Path) -> None:
    whl = make_wheel(tmp_path, "tinypkg", "1.0", PURE, extra_members={"tinypkg/x.py": b"1"})
    with pytest.raises(WheelError, match=r"files not in RECORD: tinypkg/x.py"):
        open_wheel(whl)


def test_requirements_map_to_debian_and_unsatisfiable_ones_are_named(tmp_path: Path) -> None:
    whl = open_wheel(native_wheel(tmp_path, tmp_path / "dist"))
    deps = dependencies(whl)
    assert [d.package for d in deps] == ["python3-numpy", "python3-typing-extensions"]
    check_archive(deps)
    numpy, typing = deps
    # bookworm's numpy is 1:1.24.2: the relation carries its epoch
    assert numpy.relation() == "python3-numpy (>= 1:1.20)" and numpy.satisfiable
    assert not typing.satisfiable
    assert typing.why_not().startswith("the archive has python3-typing-extensions 4.")
    with_yaml = dependencies(whl, extras=("yaml",))
    assert "python3-yaml" in [d.package for d in with_yaml]


@pytest.fixture(scope="module")
def native_deb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("native")
    whl = open_wheel(native_wheel(tmp, tmp / "dist"))
    spec = PackageSpec(
        package="python3-fastmod",
        version=debian_version(whl.version) + "-1",
        depends=("python3-numpy (>= 1:1.20)",),
    )
    built = build_package(whl, spec, tmp / "work", tmp)
    return built.deb.file


def test_native_wheel_becomes_a_debian_package(native_deb: Path) -> None:
    fields = control(native_deb)
    assert fields["Package"] == "python3-fastmod" and fields["Version"] == "1.2.0-1"
    assert fields["Architecture"] == "amd64"
    depends = fields["Depends"]
    assert "python3 (>= 3.11~), python3 (<< 3.12)" in depends
    assert "python3-numpy (>= 1:1.20)" in depends
    assert "libc6 (>= " in depends  # from dpkg-shlibdeps on the extension and libhelper
    assert "libhelper" not in depends  # bundled: satisfied inside the package
    files = contents(native_deb)
    site = "/usr/lib/python3/dist-packages"
    assert f"{site}/fastmod/lib/libhelper.so" in files
    assert f"{site}/fastmod-1.2.0.dist-info/METADATA" in files
    assert f"{site}/fastmod-1.2.0.dist-info/RECORD" not in files
    assert "/usr/bin/fastmod-hyp" in files
    assert not any(f.endswith(".pyc") for f in files)
    info = subprocess.run(
        ["dpkg-deb", "--ctrl-tarfile", native_deb], check=True, capture_output=True
    ).stdout
    assert b"./shlibs" not in info  # never offers its bundled library to others
    postinst = subprocess.run(
        ["dpkg-deb", "-I", native_deb, "postinst"], check=True, capture_output=True, text=True
    ).stdout
    assert "py3compile -p python3-fastmod" in postinst
    bcep = subprocess.run(
        ["dpkg-deb", "--fsys-tarfile", native_deb], check=True, capture_output=True
    ).stdout
    assert b"usr/share/python3/bcep/python3-fastmod" in bcep


def test_the_unpacked_package_runs(native_deb: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    subprocess.run(["dpkg-deb", "-x", str(native_deb), str(root)], check=True)
    site = root / "usr/lib/python3/dist-packages"
    env = dict(os.environ, PYTHONPATH=str(site))
    out = subprocess.run(
        ["/usr/bin/python3", "-c", "import fastmod; print(fastmod.hyp(3, 4))"],
        env=env, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert out.strip() == "5.0"
    script = subprocess.run(
        ["/usr/bin/python3", str(root / "usr/bin/fastmod-hyp")],
        env=env, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert script.strip() == "hyp 5.0"


@pytest.mark.slow
def test_apt_installs_it_in_a_clean_root_and_byte_compiles_it(
    native_deb: Path, tmp_path: Path
) -> None:
    """apt resolves python3 and python3-numpy from the archive; postinst byte-compiles with
    py3compile and prerm's py3clean takes the bytecode away again."""
    root = tmp_path / "root"
    cleanroom.unpack_chroot(cleanroom.runtime_chroot(), root)
    binds = [("--ro-bind", str(native_deb.parent), "/debs")]
    cleanroom.in_root(root, ["apt-get", "install", "-y", "-q", f"/debs/{native_deb.name}"],
                      binds=binds)  # fmt: skip
    run = cleanroom.in_root(
        root, ["python3", "-c", "import fastmod, numpy; print(fastmod.hyp(3, 4))"]
    )
    assert run.stdout.strip() == "5.0"
    assert cleanroom.in_root(root, ["fastmod-hyp"]).stdout.strip() == "hyp 5.0"
    site = root / "usr/lib/python3/dist-packages/fastmod"
    assert list(site.glob("__pycache__/__init__.cpython-311.pyc"))
    assert not list(site.glob("__pycache__/py312.*"))  # skipped, as the bcep file says
    cleanroom.in_root(root, ["apt-get", "remove", "-y", "-q", "python3-fastmod"])
    assert not site.exists()


def test_pure_wheel_is_architecture_all(tmp_path: Path) -> None:
    whl = open_wheel(make_wheel(tmp_path, "tinypkg", "1.0rc1", PURE))
    spec = PackageSpec(package="python3-tinypkg", version="1.0~rc1-1")
    deb = build_package(whl, spec, tmp_path / "work", tmp_path).deb.file
    fields = control(deb)
    assert fields["Architecture"] == "all" and fields["Depends"] == "python3:any"
    lintian = subprocess.run(["lintian", str(deb)], capture_output=True, text=True)
    assert "\nE: " not in "\n" + lintian.stdout, lintian.stdout


def _wheel_recipe(path: Path) -> WheelRecipe:
    from deepdeb.recipe.load import load_recipe

    recipe = load_recipe(path)
    assert isinstance(recipe, WheelRecipe)
    return recipe


def _flavour_recipe(tmp: Path, cuda_wheel: Path, cpu_wheel: Path, rocm: str = "") -> Path:
    recipe = tmp / "recipe.toml"
    recipe.write_text(
        f'[flavor.cpu]\nwheel = "{cpu_wheel}"\n\n'
        f'[flavor.cuda]\nwheel = "{cuda_wheel}"\n'
        'requires = { "nvidia-cuda-runtime-cu12" = "package", "typing-extensions" = "depend" }\n'
        + rocm
    )
    return recipe


@pytest.fixture(scope="module")
def flavours(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """fastmod in two flavours: cpu, and cuda needing NVIDIA's (non-free) CUDA runtime."""
    import json

    from rich.console import Console

    from deepdeb.errors import UnsatisfiedRequirements
    from deepdeb.wheel.pipeline import run_wheel_build

    tmp = tmp_path_factory.mktemp("flavours")
    cpu = native_wheel(tmp / "cpu", tmp / "cpu-dist")
    cuda = native_wheel(
        tmp / "cuda", tmp / "cuda-dist", requires_extra=("nvidia-cuda-runtime-cu12==12.9.79",)
    )
    recipe = _wheel_recipe(_flavour_recipe(tmp, cuda, cpu))
    with pytest.raises(
        UnsatisfiedRequirements, match=r"typing-extensions>=99\.0 \(python3-fastmod\)"
    ):
        run_wheel_build(recipe, tmp / "refused", Console(file=open(os.devnull, "w")))  # noqa: SIM115
    (tmp / "recipe.toml").write_text(
        (tmp / "recipe.toml")
        .read_text()
        .replace(
            f'[flavor.cpu]\nwheel = "{cpu}"\n',
            f'[flavor.cpu]\nwheel = "{cpu}"\nrequires = {{ "typing-extensions" = "depend" }}\n',
        )
    )
    recipe = _wheel_recipe(tmp / "recipe.toml")
    run_wheel_build(recipe, tmp / "out", Console(file=open(os.devnull, "w")))  # noqa: SIM115
    return tmp / "out", json.loads((tmp / "out" / "report.json").read_text())


def test_flavours_provide_one_api_and_conflict(flavours: tuple[Path, dict[str, Any]]) -> None:
    out, report = flavours
    packages = {p["package"]: p for p in report["packages"]}
    cpu, cuda = packages["python3-fastmod"], packages["python3-fastmod-cuda"]
    cpu_fields = control(out / cpu["file"])
    cuda_fields = control(out / cuda["file"])
    assert cpu_fields["Provides"] == "python3-fastmod-api (= 1.2.0-1)"
    assert cuda_fields["Provides"] == "python3-fastmod-api (= 1.2.0-1)"
    assert cpu_fields["Conflicts"] == cpu_fields["Replaces"] == "python3-fastmod-cuda"
    assert cuda_fields["Conflicts"] == cuda_fields["Replaces"] == "python3-fastmod"
    assert "python3-nvidia-cuda-runtime-cu12 (= 12.9.79-1~deepdeb1)" in cuda_fields["Depends"]
    assert "nvidia" not in cpu_fields["Depends"]
    # typing-extensions>=99 cannot be had: "depend" keeps the archive's, without the version
    assert "python3-typing-extensions," in cpu_fields["Depends"] + ","
    unsatisfied = {r["requirement"] for r in report["unsatisfied_in_bookworm"]}
    assert "typing-extensions>=99.0" in unsatisfied


def test_cuda_runtime_is_non_free_and_the_cuda_flavour_contrib(
    flavours: tuple[Path, dict[str, Any]],
) -> None:
    out, report = flavours
    packages = {p["package"]: p for p in report["packages"]}
    runtime = packages["python3-nvidia-cuda-runtime-cu12"]
    assert runtime["area"] == "non-free" and runtime["redistributable"] is True
    assert any("NVIDIA" in r for r in runtime["licence_reasons"])
    assert packages["python3-fastmod-cuda"]["area"] == "contrib"
    assert packages["python3-fastmod"]["area"] != "contrib"
    fields = control(out / runtime["file"])
    assert fields["Package"] == "python3-nvidia-cuda-runtime-cu12"
    files = contents(out / runtime["file"])
    assert any(f.endswith("libcudart.so.12") for f in files)


def test_cpu_parts_of_the_cuda_flavour_import(
    flavours: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    """No GPU here: the cuda flavour's own code must still import and run on the CPU."""
    out, report = flavours
    cuda = next(p for p in report["packages"] if p["package"] == "python3-fastmod-cuda")
    subprocess.run(["dpkg-deb", "-x", str(out / cuda["file"]), str(tmp_path)], check=True)
    env = dict(os.environ, PYTHONPATH=str(tmp_path / "usr/lib/python3/dist-packages"))
    proc = subprocess.run(
        ["/usr/bin/python3", "-c", "import fastmod; print(fastmod.hyp(6, 8))"],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert proc.stdout.strip() == "10.0"


def test_a_flavour_whose_wheel_is_missing_refuses_clearly(tmp_path: Path) -> None:
    from rich.console import Console

    from deepdeb.errors import SourceError
    from deepdeb.wheel.pipeline import run_wheel_build

    cpu = make_wheel(tmp_path, "tinypkg", "1.0", PURE)
    recipe = tmp_path / "r.toml"
    recipe.write_text(f'[flavor.cpu]\nwheel = "{cpu}"\n\n[flavor.rocm]\nwheel = "rocm/x.whl"\n')
    with pytest.raises(SourceError, match=r"flavour rocm: wheel not found: .*rocm/x\.whl"):
        quiet = Console(file=io.StringIO())
        run_wheel_build(_wheel_recipe(recipe), tmp_path / "out", quiet)
    assert not (tmp_path / "out" / "report.json").exists()


def test_unknown_flavour_is_a_recipe_error_with_its_line(tmp_path: Path) -> None:
    from deepdeb.errors import RecipeError
    from deepdeb.recipe.load import load_recipe

    recipe = tmp_path / "r.toml"
    recipe.write_text('[flavor.cpu]\nwheel = "a.whl"\n\n[flavor.opencl]\nwheel = "b.whl"\n')
    with pytest.raises(RecipeError, match=r"r\.toml:4: unknown flavour \[flavor\.opencl\]"):
        load_recipe(recipe)
    recipe.write_text('[source]\npypi = "torch==2.13.0"\n\n[python.requires]\nsympy = "vendor"\n')
    with pytest.raises(RecipeError, match=r"requires: expected a table of PyPI name"):
        load_recipe(recipe)


def test_bundled_requirement_ships_inside_and_replaces_the_debian_package(
    tmp_path: Path,
) -> None:
    """six>=1.17 is newer than bookworm's; "bundle" ships PyPI's six inside the package."""
    import json

    from rich.console import Console

    from deepdeb.wheel.pipeline import run_wheel_build

    whl = make_wheel(tmp_path / "dist", "usesix", "0.3", {"usesix/__init__.py": b"import six\n"},
                     requires=("six>=1.17",))  # fmt: skip
    recipe = tmp_path / "r.toml"
    recipe.write_text(f'[source]\nwheel = "{whl}"\n\n[python.requires]\nsix = "bundle"\n')
    run_wheel_build(_wheel_recipe(recipe), tmp_path / "out", Console(file=open(os.devnull, "w")))  # noqa: SIM115
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    (package,) = report["packages"]
    fields = control(tmp_path / "out" / package["file"])
    assert fields["Provides"].startswith("python3-usesix-api (= 0.3-1), python3-six (= 1.")
    assert fields["Conflicts"] == fields["Replaces"] == "python3-six"
    assert "six" not in fields["Depends"]
    files = contents(tmp_path / "out" / package["file"])
    assert "/usr/lib/python3/dist-packages/six.py" in files
    assert "/usr/lib/python3/dist-packages/usesix/__init__.py" in files
    (row,) = package["requirements"]
    assert row["choice"] == "bundle" and row["satisfiable"] is False


def test_audit_of_a_wheel_recipe_scans_its_wheel(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from deepdeb.cli import main

    files = {"tinypkg/__init__.py": b"# SPDX-License-Identifier: MIT\nV = 1\n"}
    whl = make_wheel(tmp_path, "tinypkg", "1.0", files)
    recipe = tmp_path / "r.toml"
    recipe.write_text(f'[source]\nwheel = "{whl.name}"\n')
    assert main(["audit", str(recipe), "--format", "json"]) == 0
    verdict = json.loads(capsys.readouterr().out)
    assert verdict["area"] == "main" and verdict["redistributable"] is True


def test_converting_a_wheel_twice_gives_the_same_bytes(tmp_path: Path) -> None:
    whl = open_wheel(native_wheel(tmp_path, tmp_path / "dist"))
    spec = PackageSpec(package="python3-fastmod", version="1.2.0-1")
    first = build_package(whl, spec, tmp_path / "w1", tmp_path / "o1").deb
    second = build_package(whl, spec, tmp_path / "w2", tmp_path / "o2").deb
    assert first.sha256 == second.sha256


def test_the_api_name_comes_from_the_framework_not_the_flavour(tmp_path: Path) -> None:
    """Without a cpu flavour, the cuda package still provides python3-<name>-api."""
    import json

    from rich.console import Console

    from deepdeb.wheel.pipeline import run_wheel_build

    whl = make_wheel(tmp_path / "dist", "tinypkg", "1.0", PURE)
    recipe = tmp_path / "r.toml"
    recipe.write_text(f'[flavor.cuda]\nwheel = "{whl}"\n')
    run_wheel_build(_wheel_recipe(recipe), tmp_path / "out", Console(file=open(os.devnull, "w")))  # noqa: SIM115
    (package,) = json.loads((tmp_path / "out" / "report.json").read_text())["packages"]
    assert package["package"] == "python3-tinypkg-cuda"
    assert package["provides"] == ["python3-tinypkg-api (= 1.0-1)"]


def test_build_and_audit_give_a_wheel_the_same_verdict(tmp_path: Path) -> None:
    """A vendored library's licence file outside the .dist-info: `deepdeb audit` and
    `deepdeb build` read the same evidence, so neither can call the wheel free alone."""
    from deepdeb.licence.audit import audit_target

    files = {
        "vendpkg/__init__.py": b"V = 1\n",
        "vendpkg/_vendor/blob/LICENSE": b"This library is proprietary and confidential.\n",
    }
    whl = make_wheel(tmp_path, "vendpkg", "1.0", files)
    audited = audit_target(whl, tmp_path / "audit").verdict
    recipe = tmp_path / "r.toml"
    recipe.write_text(f'[source]\nwheel = "{whl.name}"\n')
    from rich.console import Console

    from deepdeb.wheel.pipeline import run_wheel_build

    report = run_wheel_build(_wheel_recipe(recipe), tmp_path / "out", Console(file=io.StringIO()))
    (built,) = report.packages
    assert (audited.area, audited.redistributable) == ("local-only", False)
    assert (built.area, built.redistributable) == (audited.area, audited.redistributable)
    assert any("vendpkg/_vendor/blob/LICENSE" in r for r in built.licence_reasons)


def _dpkg_accepts(have: str, op: str, want: str) -> bool:
    ops = {">=": "ge", "<<": "lt", "<=": "le", ">>": "gt", "=": "eq"}
    return subprocess.run(["dpkg", "--compare-versions", have, ops[op], want]).returncode == 0


def test_relations_carry_the_archive_epoch(tmp_path: Path) -> None:
    """A wheel built into a .deb depends on numpy with bookworm's epoch: dpkg then holds
    ``(>= 1:1.20)`` and ``(<< 1:2)`` against 1:1.24.2, and refuses ``(>= 1:1.26)``, which
    without the epoch (``>= 1.26``) 1:1.24.2 would meet. A package without an epoch in the
    archive keeps plain versions."""
    import json

    from rich.console import Console

    from deepdeb.wheel.depends import Dependency
    from deepdeb.wheel.pipeline import run_wheel_build

    whl = make_wheel(tmp_path / "dist", "usenp", "0.1", {"usenp/__init__.py": b"import numpy\n"},
                     requires=("numpy>=1.20,<2", "six>=1.10"))  # fmt: skip
    recipe = tmp_path / "r.toml"
    recipe.write_text(f'[source]\nwheel = "{whl}"\n')
    run_wheel_build(_wheel_recipe(recipe), tmp_path / "out", Console(file=open(os.devnull, "w")))  # noqa: SIM115
    (package,) = json.loads((tmp_path / "out" / "report.json").read_text())["packages"]
    depends = control(tmp_path / "out" / package["file"])["Depends"].split(", ")
    numpy = sorted(d for d in depends if d.startswith("python3-numpy "))
    assert numpy == ["python3-numpy (<< 1:2)", "python3-numpy (>= 1:1.20)"]
    assert "python3-six (>= 1.10)" in depends  # six has no epoch in bookworm
    bookworm = "1:1.24.2-1+deb12u1"
    assert _dpkg_accepts(bookworm, ">=", "1:1.20") and _dpkg_accepts(bookworm, "<<", "1:2")
    newer = Dependency("numpy>=1.26", "numpy", "python3-numpy", [(">=", "1.26")], [bookworm])
    assert newer.relation() == "python3-numpy (>= 1:1.26)" and not newer.satisfiable
    assert not _dpkg_accepts(bookworm, ">=", "1:1.26") and _dpkg_accepts(bookworm, ">=", "1.26")
    explicit = Dependency("x==2!3", "x", "python3-x", [("=", "2:3")], ["1:2.0-1"])
    assert explicit.relation() == "python3-x (= 2:3)"  # its own epoch stays


PINNED = ["python3 (>= 3.11~)", "python3 (<< 3.12)"]


@pytest.mark.parametrize(
    ("tag", "expected"),
    [
        ("cp311-cp311-manylinux_2_28_x86_64", PINNED),
        # the stable ABI of an older CPython, in a compressed platform set
        ("cp38-abi3-manylinux_2_17_x86_64.manylinux2014_x86_64", PINNED),
        # newer than pip is asked to download, still older than bookworm's glibc 2.36
        ("cp311-cp311-manylinux_2_34_x86_64", PINNED),
        ("py3-none-manylinux2014_x86_64", ["python3:any"]),  # compiled, no CPython ABI
        ("py2.py3-none-any", ["python3:any"]),
    ],
)
def test_wheel_tags_decide_the_python_relation(
    tmp_path: Path, tag: str, expected: list[str]
) -> None:
    from deepdeb.wheel.package import python_relations

    whl = open_wheel(make_wheel(tmp_path, "tagged", "1.0", PURE, tag=tag))
    assert python_relations(whl) == expected


@pytest.mark.parametrize(
    "tag",
    [
        "cp312-cp312-manylinux_2_28_x86_64",
        "cp311-cp311-manylinux_2_28_aarch64",
        "cp311-cp311-manylinux_2_39_x86_64",
        "cp311-cp311-macosx_11_0_arm64",
        "cp311-cp311-win_amd64",
    ],
)
def test_wheels_bookworm_cannot_load_are_refused(tmp_path: Path, tag: str) -> None:
    from deepdeb.wheel.package import python_relations

    whl = open_wheel(make_wheel(tmp_path, "tagged", "1.0", PURE, tag=tag))
    with pytest.raises(WheelError, match=f"is for {tag}; Debian bookworm's Python 3.11 on amd64"):
        python_relations(whl)
