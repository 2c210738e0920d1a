"""Encode and decode synthetic telephone-band audio with libgsm (GSM 06.10), through ctypes.

Usage: bench.py SECONDS -- encode that much 8 kHz mono audio in 160-sample (20 ms) frames
to 33-byte GSM frames, decoding each frame right after it is encoded. The library is found
by soname (libgsm.so.1).
"""

import ctypes
import math
import sys

RATE, FRAME = 8000, 160


def frames_of_audio() -> list[ctypes.Array[ctypes.c_int16]]:
    """One second of a voiced-like signal: a gliding pitch with a few harmonics and noise."""
    frames = []
    seed = 7
    for f in range(RATE // FRAME):
        pcm = (ctypes.c_int16 * FRAME)()
        for i in range(FRAME):
            t = (f * FRAME + i) / RATE
            pitch = 2 * math.pi * (110 + 30 * math.sin(2 * t)) * t
            seed = (seed * 1103515245 + 12345) & 0x7FFFFFFF
            value = 6000 * math.sin(pitch) + 3000 * math.sin(3 * pitch) + 900 * math.sin(8 * pitch)
            pcm[i] = int(value) + (seed >> 21) - 512
        frames.append(pcm)
    return frames


def main() -> int:
    seconds = float(sys.argv[1])
    lib = ctypes.CDLL("libgsm.so.1")
    Ptr = ctypes.c_void_p
    lib.gsm_create.restype = Ptr
    lib.gsm_destroy.argtypes = [Ptr]
    lib.gsm_encode.argtypes = [Ptr, Ptr, Ptr]
    lib.gsm_encode.restype = None
    lib.gsm_decode.argtypes = [Ptr, Ptr, Ptr]
    enc, dec = lib.gsm_create(), lib.gsm_create()
    audio = frames_of_audio()
    frames = [ctypes.addressof(f) for f in audio]
    packet = (ctypes.c_ubyte * 33)()
    out = (ctypes.c_int16 * FRAME)()
    packet_at, out_at = ctypes.addressof(packet), ctypes.addressof(out)
    encode, decode = lib.gsm_encode, lib.gsm_decode
    count = len(frames)
    checksum = 0
    for n in range(int(seconds * RATE / FRAME)):
        encode(enc, frames[n % count], packet_at)
        if decode(dec, packet_at, out_at):
            print("gsm_decode failed at frame", n, file=sys.stderr)
            return 1
        checksum = (checksum * 31 + out[n % FRAME] + packet[n % 33]) & 0xFFFFFFFF
    lib.gsm_destroy(enc)
    lib.gsm_destroy(dec)
    print(checksum)
    return 0


if __name__ == "__main__":
    sys.exit(main())
