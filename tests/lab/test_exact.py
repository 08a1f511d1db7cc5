"""exact.py on UDP: port keys in reports and nmap's XML, wrong states counted by kind, folded
``<extraports>`` given the fewest mismatches their counts allow. Pure: no network."""

from __future__ import annotations

from pathlib import Path

from tests.lab.exact import (
    nmap_mismatches,
    nmap_scanned_ports,
    nmap_states,
    report_mismatches,
    report_states,
    wrong_states,
)
from tests.lab.udp_lab import ground_truth

TRUTH = ground_truth("x", 1)  # 198.18.160.1: 53 open, 137 138 500 dropped, 5060 rejected
HOST = "198.18.160.1"
PORTS = "U:9,53,137,5060"

XML = """<?xml version="1.0"?>
<nmaprun><scaninfo type="udp" protocol="udp" numservices="4" services="9,53,137,5060"/>
<host><address addr="198.18.160.1" addrtype="ipv4"/><ports>
<extraports state="open|filtered" count="2"/>
<port protocol="udp" portid="53"><state state="open" reason="udp-response"/></port>
<port protocol="udp" portid="5060"><state state="filtered" reason="admin-prohibited"/></port>
</ports></host></nmaprun>
"""


def _report(ports: list[dict[str, object]], closed: int) -> dict[str, object]:
    host = {"address": HOST, "status": "up", "scanned_ports": PORTS, "ports": ports,
            "closed_count": 0, "udp_closed_count": closed, "error_ports": [],
            "udp_error_ports": []}  # fmt: skip
    return {"hosts": [host]}


def test_a_udp_report_is_read_by_port_key() -> None:
    report = _report(
        [{"port": 53, "protocol": "udp", "state": "open", "reason": "udp-response"},
         {"port": 137, "protocol": "udp", "state": "open|filtered", "reason": "no-response"},
         {"port": 5060, "protocol": "udp", "state": "filtered", "reason": "admin-prohibited"}],
        closed=1,
    )  # fmt: skip
    assert report_mismatches(TRUTH, report, [HOST], PORTS) == []
    assert wrong_states(TRUTH, report_states(report), [HOST], PORTS) == {}


def test_wrong_states_count_by_expected_and_reported_state() -> None:
    report = _report(
        [{"port": 9, "protocol": "udp", "state": "open|filtered", "reason": "no-response"},
         {"port": 53, "protocol": "udp", "state": "open", "reason": "udp-response"}],
        closed=2,
    )  # fmt: skip
    assert wrong_states(TRUTH, report_states(report), [HOST], PORTS) == {
        "closed as open|filtered": 1,
        "open|filtered as closed": 1,
        "filtered as closed": 1,
    }
    assert report_mismatches(TRUTH, report, [HOST], PORTS)[0] == (
        "198.18.160.1:9/udp open|filtered/no-response, expected closed/port-unreach"
    )


def test_nmap_folds_count_the_fewest_mismatches(tmp_path: Path) -> None:
    xml = tmp_path / "scan.xml"
    xml.write_text(XML)  # 9 (closed) and 137 (dropped) folded as two open|filtered
    assert sorted(nmap_scanned_ports(xml)) == [1_000_009, 1_000_053, 1_000_137, 1_005_060]
    assert wrong_states(TRUTH, nmap_states(TRUTH, xml), [HOST], PORTS) == {
        "closed as open|filtered": 1
    }
    assert nmap_mismatches(TRUTH, xml, [HOST]) == [
        "198.18.160.1: nmap folded {'open|filtered': 2}, expected {'closed': 1, 'open|filtered': 1}"
    ]
