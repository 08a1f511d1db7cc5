"""The worker's syscall budget per probe on closed ports, counted with ``strace -c``.

A probe of a closed port costs two connects on a reused socket: the probe's, and the one that
reads its outcome (and readies the socket for the next probe); the sockets are registered with
the epoll set once, not per probe. nmap -sT spends nine per probe (socket, two fcntl, three
setsockopt, connect, getsockopt, close). Counts, not times: they hold on any machine.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PORTS = 4000

SCRIPT = textwrap.dedent(
    f"""
    from gevent.event import Event
    from nornir_portscan.engine.protocol import Unit, UnitDone, WorkerConfig
    from nornir_portscan.engine.prober import Prober

    config = WorkerConfig(concurrency=200, rate=None, host_concurrency=None, min_timeout=0.1,
                          max_timeout=1.0, adaptive=True, retries=1, include_closed=False)
    done = Event()
    results = []

    def send(message):
        if isinstance(message, UnitDone):
            results.append(message)
            done.set()

    prober = Prober(config, send)
    # 127.88.0.1: nothing listens there, every port answers with a RST
    prober.add(Unit(1, 1, "127.88.0.1", tuple(range(20001, 20001 + {PORTS})), None, None, None))
    assert done.wait(30), "the unit did not finish"
    (result,) = results
    assert result.closed_count == {PORTS}, result
    prober.close()
    """
)


def syscalls(output: str) -> dict[str, int]:
    counts = {}
    for line in output.splitlines():
        match = re.match(r"\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)$", line)
        if match:
            counts[match.group(2)] = int(match.group(1))
    return counts


@pytest.mark.skipif(not shutil.which("strace"), reason="strace is not installed")
def test_a_closed_port_costs_two_syscalls_and_no_epoll_ctl(tmp_path: Path) -> None:
    out = tmp_path / "strace.txt"
    subprocess.run(
        ["strace", "-f", "-c", "-o", str(out), sys.executable, "-c", SCRIPT],
        cwd=REPO,
        check=True,
        timeout=60,
        capture_output=True,
    )
    counts = syscalls(out.read_text())
    assert counts.get("connect", 0) >= PORTS  # the count was read: every probe connected
    assert counts.get("connect", 0) <= 2 * PORTS + 200
    assert counts.get("getsockopt", 0) <= 20  # the outcome comes from the second connect
    assert counts.get("epoll_ctl", 0) <= 200 + 20  # once per socket, and the hub's own
    assert counts.get("getpeername", 0) <= 20  # no spurious wake-ups to look into
