"""Frame packets into an Ogg stream and parse it back with libogg, through ctypes.

Usage: bench.py MEGABYTES ROUNDS -- ROUNDS times: put MEGABYTES of packets (1 to 31 KiB
each, as a video codec would make) into Ogg pages of up to 64 KiB (ogg_stream_packetin,
ogg_stream_pageout_fill: lacing and CRC-32), copy the pages into one buffer, then feed it
back 1 MiB at a time through ogg_sync_* and ogg_stream_pagein / packetout (CRC checks,
reassembly). The library is found by soname (libogg.so.0).
"""

import ctypes
import random
import sys

Ptr, Long, Int64 = ctypes.c_void_p, ctypes.c_long, ctypes.c_int64
CHUNK = 1 << 20


class Packet(ctypes.Structure):
    _fields_ = [
        ("packet", Ptr),
        ("bytes", Long),
        ("b_o_s", Long),
        ("e_o_s", Long),
        ("granulepos", Int64),
        ("packetno", Int64),
    ]


class Page(ctypes.Structure):
    _fields_ = [("header", Ptr), ("header_len", Long), ("body", Ptr), ("body_len", Long)]


def setup(lib: ctypes.CDLL) -> None:
    for name in ("stream_packetin", "stream_pagein", "stream_packetout", "stream_flush"):
        getattr(lib, f"ogg_{name}").argtypes = [Ptr, Ptr]
    lib.ogg_stream_pageout_fill.argtypes = [Ptr, Ptr, ctypes.c_int]
    lib.ogg_stream_init.argtypes = [Ptr, ctypes.c_int]
    lib.ogg_stream_clear.argtypes = [Ptr]
    lib.ogg_sync_init.argtypes = [Ptr]
    lib.ogg_sync_clear.argtypes = [Ptr]
    lib.ogg_sync_buffer.restype = Ptr
    lib.ogg_sync_buffer.argtypes = [Ptr, Long]
    lib.ogg_sync_wrote.argtypes = [Ptr, Long]
    lib.ogg_sync_pageout.argtypes = [Ptr, Ptr]


def encode(lib: ctypes.CDLL, payload: int, sizes: list[int], out: ctypes.Array) -> int:
    """Packets into pages, pages into out; returns the stream's length."""
    stream = ctypes.create_string_buffer(4096)  # ogg_stream_state, about 400 bytes
    page, packet = Page(), Packet()
    lib.ogg_stream_init(stream, 1)
    out_at, length = ctypes.addressof(out), 0
    packet_p, page_p = ctypes.byref(packet), ctypes.byref(page)
    packetin, flush = lib.ogg_stream_packetin, lib.ogg_stream_flush
    pageout = lib.ogg_stream_pageout_fill
    offset = 0
    for n, size in enumerate(sizes):
        packet.packet, packet.bytes = payload + offset, size
        packet.b_o_s, packet.e_o_s = n == 0, n == len(sizes) - 1
        packet.granulepos, packet.packetno = n, n
        offset = (offset + 4099) % (1 << 20)
        packetin(stream, packet_p)
        while pageout(stream, page_p, 1 << 16) or (n == len(sizes) - 1 and flush(stream, page_p)):
            ctypes.memmove(out_at + length, page.header, page.header_len)
            ctypes.memmove(out_at + length + page.header_len, page.body, page.body_len)
            length += page.header_len + page.body_len
    lib.ogg_stream_clear(stream)
    return length


def decode(lib: ctypes.CDLL, data: ctypes.Array, length: int) -> tuple[int, int]:
    """Parse the stream back; returns the packets' count and total size."""
    sync, stream = ctypes.create_string_buffer(256), ctypes.create_string_buffer(4096)
    page, packet = Page(), Packet()
    page_p, packet_p = ctypes.byref(page), ctypes.byref(packet)
    lib.ogg_sync_init(sync)
    lib.ogg_stream_init(stream, 1)
    data_at, count, total = ctypes.addressof(data), 0, 0
    pagein, packetout = lib.ogg_stream_pagein, lib.ogg_stream_packetout
    sync_pageout = lib.ogg_sync_pageout
    for start in range(0, length, CHUNK):
        size = min(CHUNK, length - start)
        ctypes.memmove(lib.ogg_sync_buffer(sync, size), data_at + start, size)
        lib.ogg_sync_wrote(sync, size)
        while sync_pageout(sync, page_p) == 1:
            if pagein(stream, page_p):
                return -1, 0
            while packetout(stream, packet_p) == 1:
                count += 1
                total += packet.bytes
    lib.ogg_stream_clear(stream)
    lib.ogg_sync_clear(sync)
    return count, total


def main() -> int:
    megabytes, rounds = int(sys.argv[1]), int(sys.argv[2])
    lib = ctypes.CDLL("libogg.so.0")
    setup(lib)
    rng = random.Random(5)
    source = ctypes.create_string_buffer(rng.randbytes(1 << 20) * 2, 2 << 20)
    sizes, budget = [], megabytes << 20
    while budget > 0:
        sizes.append(min(budget, rng.randint(1024, 31 * 1024)))
        budget -= sizes[-1]
    out = ctypes.create_string_buffer((megabytes + 1) << 20)
    checksum = 0
    for _ in range(rounds):
        length = encode(lib, ctypes.addressof(source), sizes, out)
        count, total = decode(lib, out, length)
        if count != len(sizes) or total != megabytes << 20:
            print(f"decoded {count} packets, {total} bytes", file=sys.stderr)
            return 1
        checksum = (checksum * 31 + length + ord(out[length - 1])) & 0xFFFFFFFF
    print(len(sizes), length, checksum)
    return 0


if __name__ == "__main__":
    sys.exit(main())
