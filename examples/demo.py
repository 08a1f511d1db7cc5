"""`make demo`: start a demo target on loopback and scan it through every front door.

The demo target is a handful of real listeners on 127.0.0.11-13 (see ``DEMO_HOSTS``); the scans
are the `portscan` command line, the Ansible playbook ``playbooks/scan.yml`` and the Nornir
example ``examples/nornir/scan.py``, each run as a user would run it.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from support import Listeners  # noqa: E402 - the same real listeners the tests use

# name -> (address, open ports); every other port of these addresses is closed.
DEMO_HOSTS = {
    "web1": ("127.0.0.11", [2222, 8080, 8443]),
    "web2": ("127.0.0.12", [2222, 8080]),
    "db1": ("127.0.0.13", [2222, 15432]),
}
DEMO_PORTS = "2222,8080,8443,15432,9000-9010"
# a UDP service on web1 that answers every datagram (open); 15354 has none (closed)
DEMO_UDP = ("127.0.0.11", 15353)
DEMO_UDP_PORTS = "15353,15354"


def start_demo_target() -> Listeners:
    """Open the demo listeners; they accept and close connections until closed."""
    listeners = Listeners()
    for address, ports in DEMO_HOSTS.values():
        for port in ports:
            listeners.open(address, port)
    return listeners


def start_udp_echo() -> socket.socket:
    """A UDP service on ``DEMO_UDP`` that echoes every datagram, until its socket is closed."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(DEMO_UDP)

    def serve() -> None:
        while True:
            try:
                data, peer = sock.recvfrom(2048)
                sock.sendto(data or b"\0", peer)
            except OSError:  # closed
                return

    threading.Thread(target=serve, daemon=True).start()
    return sock


def step(title: str, cmd: list[str]) -> int:
    print(f"\n=== {title}\n$ {' '.join(cmd)}", flush=True)
    return subprocess.run(cmd, cwd=REPO, env=os.environ).returncode


def main() -> int:
    listeners = start_demo_target()
    udp = start_udp_echo()
    bindir = Path(sys.executable).parent
    failures = 0
    try:
        print(
            "demo target: "
            + "; ".join(f"{name} {addr} open {ports}" for name, (addr, ports) in DEMO_HOSTS.items())
        )
        failures += (
            step(
                "the portscan command line",
                [str(bindir / "portscan"), "-p", DEMO_PORTS, "127.0.0.11-13", "--no-progress"],
            )
            != 0
        )
        failures += (
            step(
                "UDP through the command line (-sU: the ports are UDP)",
                [
                    str(bindir / "portscan"),
                    "-sU",
                    "-p",
                    DEMO_UDP_PORTS,
                    DEMO_UDP[0],
                    "--no-progress",
                ],
            )
            != 0
        )
        playbook = REPO / "playbooks" / "scan.yml"
        if playbook.exists() and shutil.which("ansible-playbook", path=str(bindir)):
            failures += (
                step(
                    "the Ansible module (playbooks/scan.yml)",
                    [
                        str(bindir / "ansible-playbook"),
                        "-i",
                        "playbooks/inventory/demo.yml",
                        str(playbook),
                        "-e",
                        f"ansible_python_interpreter={sys.executable}",
                    ],
                )
                != 0
            )
        example = REPO / "examples" / "nornir" / "scan.py"
        if example.exists():
            # The Nornir example brings its own listeners (its inventory shows inheritance).
            failures += (
                step(
                    "the Nornir task (examples/nornir/scan.py --demo)",
                    [sys.executable, str(example), "--demo"],
                )
                != 0
            )
    finally:
        listeners.close()
        udp.close()
    print("\ndemo finished" + (f" with {failures} failing step(s)" if failures else ""))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
