"""Resample stereo audio with libsamplerate's sinc converter, through ctypes.

The library is found by soname, so the loader picks it exactly as it would for any program
(LD_LIBRARY_PATH, glibc-hwcaps). Usage: bench.py SECONDS_OF_AUDIO [QUALITY]
"""

import ctypes
import math
import sys


class SrcData(ctypes.Structure):
    _fields_ = [
        ("data_in", ctypes.POINTER(ctypes.c_float)),
        ("data_out", ctypes.POINTER(ctypes.c_float)),
        ("input_frames", ctypes.c_long),
        ("output_frames", ctypes.c_long),
        ("input_frames_used", ctypes.c_long),
        ("output_frames_gen", ctypes.c_long),
        ("end_of_input", ctypes.c_int),
        ("src_ratio", ctypes.c_double),
    ]


def main() -> int:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 2.0
    quality = int(sys.argv[2]) if len(sys.argv) > 2 else 0  # 0 = SRC_SINC_BEST_QUALITY
    lib = ctypes.CDLL("libsamplerate.so.0")
    lib.src_simple.argtypes = [ctypes.POINTER(SrcData), ctypes.c_int, ctypes.c_int]
    channels, rate_in, rate_out = 2, 44100, 48000
    frames = int(seconds * rate_in)
    n = frames * channels
    # A 1 kHz-ish tone: compute one block, then double it with memmove (cheap in Python).
    samples = (ctypes.c_float * n)()
    block = min(n, 8820)
    for i in range(block):
        samples[i] = math.sin(i * 0.0712) * 0.5
    filled = block
    size = ctypes.sizeof(ctypes.c_float)
    while filled < n:
        count = min(filled, n - filled)
        ctypes.memmove(ctypes.byref(samples, filled * size), samples, count * size)
        filled += count
    out_frames = int(frames * rate_out / rate_in) + 16
    out = (ctypes.c_float * (out_frames * channels))()
    data = SrcData(samples, out, frames, out_frames, 0, 0, 1, rate_out / rate_in)
    err = lib.src_simple(ctypes.byref(data), quality, channels)
    if err:
        print("src_simple failed:", err, file=sys.stderr)
        return 1
    print(data.output_frames_gen, sum(out[i] for i in range(0, data.output_frames_gen, 97)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
