"""Complex FFTs with KISS FFT (float), through ctypes; the library is found by soname.

Usage: bench.py NFFT COUNT -- run COUNT forward transforms of NFFT points.
"""

import ctypes
import math
import sys


def main() -> int:
    nfft, count = int(sys.argv[1]), int(sys.argv[2])
    lib = ctypes.CDLL("libkissfft-float.so.131")
    lib.kiss_fft_alloc.restype = ctypes.c_void_p
    lib.kiss_fft_alloc.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
    lib.kiss_fft.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
    cfg = lib.kiss_fft_alloc(nfft, 0, None, None)
    data = (ctypes.c_float * (2 * nfft))(
        *(math.sin(i * 0.37) if i % 2 == 0 else 0.0 for i in range(2 * nfft))
    )
    out = (ctypes.c_float * (2 * nfft))()
    fft = lib.kiss_fft
    for _ in range(count):
        fft(cfg, data, out)
    print(out[2], out[3])
    return 0


if __name__ == "__main__":
    sys.exit(main())
