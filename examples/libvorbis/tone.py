"""Write a deterministic test signal (two tones and a sweep, stereo, 16-bit) as a WAV file."""

import math
import struct
import sys
import wave


def main() -> None:
    path, seconds = sys.argv[1], float(sys.argv[2])
    rate = 44100
    period = rate  # one second of signal, repeated
    frames = bytearray()
    for i in range(period):
        t = i / rate
        left = 0.3 * math.sin(2 * math.pi * 440 * t) + 0.2 * math.sin(2 * math.pi * 3000 * t)
        right = 0.4 * math.sin(2 * math.pi * (200 + 4000 * t) * t)
        frames += struct.pack("<hh", int(left * 32767), int(right * 32767))
    with wave.open(path + ".tmp", "wb") as out:
        out.setnchannels(2)
        out.setsampwidth(2)
        out.setframerate(rate)
        for _ in range(int(seconds)):
            out.writeframes(frames)
    import os

    os.replace(path + ".tmp", path)


if __name__ == "__main__":
    main()
