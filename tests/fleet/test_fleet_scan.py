"""The Python API end to end, as the Ansible side will use it: a plan of two vantages and three
scanners, each shard scanned for real on loopback, its report written with its shard section,
then merged, found incomplete without one scanner, and resumed."""

from __future__ import annotations

import json

import pytest

from nornir_portscan import (
    FleetTarget,
    Scanner,
    TargetSpec,
    build_job,
    build_plan,
    merge_reports,
    missing_shards,
    run_job,
)
from nornir_portscan.fleet import iter_shard_json, shard_section, where_ran
from nornir_portscan.models import ScanOptions

NAMES = [f"127.0.0.{i}" for i in range(1, 7)]


def _scan_shard(plan, shard):
    specs = [TargetSpec(a.name, a.address, list(a.ports)) for a in shard.targets]
    job = build_job(specs, list(plan.ports), processes=1)
    audit = run_job(job)
    where = where_ran(t.address for t in job.request.targets)
    return json.loads("".join(iter_shard_json(audit, shard_section(plan, shard, where))))


@pytest.fixture
def plan(listeners):
    port = listeners.open("127.0.0.2")
    listeners.open("127.0.0.5", port)
    targets = [FleetTarget(name) for name in NAMES[:-1]]  # resolved where they are scanned
    targets.append(FleetTarget(NAMES[-1], NAMES[-1], (port,), vantages=("inside",)))
    scanners = [Scanner("in1", "inside"), Scanner("in2", "inside"), Scanner("out1", "outside")]
    return build_plan(scanners, targets, f"{port},1", options=ScanOptions(processes=1))


def test_every_target_from_every_vantage_once_and_the_resume(plan):
    reports = {s.scanner: _scan_shard(plan, s) for s in plan.shards if s.targets}
    merged = merge_reports(list(reports.values()), plan=plan)
    assert merged.complete, [(s.scanner, s.status, s.reason) for s in merged.shards]
    seen = [(h.name, h.vantage) for h in merged.hosts]
    assert sorted(seen) == sorted(
        [(n, "inside") for n in NAMES] + [(n, "outside") for n in NAMES[:-1]]
    )
    port = plan.ports[-1]
    opened = {(h.name, h.vantage) for h in merged.hosts if h.open_ports == [port]}
    assert opened == {(n, v) for n in ("127.0.0.2", "127.0.0.5") for v in ("inside", "outside")}
    assert {h.scanners for h in merged.hosts if h.vantage == "outside"} == {("out1",)}
    assert all(s.where and s.where["source_addresses"] == ["127.0.0.1"]
               for s in merged.shards if s.hosts)  # fmt: skip

    # out1 unreachable: its hosts are error, the merge is incomplete, the resume says out1
    partial = [r for name, r in reports.items() if name != "out1"]
    merged = merge_reports(partial, plan=plan)
    outside = [h for h in merged.hosts if h.vantage == "outside"]
    assert len(outside) == 5
    assert {(h.status.value, h.error, h.closed_count) for h in outside} == {
        ("error", "scanner-unreachable", 0)
    }
    assert not merged.complete
    assert [s.scanner for s in missing_shards(plan, partial)] == ["out1"]
    again = _scan_shard(plan, plan.shard("out1"))
    assert merge_reports([*partial, again], plan=plan).complete
