"""The executor's UDP units with a fake worker process (no sockets): one unit per host for all
its UDP ports, merged back as port keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from nornir_portscan import HostStatus, PortState, ScanOptions, ScanRequest, Target
from nornir_portscan.engine import executor as scanner
from nornir_portscan.engine import processes
from nornir_portscan.ports import UDP, udp_key

FAKE = str(Path(__file__).with_name("fake_worker.py"))
U = udp_key


@pytest.fixture(autouse=True)
def fake_worker(monkeypatch):
    monkeypatch.setattr(processes, "WORKER_COMMAND", [FAKE])


def request(hosts: int, ports: tuple[int, ...], **options) -> ScanRequest:
    targets = tuple(Target(f"h{i}", f"127.0.0.{i + 1}") for i in range(hosts))
    return ScanRequest(targets, ports, ScanOptions(**options))


MIXED = (*range(1, 1001), *(U(p) for p in range(1, 301)))


def test_all_udp_ports_of_a_host_are_one_unit_and_tcp_is_chunked_as_before():
    tcp_only = [(u.start, u.ports, u.whole) for u in scanner._Run(
        request(1, tuple(range(1, 1001)), processes=2)).plan()]  # fmt: skip
    run = scanner._Run(request(2, MIXED, processes=2))
    units = list(run.plan())
    assert run.unit_count() == len(units)
    for host_id in (0, 1):
        mine = [u for u in units if u.host_id == host_id]
        tcp = [u for u in mine if not u.udp]
        (udp,) = [u for u in mine if u.udp]
        assert [(u.start, u.ports) for u in tcp] == [(s, p) for s, p, _ in tcp_only]
        assert not any(u.whole for u in mine)
        assert (udp.start, udp.ports) == (1000, tuple(U(p) for p in range(1, 301)))


def test_a_udp_only_host_is_one_whole_unit():
    run = scanner._Run(request(1, tuple(U(p) for p in range(1, 65536)), processes=4))
    (unit,) = run.plan()
    assert (unit.udp, unit.whole, len(unit.ports), run.unit_count()) == (True, True, 65535, 1)


def test_udp_results_come_back_as_port_keys():
    report = scanner.scan(request(3, MIXED, processes=2))
    for host in report.hosts:
        tcp_open = [p for p in range(1, 1001) if p % 7 == 0]
        udp_open = [U(p) for p in range(1, 301) if p % 7 == 0]
        silent = [U(p) for p in range(1, 301) if p % 5 == 0 and p % 7]
        assert host.open_ports == tcp_open + udp_open
        assert [p.key for p in host.ports if p.state is PortState.OPEN_FILTERED] == silent
        assert {p.protocol for p in host.ports if p.key > UDP} == {"udp"}
        assert host.state_of(U(7)) is PortState.OPEN
        assert host.state_of(7) is PortState.OPEN
        assert host.state_of(U(1)) is PortState.CLOSED
        assert host.state_of(U(10)) is PortState.OPEN_FILTERED
        assert host.closed_count == 1000 - len(tcp_open) + 300 - len(udp_open) - len(silent)
        assert host.scanned == MIXED
        assert (host.status, host.rate_limited, host.unscanned) == (HostStatus.UP, False, ())
    assert report.probes_sent == 3 * 1300


def test_rate_limited_is_a_host_fact(monkeypatch):
    monkeypatch.setenv("FAKE_UDP_RATE_LIMITED", "1")
    report = scanner.scan(request(2, (22, U(53)), processes=1))
    assert [h.rate_limited for h in report.hosts] == [True, True]
    tcp = scanner.scan(request(1, (22,), processes=1))
    assert tcp.hosts[0].rate_limited is False


def test_a_udp_host_whose_ports_all_read_open_filtered_gives_no_response():
    # 5, 10, 15: open|filtered in the fake; nothing answered
    report = scanner.scan(request(1, (U(5), U(10), U(15)), processes=1))
    (host,) = report.hosts
    assert host.status is HostStatus.NO_RESPONSE
    assert not host.answered
    assert [p.state for p in host.ports] == [PortState.OPEN_FILTERED] * 3
    # one closed (port-unreach) answer makes it up
    assert scanner.scan(request(1, (U(1), U(5)), processes=1)).hosts[0].status is HostStatus.UP


def test_unscanned_udp_ports_are_keys(monkeypatch):
    monkeypatch.setenv("FAKE_UDP_UNSCANNED", "100")
    report = scanner.scan(request(1, (22, U(7), U(100), U(101)), processes=1))
    (host,) = report.hosts
    assert host.status is HostStatus.TIMED_OUT
    assert host.unscanned == (U(100), U(101))
    assert host.scanned == (22, U(7))
    assert host.error == "host timeout: 2 ports not scanned"


def test_a_udp_unit_that_kills_its_worker_becomes_udp_errors(monkeypatch):
    monkeypatch.setenv("FAKE_DIE_ON_PORT", "53")
    report = scanner.scan(request(1, (22, 80, U(53), U(161)), processes=1))
    (host,) = report.hosts
    assert host.error_ports == [U(53), U(161)]
    assert {(p.protocol, p.reason) for p in host.ports if p.state is PortState.ERROR} == {
        ("udp", "worker-died")
    }
    assert host.closed_count == 2  # TCP 22 and 80 (the fake closes them)
    assert host.status is HostStatus.UP


def test_a_hand_built_request_in_any_order_scans_tcp_first():
    report = scanner.scan(request(1, (U(53), 443, U(7), 22), processes=1))
    (host,) = report.hosts
    assert host.scanned == (443, 22, U(53), U(7))
    assert host.open_ports == [U(7)]


def test_a_worker_with_a_udp_unit_gets_longer_before_it_counts_as_hung(monkeypatch):
    """A rate-limited host's UDP unit can go a gap of 32 s or a worker-wide round of 30 s
    without finishing a port: not a hung worker (the TCP stall limit is 14 s by default)."""
    engine = scanner._Engine()
    lane = engine.add_lane(ScanOptions(), 1)
    tcp_work, udp_work = scanner._Run(request(1, (22, U(53)), processes=1)).plan()
    lost: list[tuple[object, str]] = []
    monkeypatch.setattr(lane, "_lost", lambda worker, reason: lost.append((worker, reason)))

    class Quiet:  # a worker that said nothing since 0.0
        def __init__(self, work: scanner._Work) -> None:
            self.units, self.ready, self.heard = {0: work}, True, 0.0

    tcp, udp = Quiet(tcp_work), Quiet(udp_work)
    lane.workers = [tcp, udp]  # type: ignore[list-item]
    try:
        lane.check_stalls(lane.stall_limit + 1)
        assert lost == [(tcp, "worker-hung")]
        lane.check_stalls(lane.stall_limit + scanner._UDP_STALL_EXTRA - 1)
        assert [w for w, _ in lost] == [tcp, tcp]
        lane.check_stalls(lane.stall_limit + scanner._UDP_STALL_EXTRA + 1)
        assert [w for w, _ in lost] == [tcp, tcp, tcp, udp]
    finally:
        lane.workers = []
        engine.close()
