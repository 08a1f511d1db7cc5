import json

import jsonschema

from nornir_portscan import HostResult, HostStatus, PortResult, PortState, ScanOptions, ScanReport
from nornir_portscan.reports.data import (
    host_entry,
    render_table,
    report_schema,
    report_to_dict,
    report_to_json,
)

HOSTS = (
    HostResult(
        "web1",
        "127.0.0.11",
        HostStatus.UP,
        (
            PortResult(22, PortState.OPEN, "syn-ack", 0.05, 1),
            PortResult(80, PortState.OPEN, "syn-ack", 0.04, 1),
            PortResult(81, PortState.OPEN, "syn-ack", 0.04, 1),
            PortResult(82, PortState.OPEN, "syn-ack", 0.04, 1),
            PortResult(444, PortState.FILTERED, "admin-prohibited", 0.2, 1),
        ),
        995,
        scanned=tuple(range(1, 1001)),
    ),
    HostResult("ghost.invalid", None, HostStatus.UNRESOLVED, error="Name or service not known"),
)
REPORT = ScanReport(HOSTS, ScanOptions(), 1_700_000_000.0, 1_700_000_002.0, 1000)


def test_host_entry_shape():
    assert host_entry(REPORT, 0) == {
        "name": "web1",
        "address": "127.0.0.11",
        "vantage": None,
        "status": "up",
        "up": True,
        "open_ports": [22, 80, 81, 82],
        "filtered_ports": [444],
        "closed_count": 995,
        "error_ports": [],
        "error": None,
        "scanned_ports": "1-1000",
        "unscanned_ports": "",
        "passed": True,
        "failure": "",
        "ports": [
            {
                "port": 22,
                "protocol": "tcp",
                "state": "open",
                "reason": "syn-ack",
                "rtt_ms": 0.05,
                "attempts": 1,
            },
            {
                "port": 80,
                "protocol": "tcp",
                "state": "open",
                "reason": "syn-ack",
                "rtt_ms": 0.04,
                "attempts": 1,
            },
            {
                "port": 81,
                "protocol": "tcp",
                "state": "open",
                "reason": "syn-ack",
                "rtt_ms": 0.04,
                "attempts": 1,
            },
            {
                "port": 82,
                "protocol": "tcp",
                "state": "open",
                "reason": "syn-ack",
                "rtt_ms": 0.04,
                "attempts": 1,
            },
            {
                "port": 444,
                "protocol": "tcp",
                "state": "filtered",
                "reason": "admin-prohibited",
                "rtt_ms": 0.2,
                "attempts": 1,
            },
        ],
    }


def test_report_matches_the_shipped_schema():
    data = json.loads(report_to_json(REPORT))
    jsonschema.validate(data, report_schema())
    assert data["version"] == "1.0"
    assert (data["duration"], data["probes_sent"], data["rate"]) == (2.0, 1000, 500.0)
    assert data["started"] == "2023-11-14T22:13:20.000+00:00"
    assert data["summary"]["up"] == 1
    assert data["summary"]["unresolved"] == 1
    assert data == report_to_dict(REPORT)


def test_totals_alone_are_the_report_without_its_hosts():
    whole = report_to_dict(REPORT)
    del whole["hosts"]
    assert report_to_dict(REPORT, hosts=False) == whole


def test_table_is_readable():
    lines = render_table(REPORT).splitlines()
    assert lines[0].split() == ["HOST", "ADDRESS", "STATUS", "OPEN", "FILTERED", "CLOSED"]
    assert lines[1].split() == ["web1", "127.0.0.11", "up", "22,80-82", "444", "995"]
    assert lines[2].split()[:3] == ["ghost.invalid", "-", "unresolved"]
    assert lines[-1].startswith("2 hosts (1 up, 1 unresolved, 0 timed out), 4 open, 1 filtered")
