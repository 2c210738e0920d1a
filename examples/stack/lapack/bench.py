"""Reference BLAS and LAPACK through ctypes: dgemm, then dgetrf, on N-by-N matrices.

Usage: bench.py N ROUNDS -- ROUNDS times: C = A B (dgemm), then the LU factorisation of a
copy of A (dgetrf). The libraries are loaded by soname, so the loader picks the variant.
"""

import ctypes
import sys

Int = ctypes.c_int
Double = ctypes.c_double


def main() -> int:
    n, rounds = int(sys.argv[1]), int(sys.argv[2])
    blas = ctypes.CDLL("libblas.so.3")
    lapack = ctypes.CDLL("liblapack.so.3")
    size = n * n
    a = (Double * size)(*((i * 7 % 13) / 13.0 + (1.0 if i % (n + 1) == 0 else 0.0)
                          for i in range(size)))  # fmt: skip
    b = (Double * size)(*((i * 5 % 11) / 11.0 for i in range(size)))
    c = (Double * size)()
    lu = (Double * size)()
    pivots = (Int * n)()
    info = Int()
    no, dim = ctypes.c_char(b"N"), Int(n)
    one, zero = Double(1.0), Double(0.0)
    ref = ctypes.byref
    for _ in range(rounds):
        blas.dgemm_(ref(no), ref(no), ref(dim), ref(dim), ref(dim), ref(one), a, ref(dim),
                    b, ref(dim), ref(zero), c, ref(dim))  # fmt: skip
        ctypes.memmove(lu, a, ctypes.sizeof(a))
        lapack.dgetrf_(ref(dim), ref(dim), lu, ref(dim), pivots, ref(info))
        if info.value != 0:
            print(f"dgetrf failed: info={info.value}", file=sys.stderr)
            return 1
    print(f"{c[0]:.6f} {lu[size - 1]:.6f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
