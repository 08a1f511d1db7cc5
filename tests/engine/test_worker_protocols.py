"""A worker process serves TCP and UDP units over its pipes: each protocol's prober gets its
own units, and the UDP one exists only once a UDP unit comes."""

from __future__ import annotations

import os
import select
import socket
import subprocess
import sys
import time
from pathlib import Path

from nornir_portscan.engine.processes import worker_env
from nornir_portscan.engine.protocol import (
    STOP,
    FrameReader,
    Unit,
    UnitDone,
    WorkerConfig,
    WorkerReady,
    frame,
)

REPO = Path(__file__).resolve().parents[2]
CONFIG = WorkerConfig(
    concurrency=50,
    rate=None,
    host_concurrency=None,
    min_timeout=0.1,
    max_timeout=1.0,
    adaptive=True,
    retries=1,
    include_closed=True,
)


def _free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_worker_probes_tcp_and_udp_units_with_their_own_probers() -> None:
    echo = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # answers every datagram
    echo.bind(("127.0.0.1", 0))
    listener = socket.create_server(("127.0.0.1", 0))
    udp_open, tcp_open = echo.getsockname()[1], listener.getsockname()[1]
    udp_closed, tcp_closed = _free_port(socket.SOCK_DGRAM), _free_port(socket.SOCK_STREAM)
    worker = subprocess.Popen(
        [sys.executable, "-m", "nornir_portscan.engine.worker"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=worker_env(),
        cwd=REPO,
    )
    assert worker.stdin is not None
    assert worker.stdout is not None
    try:
        worker.stdin.write(frame(CONFIG))
        worker.stdin.write(frame(Unit(1, 1, "127.0.0.1", (tcp_open, tcp_closed), *[None] * 3)))
        udp = Unit(2, 2, "127.0.0.1", (udp_open, udp_closed), None, None, None, protocol="udp")
        worker.stdin.write(frame(udp))
        worker.stdin.flush()
        reader, done = FrameReader(), {}
        limit = time.monotonic() + 20
        while len(done) < 2 and time.monotonic() < limit:
            readable, _, _ = select.select([worker.stdout, echo], [], [], 0.05)
            if echo in readable:
                _data, peer = echo.recvfrom(2048)
                echo.sendto(b"pong", peer)
            if worker.stdout in readable:
                for message in reader.feed(os.read(worker.stdout.fileno(), 65536)):
                    assert not isinstance(message, WorkerReady) or message.warning is None
                    if isinstance(message, UnitDone):
                        done[message.unit_id] = {p[0]: (p[1], p[2]) for p in message.ports}
        worker.stdin.write(frame(STOP))
        worker.stdin.close()
        assert worker.wait(10) == 0
    finally:
        worker.kill()
        echo.close()
        listener.close()
    assert done == {
        1: {tcp_open: ("open", "syn-ack"), tcp_closed: ("closed", "conn-refused")},
        2: {udp_open: ("open", "udp-response"), udp_closed: ("closed", "port-unreach")},
    }
