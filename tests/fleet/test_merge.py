"""The merge, on reports made by the one serializer (``report_to_dict``) from result models:
a host per (target, vantage), nothing missing dropped or called closed, conflicts flagged."""

from __future__ import annotations

import json

import pytest

from nornir_portscan.errors import InputError
from nornir_portscan.fleet import (
    FleetTarget,
    Plan,
    Scanner,
    build_plan,
    merge_reports,
    missing_shards,
    shard_section,
)
from nornir_portscan.fleet.merge import merge_failure, render_merged
from nornir_portscan.models import HostResult, HostStatus, PortResult, PortState, ScanOptions
from nornir_portscan.models import ScanReport as Report
from nornir_portscan.reports.data import report_to_dict

OPEN = PortResult(22, PortState.OPEN, "syn-ack", 0.1, 1)
FILTERED = PortResult(22, PortState.FILTERED, "no-response", None, 2)
ERROR = PortResult(22, PortState.ERROR, "EMFILE", None, 1)


def _host(name, ports=(), scanned=(22, 80), status=HostStatus.UP, **kw):
    return HostResult(name, name, status, tuple(ports), len(scanned) - len(ports), None,
                      tuple(scanned), **kw)  # fmt: skip


def _report(plan: Plan | None, scanner: str | None, *hosts, interrupted=False):
    data = report_to_dict(Report(hosts, ScanOptions(), 1.0, 2.0, 7, interrupted=interrupted))
    if plan is not None:
        assert scanner is not None
        data["shard"] = shard_section(plan, plan.shard(scanner), {"host": f"m-{scanner}"})
    return json.loads(json.dumps(data))  # as a file gives it back


@pytest.fixture
def plan():
    targets = [FleetTarget(f"127.0.0.{i}", f"127.0.0.{i}") for i in range(1, 9)]
    return build_plan([Scanner("a"), Scanner("b")], targets, "22,80")


def _shard_reports(plan, states=None):
    states = states or {}
    return {
        s.scanner: _report(
            plan, s.scanner, *(_host(t.name, states.get(t.name, ())) for t in s.targets)
        )
        for s in plan.shards
    }


def test_the_shards_merge_into_one_host_per_target(plan):
    reports = _shard_reports(plan, {"127.0.0.3": [OPEN]})
    merged = merge_reports(list(reports.values()))
    assert merged.complete
    assert merged.plan == plan.hash
    assert not merged.conflicts
    assert [h.name for h in merged.hosts] == [f"127.0.0.{i}" for i in range(1, 9)]
    host = next(h for h in merged.hosts if h.name == "127.0.0.3")
    assert (host.open_ports, host.closed_count, host.status) == ([22], 1, HostStatus.UP)
    owner = {t.name: s.scanner for s in plan.shards for t in s.targets}
    assert all(h.scanners == (owner[h.name],) for h in merged.hosts)
    assert host.ports[0].scanner == owner["127.0.0.3"]
    assert [(s.scanner, s.status, s.probes_sent) for s in merged.shards] == [
        ("a", "ok", 7),
        ("b", "ok", 7),
    ]
    assert merged.shards[0].where == {"host": "m-a"}
    assert merge_failure(merged) is None


def test_a_missing_shard_leaves_its_targets_error_never_closed(plan):
    reports = _shard_reports(plan)
    merged = merge_reports([reports["a"]])
    lost = {t.name for t in plan.shard("b").targets}
    assert lost
    assert not merged.complete
    for host in merged.hosts:
        if host.name in lost:
            assert host.status is HostStatus.ERROR
            assert host.error == "scanner-unreachable"
            assert host.error_ports == [22, 80]
            assert host.closed_count == 0
            assert {p.reason for p in host.ports} == {"scanner-unreachable"}
            assert (host.passed, host.failure) == (False, "host error: scanner-unreachable")
        else:
            assert host.status is HostStatus.UP
            assert host.passed is True
    assert merged.shards[1].status == "missing"
    assert merge_failure(merged) == (
        f"1 of 2 shards did not report in full (b missing); {2 * len(lost)} ports have no "
        "answer, listed as error_ports or unscanned_ports"
    )
    assert [s.scanner for s in missing_shards(plan, [reports["a"]])] == ["b"]
    # the re-run of b completes it
    assert merge_reports([reports["a"], reports["b"]]).complete
    assert missing_shards(plan, [reports["a"], reports["b"]]) == ()


def test_a_failed_scanner_is_said_so(plan):
    merged = merge_reports([_shard_reports(plan)["a"]], plan=plan, failed={"b": "exit 3"})
    run = merged.shards[1]
    assert (run.status, run.reason) == ("failed", "exit 3")
    assert {h.error for h in merged.hosts if h.scanners == ("b",)} == {"scanner-failed: exit 3"}


def test_a_host_or_port_missing_from_its_shards_report_is_error(plan):
    a = plan.shard("a")
    first, second, *rest = a.targets
    report = _report(plan, "a", _host(second.name, (), (22,)), *(_host(t.name) for t in rest))
    merged = merge_reports([report, _shard_reports(plan)["b"]])
    host = next(h for h in merged.hosts if h.name == first.name)
    assert host.status is HostStatus.ERROR
    assert host.error == "scanner-failed: not in the report of scanner 'a'"
    assert host.error_ports == [22, 80]
    host = next(h for h in merged.hosts if h.name == second.name)
    assert host.error == "scanner-failed: ports missing from the report of scanner 'a'"
    assert (host.closed_count, host.error_ports) == (1, [80])
    run = merged.shards[0]
    assert (run.status, run.reason) == ("failed", "scanner-failed: its report lacks 2 hosts, "
                                                  "or some of their ports")  # fmt: skip
    assert [s.scanner for s in missing_shards(plan, [report])] == ["a", "b"]


def test_duplicates_that_disagree_are_conflicts(plan):
    first = _shard_reports(plan, {n: [OPEN] for n in ("127.0.0.1", "127.0.0.2")})
    second = _shard_reports(plan, {"127.0.0.1": [OPEN], "127.0.0.2": [FILTERED]})
    merged = merge_reports([*first.values(), *second.values()])
    host = merged.hosts[1]
    (owner,) = host.scanners  # both runs were of the same shard
    assert [(c.name, c.port, c.answers) for c in merged.conflicts] == [
        ("127.0.0.2", 22, ((owner, "open"), (owner, "filtered"))),
    ]
    assert host.conflicts == (22,)
    assert host.passed is False
    assert host.open_ports == [22]  # the first answer stays; the conflict says there was another
    assert merged.hosts[0].conflicts == ()
    assert "conflict: 127.0.0.2 port 22 from -: open by" in render_merged(merged)


def test_an_error_gives_way_to_an_answer_and_is_no_conflict(plan):
    first = _shard_reports(plan, {"127.0.0.1": [ERROR]})
    second = _shard_reports(plan, {"127.0.0.1": [OPEN]})
    merged = merge_reports([*first.values(), *second.values()])
    assert not merged.conflicts
    assert merged.hosts[0].open_ports == [22]
    assert merged.hosts[0].error_ports == []


def test_split_ports_come_back_as_one_host():
    plan = build_plan([Scanner("a"), Scanner("b"), Scanner("c")], [FleetTarget("db", "db")],
                      "1-90", split_ports=True)  # fmt: skip
    reports = []
    for shard in plan.shards:
        (part,) = shard.targets
        opened = [
            PortResult(p, PortState.OPEN, "syn-ack", 0.1, 1) for p in part.ports if p % 9 == 0
        ]
        reports.append(_report(plan, shard.scanner, _host("db", opened, part.ports)))
    merged = merge_reports(reports)
    (host,) = merged.hosts
    assert host.open_ports == list(range(9, 91, 9))
    assert host.closed_count == 80
    assert host.scanned == tuple(range(1, 91))
    assert set(host.scanners) == {"a", "b", "c"}
    assert merged.complete


def test_an_interrupted_shard_is_to_be_run_again(plan):
    reports = _shard_reports(plan)
    cut = _report(plan, "b", *(_host(t.name, (), (), HostStatus.NOT_SCANNED, unscanned=(22, 80))
                               for t in plan.shard("b").targets), interrupted=True)  # fmt: skip
    merged = merge_reports([reports["a"], cut])
    assert merged.shards[1].status == "interrupted"
    assert not merged.complete
    assert [s.scanner for s in missing_shards(plan, [reports["a"], cut])] == ["b"]


def test_whole_scans_from_two_vantages_merge_by_vantage():
    inside = _report(None, None, _host("web", [OPEN], vantage="inside"))
    outside = _report(None, None, _host("web", [FILTERED], vantage="outside"))
    merged = merge_reports([inside, outside], sources=["in.json", "out.json"])
    assert [(h.vantage, h.open_ports, h.filtered_ports) for h in merged.hosts] == [
        ("inside", [22], []),
        ("outside", [], [22]),
    ]
    assert not merged.conflicts
    assert merged.plan is None
    assert [s.scanner for s in merged.shards] == ["in.json", "out.json"]


def test_reports_of_two_plans_do_not_merge(plan):
    other = build_plan([Scanner("a"), Scanner("b")], [FleetTarget("127.0.0.1")], "22")
    with pytest.raises(
        InputError,
        match=r"^report 'report 2' is not a shard of the plan of "
        r"report 'report 1' \(",
    ):
        merge_reports([_shard_reports(plan)["a"], _report(other, "a")])
    with pytest.raises(
        InputError,
        match=r"^report 'report 2' is a whole scan, not a shard of "
        "the plan of report 'report 1': merge the shards of one plan, or whole",
    ):
        merge_reports([_shard_reports(plan)["a"], _report(None, None)])
    with pytest.raises(InputError, match=r"^report 'report 1' is not a shard of the plan given"):
        merge_reports([_report(other, "a")], plan=plan)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.update(version=2), "report 'x.json': version 2 is not a 1.x report"),
        (lambda d: d["hosts"][0].pop("name"), "report 'x.json': host 1 is not a host entry "
         "('name' is missing)"),
        (lambda d: d["hosts"][0].update(status="sleepy"), "report 'x.json': host 1 is not a "
         "host entry ('sleepy' is not a valid HostStatus)"),
        (lambda d: d["hosts"][0]["ports"][0].update(port=70000), "report 'x.json': host 1 is "
         "not a host entry (port must be 1-65535, not 70000)"),
        (lambda d: d["hosts"][0]["ports"][0].update(attempts=float("inf")), "report 'x.json': "
         "host 1 is not a host entry (attempts must be a count, not Infinity)"),
        (lambda d: d["hosts"][0]["ports"][0].update(attempts=-5), "report 'x.json': host 1 is "
         "not a host entry (attempts must be a count, not -5)"),
        (lambda d: d["hosts"][0].update(scanned_ports="1-x"), "report 'x.json': host 1 is not a "
         "host entry (invalid port"),
        (lambda d: d["hosts"].append(d["hosts"][0]), "report 'x.json': host 2 ('web') is listed "
         "twice"),
        (lambda d: d.update(shard=[1]), "report 'x.json': 'shard' is [1], not a shard section"),
        (lambda d: d.update(shard={"plan": {}}), "report 'x.json': its 'shard' section is "
         "broken ('scanner' is missing)"),
        (lambda d: d.update(shard={"plan": {"hash": "x"}, "scanner": "a"}), "the plan in "
         "report 'x.json' is not a scan plan (KeyError"),
    ],
)  # fmt: skip
def test_a_broken_report_gets_one_line(edit, message):
    data = _report(None, None, _host("web", [OPEN]))
    edit(data)
    with pytest.raises(InputError) as caught:
        merge_reports([data], sources=["x.json"])
    assert str(caught.value).startswith(message), str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_report_given_twice_counts_once(plan):
    reports = _shard_reports(plan)
    merged = merge_reports([reports["a"], reports["a"], reports["b"]])
    assert [s.probes_sent for s in merged.shards] == [7, 7]
    assert merged.complete


class _Counted(dict):
    """A report that counts how often it is compared with another."""

    compared = 0

    def __eq__(self, other):
        type(self).compared += 1
        return super().__eq__(other)

    __hash__ = None


def test_finding_reports_given_twice_compares_no_pair_of_them():
    """300 shards, each given twice: the merge keeps one of each without comparing reports
    pairwise (it was 300 * 599 comparisons)."""
    targets = [FleetTarget(f"127.0.{i // 250}.{i % 250 + 1}") for i in range(300)]
    plan = build_plan([Scanner(str(i)) for i in range(300)], targets, "22")
    reports = [
        _Counted(_report(plan, s.scanner, *(_host(t.name, (), (22,)) for t in s.targets)))
        for s in plan.shards
    ]
    _Counted.compared = 0
    merged = merge_reports(reports + reports)
    assert _Counted.compared == 0
    assert len(merged.shards) == 300
    assert sum(s.probes_sent for s in merged.shards) == 7 * 300  # each counted once
    assert merged.complete


def test_what_is_only_shown_cannot_break_the_merge(plan):
    report = _shard_reports(plan)["a"]
    report.update(duration="soon", probes_sent=float("inf"), started=5)
    run = merge_reports([report, _shard_reports(plan)["b"]]).shards[0]
    assert (run.duration, run.probes_sent, run.started) == (0.0, 0, None)


def test_a_shard_with_nothing_to_scan_needs_no_report():
    plan = build_plan([Scanner("a"), Scanner("b")], [FleetTarget("127.0.0.1")], "22")
    (busy,) = [s for s in plan.shards if s.targets]
    idle = next(s for s in plan.shards if not s.targets)
    merged = merge_reports([_report(plan, busy.scanner, _host("127.0.0.1", (), (22,)))])
    assert merged.complete
    run = next(r for r in merged.shards if r.scanner == idle.scanner)
    assert (run.status, run.reason) == ("ok", "no hosts to scan")
