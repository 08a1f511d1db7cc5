"""The UDP prober against the UDP lab's real daemons (dnsmasq, snmpd, chronyd), dropped and
rejected ports and closed ports behind each host's own ICMP rate limit: exact."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.engine.udp_helpers import drive, states
from tests.lab.lab import LabUnavailableError
from tests.lab.udp_lab import UdpLab, ground_truth, host_ports, running_udp_lab

# nmap's 20 most frequent UDP ports (nmap-services), and 5060 for the reject
TOP20 = [53, 67, 68, 69, 123, 135, 137, 138, 139, 161, 162, 445, 500, 514, 520, 631, 1434,
         1900, 4500, 49152, 5060]  # fmt: skip


@pytest.fixture(scope="module")
def udp_lab() -> Iterator[UdpLab]:
    prefix = os.environ.get("NPL_PREFIX", "npl") + "u"
    try:
        with running_udp_lab(prefix, hosts=6) as lab:
            yield lab
    except LabUnavailableError as exc:
        pytest.skip(str(exc))


def test_ground_truth_names_every_special_port() -> None:
    truth = ground_truth("x", 3)
    assert truth["hosts"]["198.18.160.1"]["ports"] == {
        "53": {"state": "open", "reason": "udp-response"},
        "137": {"state": "open|filtered", "reason": "no-response"},
        "138": {"state": "open|filtered", "reason": "no-response"},
        "500": {"state": "open|filtered", "reason": "no-response"},
        "5060": {"state": "filtered", "reason": "admin-prohibited"},
    }
    assert host_ports(1)[161] == host_ports(2)[123] == {"state": "open", "reason": "udp-response"}
    assert truth["hosts"]["198.18.160.3"]["default"] == {
        "state": "closed",
        "reason": "port-unreach",
    }


@pytest.mark.netns
@pytest.mark.slow
def test_top_ports_of_every_host_are_exact(udp_lab: UdpLab) -> None:
    units = [(i, host, TOP20) for i, host in enumerate(udp_lab.hosts)]
    result = drive(units, netns=udp_lab.client_ns)
    for host, unit in zip(udp_lab.hosts, result["units"], strict=True):
        assert states(unit) == {port: udp_lab.expected(host, port) for port in TOP20}, host
        # 15 closed ports, 6 ICMP errors in the burst: the rest waited for the rate limit
        assert unit["rate_limited"], host


@pytest.mark.netns
@pytest.mark.slow
def test_every_service_answers_its_payload(udp_lab: UdpLab) -> None:
    units = [(i, host, [53, 123, 161]) for i, host in enumerate(udp_lab.hosts)]
    result = drive(units, netns=udp_lab.client_ns)
    for host, unit in zip(udp_lab.hosts, result["units"], strict=True):
        opened = {port for port, (state, _) in states(unit).items() if state == "open"}
        assert opened == {p for p in (53, 123, 161) if udp_lab.expected(host, p)[0] == "open"}
