"""Compress and decompress synthetic text with liblzma (.xz), through Python's lzma module.

Usage: bench.py MEGABYTES ROUNDS [PRESET] -- build MEGABYTES of word-like text, then ROUNDS
times: compress it to the .xz format (PRESET, default 6; CRC-64 check) and decompress it.
The lzma module's extension links liblzma.so.5 dynamically, so the loader picks the variant.
"""

import lzma
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
    preset = int(sys.argv[3]) if len(sys.argv) > 3 else 6
    data = corpus(megabytes)
    checksum = 0
    for _ in range(rounds):
        packed = lzma.compress(data, preset=preset)
        unpacked = lzma.decompress(packed)
        if unpacked != data:
            print("round trip mismatch", file=sys.stderr)
            return 1
        checksum = (checksum * 31 + len(packed) + unpacked[len(unpacked) // 3]) & 0xFFFFFFFF
    print(len(data), len(packed), checksum)
    return 0


if __name__ == "__main__":
    sys.exit(main())
