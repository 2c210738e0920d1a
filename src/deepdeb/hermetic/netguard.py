"""Run a command with a logging, refusing HTTP proxy and DNS stub in front of it.

This file runs *inside* the build sandbox, where the network namespace has only loopback.
It must stay standalone (standard library only): deepdeb copies it into the sandbox and
runs it with the system Python, so that nothing of the host's Python setup is needed there.

Every attempt is written as one JSON line to a descriptor deepdeb opened on a file of its
own: ``{"kind": "dns"|"http"|"connect", "host": ..., "port": ..., "url": ...}``. The
command (the build, below the drop to the unprivileged user) does not inherit it.
Usage: ``python3 netguard.py --attempts-fd N -- COMMAND...``
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import socketserver
import struct
import subprocess
import sys
import threading
from urllib.parse import urlsplit

_lock = threading.Lock()
_log_fd = -1


def _record(**attempt: object) -> None:
    line = (json.dumps(attempt, sort_keys=True) + "\n").encode()
    with _lock:
        os.write(_log_fd, line)


class _ProxyHandler(socketserver.StreamRequestHandler):
    """Answers every proxy request with 403 after writing down what was asked for."""

    def handle(self) -> None:
        try:
            request = self.rfile.readline(8192).decode("latin-1").strip()
        except OSError:
            return
        parts = request.split()
        if len(parts) < 2:
            return
        method, target = parts[0].upper(), parts[1]
        if method == "CONNECT":
            host, _, port = target.rpartition(":")
            try:
                number = int(port or 443)
            except ValueError:
                number = 0
            _record(kind="connect", host=host.strip("[]"), port=number, url=None)
        else:
            url = urlsplit(target)
            default = 443 if url.scheme == "https" else 80
            try:
                number = url.port or default
            except ValueError:
                number = default
            _record(kind="http", host=url.hostname or "", port=number, url=target)
        body = b"deepdeb: builds have no network access\n"
        self.wfile.write(
            b"HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nConnection: close\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )


class _Proxy(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def _dns_name(packet: bytes) -> tuple[str, int]:
    """The first question's name and the offset just after the question."""
    labels, offset = [], 12
    while offset < len(packet) and packet[offset]:
        length = packet[offset]
        labels.append(packet[offset + 1 : offset + 1 + length].decode("ascii", "replace"))
        offset += 1 + length
    return ".".join(labels), offset + 5


def _serve_dns(sock: socket.socket) -> None:
    """Answer every query NXDOMAIN, recording the name (every resolver gives up at once)."""
    while True:
        try:
            packet, peer = sock.recvfrom(4096)
        except OSError:
            return
        if len(packet) < 12:
            continue
        name, end = _dns_name(packet)
        _record(kind="dns", host=name, port=53, url=None)
        (ident,) = struct.unpack("!H", packet[:2])
        header = struct.pack("!HHHHHH", ident, 0x8183, 1, 0, 0, 0)  # response, NXDOMAIN
        sock.sendto(header + packet[12:end], peer)


# System calls a build has no business making: new user namespaces (kernel attack surface;
# the mounts they could touch are locked anyway), kernel keyrings, BPF, perf, userfaultfd,
# module loading, mounting, swap and reboot. They fail with EPERM, as for a user without
# the privilege. clone3 cannot be inspected: it answers ENOSYS, and libc falls back to
# clone, whose flags can.
_DENIED = (
    "keyctl", "add_key", "request_key", "bpf", "perf_event_open", "userfaultfd",
    "init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load",
    "mount", "umount2", "pivot_root", "swapon", "swapoff", "reboot", "setns",
    "open_by_handle_at", "name_to_handle_at", "move_mount", "fsopen", "fsmount",
    "open_tree",
)  # fmt: skip
_CLONE_NEWUSER = 0x10000000


def _seccomp() -> str:
    """Install the filter (inherited by the build); says what happened, for the log."""
    try:
        import errno

        import seccomp  # python3-seccomp, Debian's binding of libseccomp
    except ImportError:
        return "netguard: python3-seccomp is not installed: no system call filter"
    f = seccomp.SyscallFilter(seccomp.ALLOW)
    for name in _DENIED:  # one unknown to this kernel or libseccomp: nothing to deny
        with contextlib.suppress(RuntimeError, ValueError, OSError):
            f.add_rule(seccomp.ERRNO(errno.EPERM), name)
    flags = seccomp.Arg(0, seccomp.MASKED_EQ, _CLONE_NEWUSER, _CLONE_NEWUSER)
    f.add_rule(seccomp.ERRNO(errno.EPERM), "unshare", flags)
    f.add_rule(seccomp.ERRNO(errno.EPERM), "clone", flags)
    with contextlib.suppress(RuntimeError, ValueError, OSError):
        f.add_rule(seccomp.ERRNO(errno.ENOSYS), "clone3")
    f.load()
    return ""


def main(argv: list[str]) -> int:
    """Start the proxy and DNS stub, point the proxy variables at them, install the system
    call filter and run the command; its exit status is returned (2 for bad usage)."""
    global _log_fd
    if len(argv) < 4 or argv[0] != "--attempts-fd" or argv[2] != "--":
        print("usage: netguard.py --attempts-fd N -- COMMAND...", file=sys.stderr)
        return 2
    _log_fd, command = int(argv[1]), argv[3:]
    os.set_inheritable(_log_fd, False)  # the build never gets it
    proxy = _Proxy(("127.0.0.1", 0), _ProxyHandler)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    dns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        dns.bind(("127.0.0.1", 53))
        threading.Thread(target=_serve_dns, args=(dns,), daemon=True).start()
    except OSError as e:  # without the privilege to bind port 53 lookups fail unrecorded
        print(f"netguard: no DNS stub ({e})", file=sys.stderr)
    url = f"http://127.0.0.1:{proxy.server_address[1]}"
    env = dict(os.environ)
    for name in (
        "http_proxy",
        "https_proxy",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ftp_proxy",
        "FTP_PROXY",
        "all_proxy",
        "ALL_PROXY",
    ):
        env[name] = url
    # Test suites may talk to servers of their own on loopback; that is not the network.
    env["no_proxy"] = env["NO_PROXY"] = "localhost,127.0.0.1,::1"
    note = _seccomp()
    if note:
        print(note, file=sys.stderr)
    return subprocess.call(command, env=env)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
