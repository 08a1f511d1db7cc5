"""The UDP prober's answers with real sockets on loopback: a reply is open, nothing bound is
closed (the kernel's ICMP port-unreachable; loopback has no ICMP rate limit, measured: 900 of
900 probes in 0.5 s answered), a bound socket that never answers is open|filtered."""

from __future__ import annotations

import contextlib
import socket
import threading

import pytest

from nornir_portscan.engine.udp_payloads import PAYLOADS
from tests.engine.udp_helpers import drive, states, udp_servers

HOST = "127.91.0.1"


def test_echo_is_open_nothing_bound_is_closed_a_mute_socket_is_open_filtered() -> None:
    with udp_servers() as servers:
        try:
            for port in (47001, 47002):
                servers.bind(HOST, port, echo=True)
            servers.bind(HOST, 47003, echo=False)
        except OSError as exc:
            pytest.skip(f"cannot bind the UDP test ports: {exc}")
        servers.thread.start()
        closed = list(range(47010, 47210))
        result = drive([(0, HOST, [47001, 47002, 47003, *closed])])
    (unit,) = result["units"]
    found = states(unit)
    assert found.pop(47001) == ("open", "udp-response")
    assert found.pop(47002) == ("open", "udp-response")
    assert found.pop(47003) == ("open|filtered", "no-response")
    assert found == dict.fromkeys(closed, ("closed", "port-unreach"))
    assert unit["unscanned"] == []
    assert result["progress"] == 203
    assert not unit["rate_limited"]
    attempts = {port: tried for port, _, _, _, tried in unit["ports"]}
    assert attempts[47003] == 3  # the first, unclean, and 1 + retries clean silences


def test_closed_ports_are_counted_not_listed_unless_asked() -> None:
    result = drive([(0, HOST, range(47300, 47400))], include_closed=False)
    (unit,) = result["units"]
    assert unit["ports"] == []
    assert unit["closed"] == 100
    assert unit["probes"] == 100


def test_ipv6_loopback() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    with udp_servers() as servers:
        try:
            servers.bind("::1", 47401, echo=True)
        except OSError as exc:
            pytest.skip(f"cannot bind ::1: {exc}")
        servers.thread.start()
        (unit,) = drive([(0, "::1", [47401, 47402])])["units"]
    assert states(unit) == {
        47401: ("open", "udp-response"),
        47402: ("closed", "port-unreach"),
    }


@pytest.mark.parametrize("port", [123, 161, 1900])
def test_a_service_port_gets_its_payload(port: int) -> None:
    with udp_servers() as servers:
        try:
            servers.bind(HOST, port, echo=True)
        except OSError as exc:
            pytest.skip(f"cannot bind {HOST}:{port}: {exc}")
        servers.thread.start()
        (unit,) = drive([(0, HOST, [port])])["units"]
        assert servers.received[(HOST, port)] == [PAYLOADS[port]]
    assert states(unit) == {port: ("open", "udp-response")}


def test_many_hosts_at_once() -> None:
    hosts = [f"127.91.1.{i}" for i in range(1, 33)]
    result = drive([(i, h, range(47500, 47550)) for i, h in enumerate(hosts)], concurrency=64)
    assert [u["closed"] for u in result["units"]] == [50] * 32
    assert result["progress"] == 32 * 50


def test_a_passed_host_timeout_scans_nothing() -> None:
    (unit,) = drive([(0, HOST, range(47600, 47610))], deadline=0.0)["units"]
    assert unit["ports"] == []
    assert unit["unscanned"] == list(range(47600, 47610))
    assert unit["probes"] == 0


def test_tftp_answers_from_another_port_and_is_open() -> None:
    try:
        server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        server.bind((HOST, 69))
    except OSError as exc:
        pytest.skip(f"cannot bind {HOST}:69: {exc}")
    replier = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    replier.bind((HOST, 0))  # the server's new transfer id

    def serve() -> None:
        server.settimeout(10)
        with contextlib.suppress(OSError):
            while True:
                data, peer = server.recvfrom(512)
                received.append(data)
                replier.sendto(b"\x00\x05\x00\x01File not found\x00", peer)  # ERROR 1

    received: list[bytes] = []
    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        (unit,) = drive([(0, HOST, [69])])["units"]
    finally:
        server.close()
        replier.close()
        thread.join(2)
    assert received[0] == PAYLOADS[69]
    assert states(unit) == {69: ("open", "udp-response")}


def test_a_closed_tftp_port_is_closed_on_its_unconnected_socket() -> None:
    (unit,) = drive([(0, "127.91.0.3", [69])])["units"]
    assert states(unit) == {69: ("closed", "port-unreach")}
