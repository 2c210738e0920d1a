"""Compress and decompress synthetic text with liblz4 (block API), through ctypes.

Usage: bench.py MEGABYTES ROUNDS -- build MEGABYTES of word-like text, then ROUNDS times:
compress it in 64 KiB blocks with LZ4_compress_default and decompress every block with
LZ4_decompress_safe. The library is found by soname (liblz4.so.1).
"""

import ctypes
import random
import sys

LETTERS = "etaoinshrdlucmfwypvbgkqjxz"
BLOCK = 1 << 16


def corpus(megabytes: int) -> bytes:
    """Zipf-distributed pseudo-words: 256 KiB of them, spelt with a new alphabet each time."""
    rng = random.Random(2024)
    words = [
        "".join(rng.choices(LETTERS, weights=range(26, 0, -1), k=rng.randint(1, 10)))
        for _ in range(5000)
    ]
    text = " ".join(rng.choices(words, weights=[1 / (i + 1) for i in range(5000)], k=46_000))
    base = text.replace(" e ", ".\n").encode()[: 1 << 18]
    parts = []
    for _ in range(4 * megabytes):
        alphabet = list(LETTERS)
        rng.shuffle(alphabet)
        parts.append(base.translate(bytes.maketrans(LETTERS.encode(), "".join(alphabet).encode())))
    return b"".join(parts)


def main() -> int:
    megabytes, rounds = int(sys.argv[1]), int(sys.argv[2])
    lib = ctypes.CDLL("liblz4.so.1")
    Ptr, Int = ctypes.c_void_p, ctypes.c_int
    lib.LZ4_compressBound.argtypes = [Int]
    lib.LZ4_compress_default.argtypes = [Ptr, Ptr, Int, Int]
    lib.LZ4_decompress_safe.argtypes = [Ptr, Ptr, Int, Int]
    data = corpus(megabytes)
    size = len(data)
    src = ctypes.create_string_buffer(data, size)
    bound = lib.LZ4_compressBound(BLOCK)
    blocks = size // BLOCK
    packed = ctypes.create_string_buffer(bound * blocks)
    out = ctypes.create_string_buffer(size)
    src_at, packed_at, out_at = (ctypes.addressof(b) for b in (src, packed, out))
    compress, decompress = lib.LZ4_compress_default, lib.LZ4_decompress_safe
    total = 0
    for _ in range(rounds):
        sizes = [
            compress(src_at + i * BLOCK, packed_at + i * bound, BLOCK, bound) for i in range(blocks)
        ]
        for i, n in enumerate(sizes):
            if n <= 0 or decompress(packed_at + i * bound, out_at + i * BLOCK, n, BLOCK) != BLOCK:
                print("block", i, "failed", file=sys.stderr)
                return 1
        total += sum(sizes)
    if out.raw != data:
        print("round trip mismatch", file=sys.stderr)
        return 1
    print(size, total)
    return 0


if __name__ == "__main__":
    sys.exit(main())
