"""How the installed system reaches each library: directories, update-alternatives (with
two providers and an administrator's third one), RUNPATH, and libraries it never loads."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import (
    build,
    contents,
    expected_level,
    host_levels,
    in_root,
    installed_root,
    listed,
)

from deepdeb.cpu.levels import LOADER
from deepdeb.isa.reach import (
    PackageFacts,
    add_slaves,
    classify,
    loader_dirs,
    normalise,
    parse_installs,
    register_variants,
)
from deepdeb.isa.verify import hwcaps_mask_option
from deepdeb.report.schema import ALTERNATIVE, DIRECTORY, RUNPATH, UNREACHABLE, BuildReport

LIBDIR = "/usr/lib/x86_64-linux-gnu"
GROUP = "libaltblas.so.3-x86_64-linux-gnu"

POSTINST = f"""#!/bin/sh
set -e

if [ "$1" = "configure" ]; then
    update-alternatives --install {LIBDIR}/libblas.so.3 \\
        libblas.so.3-x86_64-linux-gnu {LIBDIR}/blas/libblas.so.3 10 # the reference
fi
# update-alternatives --install /not/a/command here 1
exit 0
"""


def blas(postinst: str = POSTINST, **extra: object) -> PackageFacts:
    return PackageFacts(
        "libblas3",
        {f"{LIBDIR}/blas/libblas.so.3.11.0": "libblas.so.3"},
        {f"{LIBDIR}/blas/libblas.so.3": "libblas.so.3.11.0"},
        postinst,
        **extra,  # type: ignore[arg-type]
    )


# --- pure functions ----------------------------------------------------------------------


def test_parse_installs_follows_continuations_quotes_and_comments() -> None:
    (install,) = parse_installs(POSTINST)
    assert (install.link, install.name, install.path, install.priority) == (
        f"{LIBDIR}/libblas.so.3",
        "libblas.so.3-x86_64-linux-gnu",
        f"{LIBDIR}/blas/libblas.so.3",
        "10",
    )
    assert install.literal and install.slaves == ()
    assert POSTINST[: install.end].endswith("blas/libblas.so.3 10")
    script = "update-alternatives --quiet --install /a/x 'n m' /b/x 5 --slave /a/y y /b/y; true"
    (quoted,) = parse_installs(script)
    assert quoted.name == "n m" and quoted.slaves == (("/a/y", "y", "/b/y"),)
    (variable,) = parse_installs('update-alternatives --install "$LIB/x" n /b/x 5\n')
    assert not variable.literal
    assert parse_installs("update-alternatives --remove n /b/x\n") == []


def test_add_slaves_keeps_everything_else_byte_for_byte() -> None:
    (install,) = parse_installs(POSTINST)
    slave = (f"{LIBDIR}/glibc-hwcaps/x86-64-v3/libblas.so.3", "s-v3", f"{LIBDIR}/blas/v3/x")
    script = add_slaves(POSTINST, {install.end: [slave]})
    assert script.replace(f" \\\n    --slave {' '.join(slave)}", "") == POSTINST
    (again,) = parse_installs(script)
    assert again.slaves == (slave,) and again.priority == "10"
    subprocess.run(["sh", "-n"], input=script, text=True, check=True)  # still valid shell


def test_a_library_in_the_loaders_directories() -> None:
    facts = PackageFacts("libz1", {"/lib/x86_64-linux-gnu/libz.so.1.2.13": "libz.so.1"})
    (reach,) = classify(facts, loader_dirs(), {})
    assert reach.how == DIRECTORY and reach.ships_variants
    assert (
        reach.search_path("x86-64-v3") == "/lib/x86_64-linux-gnu/glibc-hwcaps/x86-64-v3/libz.so.1"
    )
    assert normalise("/lib/x86_64-linux-gnu") == "/usr/lib/x86_64-linux-gnu"  # merged /usr


def test_a_library_behind_update_alternatives_gets_slave_links() -> None:
    (reach,) = classify(blas(), loader_dirs(), {})
    assert reach.how == ALTERNATIVE and reach.alternative is not None
    assert reach.alternative.group == "libblas.so.3-x86_64-linux-gnu"
    assert reach.alternative.priority == 10
    # the copy stays in the provider's own directory; the loader finds it through a link
    # in the libdir's glibc-hwcaps directory that only this provider registers
    assert reach.copy_path("x86-64-v3") == f"{LIBDIR}/blas/glibc-hwcaps/x86-64-v3/libblas.so.3.11.0"
    assert reach.slave("x86-64-v3") == (
        f"{LIBDIR}/glibc-hwcaps/x86-64-v3/libblas.so.3",
        "libblas.so.3-x86_64-linux-gnu-x86-64-v3",
        f"{LIBDIR}/blas/glibc-hwcaps/x86-64-v3/libblas.so.3",
    )
    script = register_variants(POSTINST, [reach], {reach.path: ["x86-64-v2", "x86-64-v3"]})
    (install,) = parse_installs(script)
    assert install.slaves == (reach.slave("x86-64-v2"), reach.slave("x86-64-v3"))


@pytest.mark.parametrize(
    ("facts", "why"),
    [
        (blas(POSTINST.replace(f"{LIBDIR}/libblas.so.3 ", "$LINK ")), "shell expansions"),
        (blas(POSTINST.replace(f"{LIBDIR}/libblas.so.3 ", f"{LIBDIR}/libblas-any.so ")),
         "is not the soname libblas.so.3"),
        (blas(POSTINST.replace(f"{LIBDIR}/libblas.so.3 ", "/opt/libblas.so.3 ")),
         "outside the loader's directories"),
        (blas(""), "the loader never searches /usr/lib/x86_64-linux-gnu/blas"),
    ],
)  # fmt: skip
def test_variants_that_could_not_be_made_correct_are_not_shipped(
    facts: PackageFacts, why: str
) -> None:
    (reach,) = classify(facts, loader_dirs(), {})
    assert reach.how == UNREACHABLE and not reach.ships_variants
    assert why in reach.why


def test_the_split_layout_cannot_register_slave_links() -> None:
    (reach,) = classify(blas(), loader_dirs(), {}, layout="split")
    assert reach.how == UNREACHABLE and "use the fat layout" in reach.why


def test_runpath_and_own_ld_so_conf_directories() -> None:
    private = f"{LIBDIR}/foo/libfoo-private.so.0"
    facts = PackageFacts("foo", {private: "libfoo-private.so.0"})
    (reach,) = classify(facts, loader_dirs(), {f"{LIBDIR}/foo": "/usr/bin/foo"})
    assert reach.how == RUNPATH and reach.consumer == "/usr/bin/foo"
    conf = PackageFacts(
        "foo", {private: "libfoo-private.so.0"}, {}, "", (f"# foo\n{LIBDIR}/foo\n",)
    )
    assert classify(conf, loader_dirs(), {})[0].how == DIRECTORY


# --- the fixture, built and installed ------------------------------------------------------


@pytest.fixture(scope="module")
def altblas(tmp_path_factory: pytest.TempPathFactory) -> BuildReport:
    return build("altblas.toml", tmp_path_factory.mktemp("altblas"))


def _deb(report: BuildReport, package: str) -> Path:
    return next(p.file for p in report.packages if p.package == package)


@pytest.mark.slow
def test_alternative_providers_carry_their_variants_as_slave_links(altblas: BuildReport) -> None:
    kept = [lv for lv in altblas.shipped_levels if lv != "x86-64"]
    assert kept, "the fixture gains from wider vectors"
    how = {(r.package, r.path.rsplit("/", 1)[1]): r.how for r in altblas.libraries}
    assert how == {
        ("libaltblas3", "libaltblas.so.3.0"): ALTERNATIVE,
        ("libaltblas-tuned3", "libaltblas.so.3.0"): ALTERNATIVE,
        ("libaltblas3", "libaltblas-trace.so.1"): UNREACHABLE,  # a plugin loaded by path
        ("altblas-bench", "libbenchutil.so.0"): RUNPATH,
    }
    for package, own in (("libaltblas3", "altblas"), ("libaltblas-tuned3", "altblas-tuned")):
        files = contents(_deb(altblas, package))
        for level in kept:
            assert f"{LIBDIR}/{own}/glibc-hwcaps/{level}/libaltblas.so.3.0" in files
            # the directory for the slave link is shipped, the link itself is not: it
            # exists only while update-alternatives has this provider selected
            assert f"{LIBDIR}/glibc-hwcaps/{level}/" in files
            assert not any(f.startswith(f"{LIBDIR}/glibc-hwcaps/{level}/lib") for f in files)
        assert not any("plugins/glibc-hwcaps" in f for f in files)
    tmp = Path(str(_deb(altblas, "libaltblas3")) + ".ctrl")
    subprocess.run(["dpkg-deb", "-e", _deb(altblas, "libaltblas3"), tmp], check=True)
    postinst = (tmp / "postinst").read_text()
    shutil.rmtree(tmp)
    for level in kept:
        assert f"--slave {LIBDIR}/glibc-hwcaps/{level}/libaltblas.so.3 {GROUP}-{level} " in postinst
    # deepdeb's own proof ran each provider, a stand-in provider, and auto mode
    contexts = {c.context for c in altblas.loader_checks if c.library == "libaltblas.so.3"}
    assert any(c.startswith("another provider of") for c in contexts)
    assert all(c.ok for c in altblas.loader_checks)


def _other_provider(tmp_path: Path) -> Path:
    """An administrator's own provider of libaltblas.so.3 (as OpenBLAS is for libblas.so.3),
    packaged apart from the fixture, with a higher priority and no variants at all."""
    tree = tmp_path / "otherblas"
    lib = tree / "usr/lib/x86_64-linux-gnu/otherblas"
    lib.mkdir(parents=True)
    (tmp_path / "other.c").write_text(
        "void altblas_gemv(long m, long n, const double *a, const double *x, double *y) {}\n"
        "void altblas_axpy(long n, double a, const double *x, double *y) {}\n"
        'const char *altblas_name(void) { return "other"; }\n'
    )
    subprocess.run(
        ["cc", "-shared", "-fPIC", "-Wl,-soname,libaltblas.so.3", "-o", lib / "libaltblas.so.3",
         tmp_path / "other.c"],
        check=True,
    )  # fmt: skip
    (tree / "DEBIAN").mkdir()
    (tree / "DEBIAN/control").write_text(
        "Package: libotherblas3\nVersion: 1.0\nArchitecture: amd64\n"
        "Maintainer: deepdeb test suite <deepdeb@example.org>\nProvides: libaltblas.so.3\n"
        "Description: another provider of libaltblas.so.3 (test)\n"
    )
    (tree / "DEBIAN/postinst").write_text(
        "#!/bin/sh\nset -e\nupdate-alternatives --install "
        f"{LIBDIR}/libaltblas.so.3 {GROUP} {LIBDIR}/otherblas/libaltblas.so.3 100\n"
    )
    (tree / "DEBIAN/prerm").write_text(
        "#!/bin/sh\nset -e\n"
        f"update-alternatives --remove {GROUP} {LIBDIR}/otherblas/libaltblas.so.3\n"
    )
    (tree / "DEBIAN/triggers").write_text("activate-noawait ldconfig\n")
    for script in ("postinst", "prerm"):
        (tree / "DEBIAN" / script).chmod(0o755)
    deb = tmp_path / "libotherblas3_1.0_amd64.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "-b", tree, deb], check=True,
                   capture_output=True)  # fmt: skip
    return deb


def _loads(root: Path, level: str) -> tuple[str, str]:
    """(implementation name, file) that altblas-bench gets with the CPU masked to level."""
    got = listed(root, "/usr/bin/altblas-bench", "libaltblas.so.3", level)
    mask = hwcaps_mask_option(level)
    out = in_root(root, LOADER, "--glibc-hwcaps-mask", mask, "/usr/bin/altblas-bench", "1")
    return out.split()[0], got


def _expect(kept: list[str], level: str, own: str) -> str:
    want = expected_level(kept, level)
    sub = "" if want == "x86-64" else f"glibc-hwcaps/{want}/"
    return f"{LIBDIR}/{own}/{sub}libaltblas.so.3.0"


@pytest.mark.slow
def test_installed_system_loads_the_selected_providers_variant_and_never_overrides_another(
    altblas: BuildReport, tmp_path: Path
) -> None:
    """Installed by apt in a real bookworm root: the variant follows whichever provider
    update-alternatives selects, and an administrator's other provider is never shadowed."""
    kept = [lv for lv in altblas.shipped_levels if lv != "x86-64"]
    root = installed_root([p.file for p in altblas.packages], tmp_path / "root")
    query = in_root(root, "update-alternatives", "--query", GROUP)
    assert f"Value: {LIBDIR}/altblas-tuned/libaltblas.so.3" in query  # priority 50 > 10
    for level in host_levels():
        assert _loads(root, level) == ("tuned", _expect(kept, level, "altblas-tuned"))
    # the administrator picks the reference provider (dpkg runs ldconfig on any install)
    in_root(root, "update-alternatives", "--set", GROUP, f"{LIBDIR}/altblas/libaltblas.so.3")
    in_root(root, "ldconfig")
    for level in host_levels():
        assert _loads(root, level) == ("reference", _expect(kept, level, "altblas"))
    # another vendor's provider with a higher priority, in auto mode: it is loaded at every
    # level, before ldconfig runs and after; deepdeb's variants never shadow it
    in_root(root, "update-alternatives", "--auto", GROUP)
    other = _other_provider(tmp_path)
    shutil.copy(other, root / "tmp-other.deb")
    in_root(root, "dpkg", "-i", "/tmp-other.deb")
    for level in host_levels():
        assert _loads(root, level) == ("other", f"{LIBDIR}/otherblas/libaltblas.so.3")
    hwcaps = root / LIBDIR.lstrip("/") / "glibc-hwcaps"
    assert not [p for p in hwcaps.rglob("libaltblas*")]  # the slave links are gone
    # it goes away again: the tuned provider and its variants are back
    in_root(root, "dpkg", "-r", "libotherblas3")
    for level in host_levels():
        assert _loads(root, level) == ("tuned", _expect(kept, level, "altblas-tuned"))
    # without the tuned provider, the reference one (and its variants) remain
    in_root(root, "dpkg", "-r", "libaltblas-tuned3")
    for level in host_levels():
        assert _loads(root, level) == ("reference", _expect(kept, level, "altblas"))


@pytest.mark.slow
def test_runpath_library_variant_is_found_through_the_programs_runpath(
    altblas: BuildReport,
) -> None:
    kept = [lv for lv in altblas.shipped_levels if lv != "x86-64"]
    checks = [c for c in altblas.loader_checks if c.library == "libbenchutil.so.0"]
    assert {c.level for c in checks} == set(host_levels())
    for c in checks:
        want = expected_level(kept, c.level)
        sub = "" if want == "x86-64" else f"glibc-hwcaps/{want}/"
        assert c.loaded == f"{LIBDIR}/altblas-bench/{sub}libbenchutil.so.0"
        assert c.context == "via /usr/bin/altblas-bench"
