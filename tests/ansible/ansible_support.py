"""Helpers of the Ansible tests: paths, the demo inventory's listeners, playbook runs."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
PLAYBOOKS = REPO / "playbooks"
DEMO_INVENTORY = PLAYBOOKS / "inventory" / "demo.yml"
BIN = Path(sys.executable).parent
LISTENER = REPO / "tests" / "lab" / "listener.py"

PlaybookRunner = Callable[..., subprocess.CompletedProcess[str]]


def demo_hosts() -> dict[str, tuple[str, list[int]]]:
    """``{inventory name: (address, ports to open)}`` from the demo inventory."""
    hosts: dict[str, tuple[str, list[int]]] = {}

    def walk(group: dict) -> None:
        for name, host in (group.get("hosts") or {}).items():
            hosts[name] = (host["ansible_host"], list(host["demo_listeners"]))
        for child in (group.get("children") or {}).values():
            walk(child)

    walk(yaml.safe_load(DEMO_INVENTORY.read_text())["all"])
    assert all(address.startswith("127.") for address, _ in hosts.values())
    return hosts


UDP_ECHO = """  # argv: READY_FILE ADDRESS ECHO_PORT [SILENT_PORT ...]
import signal, socket, sys
socks = []
for port in map(int, sys.argv[3:]):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((sys.argv[2], port))
    socks.append(sock)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
open(sys.argv[1], "w").write("ready")
import selectors
selector = selectors.DefaultSelector()
for sock in socks[:1]:  # the first answers; the others are bound and never answer
    selector.register(sock, selectors.EVENT_READ)
while True:
    for key, _ in selector.select(1.0):
        data, peer = key.fileobj.recvfrom(65535)
        key.fileobj.sendto(b"reply", peer)
"""


class NetnsListeners:
    """Listening sockets inside a network namespace, held by ``tests/lab/listener.py`` processes.

    The playbooks' fixed ports (2222, 8080, ...) on 127.0.0.11-13 cannot clash with anything
    else on the machine there, and a resolver finds no server to ask.
    """

    def __init__(self, netns: str, workdir: Path) -> None:
        self.netns = netns
        self.workdir = workdir
        self.procs: list[subprocess.Popen[bytes]] = []
        self.threads: list[threading.Thread] = []
        self.closing = threading.Event()

    def open(self, binds: list[tuple[str, int]]) -> None:
        assert all(address.startswith("127.") for address, _ in binds)
        n = len(self.procs)
        config = self.workdir / f"listener{n}.json"
        ready = self.workdir / f"listener{n}.ready"
        config.write_text(json.dumps({"binds": binds, "backlog": 128, "ready": str(ready)}))
        with (self.workdir / f"listener{n}.out").open("w") as out:
            self.procs.append(subprocess.Popen(
                ["ip", "netns", "exec", self.netns, sys.executable, str(LISTENER), str(config)],
                stdout=out))
        deadline = time.monotonic() + 10
        while not ready.exists():
            assert self.procs[-1].poll() is None, "the listener process failed"
            assert time.monotonic() < deadline, "the listener process did not start"
            time.sleep(0.02)

    def open_udp(self, address: str, echo: int, *mute: int) -> None:
        """A UDP echo on ``address:echo`` (and sockets that never answer on ``mute``), ended
        with the lab."""
        assert address.startswith("127.")
        ready = self.workdir / f"udp{len(self.procs)}.ready"
        self.procs.append(subprocess.Popen(
            ["ip", "netns", "exec", self.netns, sys.executable, "-c", UDP_ECHO, str(ready),
             address, str(echo), *map(str, mute)]))
        deadline = time.monotonic() + 10
        while not ready.exists():
            assert self.procs[-1].poll() is None, "the UDP echo failed"
            assert time.monotonic() < deadline, "the UDP echo did not start"
            time.sleep(0.02)

    def open_when(self, path: Path, binds: list[tuple[str, int]], delay: float) -> None:
        """Open listeners ``delay`` seconds after ``path`` appears (a step of a playbook wrote
        it: a service that comes up after that step), unless the lab closes first."""

        def wait_then_open() -> None:
            while not path.exists():
                if self.closing.wait(0.02):
                    return
            if not self.closing.wait(delay):
                self.open(binds)

        thread = threading.Thread(target=wait_then_open)
        thread.start()
        self.threads.append(thread)

    def close(self) -> None:
        self.closing.set()
        for thread in self.threads:
            thread.join()
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            proc.wait(timeout=10)

    def accepted(self) -> int:
        """Connections the listeners accepted (they say so when they end): closes the lab."""
        self.close()
        total = 0
        for n in range(len(self.procs)):
            line = (self.workdir / f"listener{n}.out").read_text()
            total += int(line.split("accepted ")[1].split()[0])
        return total


def demo_binds(skip: Iterable[tuple[str, int]] = ()) -> list[tuple[str, int]]:
    """The demo inventory's ``(address, port)`` listeners, less the ``(host, port)`` in skip."""
    skipped = set(skip)
    return [(address, port) for name, (address, ports) in demo_hosts().items()
            for port in ports if (name, port) not in skipped]
