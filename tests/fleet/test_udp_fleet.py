"""UDP ports through the fleet: merged from scan reports with their protocol, judged per
vantage as a scan is (open|filtered proves nothing), counted in the matrix, compared with a
merged baseline, and shown without a port key."""

from __future__ import annotations

import json
import re

import jsonschema
import pytest

from nornir_portscan.audit.drift import load_baseline
from nornir_portscan.audit.policy import Violation, parse_policy
from nornir_portscan.fleet import FleetTarget, Scanner, build_plan, merge_reports, shard_section
from nornir_portscan.fleet.baseline import merged_drift, rechecks, with_drift
from nornir_portscan.fleet.matrix import reachability_matrix
from nornir_portscan.fleet.merge import render_merged
from nornir_portscan.fleet.verdicts import judge_merged, judged, parse_scoped, port_verdict
from nornir_portscan.models import HostResult, HostStatus, PortResult, PortState, ScanOptions
from nornir_portscan.models import ScanReport as Report
from nornir_portscan.ports import udp_key
from nornir_portscan.reports.data import report_schema, report_to_dict
from nornir_portscan.reports.pages import merged_to_html, merged_to_markdown

U = udp_key
REASONS = {"open": "udp-response", "filtered": "admin-prohibited", "open|filtered": "no-response"}


SCANNED = (22, U(53), U(161))


def _host(name, vantage, listed=(), scanned=SCANNED, **kw):
    """TCP 22 closed and UDP ports: ``listed`` as (UDP port, state), the rest closed."""
    ports = tuple(
        PortResult(p, PortState(s), REASONS[s], None, 1, "udp") for p, s in sorted(listed)
    )
    closed = len(scanned) - len(ports)
    return HostResult(name, "127.0.0.1", HostStatus.UP, ports, closed, None, tuple(scanned),
                      vantage, **kw)  # fmt: skip


def _merged(*hosts):
    data = report_to_dict(Report(hosts, ScanOptions(), 1.0, 2.0, 7))
    return merge_reports([json.loads(json.dumps(data))])


def _schema():
    schema = report_schema()
    return {"$schema": schema["$schema"], "$defs": schema["$defs"],
            "$ref": "#/$defs/mergedReport"}  # fmt: skip


def test_merged_udp_ports_keep_their_protocol():
    merged = _merged(
        _host("pos", "users", [(53, "open"), (161, "open|filtered")], rate_limited=True),
        _host("pos", "mgmt", [(161, "open")]),
    )
    mgmt, users = merged.hosts
    assert (users.rate_limited, mgmt.rate_limited) == (True, False)
    assert (users.vantage, users.open_ports, users.open_filtered_ports) == (
        "users", [U(53)], [U(161)]
    )  # fmt: skip
    assert mgmt.open_ports == [U(161)]
    data = merged.to_dict()
    jsonschema.validate(data, _schema())
    entry = data["hosts"][1]
    assert {k: entry[k] for k in (
        "open_ports", "closed_count", "scanned_ports", "udp_open_ports",
        "udp_open_filtered_ports", "udp_closed_count", "conflicts", "udp_conflicts",
    )} == {
        "open_ports": [], "closed_count": 1, "scanned_ports": "22,U:53,161",
        "udp_open_ports": [53], "udp_open_filtered_ports": [161], "udp_closed_count": 0,
        "conflicts": [], "udp_conflicts": [],
    }  # fmt: skip
    assert entry["ports"][0] == {
        "port": 53, "protocol": "udp", "state": "open", "reason": "udp-response",
        "rtt_ms": None, "attempts": 1, "scanner": "report 1",
    }  # fmt: skip
    assert data["summary"]["open_filtered_ports"] == 1
    assert (entry["rate_limited"], "rate_limited" in data["hosts"][0]) == (True, False)
    assert "up; its ICMP rate limit slowed the UDP scan" in merged_to_markdown(data)


def test_tcp_and_udp_ports_of_one_number_do_not_conflict():
    tcp_open = PortResult(53, PortState.OPEN, "syn-ack", 0.1, 1)
    merged = _merged(
        HostResult("pos", "127.0.0.1", HostStatus.UP, (tcp_open,), 1, scanned=(53, U(53)))
    )
    (host,) = merged.hosts
    assert (merged.conflicts, host.open_ports, host.closed_count) == ((), [53], 1)


def test_reports_that_answer_a_udp_port_differently_conflict_on_that_port():
    reports = []
    for state in ("open", "open|filtered"):
        host = _host("pos", "users", [(53, state)], scanned=(U(53),))
        reports.append(json.loads(json.dumps(report_to_dict(Report((host,), ScanOptions(), 1.0,
                                                                  2.0, 7)))))  # fmt: skip
    merged = merge_reports(reports)
    (conflict,) = merged.conflicts
    assert conflict.port == U(53)
    data = merged.to_dict()
    assert data["conflicts"][0]["port"] == 53
    assert data["conflicts"][0]["protocol"] == "udp"
    assert data["hosts"][0]["udp_conflicts"] == [53]
    assert "conflict: pos port 53/udp from users:" in render_merged(merged)
    assert judge_merged(merged)[0].failure.endswith("shards answered ports [53/udp] differently")


POLICIES = parse_scoped({
    "pos": {
        "users": {"expect_open": "U:53", "allowed_open": "U:53"},
        "mgmt": {"expect_filtered": "U:161"},
    }
})  # fmt: skip


def test_merged_verdicts_judge_open_filtered_as_a_scan_does():
    merged = _merged(
        _host("pos", "users", [(53, "open"), (161, "open|filtered")]),
        _host("pos", "mgmt", [(161, "open|filtered")]),
    )
    mgmt, users = judge_merged(merged, POLICIES)
    assert (users.passed, users.violations) == (True, ())
    assert users.unconfirmed == (Violation(U(161), "not open", "open|filtered", "no-response"),)
    assert mgmt.passed is False
    assert mgmt.violations == (Violation(U(161), "filtered", "open|filtered", "no-response"),)
    assert mgmt.failure == (
        "pos (127.0.0.1) from mgmt: port 161/udp open|filtered (no response; expected filtered)"
    )
    data = judged(merged.to_dict(), merged, {}, POLICIES)
    assert data["hosts"][0]["violations"] == [
        {"port": 161, "protocol": "udp", "expected": "filtered", "actual": "open|filtered",
         "reason": "no-response"}
    ]  # fmt: skip
    assert data["hosts"][1]["unconfirmed"][0]["port"] == 161


def test_the_matrix_counts_open_filtered_in_udp_cells():
    merged = _merged(
        _host("a", "users", [(53, "open|filtered"), (161, "open|filtered")]),
        _host("b", "users", [(53, "open|filtered")]),
    )
    matrix = reachability_matrix(merged, policies=POLICIES | {"a": POLICIES["pos"]})
    cells = matrix.to_dict()["cells"]
    assert [(c.get("protocol"), c["first"], c["last"], c["verdict"], c.get("open_filtered"),
             c["closed"]) for c in cells] == [
        (None, 22, 22, "closed", None, 2),
        ("udp", 53, 53, "open|filtered", 2, 0),
        ("udp", 161, 161, "mixed", 1, 1),
    ]  # fmt: skip
    # a expects 53 open from users: open|filtered fails it; 161 outside its allow-list and
    # silent: neither passed nor failed
    assert [(c["passed"], c["failed"], c["unjudged"]) for c in cells] == [
        (1, 0, 0), (0, 1, 0), (0, 0, 1)
    ]  # fmt: skip
    assert matrix.to_dict()["ports"] == [22]
    assert matrix.to_dict()["udp_ports"] == [53, 161]
    jsonschema.validate(merged.to_dict(matrix=matrix), _schema())


@pytest.mark.parametrize(
    ("state", "verdict"),
    [("open", "failed"), ("open|filtered", "unjudged"), ("closed", "passed")],
)
def test_port_verdict_outside_an_allow_list(state, verdict):
    assert port_verdict(parse_policy({"allowed_open": "22"}), U(161), state) == verdict


def _shard_merge(plan, listed):
    shard = plan.shard("u1")
    host = _host("pos", None, listed)
    data = report_to_dict(Report((host,), ScanOptions(), 1.0, 2.0, 7))
    data["shard"] = shard_section(plan, shard, {"host": "u1"})
    return merge_reports([json.loads(json.dumps(data))], plan=plan)


def test_merged_drift_of_udp_ports_and_the_recheck_list(tmp_path):
    plan = build_plan([Scanner("u1", "users")], [FleetTarget("pos", "127.0.0.1")],
                      "22,U:53,161")  # fmt: skip
    before = _shard_merge(plan, [(53, "open"), (161, "open|filtered")])
    path = tmp_path / "baseline.json"
    path.write_text(json.dumps(before.to_dict()))
    baseline = load_baseline(path)
    now = _shard_merge(plan, [(53, "open|filtered"), (161, "open")])
    drift = merged_drift(baseline, now)
    (host,) = drift.hosts
    assert (host.opened, host.closed) == ((U(161),), ())
    assert [(c.port, c.before, c.after) for c in host.changed] == [(U(53), "open", "open|filtered")]
    assert [(r.scanner, r.to_dict()) for r in rechecks(drift, now)] == [
        ("u1", {"name": "pos", "address": "127.0.0.1", "ports": "U:53,161"})
    ]
    seen = [[{"name": "pos", "address": "127.0.0.1", "scanned_ports": "U:53,161",
              "ports": [{"port": 53, "protocol": "udp", "state": "open|filtered"},
                        {"port": 161, "protocol": "udp", "state": "open"}]}]] * 3  # fmt: skip
    data = with_drift(judged(now.to_dict(), now, {}, {}), now, baseline, {}, {"u1": seen})
    section = data["drift"]["hosts"][0]
    assert section == {
        "name": "pos", "address": "127.0.0.1", "vantage": "users",
        "opened": [], "udp_opened": [161], "closed": [],
        "changed": [{"port": 53, "protocol": "udp", "before": "open", "after": "open|filtered"}],
        "unexpected": [], "udp_unexpected": [53, 161],
    }  # fmt: skip
    assert data["hosts"][0]["failure"] == (
        "pos (127.0.0.1) from users: unexpected drift since the baseline: port 53/udp, port 161/udp"
    )
    jsonschema.validate(data, _schema())


_KEY = re.compile(r"(?<![0-9.])1[0-9]{6}(?![0-9])")


def test_no_merged_output_shows_a_port_key(tmp_path):
    before = _merged(_host("pos", "users", [(53, "open"), (161, "open|filtered")]))
    path = tmp_path / "baseline.json"
    path.write_text(json.dumps(before.to_dict()))
    now = _merged(
        _host("pos", "users", [(53, "open|filtered"), (161, "open")]),
        _host("pos", "mgmt", [(161, "open|filtered")]),
    )
    data = with_drift(judged(now.to_dict(), now, {}, POLICIES), now, load_baseline(path),
                      POLICIES)  # fmt: skip
    for text in (json.dumps(data), merged_to_markdown(data), merged_to_html(data),
                 render_merged(now)):  # fmt: skip
        assert "U:" in text or "/udp" in text
        assert _KEY.findall(text) == []
    markdown = merged_to_markdown(data)
    assert (
        "| users | ungrouped | 53/udp | open\\|filtered | 0 | 0 | 0 | 0 | 0 | 1 | — |" in markdown
    )
    assert "| pos from mgmt | 161/udp | filtered | **open\\|filtered** |" in markdown
