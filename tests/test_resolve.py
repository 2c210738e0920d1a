"""Never break the archive to satisfy a wheel: the conflict check (numpy's ABI, versioned
relations) and ``deepdeb resolve`` (which release fits bookworm, and with what).

The decisions are tested on fixtures of our own making (apt-cache show text, Simple API
pages, METADATA files under tests/fixtures/resolve/); one test asks the real apt index, and
one the real PyPI (skipped when it cannot be reached)."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any, ClassVar

import pytest
from conftest import pypi_reachable
from packaging.requirements import Requirement
from packaging.version import Version
from wheelmaker import make_wheel

from deepdeb import cli
from deepdeb.debian import apt
from deepdeb.errors import ArchiveConflict, PackageIndexError
from deepdeb.sources.wheels import Fetched
from deepdeb.util import sha256_file
from deepdeb.wheel import conflicts, depends, flavours, pypi
from deepdeb.wheel.conflicts import (
    Archived,
    archived_from,
    breakages,
    kept_virtuals,
    numpy_virtuals,
    replacement,
    replacement_version,
)
from deepdeb.wheel.depends import dependency
from deepdeb.wheel.releases import Metadata, Release, parse_metadata, releases
from deepdeb.wheel.resolve import (
    AptArchive,
    Kind,
    Resolver,
    archive_meets,
    resolve,
    settle,
    upstream_of,
)

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "resolve"


# --- the conflict rule, on fixture apt data -----------------------------------------------


def fixture_numpy() -> Archived:
    records = apt.control_records((FIXTURES / "apt-numpy.txt").read_text())
    own = next(r for r in records if r["Package"] == "python3-numpy")
    return archived_from(own, [r for r in records if r is not own])


def broken(version: str) -> dict[str, list[str]]:
    archived = fixture_numpy()
    found = breakages(archived, replacement(archived, "numpy", version))
    out: dict[str, list[str]] = {}
    for b in found:
        out.setdefault(b.package, []).append(f"{b.field}: {b.relation}")
    return out


def test_numpy_2_does_not_provide_the_numpy_1_abi() -> None:
    assert numpy_virtuals(Version("1.26.4")) == {"python3-numpy-abi9", "python3-numpy-api17"}
    assert numpy_virtuals(Version("1.24.2")) == {"python3-numpy-abi9", "python3-numpy-api16"}
    assert numpy_virtuals(Version("2.0.0")) == {"python3-numpy2-abi0", "python3-numpy-api18"}
    assert "python3-numpy-abi9" not in kept_virtuals("NumPy", "2.1.3")
    assert kept_virtuals("six", "1.17.0") == frozenset()


def test_a_replacement_keeps_the_archive_epoch() -> None:
    # without the epoch, 2.0.0 would sort before bookworm's 1:1.24.2 and never replace it
    assert replacement_version("2.0.0", ["1:1.24.2-1+deb12u1"]) == "1:2.0.0-1~deepdeb1"
    assert replacement_version("1.17.0", ["1.16.0-4"]) == "1.17.0-1~deepdeb1"
    assert replacement_version("1.0rc1", []) == "1.0~rc1-1~deepdeb1"


def test_numpy_2_breaks_modules_compiled_against_the_numpy_1_abi() -> None:
    found = broken("2.0.0")
    assert found["python3-scipy"] == ["Depends: python3-numpy-abi9"]
    assert found["python3-numba"] == [
        "Depends: python3-numpy (<< 1:1.25)",
        "Depends: python3-numpy-abi9",
    ]
    assert found["python3-gsd"] == ["Depends: python3-numpy (<< 1:2)"]
    assert found["python3-oldstrict"] == ["Breaks: python3-numpy (>= 1:1.26)"]
    assert found["python3-f2py-user"] == ["Depends: python3-f2py"]
    # pure Python, Recommends/Suggests only, built for both ABIs, an alternative elsewhere,
    # and a package the archive could not install anyway: none of them is this one's doing
    for fine in ("python3-pandas", "python3-either-abi", "python3-or-other", "python3-future"):
        assert fine not in found


def test_numpy_1_26_keeps_the_abi_and_breaks_only_upper_bounds() -> None:
    assert broken("1.26.4") == {
        "python3-numba": ["Depends: python3-numpy (<< 1:1.25)"],
        "python3-oldstrict": ["Breaks: python3-numpy (>= 1:1.26)"],
        "python3-f2py-user": ["Depends: python3-f2py"],
    }
    assert broken("1.24.4") == {"python3-f2py-user": ["Depends: python3-f2py"]}


def test_another_provider_keeps_a_virtual_package() -> None:
    archived = fixture_numpy()
    others = dict(archived.other_providers, **{"python3-f2py": ("python3-f2py-standalone",)})
    kept = Archived(archived.package, archived.version, archived.provides, archived.dependants,
                    others)  # fmt: skip
    assert "python3-f2py-user" not in {
        b.package for b in breakages(kept, replacement(kept, "numpy", "1.24.4"))
    }


def test_the_refusal_lists_every_package_and_the_relation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(conflicts, "load_archived", lambda package: fixture_numpy())
    with pytest.raises(ArchiveConflict) as e:
        conflicts.check_replacements([("numpy", "python3-numpy", "2.0.0", "numpy>=2 of python3-x")])
    text = str(e.value)
    assert "replacing bookworm's python3-numpy 1:1.24.2-1+deb12u1 with 2.0.0" in text
    assert "(for numpy>=2 of python3-x)" in text
    assert "would break 5 archive packages" in text
    line = next(x for x in text.splitlines() if "Depends: python3-numpy-abi9" in x)
    assert "would not provide python3-numpy-abi9" in line
    assert line.endswith("python3-numba, python3-scipy")
    assert "deepdeb resolve" in text


def test_a_requirement_newer_than_the_archive_epoch_is_not_met() -> None:
    """bookworm's numpy is 1:1.24.2: ``numpy>=1.26`` must not pass as ``(>= 1.26)``."""
    for text, met in (("numpy>=1.26", False), ("numpy>=1.20", True), ("numpy<1.25", True)):
        dep = dependency(Requirement(text))
        dep.archive_versions = ["1:1.24.2-1+deb12u1"]
        assert dep.satisfiable is met, text


# --- the hook: refused while planning, before anything is built ---------------------------


def _numpy2_recipe(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A wheel that needs numpy>=2.0, its recipe packaging numpy, and a small wheel
    standing in for PyPI's numpy 2.0.0 (nothing is downloaded)."""
    app = make_wheel(tmp / "dist", "needsnp2", "1.0", {"needsnp2/__init__.py": b""},
                     requires=("numpy>=2.0",), tag="py3-none-any")  # fmt: skip
    fake = make_wheel(tmp / "np", "numpy", "2.0.0", {"numpy/__init__.py": b""})
    fetched = Fetched(fake, sha256_file(fake), "pypi:numpy>=2.0")
    monkeypatch.setattr(flavours, "fetch_wheel", lambda what: fetched)
    recipe = tmp / "recipe.toml"
    recipe.write_text(f'[source]\nwheel = "{app}"\n\n[python.requires]\nnumpy = "package"\n')
    return recipe


def _plan(recipe: Path) -> list[flavours.Planned]:
    from deepdeb.recipe.load import load_recipe
    from deepdeb.recipe.model import WheelRecipe

    loaded = load_recipe(recipe)
    assert isinstance(loaded, WheelRecipe)
    return flavours.plan(loaded)


def test_plan_refuses_a_package_choice_that_breaks_the_archive(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recipe = _numpy2_recipe(tmp_path, monkeypatch)
    monkeypatch.setattr(conflicts, "load_archived", lambda package: fixture_numpy())
    monkeypatch.setattr(
        depends, "archive_versions", lambda names: {n: ["1:1.24.2-1+deb12u1"] for n in names}
    )
    with pytest.raises(ArchiveConflict, match=r"numpy>=2\.0 of python3-needsnp2") as e:
        _plan(recipe)
    assert "python3-scipy" in str(e.value)


def test_a_packaged_numpy_1_keeps_epoch_and_abi(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recipe = _numpy2_recipe(tmp_path, monkeypatch)
    fake = make_wheel(tmp_path / "np1", "numpy", "1.24.4", {"numpy/__init__.py": b""})
    monkeypatch.setattr(
        flavours, "fetch_wheel", lambda what: Fetched(fake, sha256_file(fake), "pypi:numpy")
    )
    monkeypatch.setattr(conflicts, "load_archived", lambda package: fixture_numpy())
    monkeypatch.setattr(
        depends, "archive_versions", lambda names: {n: ["1:1.24.2-1+deb12u1"] for n in names}
    )
    monkeypatch.setattr(flavours, "check_replacements", lambda replacing: None)
    *_, numpy = _plan(recipe)
    assert numpy.spec.version == "1:1.24.4-1~deepdeb1"
    assert numpy.spec.provides == ("python3-numpy-abi9", "python3-numpy-api16")


def test_real_archive_numpy_2_would_break_scipy() -> None:
    """On this machine's apt index: numpy 2.0 breaks python3-scipy (its numpy ABI), 1.26
    breaks python3-numba (its upper bound)."""
    archived = conflicts.load_archived("python3-numpy")
    assert archived is not None, "apt's index does not know python3-numpy (apt-get update?)"
    assert "python3-numpy-abi9" in archived.provides
    numpy2 = breakages(archived, replacement(archived, "numpy", "2.0.0"))
    scipy = [b for b in numpy2 if b.package == "python3-scipy"]
    assert [b.relation for b in scipy] == ["python3-numpy-abi9"]
    assert len({b.package for b in numpy2}) > 100
    numpy126 = breakages(archived, replacement(archived, "numpy", "1.26.4"))
    assert "python3-numba" in {b.package for b in numpy126}
    assert "python3-scipy" not in {b.package for b in numpy126}


# --- releases and metadata ------------------------------------------------------------------


def page(name: str) -> dict[str, Any]:
    path = FIXTURES / f"simple-{name}.json"
    if not path.is_file():
        raise PackageIndexError(f"{name}: no such project (fixture)")
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def test_releases_are_what_cpython_3_11_on_x86_64_can_install() -> None:
    found = {str(r.version): r for r in releases(page("fakeflow"))}
    assert list(found) == ["3.1rc1", "3.0", "2.1", "2.0", "1.0", "0.9"]
    assert found["3.0"].wheel is not None and "cp311" in found["3.0"].wheel.filename
    assert found["2.1"].wheel is not None and "manylinux" in found["2.1"].wheel.filename
    assert not found["2.1"].pure
    absl = releases(page("absl-py"))
    assert [(str(r.version), r.yanked, r.pure) for r in absl] == [
        ("2.2.0", True, False),
        ("2.1.0", False, True),
    ]
    assert absl[0].why_not() == "yanked"
    (newonly, older) = releases(page("newonly"))
    assert newonly.why_not() == "Requires-Python >=3.12 excludes 3.11"
    assert "glibc <= 2.28" in str(older.why_not())  # its only wheel is manylinux_2_34


def test_metadata_headers_are_read_and_the_description_is_not() -> None:
    meta = parse_metadata((FIXTURES / "metadata" / "fakeflow-2.1.METADATA").read_text())
    assert meta.name == "fakeflow" and meta.version == "2.1"
    assert meta.requires_python == ">=3.9"
    assert len(meta.requires_dist) == 9
    assert all("ignored" not in r for r in meta.requires_dist)


def test_debian_versions_give_their_upstream_release() -> None:
    assert upstream_of("1:1.24.2-1+deb12u1") == Version("1.24.2")
    assert upstream_of("2.0.8+dfsg1-2") == Version("2.0.8")
    assert upstream_of("0.5.2-2") == Version("0.5.2")
    dep = dependency(Requirement("gast!=0.5.2,>=0.2.1"))
    dep.archive_versions = ["0.5.2-2"]
    assert dep.satisfiable  # Debian cannot say "not 0.5.2" ...
    assert not archive_meets(dep, Requirement("gast!=0.5.2,>=0.2.1"))  # ... the resolver can


# --- the resolver, on fixtures ------------------------------------------------------------


class FixtureIndex:
    """PyPI as tests/fixtures/resolve/ has it; counts metadata reads."""

    def __init__(self) -> None:
        self.read: list[str] = []

    def releases(self, name: str) -> list[Release]:
        return releases(page(name))

    def metadata(self, release: Release) -> Metadata | None:
        path = FIXTURES / "metadata" / f"{release.name}-{release.version}.METADATA"
        self.read.append(f"{release.name}-{release.version}")
        return parse_metadata(path.read_text()) if path.is_file() else None


class FixtureArchive:
    """bookworm, as far as the fixtures need it."""

    VERSIONS: ClassVar[dict[str, list[str]]] = {
        "python3-numpy": ["1:1.24.2-1+deb12u1"],
        "python3-six": ["1.16.0-4"],
        "python3-h5py": ["3.7.0-8"],
        "python3-gast": ["0.5.2-2"],
    }

    def versions(self, packages: list[str]) -> dict[str, list[str]]:
        return {p: self.VERSIONS.get(p, []) for p in packages}

    def archived(self, package: str) -> Archived | None:
        if package == "python3-numpy":
            return fixture_numpy()
        version = self.VERSIONS[package][0]
        return Archived(package, version, frozenset(), ())


def needs_of(requires: list[str]) -> dict[str, tuple[str, str]]:
    resolver = Resolver(FixtureIndex(), FixtureArchive())
    return {n.requirement: (n.kind.label, n.detail) for n in resolver.needs(requires, 0)}


def test_each_requirement_gets_one_of_five_answers() -> None:
    found = needs_of(["six>=1.10", "absl-py>=1.0", "h5py>=3.10", "numpy>=1.26", "nothere>=1",
                      "newonly", "gast!=0.5.2,>=0.2.1"])  # fmt: skip
    assert found["six>=1.10"] == ("archive", "bookworm has 1.16.0-4")
    assert found["absl-py>=1.0"] == (
        "pure", "absl-py 2.1.0 (pure-Python; python3-absl is not in bookworm)"
    )  # fmt: skip
    assert found["h5py>=3.10"] == (
        "binary", "h5py 3.12.1 (binary; replaces bookworm's 3.7.0-8)"
    )  # fmt: skip
    kind, why = found["numpy>=1.26"]
    assert kind == "conflict"
    assert why == (
        "bookworm has 1:1.24.2-1+deb12u1; numpy 1.26.0 would break python3-f2py-user "
        "(Depends: python3-f2py) and 2 more"
    )
    assert found["nothere>=1"][0] == "unavailable"
    assert found["newonly"][0] == "unavailable"
    assert found["gast!=0.5.2,>=0.2.1"][0] == "pure"


def test_markers_are_evaluated_for_bookworm_and_extras_left_out() -> None:
    found = needs_of([
        'numpy<2; python_version <= "3.11"',
        'numpy>=1.26; python_version >= "3.12"',
        'winonly; platform_system == "Windows"',
        'nvidia-foo; extra == "cuda"',
    ])  # fmt: skip
    assert list(found) == ['numpy<2; python_version <= "3.11"']


def test_an_additions_own_requirements_pick_an_older_release() -> None:
    """mldt 0.5.0 needs numpy>=2 (a conflict), so mldt 0.4.1 is taken."""
    resolver = Resolver(FixtureIndex(), FixtureArchive())
    (need,) = resolver.needs(["mldt"], 0)
    assert need.kind == Kind.BINARY
    assert need.addition is not None and need.addition.version == "0.4.1"
    (only_new,) = resolver.needs(["mldt>=0.5"], 0)
    assert only_new.kind == Kind.CONFLICT
    assert only_new.detail.startswith("mldt 0.5.0 needs numpy>=2.0: bookworm has 1:1.24.2")


def test_requirements_beyond_the_depth_are_not_followed() -> None:
    resolver = Resolver(FixtureIndex(), FixtureArchive(), depth=0)
    (need,) = resolver.needs(["mldt>=0.5"], 0)
    assert need.kind == Kind.BINARY  # numpy>=2 of mldt 0.5.0 was not looked at
    assert need.addition is not None and not need.addition.followed


def test_resolve_finds_the_newest_release_of_each_kind() -> None:
    index = FixtureIndex()
    result = resolve("fakeflow", index, FixtureArchive())
    kinds = [(v.version, v.kind.label) for v in result.releases]
    assert kinds == [("3.0", "conflict"), ("2.1", "binary"), ("2.0", "pure"), ("1.0", "archive")]
    assert "fakeflow-0.9" not in index.read  # nothing older can do better than the archive
    assert "fakeflow-3.1rc1" not in index.read  # pre-releases are not offered
    assert result.releases[0].reason.startswith("numpy<2.1,>=2.0: bookworm has 1:1.24.2")
    assert "python3-scipy" in result.releases[0].reason or "more" in result.releases[0].reason
    binary = result.releases[1]
    assert [f"{a.name} {a.version}" for a in binary.additions()] == [
        "h5py 3.12.1", "absl-py 2.1.0", "gast 0.6.0", "keraz 3.9.0", "mldt 0.4.1",
    ]  # fmt: skip
    assert binary.reason.startswith("adds h5py 3.12.1 (binary), absl-py 2.1.0, gast 0.6.0")
    newest = {k: result.to_json()["newest"][k] for k in ("archive", "pure", "binary")}
    assert newest == {"archive": "1.0", "pure": "2.0", "binary": "2.1"}
    assert "newest with pure-Python additions only: 2.0" in result.summary()


def test_requirers_that_disagree_on_a_version_are_a_conflict() -> None:
    resolver = Resolver(FixtureIndex(), FixtureArchive())
    needs = resolver.needs(["keraz>=3.0", "mldt<0.5", "absl-py>=1.0"], 0)
    chosen, problems = settle("app 1.0", needs)
    assert chosen["mldt"] == "0.4.1" and not problems
    strict = resolver.needs(["keraz>=3.0", "absl-py<2.0"], 0)
    assert strict[1].kind == Kind.UNAVAILABLE  # no absl-py below 2.0 in the fixture
    needs = resolver.needs(["keraz>=3.0", "mldt==0.4.1", "h5py>=3.10", "absl-py==2.1.0"], 0)
    chosen, problems = settle("app 1.0", needs)
    assert not problems
    fake = resolver.needs(["h5py==3.10.0", "mldt<0.5"], 0)
    other = resolver.needs(["h5py>=3.12"], 0)
    chosen, problems = settle("app 1.0", [*fake, *other])
    assert problems and problems[0].startswith("no one h5py fits all: app 1.0 needs '==3.10.0'")


# --- PyPI: cache, stale pages, metadata out of the wheel -----------------------------------


def test_pages_are_cached_and_used_when_pypi_cannot_answer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEEPDEB_CACHE", str(tmp_path))
    asked: list[str] = []

    def get(url: str, accept: str | None = None, byte_range: object = None) -> bytes:
        asked.append(url)
        return (FIXTURES / "simple-gast.json").read_bytes()

    monkeypatch.setattr(pypi, "_get", get)
    assert pypi.simple_page("Gast")["name"] == "gast"
    assert pypi.simple_page("gast")["name"] == "gast"
    assert asked == ["https://pypi.org/simple/gast/"]  # the second came from the cache
    assert (tmp_path / "pypi" / "simple" / "gast.json").is_file()
    assert not list((tmp_path / "pypi" / "simple").glob(".*"))  # no temporary left

    def down(url: str, accept: str | None = None, byte_range: object = None) -> bytes:
        raise OSError("network unreachable")

    monkeypatch.setattr(pypi, "_get", down)
    assert pypi.simple_page("gast", refresh=True)["name"] == "gast"  # the stale copy
    with pytest.raises(PackageIndexError, match="nothing is cached"):
        pypi.simple_page("absl-py")
    with pytest.raises(PackageIndexError, match="not a project name"):
        pypi.simple_page("../etc")


def test_metadata_comes_out_of_the_wheel_when_there_is_no_metadata_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import urllib.error

    monkeypatch.setenv("DEEPDEB_CACHE", str(tmp_path))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("big/blob.bin", bytes(range(256)) * 4096)  # 1 MiB before the member
        zf.writestr("fake-1.0.dist-info/METADATA", "Name: fake\nVersion: 1.0\nRequires-Dist: six\n")
    data = buffer.getvalue()
    ranges: list[tuple[int, int]] = []

    def get(
        url: str, accept: str | None = None, byte_range: tuple[int, int] | None = None
    ) -> bytes:
        if url.endswith(".metadata"):
            raise urllib.error.HTTPError(url, 404, "not found", None, None)  # type: ignore[arg-type]
        assert byte_range is not None
        ranges.append(byte_range)
        return data[byte_range[0] : byte_range[1] + 1]

    monkeypatch.setattr(pypi, "_get", get)
    sha = "ab" * 32
    text = pypi.metadata_text("https://files.example/fake-1.0-py3-none-any.whl", sha, len(data))
    assert text is not None and "Requires-Dist: six" in text
    assert sum(hi - lo + 1 for lo, hi in ranges) < len(data)  # not the whole wheel
    assert (tmp_path / "pypi" / "metadata" / f"{sha}.metadata").read_text() == text
    ranges.clear()
    assert pypi.metadata_text("https://files.example/x.whl", sha, len(data)) == text
    assert ranges == []


# --- the command --------------------------------------------------------------------------


def test_resolve_command_prints_json_and_a_table(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli, "PyPI", lambda refresh: FixtureIndex())
    monkeypatch.setattr(cli, "AptArchive", FixtureArchive)
    assert cli.main(["resolve", "fakeflow", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["newest"] == {"archive": "1.0", "pure": "2.0", "binary": "2.1"}
    assert data["releases"][1]["additions"][0] == "h5py==3.12.1"
    assert cli.main(["resolve", "fakeflow", "--target", "bookworm"]) == 0
    out = capsys.readouterr().out
    assert "newest with the archive alone: 1.0" in out
    assert "h5py 3.12.1: binary, replaces bookworm's 3.7.0-8" in out
    assert cli.main(["resolve", "fakeflow", "--limit", "1"]) == 1  # 3.0 alone: a conflict


# --- live: the real PyPI and apt, small and fast -------------------------------------------


@pytest.mark.slow  # reaches PyPI, as the suite's other network tests (the fast suite is offline)
def test_live_numpy_1_26_is_a_conflict_and_google_pasta_fits() -> None:
    """Against the real PyPI (pages cached under deepdeb's cache) and bookworm's apt. The
    reachability probe runs here, not at collection: a deselected test touches nothing."""
    if not pypi_reachable():
        pytest.skip("pypi.org cannot be reached from here")
    resolver = Resolver(pypi.PyPI(), AptArchive(), depth=0)
    (numpy,) = resolver.needs(["numpy<2.1.0,>=1.26.0"], 0)
    assert numpy.kind == Kind.CONFLICT
    assert "python3-numba" in numpy.detail
    result = resolve("google-pasta", pypi.PyPI(), AptArchive(), limit=1)
    assert result.releases[0].kind == Kind.ARCHIVE  # six, which bookworm has
