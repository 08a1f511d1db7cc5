"""Helpers for the UDP engine tests: run ``udp_driver`` in a fresh interpreter (it imports
gevent), optionally inside a namespace, and UDP servers on loopback."""

from __future__ import annotations

import contextlib
import json
import selectors
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


def config(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "concurrency": 200,
        "rate": None,
        "host_concurrency": None,
        "min_timeout": 0.1,
        "max_timeout": 1.0,
        "adaptive": True,
        "retries": 1,
        "include_closed": True,
    }
    return {**base, **changes}


def drive(
    units: Sequence[tuple[int, str, Sequence[int]]],
    *,
    netns: str | None = None,
    limit: float = 120.0,
    deadline: float | None = None,
    **changes: Any,
) -> dict[str, Any]:
    """Scan ``units`` (host_id, address, ports) with a ``UdpProber``; its output as JSON."""
    spec: dict[str, Any] = {
        "config": config(**changes),
        "units": [[host_id, address, list(ports)] for host_id, address, ports in units],
        "limit": limit,
    }
    if deadline is not None:
        spec["deadline"] = deadline
    command = [sys.executable, "-m", "tests.engine.udp_driver", json.dumps(spec)]
    if netns is not None:
        command = ["ip", "netns", "exec", netns, *command]
    out = subprocess.run(
        command, cwd=REPO, capture_output=True, text=True, timeout=limit + 30, check=True
    )
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def states(unit: dict[str, Any]) -> dict[int, tuple[str, str]]:
    return {port: (state, reason) for port, state, reason, _, _ in unit["ports"]}


class UdpServers:
    """Datagram sockets on loopback: ``echo`` ports answer every datagram (and keep what they
    got), ``mute`` ports are bound and never answer."""

    def __init__(self) -> None:
        self.selector = selectors.DefaultSelector()
        self.socks: list[socket.socket] = []
        self.received: dict[tuple[str, int], list[bytes]] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def bind(self, host: str, port: int, *, echo: bool) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        sock.bind((host, port))
        sock.setblocking(False)
        self.socks.append(sock)
        if echo:
            self.received[(host, port)] = []
            self.selector.register(sock, selectors.EVENT_READ, (host, port))

    def _serve(self) -> None:
        while not self.stop.is_set():
            for key, _ in self.selector.select(0.05):
                sock: socket.socket = key.fileobj  # type: ignore[assignment]
                with contextlib.suppress(OSError):
                    data, peer = sock.recvfrom(65535)
                    self.received[key.data].append(data)
                    sock.sendto(b"reply:" + data[:32], peer)

    def close(self) -> None:
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join(2)
        for sock in self.socks:
            sock.close()


@contextlib.contextmanager
def udp_servers() -> Iterator[UdpServers]:
    servers = UdpServers()
    try:
        yield servers
    finally:
        servers.close()


class Pair:
    """Two namespaces joined by a veth: ``client`` (198.18.252.1) scans ``target``
    (198.18.252.2, and ``extra`` addresses on its loopback, routed through the veth)."""

    def __init__(self, prefix: str, extra: Sequence[str]) -> None:
        self.client = f"{prefix}-c"
        self.target = f"{prefix}-t"
        self.address = "198.18.252.2"
        self.extra = list(extra)
        self.veth = f"{prefix}a"  # the client's end

    def run(self, *command: str, netns: str | None = None, stdin: str | None = None) -> None:
        full = ["ip", "netns", "exec", netns, *command] if netns else list(command)
        subprocess.run(full, input=stdin, text=True, check=True, capture_output=True, timeout=30)

    def nft(self, netns: str, ruleset: str) -> None:
        self.run("nft", "-f", "-", netns=netns, stdin=ruleset)


@contextlib.contextmanager
def namespace_pair(extra: Sequence[str] = ()) -> Iterator[Pair]:
    """Skips the test where namespaces cannot be made. The target keeps the kernel's default
    ICMP rate limit (one error a second per destination, a burst of six)."""
    import os
    import shutil

    import pytest

    if os.geteuid() != 0 or not shutil.which("ip") or not shutil.which("nft"):
        pytest.skip("needs root, ip and nft for network namespaces")
    prefix = f"upt{os.getpid() % 100000}"
    pair = Pair(prefix, extra)
    made: list[str] = []
    try:
        for ns in (pair.client, pair.target):
            pair.run("ip", "netns", "add", ns)
            made.append(ns)
        pair.run(
            "ip",
            "link",
            "add",
            f"{prefix}a",
            "netns",
            pair.client,
            "type",
            "veth",
            "peer",
            "name",
            f"{prefix}b",
            "netns",
            pair.target,
        )
        pair.run("ip", "-n", pair.client, "addr", "add", "198.18.252.1/30", "dev", f"{prefix}a")
        pair.run("ip", "-n", pair.target, "addr", "add", "198.18.252.2/30", "dev", f"{prefix}b")
        for ns, dev in ((pair.client, f"{prefix}a"), (pair.target, f"{prefix}b")):
            pair.run("ip", "-n", ns, "link", "set", "lo", "up")
            pair.run("ip", "-n", ns, "link", "set", dev, "up")
        for address in extra:
            pair.run("ip", "-n", pair.target, "addr", "add", f"{address}/32", "dev", "lo")
            pair.run(
                "ip", "-n", pair.client, "route", "add", f"{address}/32", "via", "198.18.252.2"
            )
    except (subprocess.CalledProcessError, FileNotFoundError) as exc:
        for ns in made:
            subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)
        pytest.skip(f"cannot make network namespaces: {exc}")
    try:
        yield pair
    finally:
        for ns in made:
            subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)
