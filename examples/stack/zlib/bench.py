"""Compress and decompress synthetic text with zlib (deflate), through Python's zlib module.

Usage: bench.py MEGABYTES ROUNDS -- build MEGABYTES of word-like text, then ROUNDS times:
compress it at level 6, decompress it and take its CRC-32 and Adler-32. The interpreter
links libz.so.1 dynamically, so the loader picks the library variant.
"""

import random
import sys
import zlib

LETTERS = "etaoinshrdlucmfwypvbgkqjxz"


def corpus(megabytes: int) -> bytes:
    """Zipf-distributed pseudo-words: 256 KiB of them, spelt with a new alphabet each time."""
    rng = random.Random(2024)
    words = [
        "".join(rng.choices(LETTERS, weights=range(26, 0, -1), k=rng.randint(1, 10)))
        for _ in range(5000)
    ]
    text = " ".join(rng.choices(words, cum_weights=None, weights=[1 / (i + 1) for i in range(5000)],
                                k=46_000))  # fmt: skip
    base = text.replace(" e ", ".\n").encode()[: 1 << 18]
    parts = []
    for _ in range(4 * megabytes):
        alphabet = list(LETTERS)
        rng.shuffle(alphabet)
        parts.append(base.translate(bytes.maketrans(LETTERS.encode(), "".join(alphabet).encode())))
    return b"".join(parts)


def main() -> int:
    megabytes, rounds = int(sys.argv[1]), int(sys.argv[2])
    data = corpus(megabytes)
    checksum = 0
    for _ in range(rounds):
        packed = zlib.compress(data, 6)
        unpacked = zlib.decompress(packed)
        if unpacked != data:
            print("round trip mismatch", file=sys.stderr)
            return 1
        checksum ^= zlib.crc32(unpacked) ^ zlib.adler32(unpacked) ^ len(packed)
    print(len(data), len(packed), checksum)
    return 0


if __name__ == "__main__":
    sys.exit(main())
