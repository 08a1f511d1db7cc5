"""The executor's scheduling with a fake worker process (no sockets)."""

from __future__ import annotations

from pathlib import Path

import pytest

from nornir_portscan import HostStatus, PortState, ScanOptions, ScanRequest, Target
from nornir_portscan.engine import executor as scanner
from nornir_portscan.engine import processes

FAKE = str(Path(__file__).with_name("fake_worker.py"))


@pytest.fixture(autouse=True)
def fake_worker(monkeypatch):
    monkeypatch.setattr(processes, "WORKER_COMMAND", [FAKE])


def request(hosts: int, ports: range, **options) -> ScanRequest:
    targets = tuple(Target(f"h{i}", f"127.0.0.{i + 1}") for i in range(hosts))
    return ScanRequest(targets, tuple(ports), ScanOptions(**options))


def test_every_unit_of_every_host_is_merged_in_order():
    report = scanner.scan(request(40, range(1, 1001), processes=2))
    assert [h.name for h in report.hosts] == [f"h{i}" for i in range(40)]
    for host in report.hosts:
        assert host.open_ports == [p for p in range(1, 1001) if p % 7 == 0]
        assert host.closed_count == 1000 - len(host.open_ports)
        assert host.status is HostStatus.UP
    assert report.probes_sent == 40 * 1000


def test_a_big_host_is_split_over_all_workers():
    run = scanner._Run(request(1, range(1, 65536), processes=4))
    units = list(run.plan())
    assert len(units) >= 16
    assert sum(len(u.ports) for u in units) == 65535
    assert run.unit_count() == len(units)


def test_unresolved_targets_are_reported_without_workers():
    req = ScanRequest(
        (Target("nowhere.invalid", None, error="Name or service not known"),), (80,), ScanOptions()
    )
    report = scanner.scan(req)
    (host,) = report.hosts
    assert (host.status, host.error, report.probes_sent) == (
        HostStatus.UNRESOLVED,
        "Name or service not known",
        0,
    )


def test_a_unit_that_kills_its_worker_once_is_rerun(monkeypatch, tmp_path):
    monkeypatch.setenv("FAKE_DIE_ON_PORT", "700")
    monkeypatch.setenv("FAKE_DIE_ONCE", str(tmp_path / "died"))
    report = scanner.scan(request(3, range(1, 1001), processes=2))
    assert (tmp_path / "died").exists()
    for host in report.hosts:
        assert host.error_ports == []
        assert host.open_ports == [p for p in range(1, 1001) if p % 7 == 0]


def test_a_unit_that_always_kills_its_worker_becomes_errors_not_states(monkeypatch):
    monkeypatch.setenv("FAKE_DIE_ON_PORT", "5")
    report = scanner.scan(request(1, range(1, 301), processes=2))
    (host,) = report.hosts
    # Units hold 256 ports at least: the first one always dies, the second one is fine.
    assert host.error_ports == list(range(1, 257))
    assert {p.reason for p in host.ports if p.state is PortState.ERROR} == {"worker-died"}
    assert host.open_ports == [p for p in range(257, 301) if p % 7 == 0]
    assert host.closed_count == 44 - len(host.open_ports)
    assert host.status is HostStatus.UP


def test_only_errors_make_an_error_host(monkeypatch):
    monkeypatch.setenv("FAKE_DIE_ON_PORT", "5")
    report = scanner.scan(request(1, range(1, 101), processes=1))
    (host,) = report.hosts
    assert (host.error_ports, host.status) == (list(range(1, 101)), HostStatus.ERROR)
