"""Encode synthetic stereo audio with libFLAC at level 8, then decode it, through ctypes.

Usage: bench.py SECONDS -- encode that much 44.1 kHz 16-bit stereo audio (stream encoder,
compression level 8: LPC analysis up to order 12), then decode the stream again. The
library is found by soname (libFLAC.so.12); the encoded stream stays in memory.
"""

import ctypes
import math
import sys
from typing import Any

RATE = 44100
Ptr = ctypes.c_void_p
Size = ctypes.c_size_t
EncWrite = ctypes.CFUNCTYPE(ctypes.c_int, Ptr, Ptr, Size, ctypes.c_uint32, ctypes.c_uint32, Ptr)
DecRead = ctypes.CFUNCTYPE(ctypes.c_int, Ptr, Ptr, ctypes.POINTER(Size), Ptr)
Channels = ctypes.POINTER(ctypes.POINTER(ctypes.c_int32))
DecWrite = ctypes.CFUNCTYPE(ctypes.c_int, Ptr, Ptr, Channels, Ptr)
DecError = ctypes.CFUNCTYPE(None, Ptr, ctypes.c_int, Ptr)


def synth(frames: int) -> ctypes.Array[ctypes.c_int32]:
    """Interleaved stereo: two tones, a chirp and a little noise; one second, tiled."""
    pcm = (ctypes.c_int32 * (2 * frames))()
    block = min(frames, RATE)
    seed = 12345
    for i in range(block):
        t = i / RATE
        seed = (seed * 1103515245 + 12345) & 0x7FFFFFFF
        noise = (seed >> 16) % 201 - 100
        pcm[2 * i] = int(9000 * math.sin(2 * math.pi * 440 * t) + 4000 * math.sin(5555 * t)) + noise
        pcm[2 * i + 1] = int(8000 * math.sin(2 * math.pi * (200 + 900 * t) * t)) - noise
    size, filled = 2 * ctypes.sizeof(ctypes.c_int32), block  # bytes per stereo frame
    while filled < frames:
        count = min(filled, frames - filled)
        ctypes.memmove(ctypes.byref(pcm, filled * size), pcm, count * size)
        filled += count
    return pcm


def setup(lib: ctypes.CDLL) -> None:
    lib.FLAC__stream_encoder_new.restype = Ptr
    lib.FLAC__stream_decoder_new.restype = Ptr
    for name in ("channels", "bits_per_sample", "sample_rate", "compression_level"):
        getattr(lib, f"FLAC__stream_encoder_set_{name}").argtypes = [Ptr, ctypes.c_uint32]
    lib.FLAC__stream_encoder_init_stream.argtypes = [Ptr, EncWrite, Ptr, Ptr, Ptr, Ptr]
    lib.FLAC__stream_encoder_process_interleaved.argtypes = [Ptr, Ptr, ctypes.c_uint32]
    lib.FLAC__stream_decoder_init_stream.argtypes = [
        Ptr, DecRead, Ptr, Ptr, Ptr, Ptr, DecWrite, Ptr, DecError, Ptr,
    ]  # fmt: skip
    for name in ("encoder_finish", "encoder_delete", "decoder_finish", "decoder_delete",
                 "decoder_process_until_end_of_stream"):  # fmt: skip
        getattr(lib, f"FLAC__stream_{name}").argtypes = [Ptr]


def main() -> int:
    seconds = float(sys.argv[1])
    lib = ctypes.CDLL("libFLAC.so.12")
    setup(lib)
    frames = int(seconds * RATE)
    pcm = synth(frames)

    chunks: list[bytes] = []

    def on_encoded(_enc: int, buf: int, nbytes: int, _s: int, _f: int, _c: int) -> int:
        chunks.append(ctypes.string_at(buf, nbytes))
        return 0

    enc = lib.FLAC__stream_encoder_new()
    lib.FLAC__stream_encoder_set_channels(enc, 2)
    lib.FLAC__stream_encoder_set_bits_per_sample(enc, 16)
    lib.FLAC__stream_encoder_set_sample_rate(enc, RATE)
    lib.FLAC__stream_encoder_set_compression_level(enc, 8)
    write_cb = EncWrite(on_encoded)
    if lib.FLAC__stream_encoder_init_stream(enc, write_cb, None, None, None, None) != 0:
        print("encoder init failed", file=sys.stderr)
        return 1
    if not lib.FLAC__stream_encoder_process_interleaved(enc, pcm, frames):
        print("encoding failed", file=sys.stderr)
        return 1
    lib.FLAC__stream_encoder_finish(enc)
    lib.FLAC__stream_encoder_delete(enc)
    stream = b"".join(chunks)

    pos = 0
    decoded = [0, 0]  # samples per channel, checksum

    def on_read(_dec: int, buf: int, nbytes: Any, _c: int) -> int:
        nonlocal pos
        count = min(nbytes[0], len(stream) - pos)
        if count == 0:
            nbytes[0] = 0
            return 1  # END_OF_STREAM
        ctypes.memmove(buf, stream[pos : pos + count], count)
        pos += count
        nbytes[0] = count
        return 0  # CONTINUE

    def on_decoded(_dec: int, frame: int, buf: Any, _c: int) -> int:
        blocksize = ctypes.cast(frame, ctypes.POINTER(ctypes.c_uint32))[0]
        decoded[0] += blocksize
        decoded[1] = (decoded[1] * 31 + buf[0][blocksize - 1] + buf[1][0]) & 0xFFFFFFFF
        return 0

    def on_error(_dec: int, status: int, _c: int) -> None:
        print("decode error", status, file=sys.stderr)
        decoded[0] = -(1 << 40)

    callbacks = (DecRead(on_read), DecWrite(on_decoded), DecError(on_error))
    dec = lib.FLAC__stream_decoder_new()
    read_cb, dwrite_cb, error_cb = callbacks
    init = lib.FLAC__stream_decoder_init_stream(
        dec, read_cb, None, None, None, None, dwrite_cb, None, error_cb, None
    )
    if init != 0 or not lib.FLAC__stream_decoder_process_until_end_of_stream(dec):
        print("decoding failed", file=sys.stderr)
        return 1
    lib.FLAC__stream_decoder_finish(dec)
    lib.FLAC__stream_decoder_delete(dec)
    if decoded[0] != frames:
        print(f"decoded {decoded[0]} of {frames} samples", file=sys.stderr)
        return 1
    print(len(stream), decoded[1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
