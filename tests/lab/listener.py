"""The lab's real listeners: one process in the targets namespace holding every listening socket.

Run as a script (``python listener.py CONFIG.json``), not imported: it must not depend on the
package. CONFIG holds ``{"binds": [[address, port], ...], "backlog": N, "ready": PATH}``. Each
connection is accepted at once and closed, so the accept queue never holds more than a burst.
When every socket is bound it writes its pid to ``ready``; SIGTERM ends it.
"""

from __future__ import annotations

import json
import resource
import selectors
import signal
import socket
import sys
from pathlib import Path

IPV6_FREEBIND = 78


def _bind(address: str, port: int, backlog: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        # The lab's addresses live in a "local" route, not on an interface. IPv4 binds such an
        # address as it is; IPv6 only checks interface addresses, so it needs IPV6_FREEBIND.
        sock.setsockopt(socket.IPPROTO_IPV6, IPV6_FREEBIND, 1)
    sock.bind((address, port))
    sock.listen(backlog)
    sock.setblocking(False)
    return sock


def main(argv: list[str]) -> int:
    config = json.loads(Path(argv[1]).read_text())
    binds = [(str(a), int(p)) for a, p in config["binds"]]
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = len(binds) + 4096
    if hard != resource.RLIM_INFINITY and hard < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))  # root may raise the hard limit
    else:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))

    selector = selectors.DefaultSelector()
    for address, port in binds:
        selector.register(_bind(address, port, int(config["backlog"])), selectors.EVENT_READ)

    running = True

    def stop(signum: int, frame: object) -> None:
        nonlocal running
        running = False

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    Path(config["ready"]).write_text(f"{__import__('os').getpid()}\n")
    accepted = 0
    while running:
        for key, _ in selector.select(timeout=1.0):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            while True:
                try:
                    conn, _ = sock.accept()
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    break  # ECONNABORTED and the like: the peer is gone already
                conn.close()
                accepted += 1
    print(f"listener: accepted {accepted} connections", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
