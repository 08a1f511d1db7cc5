"""Drift of a merged report per vantage: each (target, vantage) against the same only, a vantage
on one side reported once, and the re-check sent to a scanner of the vantage that saw it."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from nornir_portscan.audit.drift import compare, load_baseline
from nornir_portscan.audit.policy import parse_policy
from nornir_portscan.fleet import FleetTarget, Scanner, build_plan, merge_reports, shard_section
from nornir_portscan.fleet.baseline import (
    Recheck,
    confirm_rechecks,
    drift_section,
    merged_drift,
    rechecks,
)
from nornir_portscan.models import HostResult, HostStatus, PortResult, PortState, ScanOptions
from nornir_portscan.models import ScanReport as Report
from nornir_portscan.reports.data import report_to_dict

ADDRESS = "127.0.0.1"
STATES = {"open": ("syn-ack", 0.1), "filtered": ("no-response", None)}


def _host(name, listed, scanned=(22, 80)):
    ports = tuple(PortResult(p, PortState(s), STATES[s][0], STATES[s][1], 1) for p, s in listed)
    closed = len([p for p in scanned if p not in dict(listed)])
    return HostResult(name, ADDRESS if name == "pos1" else "127.0.0.2", HostStatus.UP, ports,
                      closed, None, tuple(scanned))  # fmt: skip


@pytest.fixture
def plan():
    targets = [FleetTarget("pos1", ADDRESS), FleetTarget("pos2", "127.0.0.2")]
    scanners = [Scanner("u1", "users"), Scanner("m1", "mgmt")]
    return build_plan(scanners, targets, "22,80")


def _shard_reports(plan, users, mgmt):
    """The reports of u1 (users) and m1 (mgmt): ``users`` and ``mgmt`` map a target to its
    listed ports, as (port, state)."""
    reports = []
    for scanner, listed in (("u1", users), ("m1", mgmt)):
        shard = plan.shard(scanner)
        hosts = tuple(_host(t.name, listed.get(t.name, ())) for t in shard.targets)
        data = report_to_dict(Report(hosts, ScanOptions(), 1.0, 2.0, 7))
        data["shard"] = shard_section(plan, shard, {"host": scanner})
        reports.append(json.loads(json.dumps(data)))
    return reports


def _merge(plan, users, mgmt):
    return merge_reports(_shard_reports(plan, users, mgmt), plan=plan)


USERS = {"pos1": [(22, "filtered")], "pos2": [(22, "filtered")]}  # from users: 22 filtered
MGMT = {"pos1": [(22, "open")], "pos2": [(22, "open")]}  # from mgmt: 22 open


def _baseline(merged, tmp_path):
    path = tmp_path / "baseline.json"
    path.write_text(json.dumps(merged.to_dict()))
    return load_baseline(path)  # a merged report is a baseline: one host per vantage


def test_each_vantage_is_compared_with_itself_only(plan, tmp_path):
    baseline = _baseline(_merge(plan, USERS, MGMT), tmp_path)
    assert not merged_drift(baseline, _merge(plan, USERS, MGMT))
    drift = merged_drift(baseline, _merge(plan, {**USERS, "pos1": [(22, "open")]}, MGMT))
    ((host),) = drift.hosts
    assert (host.name, host.vantage, host.opened, host.closed) == ("pos1", "users", (22,), ())
    assert drift.for_host("pos1", ADDRESS, "users") == host
    assert drift.for_host("pos1", ADDRESS, "mgmt") is None
    assert (drift.appeared, drift.disappeared) == ((), ())


def _users_only():
    """A whole scan from users (no plan): the mgmt vantage is not in it at all."""
    hosts = tuple(replace(_host(n, USERS[n]), vantage="users") for n in ("pos1", "pos2"))
    data = report_to_dict(Report(hosts, ScanOptions(), 1.0, 2.0, 7))
    return merge_reports([json.loads(json.dumps(data))])


def test_a_vantage_on_one_side_only_is_said_once(plan, tmp_path):
    baseline = _baseline(_merge(plan, USERS, MGMT), tmp_path)
    drift = merged_drift(baseline, _users_only())
    assert drift.hosts == ()
    assert drift.disappeared == ("vantage 'mgmt' (2 hosts)",)
    assert drift.vantages_disappeared == ("mgmt",)
    assert drift.appeared == ()
    # the other way round: mgmt appeared, and its hosts are not "in the baseline"
    baseline = json.loads(json.dumps(_users_only().to_dict()))
    drift = merged_drift(baseline, _merge(plan, USERS, MGMT))
    assert (drift.appeared, drift.vantages_appeared, drift.hosts) == (
        ("vantage 'mgmt' (2 hosts)",), ("mgmt",), ()
    )  # fmt: skip
    assert not drift.in_baseline("pos1", ADDRESS, "mgmt")
    assert drift.in_baseline("pos1", ADDRESS, "users")


def test_a_lost_vantage_is_no_drift_its_ports_have_no_answer(plan, tmp_path):
    """m1 sent no report: its hosts are in the merge, every port error, which says nothing."""
    baseline = _baseline(_merge(plan, USERS, MGMT), tmp_path)
    users, _ = _shard_reports(plan, USERS, MGMT)
    lost = merge_reports([users])
    drift = merged_drift(baseline, lost)
    assert not drift
    assert not lost.complete  # the merge itself says it


def test_a_single_scan_against_a_merged_baseline_names_the_vantages(plan, tmp_path):
    baseline = _baseline(_merge(plan, USERS, MGMT), tmp_path)
    here = Report((_host("pos1", [(22, "open")]),), ScanOptions(), 1.0, 2.0, 7)
    drift = compare(baseline, here)
    assert drift.hosts == ()  # not compared with the mgmt answers: this scan has no vantage
    assert drift.vantages_appeared == (None,)
    assert drift.vantages_disappeared == ("mgmt", "users")
    assert drift.appeared == ("no vantage (1 host)",)


def test_the_recheck_goes_to_a_scanner_of_the_vantage_that_saw_it(plan, tmp_path):
    baseline = _baseline(_merge(plan, USERS, MGMT), tmp_path)
    now = _merge(plan, {"pos1": [(22, "open"), (80, "open")], "pos2": [(22, "filtered")]},
                 {"pos1": [(22, "open")], "pos2": []})  # fmt: skip
    drift = merged_drift(baseline, now)
    assert rechecks(drift, now) == (
        Recheck("m1", "mgmt", "pos2", "127.0.0.2", (22,)),
        Recheck("u1", "users", "pos1", ADDRESS, (22, 80)),
    )
    section = drift_section(drift, rechecks(drift, now))
    assert section["recheck"] == {
        "m1": [{"name": "pos2", "address": "127.0.0.2", "ports": "22"}],
        "u1": [{"name": "pos1", "address": ADDRESS, "ports": "22,80"}],
    }
    assert [(h["name"], h["vantage"]) for h in section["drift"]["hosts"]] == [
        ("pos1", "users"), ("pos2", "mgmt"),
    ]  # fmt: skip


def _entry(name, address, listed, scanned):
    return {"name": name, "address": address, "scanned_ports": scanned,
            "ports": [{"port": p, "state": s} for p, s in listed]}  # fmt: skip


def test_only_a_recheck_from_the_same_vantage_confirms(plan, tmp_path):
    baseline = _baseline(_merge(plan, USERS, MGMT), tmp_path)
    now = _merge(plan, {**USERS, "pos1": [(22, "open")]}, MGMT)
    drift = merged_drift(baseline, now)
    seen_again = [[_entry("pos1", ADDRESS, [(22, "open")], "22")]]
    # m1 (mgmt) sees 22 open on pos1 too, but that is mgmt's answer: it confirms nothing
    assert confirm_rechecks(drift, now, {"m1": seen_again * 3}).hosts == ()
    assert confirm_rechecks(drift, now, {"nobody": seen_again}).hosts == ()
    confirmed = confirm_rechecks(drift, now, {"u1": seen_again * 3})
    assert [(h.name, h.vantage, h.opened) for h in confirmed.hosts] == [("pos1", "users", (22,))]
    assert (confirmed.rechecked, confirmed.confirmed) == (1, 1)
    # one round of three that saw it filtered again: a blip, not drift
    blip = [[_entry("pos1", ADDRESS, [(22, "filtered")], "22")]]
    assert confirm_rechecks(drift, now, {"u1": seen_again * 2 + blip}).hosts == ()


def test_unexpected_drift_is_judged_by_the_vantage_s_expectations(plan, tmp_path):
    baseline = _baseline(_merge(plan, USERS, MGMT), tmp_path)
    now = _merge(plan, {**USERS, "pos1": [(22, "open")]}, {**MGMT, "pos1": [(22, "filtered")]})
    drift = merged_drift(baseline, now)
    policy = {"users": parse_policy({"expect_open": "22"}), None: parse_policy({})}
    section = drift_section(drift, (), {"pos1": policy})["drift"]
    unexpected = {h["vantage"]: h["unexpected"] for h in section["hosts"]}
    assert unexpected == {"users": [], "mgmt": [22]}  # users was to open 22: foreseen


def test_a_port_in_conflict_is_no_drift_and_is_not_rechecked(plan, tmp_path):
    baseline = _baseline(_merge(plan, USERS, MGMT), tmp_path)
    first = _shard_reports(plan, USERS, MGMT)
    again = _shard_reports(plan, {**USERS, "pos1": [(22, "open")]}, MGMT)  # u1 run twice
    merged = merge_reports([*first, again[0]], plan=plan)
    assert [(c.name, c.vantage, c.port) for c in merged.conflicts] == [("pos1", "users", 22)]
    drift = merged_drift(baseline, merged)
    assert not drift
    assert rechecks(drift, merged) == ()


def test_a_change_no_recheck_could_answer_is_unchecked_not_dismissed(plan, tmp_path):
    """u1 is gone (its re-check failed) or answered error: the change is neither confirmed
    nor dropped as a blip; a real answer that contradicts it drops it."""
    baseline = _baseline(_merge(plan, USERS, MGMT), tmp_path)
    now = _merge(plan, {**USERS, "pos1": [(22, "open")]}, MGMT)
    drift = merged_drift(baseline, now)
    error = [[_entry("pos1", ADDRESS, [(22, "error")], "")]]
    for answers in ({}, {"u1": []}, {"u1": error * 3}):
        checked = confirm_rechecks(drift, now, answers)
        assert checked.hosts == ()
        assert [(h.name, h.vantage, h.opened) for h in checked.unchecked] == [
            ("pos1", "users", (22,))
        ]
        section = drift_section(checked)["drift"]
        assert section["unchecked"] == [
            {"name": "pos1", "address": ADDRESS, "vantage": "users", "ports": [22]}
        ]
    blip = [[_entry("pos1", ADDRESS, [(22, "filtered")], "22")]]
    assert confirm_rechecks(drift, now, {"u1": error + blip}).unchecked == ()
