"""Encode and decode a synthetic RGB image as lossy WebP with libwebp, through ctypes.

Usage: bench.py SIZE ROUNDS [QUALITY] -- a SIZE-by-SIZE RGB image, ROUNDS times: encode it
(WebPEncodeRGB, QUALITY 0-100, default 80, the default method 4) and decode it back to RGB
(WebPDecodeRGBInto). The library is found by soname (libwebp.so.7).
"""

import ctypes
import math
import sys


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
    quality = float(sys.argv[3]) if len(sys.argv) > 3 else 80.0
    lib = ctypes.CDLL("libwebp.so.7")
    Ptr, Int, Size = ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t
    lib.WebPEncodeRGB.restype = Size
    lib.WebPEncodeRGB.argtypes = [Ptr, Int, Int, Int, ctypes.c_float, ctypes.POINTER(Ptr)]
    lib.WebPDecodeRGBInto.restype = Ptr
    lib.WebPDecodeRGBInto.argtypes = [Ptr, Size, Ptr, Size, Int]
    lib.WebPFree.argtypes = [Ptr]
    nbytes = 3 * size * size
    src = ctypes.create_string_buffer(image(size), nbytes)
    dst = ctypes.create_string_buffer(nbytes)
    webp = Ptr()
    total = 0
    for _ in range(rounds):
        length = lib.WebPEncodeRGB(src, size, size, 3 * size, quality, ctypes.byref(webp))
        if not length:
            print("WebPEncodeRGB failed", file=sys.stderr)
            return 1
        if not lib.WebPDecodeRGBInto(webp, length, dst, nbytes, 3 * size):
            print("WebPDecodeRGBInto failed", file=sys.stderr)
            return 1
        lib.WebPFree(webp)
        total += length
    error = sum(abs(a - b) for a, b in zip(src.raw[::4099], dst.raw[::4099], strict=True))
    print(total, error)
    return 0


if __name__ == "__main__":
    sys.exit(main())
