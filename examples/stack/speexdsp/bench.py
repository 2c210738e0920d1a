"""Acoustic echo cancellation and noise suppression with libspeexdsp, through ctypes.

Usage: bench.py SECONDS -- run that much 16 kHz mono audio, in 256-sample frames, through
the MDF echo canceller (256 ms filter tail) and the preprocessor (denoise, residual echo
suppression, AGC), as a VoIP client does. The library is found by soname
(libspeexdsp.so.1).
"""

import ctypes
import math
import sys

RATE, FRAME, TAIL = 16000, 256, 4096
SPEEX_ECHO_SET_SAMPLING_RATE = 24
SPEEX_PREPROCESS_SET_AGC, SPEEX_PREPROCESS_SET_ECHO_STATE = 2, 24
BLOCKS = 125  # two seconds of distinct frames, reused


def signals() -> tuple[ctypes.Array[ctypes.c_int16], ctypes.Array[ctypes.c_int16]]:
    """Far-end speech-like audio, and a microphone that hears its echo, a talker and noise."""
    n = BLOCKS * FRAME
    far = [0.0] * n
    seed = 3
    play = (ctypes.c_int16 * n)()
    rec = (ctypes.c_int16 * n)()
    for i in range(n):
        t = i / RATE
        pitch = 2 * math.pi * (130 + 50 * math.sin(2.5 * t)) * t
        envelope = 0.5 + 0.5 * math.sin(2 * math.pi * 3 * t)
        far[i] = envelope * (6000 * math.sin(pitch) + 2000 * math.sin(4 * pitch))
        play[i] = int(far[i])
    for i in range(n):
        t = i / RATE
        seed = (seed * 1103515245 + 12345) & 0x7FFFFFFF
        echo = 0.6 * far[i - 800] - 0.25 * far[i - 1130] + 0.1 * far[i - 2050]
        talker = 1500 * math.sin(2 * math.pi * (210 + 30 * math.sin(t)) * t) * (t > 1.0)
        rec[i] = int(echo + talker) + (seed >> 22) - 256
    return play, rec


def main() -> int:
    seconds = float(sys.argv[1])
    lib = ctypes.CDLL("libspeexdsp.so.1")
    Ptr, Int = ctypes.c_void_p, ctypes.c_int
    lib.speex_echo_state_init.restype = Ptr
    lib.speex_echo_state_init.argtypes = [Int, Int]
    lib.speex_echo_ctl.argtypes = [Ptr, Int, Ptr]
    lib.speex_echo_cancellation.argtypes = [Ptr, Ptr, Ptr, Ptr]
    lib.speex_echo_cancellation.restype = None
    lib.speex_echo_state_destroy.argtypes = [Ptr]
    lib.speex_preprocess_state_init.restype = Ptr
    lib.speex_preprocess_state_init.argtypes = [Int, Int]
    lib.speex_preprocess_ctl.argtypes = [Ptr, Int, Ptr]
    lib.speex_preprocess_run.argtypes = [Ptr, Ptr]
    lib.speex_preprocess_state_destroy.argtypes = [Ptr]

    echo = lib.speex_echo_state_init(FRAME, TAIL)
    pre = lib.speex_preprocess_state_init(FRAME, RATE)
    value = Int(RATE)
    lib.speex_echo_ctl(echo, SPEEX_ECHO_SET_SAMPLING_RATE, ctypes.byref(value))
    value.value = 1
    lib.speex_preprocess_ctl(pre, SPEEX_PREPROCESS_SET_AGC, ctypes.byref(value))
    lib.speex_preprocess_ctl(pre, SPEEX_PREPROCESS_SET_ECHO_STATE, echo)
    play, rec = signals()
    play_at, rec_at = ctypes.addressof(play), ctypes.addressof(rec)
    step = FRAME * ctypes.sizeof(ctypes.c_int16)
    out = (ctypes.c_int16 * FRAME)()
    out_at = ctypes.addressof(out)
    cancel, run = lib.speex_echo_cancellation, lib.speex_preprocess_run
    checksum = 0
    for n in range(int(seconds * RATE / FRAME)):
        offset = (n % BLOCKS) * step
        cancel(echo, rec_at + offset, play_at + offset, out_at)
        voice = run(pre, out_at)
        checksum = (checksum * 31 + out[n % FRAME] + voice) & 0xFFFFFFFF
    lib.speex_preprocess_state_destroy(pre)
    lib.speex_echo_state_destroy(echo)
    print(checksum)
    return 0


if __name__ == "__main__":
    sys.exit(main())
