"""The reachability matrix of a merged report: vantage x group x port, exact for every host,
with lost shards ``error`` (never closed or filtered), conflicts in doubt, and expectations per
vantage judged cell by cell."""

from __future__ import annotations

import json

import jsonschema
import pytest

from nornir_portscan.audit.policy import parse_policy
from nornir_portscan.fleet import FleetTarget, Scanner, build_plan, merge_reports, shard_section
from nornir_portscan.fleet.matrix import UNGROUPED, Cell, reachability_matrix
from nornir_portscan.models import HostResult, HostStatus, PortResult, PortState, ScanOptions
from nornir_portscan.models import ScanReport as Report
from nornir_portscan.reports.data import report_schema, report_to_dict


def _port(port, state):
    reason = {"open": "syn-ack", "filtered": "no-response", "error": "EMFILE"}[state]
    return PortResult(port, PortState(state), reason, None, 1)


def _host(name, listed=(), scanned=(22, 80), status=HostStatus.UP, **kw):
    ports = tuple(_port(p, s) for p, s in listed)
    closed = len([p for p in scanned if p not in dict(listed)])
    return HostResult(name, name, status, ports, closed, None, tuple(scanned), **kw)


def _report(*hosts, plan=None, scanner=None):
    data = report_to_dict(Report(hosts, ScanOptions(), 1.0, 2.0, 7))
    if plan is not None:
        data["shard"] = shard_section(plan, plan.shard(scanner), {"host": scanner})
    return json.loads(json.dumps(data))


def _merged_schema():
    schema = report_schema()
    return {"$schema": schema["$schema"], "$defs": schema["$defs"],
            "$ref": "#/$defs/mergedReport"}  # fmt: skip


def test_every_cell_counts_the_hosts_of_its_group_from_its_vantage():
    inside = _report(
        _host("web1", [(22, "open")], vantage="inside"),
        _host("web2", [(22, "open")], vantage="inside"),
        _host("db1", [(22, "filtered")], vantage="inside"),
    )
    outside = _report(
        _host("web1", [(22, "filtered"), (80, "filtered")], vantage="outside"),
        _host("web2", [(80, "open")], vantage="outside"),
        _host("db1", [(22, "filtered"), (80, "filtered")], vantage="outside"),
    )
    merged = merge_reports([inside, outside])
    groups = {"web1": ["web"], "web2": ["web", "dmz"]}
    matrix = reachability_matrix(merged, groups)
    assert matrix.vantages == ("inside", "outside")
    assert matrix.groups == ("dmz", "web", UNGROUPED)
    assert matrix.ports == (22, 80)
    got = {(c.vantage, c.group, port): (c.verdict, c.open, c.closed, c.filtered)
           for c in matrix.cells for port in c.ports}  # fmt: skip
    assert got == {
        ("inside", "dmz", 22): ("open", 1, 0, 0),
        ("inside", "dmz", 80): ("closed", 0, 1, 0),
        ("inside", "web", 22): ("open", 2, 0, 0),
        ("inside", "web", 80): ("closed", 0, 2, 0),
        ("inside", UNGROUPED, 22): ("filtered", 0, 0, 1),
        ("inside", UNGROUPED, 80): ("closed", 0, 1, 0),
        ("outside", "dmz", 22): ("closed", 0, 1, 0),
        ("outside", "dmz", 80): ("open", 1, 0, 0),
        ("outside", "web", 22): ("mixed", 0, 1, 1),
        ("outside", "web", 80): ("mixed", 1, 0, 1),
        ("outside", UNGROUPED, 22): ("filtered", 0, 0, 1),
        ("outside", UNGROUPED, 80): ("filtered", 0, 0, 1),
    }
    assert all(not c.judged for c in matrix.cells)
    assert matrix.cell("outside", "web", 80) == Cell("outside", "web", 80, 80, open=1, filtered=1)
    assert matrix.cell("outside", "web", 443) is None


def test_a_lost_shard_makes_its_cells_error_never_closed_or_filtered():
    targets = [FleetTarget(f"t{i}", f"127.0.0.{i}") for i in range(1, 7)]
    plan = build_plan([Scanner("a", "users"), Scanner("b", "users"), Scanner("c", "pci")],
                      targets, "22,80")  # fmt: skip
    a = plan.shard("a")
    report_a = _report(*(HostResult(t.name, t.address, HostStatus.UP, (), 2, None, (22, 80))
                         for t in a.targets), plan=plan, scanner="a")  # fmt: skip
    merged = merge_reports([report_a], plan=plan)  # b (users) and c (pci) are lost
    matrix = reachability_matrix(merged)
    lost_users = len(plan.shard("b").targets)
    assert lost_users
    assert a.targets
    for port in (22, 80):
        users = matrix.cell("users", UNGROUPED, port)
        assert users is not None
        assert (users.verdict, users.closed, users.error) == ("error", len(a.targets), lost_users)
        assert users.filtered == 0
        pci = matrix.cell("pci", UNGROUPED, port)
        assert pci is not None
        assert (pci.verdict, pci.hosts, pci.error, pci.closed, pci.filtered) == (
            "error", 6, 6, 0, 0,
        )  # fmt: skip


def test_unscanned_ports_are_error_and_conflicts_are_in_doubt():
    cut = _host("web", [(22, "open")], scanned=(22,), status=HostStatus.INTERRUPTED,
                unscanned=(80,))  # fmt: skip
    first = _report(cut, _host("db", [(22, "open")]))
    second = _report(_host("db", [(22, "filtered")]))
    merged = merge_reports([first, second])
    matrix = reachability_matrix(merged, {"web": ["g"], "db": ["g"]})
    assert matrix.cell(None, "g", 80) == Cell(None, "g", 80, 80, closed=1, error=1)
    cell = matrix.cell(None, "g", 22)
    assert cell == Cell(None, "g", 22, 22, open=1, conflict=1)
    assert cell.verdict == "conflict"


def test_expectations_per_vantage_pass_or_fail_in_each_cell():
    users = _report(
        _host("pos1", [(22, "filtered"), (80, "filtered")], vantage="users"),
        _host("pos2", [(22, "open"), (80, "filtered")], vantage="users"),
    )
    mgmt = _report(
        _host("pos1", [(22, "open")], vantage="mgmt"),
        _host("pos2", [(22, "open"), (80, "error")], vantage="mgmt"),
    )
    merged = merge_reports([users, mgmt])
    common = {"allowed_open": "22"}
    scoped = {None: parse_policy(common),
              "users": parse_policy({**common, "expect_filtered": "22,80"}),
              "mgmt": parse_policy({**common, "expect_open": "22"})}  # fmt: skip
    groups = {"pos1": ["cardholder"], "pos2": ["cardholder"]}
    matrix = reachability_matrix(merged, groups, {"pos1": scoped, "pos2": scoped})
    judged = {(c.vantage, port): (c.verdict, c.passed, c.failed, c.unjudged)
              for c in matrix.cells for port in c.ports}  # fmt: skip
    assert judged == {
        ("mgmt", 22): ("open", 2, 0, 0),
        ("mgmt", 80): ("error", 1, 0, 1),  # closed is not open: the allow-list holds
        ("users", 22): ("mixed", 1, 1, 0),
        ("users", 80): ("filtered", 2, 0, 0),
    }
    assert matrix.failed == 1


def test_a_host_with_no_port_is_listed_not_hidden():
    merged = merge_reports([_report(_host("ghost", scanned=(), status=HostStatus.UNRESOLVED),
                                    _host("web"))])  # fmt: skip
    matrix = reachability_matrix(merged, {"ghost": ["g"], "web": ["g"]})
    assert matrix.portless == ((None, "g", "ghost", "unresolved"),)
    assert matrix.cell(None, "g", 22) == Cell(None, "g", 22, 22, closed=1)


@pytest.mark.parametrize("grouped", [False, True])
def test_the_merged_json_holds_the_matrix_and_matches_the_schema(grouped):
    merged = merge_reports([_report(_host("web", [(22, "open")], vantage="inside"))])
    matrix = reachability_matrix(merged, {"web": ["g"]} if grouped else None)
    data = json.loads(json.dumps(merged.to_dict(matrix=matrix)))
    assert data["matrix"]["cells"][0] == {
        "vantage": "inside", "group": "g" if grouped else UNGROUPED, "first": 22, "last": 22,
        "verdict": "open", "hosts": 1, "open": 1, "closed": 0, "filtered": 0, "error": 0,
        "conflict": 0, "passed": 0, "failed": 0, "unjudged": 0,
    }  # fmt: skip
    assert merged.to_dict()["matrix"] == reachability_matrix(merged).to_dict()
    jsonschema.validate(data, _merged_schema())


def test_split_ports_with_one_scanner_lost_count_each_port_once():
    plan = build_plan([Scanner("a", "dc"), Scanner("b", "dc"), Scanner("c", "dc")],
                      [FleetTarget("db", "127.0.0.1")], "1-30", split_ports=True)  # fmt: skip
    parts = {s.scanner: s.targets[0].ports for s in plan.shards if s.targets}
    assert len(parts) == 3
    reports = []
    for scanner in ("a", "b"):  # c is lost
        opened = tuple(_port(p, "open") for p in parts[scanner] if p % 2)
        host = HostResult("db", "127.0.0.1", HostStatus.UP, opened,
                          len(parts[scanner]) - len(opened), None, parts[scanner])  # fmt: skip
        reports.append(_report(host, plan=plan, scanner=scanner))
    matrix = reachability_matrix(merge_reports(reports, plan=plan))
    assert matrix.ports == tuple(range(1, 31))
    for port in range(1, 31):
        cell = matrix.cell("dc", UNGROUPED, port)
        assert cell is not None
        assert cell.hosts == 1
        if port in parts["c"]:
            assert cell.verdict == "error", port
        else:
            assert cell.verdict == ("open" if port % 2 else "closed"), port


def test_a_target_not_scanned_from_a_vantage_is_in_none_of_its_cells():
    plan = build_plan([Scanner("a", "in"), Scanner("b", "out")],
                      [FleetTarget("web", "127.0.0.1"),
                       FleetTarget("db", "127.0.0.2", vantages=("in",))], "22")  # fmt: skip
    reports = [
        _report(*(HostResult(t.name, t.address, HostStatus.UP, (), 1, None, (22,))
                  for t in plan.shard(s).targets), plan=plan, scanner=s)
        for s in ("a", "b")
    ]  # fmt: skip
    matrix = reachability_matrix(merge_reports(reports, plan=plan), {"web": ["g"], "db": ["g"]})
    assert matrix.cell("in", "g", 22) == Cell("in", "g", 22, 22, closed=2)
    assert matrix.cell("out", "g", 22) == Cell("out", "g", 22, 22, closed=1)


# -- cells per run of ports: the same counts as a cell per port ------------------------------
def _per_port(merged, groups, policies):
    """The matrix as it was made before runs: a count per (vantage, group, port), each
    host's ports in turn (the reference the runs must expand to)."""
    from nornir_portscan.fleet.verdicts import CONFLICT, policy_for, port_verdict

    counts = {}
    for host in merged.hosts:
        states = dict.fromkeys(host.scanned, "closed")
        states.update((p.port, p.state.value) for p in host.ports)
        states.update(dict.fromkeys(host.unscanned, "error"))
        states.update(dict.fromkeys(host.conflicts, CONFLICT))
        policy = policy_for(policies, host.name, host.vantage)
        for port, state in states.items():
            verdict = port_verdict(policy, port, state)
            for group in sorted(set(groups.get(host.name) or ())) or [UNGROUPED]:
                cell = counts.setdefault((host.vantage, group, port), {})
                cell[state] = cell.get(state, 0) + 1
                if verdict is not None:
                    cell[verdict] = cell.get(verdict, 0) + 1
    return counts


def _expanded(matrix):
    names = ("open", "closed", "filtered", "error", "conflict", "passed", "failed", "unjudged")
    found = {}
    for cell in matrix.cells:
        said = {n: getattr(cell, n) for n in names if getattr(cell, n)}
        for port in cell.ports:
            assert (cell.vantage, cell.group, port) not in found
            found[(cell.vantage, cell.group, port)] = said
    return found


@pytest.mark.parametrize("seed", range(20))
def test_cells_of_runs_count_each_port_as_a_cell_per_port_would(seed):
    import random

    rng = random.Random(seed)
    states = ("open", "filtered", "error")
    reports = []
    for vantage in ("users", "mgmt"):
        hosts = []
        for i in range(6):
            scanned = sorted(rng.sample(range(1, 61), rng.randint(0, 60)))
            listed = [(p, rng.choice(states)) for p in scanned if rng.random() < 0.15]
            cut = [p for p in range(61, 64) if rng.random() < 0.3]
            hosts.append(_host(f"h{i}", listed, scanned, unscanned=tuple(cut)))
        reports.append(_report(*hosts))
        if rng.random() < 0.5:  # a second answer: conflicts
            again = [_host("h0", [(p, "open") for p in range(1, 61, 7)], tuple(range(1, 61)))]
            reports.append(_report(*again))
        for report in reports[-2:]:
            for host in report["hosts"]:
                host["vantage"] = vantage
    merged = merge_reports(reports)
    groups = {f"h{i}": rng.sample(["a", "b", "c"], rng.randint(0, 2)) for i in range(6)}
    kinds = [{"expect_open": "5,6"}, {"allowed_open": "1-10,30"}, {"expect_filtered": "7"}, {},
             {"allowed_open": "2-50", "expect_open": "3", "expect_closed": "61"}]  # fmt: skip
    policies = {
        f"h{i}": {None: parse_policy(rng.choice(kinds)), "mgmt": parse_policy(rng.choice(kinds))}
        for i in range(6)
    }
    matrix = reachability_matrix(merged, groups, policies)
    assert _expanded(matrix) == _per_port(merged, groups, policies)
    assert matrix.ports == tuple(sorted({p for _, _, p in _per_port(merged, groups, policies)}))


def test_every_port_of_60_hosts_from_2_vantages_is_a_few_cells():
    """All 65,535 ports: a cell per run of ports that say the same, not per port (it made
    393,210 cells, 407 MB, for 60 hosts in 3 groups)."""
    from nornir_portscan.fleet import MergedHost, MergedPort, MergedReport

    every = tuple(range(1, 65536))
    https = (MergedPort(443, PortState.OPEN, "syn-ack", 0.1, 1, "s"),)
    hosts = [
        MergedHost(f"t{i}", f"t{i}", v, HostStatus.UP, ("s",), https, 65534, every, (), None, (),
                   True, "")
        for v in ("mgmt", "users")
        for i in range(60)
    ]  # fmt: skip
    merged = MergedReport(None, (), tuple(hosts))
    groups = {f"t{i}": [("web", "db", "pos")[i % 3]] for i in range(60)}
    policy = {None: parse_policy({"allowed_open": "22"})}
    matrix = reachability_matrix(merged, groups, {f"t{i}": policy for i in range(60)})
    # per vantage and group: 1-21, 22 (allowed: not judged), 23-442, 443 (open: failed), 444-
    assert len(matrix.cells) == 2 * 3 * 5
    cell = matrix.cell("users", "web", 443)
    assert cell is not None
    assert (cell.first, cell.last, cell.open, cell.failed) == (443, 443, 20, 20)
    wide = matrix.cell("mgmt", "pos", 1000)
    assert wide is not None
    assert (wide.first, wide.last, wide.closed, wide.passed) == (444, 65535, 20, 20)
    assert matrix.failed == 2 * 60
    assert len(json.dumps(matrix.to_dict()["cells"])) < 10_000
