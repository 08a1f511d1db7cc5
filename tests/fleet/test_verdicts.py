"""Each (target, vantage) judged against its expectations from that vantage: the same rule as
the matrix's cells, no verdict where there is no answer."""

from __future__ import annotations

import json

from nornir_portscan.audit.policy import Violation, parse_policy
from nornir_portscan.fleet import merge_reports
from nornir_portscan.fleet.matrix import reachability_matrix
from nornir_portscan.fleet.verdicts import Judgement, judge_merged
from nornir_portscan.models import HostResult, HostStatus, PortResult, PortState, ScanOptions
from nornir_portscan.models import ScanReport as Report
from nornir_portscan.reports.data import report_to_dict

REASONS = {"open": "syn-ack", "filtered": "no-response", "error": "EMFILE"}


def _host(name, vantage, listed=(), scanned=(22, 80, 443), **kw):
    ports = tuple(PortResult(p, PortState(s), REASONS[s], None, 1) for p, s in listed)
    closed = len([p for p in scanned if p not in dict(listed)])
    return HostResult(name, "127.0.0.1", kw.pop("status", HostStatus.UP), ports, closed, None,
                      tuple(scanned), vantage, **kw)  # fmt: skip


def _merged(*hosts):
    data = report_to_dict(Report(hosts, ScanOptions(), 1.0, 2.0, 7))
    return merge_reports([json.loads(json.dumps(data))])


POLICY = {None: parse_policy({"allowed_open": "22"}),
          "users": parse_policy({"expect_filtered": "22,80", "allowed_open": ""})}  # fmt: skip


def test_each_vantage_has_its_own_expectations():
    merged = _merged(
        _host("pos", "mgmt", [(22, "open")]),
        _host("pos", "users", [(22, "open"), (80, "filtered")]),
        _host("web", "users", [(443, "open")]),
    )
    mgmt, users, web = judge_merged(merged, {"pos": POLICY})
    assert mgmt == Judgement(True, policy=POLICY[None])
    assert users.violations == (
        Violation(22, "filtered", "open", "syn-ack"),
        Violation(22, "not open", "open", "syn-ack"),
    )
    assert users.failure == ("pos (127.0.0.1) from users: port 22 open (expected filtered), "
                             "port 22 open (expected not open)")  # fmt: skip
    assert users.kind == "non_compliant"
    assert (web, web.kind) == (Judgement(True), None)


def test_no_answer_is_no_violation_and_not_judged():
    merged = _merged(
        _host("cut", "users", [(22, "filtered")], scanned=(22,), status=HostStatus.INTERRUPTED,
              unscanned=(80, 443)),
        _host("lost", "users", [(22, "error")]),
    )  # fmt: skip
    cut, lost = judge_merged(merged, {"cut": POLICY, "lost": POLICY})
    assert (cut.passed, cut.violations, cut.kind) == (False, (), "error")
    assert cut.failure == "cut (127.0.0.1) from users: not scanned in full (ports 80,443 unscanned)"
    assert (lost.passed, lost.kind) == (False, "error")
    assert lost.failure.startswith("lost (127.0.0.1) from users: not scanned in full")


def test_the_matrix_fails_what_the_hosts_violate():
    merged = _merged(*(
        _host(f"h{i}", v, [(p, "open") for p in (22, 80, 443) if (i + p) % 3 == 0])
        for i in range(6) for v in ("users", "mgmt")
    ))  # fmt: skip
    policies = {f"h{i}": POLICY for i in range(6)}
    matrix = reachability_matrix(merged, None, policies)
    failed: dict[tuple[str | None, int], int] = {}
    for host, judgement in zip(merged.hosts, judge_merged(merged, policies), strict=True):
        for port in {v.port for v in judgement.violations}:
            failed[(host.vantage, port)] = failed.get((host.vantage, port), 0) + 1
    found = {(c.vantage, port): c.failed for c in matrix.cells if c.failed for port in c.ports}
    assert found == failed
