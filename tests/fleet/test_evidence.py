"""A shard's report is the scan's JSON report plus its ``shard`` section; ``where_ran`` never
looks a name up."""

from __future__ import annotations

import json
import socket
from pathlib import Path

from nornir_portscan.audit.gates import Audit
from nornir_portscan.fleet import Scanner, build_plan, iter_shard_json, shard_section, where_ran
from nornir_portscan.fleet.plan import FleetTarget
from nornir_portscan.models import HostResult, HostStatus, ScanOptions, ScanReport
from nornir_portscan.reports.data import report_to_dict


def test_the_shard_section_comes_before_the_hosts_and_nothing_else_changes():
    host = HostResult("127.0.0.1", "127.0.0.1", HostStatus.UP, (), 1, None, (22,))
    audit = Audit(ScanReport((host,), ScanOptions(), 1.0, 2.0, 1))
    plan = build_plan([Scanner("a")], [FleetTarget("127.0.0.1", "127.0.0.1")], "22")
    section = shard_section(plan, plan.shard("a"), {"host": "m"})
    data = json.loads("".join(iter_shard_json(audit, section)))
    assert list(data)[-2:] == ["shard", "hosts"]
    assert data == {**report_to_dict(audit), "shard": section}
    assert section["hosts"] == 1
    assert section["plan"]["hash"] == plan.hash


def test_where_ran_looks_up_no_name(monkeypatch):
    """Only address literals are connected to: a name would be resolved by the C library,
    and a lookup may leave the machine."""
    asked = []

    class Recording(socket.socket):
        def connect(self, address):
            asked.append(address[0])
            super().connect(address)

    monkeypatch.setattr(socket, "socket", Recording)
    where = where_ran(["127.0.0.1", "::1", "db.example", None, "127.0.0.1"])
    assert asked == ["127.0.0.1", "::1"]
    assert "127.0.0.1" in where["source_addresses"]
    assert where["netns"] == Path("/proc/self/ns/net").stat().st_ino
    assert where["host"] == socket.gethostname()
