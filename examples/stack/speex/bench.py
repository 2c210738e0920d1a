"""Encode and decode synthetic speech-band audio with libspeex (wideband), through ctypes.

Usage: bench.py SECONDS [QUALITY] -- encode that much 16 kHz mono audio in 20 ms frames
(wideband mode, QUALITY 0-10, default 8; complexity 10), decoding each frame right after
it is encoded. The library is found by soname (libspeex.so.1).
"""

import ctypes
import math
import sys

RATE, FRAME = 16000, 320
SPEEX_MODEID_WB = 1
SPEEX_SET_QUALITY, SPEEX_SET_COMPLEXITY, SPEEX_GET_FRAME_SIZE = 4, 16, 3
Ptr = ctypes.c_void_p


class SpeexBits(ctypes.Structure):
    _fields_ = [
        ("chars", ctypes.c_char_p),
        ("nbBits", ctypes.c_int),
        ("charPtr", ctypes.c_int),
        ("bitPtr", ctypes.c_int),
        ("owner", ctypes.c_int),
        ("overflow", ctypes.c_int),
        ("buf_size", ctypes.c_int),
        ("reserved1", ctypes.c_int),
        ("reserved2", ctypes.c_void_p),
    ]


def frames_of_audio() -> list[ctypes.Array[ctypes.c_int16]]:
    """One second of a voiced-like signal: a gliding pitch with formant-ish harmonics."""
    frames = []
    seed = 1
    for f in range(RATE // FRAME):
        pcm = (ctypes.c_int16 * FRAME)()
        for i in range(FRAME):
            t = (f * FRAME + i) / RATE
            pitch = 2 * math.pi * (120 + 40 * math.sin(3 * t)) * t
            seed = (seed * 1103515245 + 12345) & 0x7FFFFFFF
            value = sum(math.sin(k * pitch) * a for k, a in ((1, 5000), (3, 2500), (7, 1200)))
            pcm[i] = int(value) + (seed >> 20) - 1024
        frames.append(pcm)
    return frames


def main() -> int:
    seconds = float(sys.argv[1])
    quality = int(sys.argv[2]) if len(sys.argv) > 2 else 8
    lib = ctypes.CDLL("libspeex.so.1")
    lib.speex_lib_get_mode.restype = Ptr
    lib.speex_lib_get_mode.argtypes = [ctypes.c_int]
    lib.speex_encoder_init.restype = Ptr
    lib.speex_encoder_init.argtypes = [Ptr]
    lib.speex_decoder_init.restype = Ptr
    lib.speex_decoder_init.argtypes = [Ptr]
    lib.speex_encoder_ctl.argtypes = [Ptr, ctypes.c_int, Ptr]
    lib.speex_decoder_ctl.argtypes = [Ptr, ctypes.c_int, Ptr]
    lib.speex_encode_int.argtypes = [Ptr, Ptr, Ptr]
    lib.speex_decode_int.argtypes = [Ptr, Ptr, Ptr]
    lib.speex_bits_init.argtypes = [Ptr]
    lib.speex_bits_reset.argtypes = [Ptr]
    lib.speex_bits_destroy.argtypes = [Ptr]
    lib.speex_bits_write.argtypes = [Ptr, Ptr, ctypes.c_int]
    lib.speex_bits_read_from.argtypes = [Ptr, Ptr, ctypes.c_int]

    mode = lib.speex_lib_get_mode(SPEEX_MODEID_WB)
    enc, dec = lib.speex_encoder_init(mode), lib.speex_decoder_init(mode)
    value = ctypes.c_int(quality)
    lib.speex_encoder_ctl(enc, SPEEX_SET_QUALITY, ctypes.byref(value))
    value.value = 10
    lib.speex_encoder_ctl(enc, SPEEX_SET_COMPLEXITY, ctypes.byref(value))
    lib.speex_encoder_ctl(enc, SPEEX_GET_FRAME_SIZE, ctypes.byref(value))
    if value.value != FRAME:
        print("unexpected frame size", value.value, file=sys.stderr)
        return 1
    ebits, dbits = SpeexBits(), SpeexBits()
    ebits_p, dbits_p = ctypes.addressof(ebits), ctypes.addressof(dbits)
    lib.speex_bits_init(ebits_p)
    lib.speex_bits_init(dbits_p)
    audio = frames_of_audio()
    frames = [ctypes.addressof(f) for f in audio]
    packet = ctypes.create_string_buffer(1024)
    out = (ctypes.c_int16 * FRAME)()
    packet_p, out_p = ctypes.addressof(packet), ctypes.addressof(out)
    reset, encode, write = lib.speex_bits_reset, lib.speex_encode_int, lib.speex_bits_write
    read_from, decode = lib.speex_bits_read_from, lib.speex_decode_int
    total_bytes = checksum = 0
    for n in range(int(seconds * RATE / FRAME)):
        reset(ebits_p)
        encode(enc, frames[n % len(frames)], ebits_p)
        nbytes = write(ebits_p, packet_p, 1024)
        read_from(dbits_p, packet_p, nbytes)
        if decode(dec, dbits_p, out_p) != 0:
            print("decoding failed at frame", n, file=sys.stderr)
            return 1
        total_bytes += nbytes
        checksum = (checksum * 31 + out[n % FRAME]) & 0xFFFFFFFF
    lib.speex_bits_destroy(ebits_p)
    lib.speex_bits_destroy(dbits_p)
    print(total_bytes, checksum)
    return 0


if __name__ == "__main__":
    sys.exit(main())
