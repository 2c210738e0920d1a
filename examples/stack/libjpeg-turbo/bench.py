"""Compress and decompress a synthetic RGB image with libjpeg-turbo's TurboJPEG API (ctypes).

Usage: bench.py SIZE ROUNDS -- a SIZE-by-SIZE RGB image, ROUNDS times: compress it
(quality 90, 4:2:0 chroma subsampling, into a preallocated buffer) and decompress it back
to RGB. The library is found by soname (libturbojpeg.so.0).
"""

import ctypes
import math
import sys

TJPF_RGB, TJSAMP_420, TJFLAG_NOREALLOC = 0, 2, 1024


def image(size: int) -> bytes:
    """RGB rows: one row of smooth waves plus texture, shifted and recoloured per row."""
    row = bytearray()
    for x in range(size):
        v = 0.5 + 0.25 * math.sin(x * 0.013) + 0.15 * math.sin(x * 0.21) + 0.1 * ((x * 7) % 5) / 5
        row += bytes((int(255 * v) & 255, int(180 * v + x) & 255, int(90 + 120 * v * v) & 255))
    base = bytes(row)
    ramp = bytes(range(256)) * 2
    rows = []
    for y in range(size):
        shift = 3 * ((y * 7 + int(40 * math.sin(y * 0.02))) % size)
        table = ramp[y // 4 % 256 : y // 4 % 256 + 200] + ramp[200:256]
        rows.append((base[shift:] + base[:shift]).translate(table))
    return b"".join(rows)


def main() -> int:
    size, rounds = int(sys.argv[1]), int(sys.argv[2])
    lib = ctypes.CDLL("libturbojpeg.so.0")
    Ptr, Int, ULong = ctypes.c_void_p, ctypes.c_int, ctypes.c_ulong
    lib.tjInitCompress.restype = Ptr
    lib.tjInitDecompress.restype = Ptr
    lib.tjBufSize.restype = ULong
    lib.tjBufSize.argtypes = [Int, Int, Int]
    lib.tjAlloc.restype = Ptr
    lib.tjAlloc.argtypes = [Int]
    lib.tjFree.argtypes = [Ptr]
    lib.tjDestroy.argtypes = [Ptr]
    lib.tjCompress2.argtypes = [
        Ptr, Ptr, Int, Int, Int, Int, ctypes.POINTER(Ptr), ctypes.POINTER(ULong), Int, Int, Int,
    ]  # fmt: skip
    lib.tjDecompress2.argtypes = [Ptr, Ptr, ULong, Ptr, Int, Int, Int, Int, Int]
    src = ctypes.create_string_buffer(image(size), 3 * size * size)
    dst = ctypes.create_string_buffer(3 * size * size)
    capacity = lib.tjBufSize(size, size, TJSAMP_420)
    jpeg = Ptr(lib.tjAlloc(capacity))
    jpeg_size = ULong(capacity)
    comp, decomp = lib.tjInitCompress(), lib.tjInitDecompress()
    total = 0
    for _ in range(rounds):
        jpeg_size.value = capacity
        if lib.tjCompress2(comp, src, size, 0, size, TJPF_RGB, ctypes.byref(jpeg),
                           ctypes.byref(jpeg_size), TJSAMP_420, 90, TJFLAG_NOREALLOC):  # fmt: skip
            print("tjCompress2 failed", file=sys.stderr)
            return 1
        if lib.tjDecompress2(decomp, jpeg, jpeg_size, dst, size, 0, size, TJPF_RGB, 0):
            print("tjDecompress2 failed", file=sys.stderr)
            return 1
        total += jpeg_size.value
    error = sum(abs(a - b) for a, b in zip(src.raw[::4099], dst.raw[::4099], strict=True))
    lib.tjDestroy(comp)
    lib.tjDestroy(decomp)
    lib.tjFree(jpeg)
    print(total, error)
    return 0


if __name__ == "__main__":
    sys.exit(main())
