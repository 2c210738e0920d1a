"""Compress and decompress synthetic text with bzip2, through Python's bz2 module.

Usage: bench.py MEGABYTES ROUNDS -- build MEGABYTES of word-like text, then ROUNDS times:
compress it with 900 kB blocks (level 9) and decompress it. The bz2 module's extension
links libbz2.so.1.0 dynamically, so the loader picks the library variant.
"""

import bz2
import random
import sys

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
        packed = bz2.compress(data, 9)
        unpacked = bz2.decompress(packed)
        if unpacked != data:
            print("round trip mismatch", file=sys.stderr)
            return 1
        checksum = (checksum * 31 + len(packed) + unpacked[len(unpacked) // 3]) & 0xFFFFFFFF
    print(len(data), len(packed), checksum)
    return 0


if __name__ == "__main__":
    sys.exit(main())
