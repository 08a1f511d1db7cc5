"""Test helpers shared by every test folder: listeners, namespaces, the CLI command."""

from __future__ import annotations

import os
import selectors
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


class Listeners:
    """Listening sockets that accept and close connections on a background thread."""

    def __init__(self) -> None:
        self.socks: list[socket.socket] = []
        self.selector = selectors.DefaultSelector()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def open(self, host: str = "127.0.0.1", port: int = 0) -> int:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(4096)
        sock.setblocking(False)
        self.socks.append(sock)
        self.selector.register(sock, selectors.EVENT_READ)
        return int(sock.getsockname()[1])

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                events = self.selector.select(0.05)
            except (OSError, ValueError):
                continue
            for key, _ in events:
                try:
                    conn, _ = key.fileobj.accept()  # type: ignore[union-attr]
                    conn.close()
                except OSError:
                    pass

    def close(self) -> None:
        self.stop.set()
        self.thread.join(2)
        for sock in self.socks:
            sock.close()


@pytest.fixture
def listeners() -> Iterator[Listeners]:
    """Open real listeners with ``listeners.open(host, port)``; all close at teardown."""
    lst = Listeners()
    yield lst
    lst.close()


def closed_port(host: str = "127.0.0.1") -> int:
    """A port with nothing listening (bound, then released)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.fixture
def netns() -> Iterator[str]:
    """A fresh network namespace with only ``lo`` up; skipped where it cannot be made."""
    if os.geteuid() != 0 or not shutil.which("ip"):
        pytest.skip("network namespaces need root and iproute2 ('ip')")
    name = f"pstest-{uuid.uuid4().hex[:8]}"
    made = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot create a network namespace: {made.stderr.strip()}")
    try:
        subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


def in_netns(ns: str, *cmd: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` inside namespace ``ns``."""
    return subprocess.run(
        ["ip", "netns", "exec", ns, *cmd], capture_output=True, text=True, timeout=120, **kwargs
    )  # type: ignore[call-overload]


def nft(ns: str, ruleset: str) -> None:
    """Load an nftables ruleset inside ``ns``; skip the test when nft is missing."""
    if not shutil.which("nft"):
        pytest.skip("nftables ('nft') is not installed")
    done = subprocess.run(
        ["ip", "netns", "exec", ns, "nft", "-f", "-"], input=ruleset, capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip(f"nft cannot load rules here: {done.stderr.strip()}")


CLI = [sys.executable, "-m", "nornir_portscan"]


@pytest.fixture
def run_cli() -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run the real ``portscan`` command line; returns the finished process."""

    def run(*args: str, timeout: float = 120, **kwargs: object) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*CLI, *args], capture_output=True, text=True, timeout=timeout, **kwargs
        )  # type: ignore[call-overload]

    return run


def listening_ports(address: str) -> set[int]:
    """Ports the kernel says are listening on ``address`` (wildcard binds included): the
    ground truth for scans that cover ports this test did not open itself."""
    import ipaddress

    target = ipaddress.ip_address(address)
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            if state != "0A":  # LISTEN
                continue
            hex_addr, hex_port = local.split(":")
            raw = bytes.fromhex(hex_addr)
            # /proc prints each 32-bit word in host (little-endian) order
            raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
            bound = ipaddress.ip_address(raw)
            if bound.is_unspecified or (bound.version == target.version and bound == target):
                found.add(int(hex_port, 16))
    return found


def wait_for_main_scan(proc: subprocess.Popen[str], limit: float = 30) -> None:
    """Poll until the worker processes of the CLI ``proc`` came and went: its first scan is
    over (a wait or a re-check comes next)."""
    seen, deadline = False, time.monotonic() + limit
    while time.monotonic() < deadline and proc.poll() is None:
        children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True).stdout
        if children:
            seen = True
        elif seen:
            return
        time.sleep(0.02)
    raise AssertionError("the first scan did not finish")


@pytest.fixture
def no_shared_service() -> None:
    """Other tests' Nornir runs leave the process's shared scan service (its loop thread, its
    watcher process) alive for a few seconds: close it, so that a test sees its own only."""
    from nornir_portscan.engine import service

    with service._shared_lock:
        shared, service._shared = service._shared, None
    if shared is not None:
        shared.close()
