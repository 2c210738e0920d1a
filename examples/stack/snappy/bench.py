"""Compress and decompress synthetic text with libsnappy's C API, through ctypes.

Usage: bench.py MEGABYTES ROUNDS -- build MEGABYTES of word-like text, then ROUNDS times:
compress it in 64 KiB blocks with snappy_compress and decompress every block with
snappy_uncompress. The library is found by soname (libsnappy.so.1).
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
    lib = ctypes.CDLL("libsnappy.so.1")
    Ptr, Size = ctypes.c_void_p, ctypes.c_size_t
    lib.snappy_max_compressed_length.restype = Size
    lib.snappy_max_compressed_length.argtypes = [Size]
    lib.snappy_compress.argtypes = [Ptr, Size, Ptr, Ptr]
    lib.snappy_uncompress.argtypes = [Ptr, Size, Ptr, Ptr]
    data = corpus(megabytes)
    size = len(data)
    src = ctypes.create_string_buffer(data, size)
    bound = lib.snappy_max_compressed_length(BLOCK)
    blocks = size // BLOCK
    packed = ctypes.create_string_buffer(bound * blocks)
    out = ctypes.create_string_buffer(size)
    src_at, packed_at, out_at = (ctypes.addressof(b) for b in (src, packed, out))
    lengths = (Size * blocks)()
    out_len = Size()
    len_at, out_len_at = ctypes.addressof(lengths), ctypes.addressof(out_len)
    compress, uncompress = lib.snappy_compress, lib.snappy_uncompress
    step = ctypes.sizeof(Size)
    total = 0
    for _ in range(rounds):
        for i in range(blocks):
            lengths[i] = bound
            if compress(src_at + i * BLOCK, BLOCK, packed_at + i * bound, len_at + i * step):
                print("snappy_compress failed at block", i, file=sys.stderr)
                return 1
        for i in range(blocks):
            out_len.value = BLOCK
            status = uncompress(packed_at + i * bound, lengths[i], out_at + i * BLOCK, out_len_at)
            if status or out_len.value != BLOCK:
                print("snappy_uncompress failed at block", i, file=sys.stderr)
                return 1
        total += sum(lengths)
    if out.raw != data:
        print("round trip mismatch", file=sys.stderr)
        return 1
    print(size, total)
    return 0


if __name__ == "__main__":
    sys.exit(main())
