"""A TCP relay between a private network namespace and this machine's loopback, through a Unix socket.

A test bed's site names its mirror as the QEMU guests see it (``http://10.0.2.2:3142``, this machine's loopback
from inside a guest). A build on this machine reaches it from a private network namespace whose loopback carries
that address: ``listen`` (run inside the namespace) accepts there and hands each connection to a Unix socket,
which ``UnixToTcp`` (a thread here) connects to the real address. Nothing else is reachable from the namespace.
"""

from __future__ import annotations

import socket
import sys
import threading
from pathlib import Path


def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s, how in ((dst, socket.SHUT_WR), (src, socket.SHUT_RD)):
            try:
                s.shutdown(how)
            except OSError:
                pass


def _splice(a: socket.socket, b: socket.socket) -> None:
    """Both directions until both ends closed; then both sockets closed."""
    other = threading.Thread(target=_pump, args=(b, a), daemon=True)
    other.start()
    _pump(a, b)
    other.join()
    a.close()
    b.close()


class UnixToTcp:
    """Accepts on the Unix socket ``path`` and connects each client to ``target`` (host, port); ``close`` stops it."""

    def __init__(self, path: Path, target: tuple[str, int]):
        self.path, self.target = path, target
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(path))
        self.server.listen(64)
        self.thread = threading.Thread(target=self._serve, name=f"relay-{target[0]}:{target[1]}", daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=30)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            threading.Thread(target=_splice, args=(client, upstream), daemon=True).start()

    def close(self) -> None:
        self.server.close()
        self.path.unlink(missing_ok=True)


def listen(address: str, port: int, unix_path: str, ready: str) -> None:
    """Inside the namespace: accept on ``address:port``, relay each connection to ``unix_path``; touch ``ready``."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind((address, port))
    server.listen(64)
    Path(ready).touch()
    while True:
        client, _ = server.accept()
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            upstream.connect(unix_path)
        except OSError:
            client.close()
            upstream.close()
            continue
        threading.Thread(target=_splice, args=(client, upstream), daemon=True).start()


if __name__ == "__main__":
    listen(sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4])
