"""Small wheels for the tests, written from scratch: a RECORD with real hashes, optional
native code compiled here, and ways to break them."""

from __future__ import annotations

import base64
import hashlib
import subprocess
import zipfile
from pathlib import Path


def record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    return f"sha256={digest.decode()}"


def make_wheel(
    dest: Path,
    name: str,
    version: str,
    files: dict[str, bytes],
    requires: tuple[str, ...] = (),
    tag: str = "py3-none-any",
    entry_points: str = "",
    license_expression: str = "MIT",
    record: bool = True,
    tamper: str | None = None,
    extra_members: dict[str, bytes] | None = None,
    license_file: tuple[str, bytes] = (
        "LICENSE",
        b"MIT License\n\nPermission is hereby granted...\n",
    ),
    description: str = "",
) -> Path:
    """Write ``<name>-<version>-<tag>.whl`` into ``dest``; ``tamper`` names a file whose
    content is changed after RECORD was written; ``license_file`` is the name and text of
    the licence in ``.dist-info/licenses/``; ``description`` the METADATA's body."""
    dist = f"{name.replace('-', '_')}-{version}.dist-info"  # escaped, as real wheels name it
    purelib = tag.endswith("-none-any")
    meta = [
        "Metadata-Version: 2.4",
        f"Name: {name}",
        f"Version: {version}",
        f"Summary: {name}, a test wheel for deepdeb",
        *([f"License-Expression: {license_expression}"] if license_expression else []),
        "Author-email: deepdeb test suite <deepdeb@example.org>",
        *(f"Requires-Dist: {r}" for r in requires),
    ]
    members = dict(files)
    body = f"\n{description}" if description else ""
    members[f"{dist}/METADATA"] = ("\n".join(meta) + "\n" + body).encode()
    members[f"{dist}/WHEEL"] = (
        f"Wheel-Version: 1.0\nGenerator: deepdeb-tests\nRoot-Is-Purelib: {str(purelib).lower()}\n"
        f"Tag: {tag}\n"
    ).encode()
    members[f"{dist}/licenses/{license_file[0]}"] = license_file[1]
    if entry_points:
        members[f"{dist}/entry_points.txt"] = entry_points.encode()
    rows = [f"{path},{record_hash(data)},{len(data)}" for path, data in members.items()]
    rows.append(f"{dist}/RECORD,,")
    if record:
        members[f"{dist}/RECORD"] = ("\n".join(rows) + "\n").encode()
    if tamper:
        members[tamper] = members[tamper] + b"\n# changed after RECORD\n"
    members.update(extra_members or {})
    wheel = dest / f"{name.replace('-', '_')}-{version}-{tag}.whl"
    dest.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as zf:
        for path, data in members.items():
            info = zipfile.ZipInfo(path, date_time=(2026, 11, 2, 12, 0, 0))
            info.external_attr = (0o755 if path.endswith(".so") else 0o644) << 16
            zf.writestr(info, data)
    return wheel


def compile_so(tmp: Path, name: str, code: str, args: tuple[str, ...] = ()) -> bytes:
    """A shared object built here with gcc (``args``: extra flags such as -L/-l/-Wl,...)."""
    src = tmp / f"{name}.c"
    src.write_text(code)
    out = tmp / name
    subprocess.run(
        ["gcc", "-shared", "-fPIC", "-O2", "-o", str(out), str(src), *args],
        check=True,
        capture_output=True,
    )
    return out.read_bytes()


def native_wheel(
    tmp: Path,
    dest: Path,
    name: str = "fastmod",
    version: str = "1.2.0",
    requires_extra: tuple[str, ...] = (),
) -> Path:
    """A cp311 wheel with an extension module that needs a library bundled in the wheel
    (``fastmod/lib/libhelper.so``, found through RUNPATH $ORIGIN/lib) and libm from the system.
    """
    build = tmp / "native-build"
    build.mkdir(parents=True, exist_ok=True)
    helper = compile_so(
        build,
        "libhelper.so",
        "#include <math.h>\ndouble helper_hyp(double a, double b) { return hypot(a, b); }\n",
        ("-Wl,-soname,libhelper.so", "-lm"),
    )
    ext = compile_so(
        build,
        "_fast.cpython-311-x86_64-linux-gnu.so",
        "#define PY_SSIZE_T_CLEAN\n#include <Python.h>\n"
        "double helper_hyp(double, double);\n"
        "static PyObject *hyp(PyObject *s, PyObject *a) { double x, y;\n"
        '  if (!PyArg_ParseTuple(a, "dd", &x, &y)) return NULL;\n'
        "  return PyFloat_FromDouble(helper_hyp(x, y)); }\n"
        'static PyMethodDef m[] = {{"hyp", hyp, METH_VARARGS, ""}, {0}};\n'
        'static struct PyModuleDef d = {PyModuleDef_HEAD_INIT, "_fast", 0, -1, m};\n'
        "PyMODINIT_FUNC PyInit__fast(void) { return PyModule_Create(&d); }\n",
        (
            "-I/usr/include/python3.11",
            f"-L{build}",
            "-lhelper",
            "-Wl,-rpath,$ORIGIN/lib",
        ),
    )
    return make_wheel(
        dest,
        name,
        version,
        {
            f"{name}/__init__.py": b"from ._fast import hyp\n",
            f"{name}/_fast.cpython-311-x86_64-linux-gnu.so": ext,
            f"{name}/lib/libhelper.so": helper,
            f"{name}/cli.py": b"def main():\n    print('hyp', __import__('fastmod').hyp(3, 4))\n",
            # syntax of Python 3.12, which bookworm's 3.11 cannot byte-compile
            f"{name}/py312.py": b"def first[T](items: list[T]) -> T:\n    return items[0]\n",
        },
        requires=(
            "numpy>=1.20",
            'pyyaml; extra == "yaml"',
            "typing-extensions>=99.0",
            *requires_extra,
        ),
        tag="cp311-cp311-manylinux_2_28_x86_64",
        entry_points="[console_scripts]\nfastmod-hyp = fastmod.cli:main\n",
    )
