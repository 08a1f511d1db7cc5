"""The worker's answers with real sockets: a service that resets right after the handshake is
open, a RST to the SYN is closed, and nothing the local kernel refused becomes a port state."""

from __future__ import annotations

import contextlib
import selectors
import socket
import struct
import threading
from collections.abc import Iterator

import pytest
from test_worker_adversarial import run_harness

from nornir_portscan import HostStatus, PortState, build_job, build_request, run_job, scan

RESET_PORTS = range(7200, 7300)
RESET_HOSTS = [f"127.72.0.{i}" for i in range(1, 21)]
_LINGER_RESET = struct.pack("ii", 1, 0)


class ResettingListeners:
    """Listeners that accept each connection and reset it at once (``SO_LINGER 0``), as an
    overloaded daemon, tcpwrappers or a firewall proxy does. With ``fin_first`` a port shuts
    its side down (FIN) before the reset, so the client may see EPIPE instead of ECONNRESET."""

    def __init__(self) -> None:
        self.selector = selectors.DefaultSelector()
        self.socks: list[socket.socket] = []
        self.accepted = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def open(self, host: str, port: int, *, fin_first: bool) -> None:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(64)
        sock.setblocking(False)
        self.socks.append(sock)
        self.selector.register(sock, selectors.EVENT_READ, fin_first)

    def _serve(self) -> None:
        while not self.stop.is_set():
            for key, _ in self.selector.select(0.05):
                try:
                    conn, _ = key.fileobj.accept()  # type: ignore[union-attr]
                except OSError:
                    continue
                self.accepted += 1
                with contextlib.suppress(OSError):  # the scanner may have reset it already
                    if key.data:
                        conn.shutdown(socket.SHUT_WR)
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
                conn.close()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(2)
        for sock in self.socks:
            sock.close()


@pytest.fixture
def resetting() -> Iterator[dict[str, set[int]]]:
    """Every host of ``RESET_HOSTS`` listens (and resets) on ports 7200-7299 except each tenth
    one, which is closed. Yields the open ports per host."""
    listeners = ResettingListeners()
    opened: dict[str, set[int]] = {}
    try:
        for host in RESET_HOSTS:
            for port in RESET_PORTS:
                if port % 10:
                    listeners.open(host, port, fin_first=port % 2 == 1)
                    opened.setdefault(host, set()).add(port)
    except OSError as exc:
        listeners.close()
        pytest.skip(f"cannot listen on the reset ports: {exc}")
    listeners.thread.start()
    yield opened
    listeners.close()


def test_a_service_that_resets_after_the_handshake_is_open(resetting):
    """2,000 ports on 20 hosts, 1,800 of them accept and reset at once: all open (syn-ack) in
    one probe each, the others closed; no error, no retry storm."""
    request = build_request(RESET_HOSTS, f"{RESET_PORTS[0]}-{RESET_PORTS[-1]}")
    report = scan(request)
    for host in report.hosts:
        assert host.status is HostStatus.UP
        assert {(p.state, p.reason) for p in host.ports} == {(PortState.OPEN, "syn-ack")}
        assert set(host.open_ports) == resetting[host.name]
        assert all(p.attempts == 1 for p in host.ports)
        assert host.error_ports == []
        assert host.closed_count == len(RESET_PORTS) // 10
    assert report.probes_sent == len(RESET_HOSTS) * len(RESET_PORTS)


def test_a_reset_that_lands_before_the_worker_looks_at_the_peer_is_open() -> None:
    """The connect succeeded (the handshake is done: the port is open) and the service reset
    the connection before the worker asked for its peer: open at the first probe, not a local
    error retried until it is ``error ENOTCONN`` (seen once in 2,000 probes of the test above).
    ``getpeername`` is made to wait for the reset, in a worker harness (gevent stays out of
    here)."""
    listeners = ResettingListeners()
    try:
        listeners.open("127.72.1.1", 7300, fin_first=False)
        listeners.open("127.72.1.1", 7301, fin_first=True)
    except OSError as exc:
        listeners.close()
        pytest.skip(f"cannot listen on the reset ports: {exc}")
    listeners.thread.start()
    try:
        spec = {"units": [["127.72.1.1", [7300, 7301]]], "peer_after": 0.2, "limit": 20}
        (unit,) = run_harness(None, spec)["units"]
    finally:
        listeners.close()
    assert unit["ports"] == [[7300, "open", "syn-ack", 1], [7301, "open", "syn-ack", 1]]
    assert unit["probes"] == 2


def test_resets_under_load_stay_open_run_after_run(resetting):
    """Many small concurrent probes per host and several runs: the reset racing the writable
    event gives the same answer every time."""
    request = build_request(
        RESET_HOSTS[:5], f"{RESET_PORTS[0]}-{RESET_PORTS[-1]}", processes=2, concurrency=50
    )
    for _ in range(3):
        report = scan(request)
        states = {(h.name, p.port): p.state for h in report.hosts for p in h.ports}
        assert set(states.values()) == {PortState.OPEN}
        assert len(states) == sum(len(resetting[h]) for h in RESET_HOSTS[:5])
        # A reset is never retried; a SYN that a busy machine's full accept queue dropped is
        # (seen once in a full test run: 501 probes), so a few more than one per port.
        assert 5 * len(RESET_PORTS) <= report.probes_sent <= 5 * len(RESET_PORTS) + 25


def test_an_allowed_open_audit_judges_services_that_reset(resetting):
    """Before, most such ports were errors, so an ``allowed_open`` audit saw no open port to
    object to; now every one it did not allow is a violation."""
    hosts = RESET_HOSTS[:3]
    job = build_job(hosts, f"{RESET_PORTS[0]}-{RESET_PORTS[-1]}", allowed_open="7201")
    audit = run_job(job)
    for index, host in enumerate(audit.report.hosts):
        verdict = audit.verdict(index)
        assert verdict is not None
        assert verdict.compliant is False
        assert [v.port for v in verdict.violations] == sorted(resetting[host.name] - {7201})
        assert {(v.actual, v.reason) for v in verdict.violations} == {("open", "syn-ack")}
    assert audit.violated
