"""Encode synthetic stereo audio with libopus (float API), through ctypes.

Usage: bench.py SECONDS -- encode that much 48 kHz stereo audio in 20 ms frames at 128 kbit/s.
"""

import ctypes
import math
import sys

OPUS_APPLICATION_AUDIO = 2049
OPUS_SET_BITRATE_REQUEST = 4002


def main() -> int:
    seconds = float(sys.argv[1])
    lib = ctypes.CDLL("libopus.so.0")
    lib.opus_encoder_create.restype = ctypes.c_void_p
    lib.opus_encoder_create.argtypes = [
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.POINTER(ctypes.c_int),
    ]
    lib.opus_encode_float.argtypes = [
        ctypes.c_void_p,
        ctypes.c_void_p,
        ctypes.c_int,
        ctypes.c_void_p,
        ctypes.c_int32,
    ]
    err = ctypes.c_int()
    enc = lib.opus_encoder_create(48000, 2, OPUS_APPLICATION_AUDIO, ctypes.byref(err))
    if err.value:
        return 1
    lib.opus_encoder_ctl(ctypes.c_void_p(enc), OPUS_SET_BITRATE_REQUEST, 128000)
    frame = 960
    frames = []
    for f in range(50):  # one second of distinct frames, reused
        pcm = (ctypes.c_float * (2 * frame))()
        for i in range(frame):
            t = (f * frame + i) / 48000
            pcm[2 * i] = 0.3 * math.sin(2 * math.pi * 440 * t) + 0.1 * math.sin(7000 * t)
            pcm[2 * i + 1] = 0.3 * math.sin(2 * math.pi * (300 + 2000 * t) * t)
        frames.append(pcm)
    out = (ctypes.c_ubyte * 4000)()
    total = 0
    encode = lib.opus_encode_float
    for n in range(int(seconds * 50)):
        total += encode(enc, frames[n % 50], frame, out, 4000)
    print(total)
    return 0


if __name__ == "__main__":
    sys.exit(main())
