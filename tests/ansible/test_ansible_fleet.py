"""The fleet playbook for real: scanners as network namespaces, each linked to its own segment.

Two segments (vantages ``users`` and ``cardholder``) hold the SAME addresses with different
listeners, as two VRFs would; ``cardholder`` drops port 9 (filtered). ``users`` has scanners
``ua1``, ``ua2`` and ``ua3`` (unreachable: ssh to a loopback port nothing listens on);
``cardholder`` has ``cb1`` and ``cb2`` (killed by SIGKILL 3 s after its interpreter starts,
while its shard waits 4 s on the dropped port). The controller runs in a namespace of its own.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from ansible_support import BIN, PLAYBOOKS, REPO
from fleet_lab import FleetLab, Segment

from nornir_portscan.reports.data import report_schema

pytestmark = pytest.mark.netns

PORTS = (9, 22, 80, 443, 5432)
TARGETS = {f"t{h}": h for h in range(1, 9)}
USERS = {1: [22, 80], 2: [443], 3: [], 4: [22], 5: [5432], 6: [80, 443], 7: [], 8: [22, 5432]}
CARDHOLDER = {1: [5432], 2: [22], 3: [80, 443], 4: [], 5: [22, 80], 6: [], 7: [443], 8: [9]}
PLAYBOOK = PLAYBOOKS / "segmentation_audit.yml"
HASH = re.compile(r"plan ([0-9a-f]{64}):")


class Fleet:
    def __init__(self, lab: FleetLab, segments: dict[str, Segment], controller: str,
                 env: dict[str, str], workdir: Path) -> None:
        self.lab, self.segments, self.controller = lab, segments, controller
        self.env, self.workdir = env, workdir
        self.runs = workdir / "runs"
        self.first: subprocess.CompletedProcess[str] | None = None

    def play(self, inventory: Path, *args: str) -> subprocess.CompletedProcess[str]:
        argv = ["ip", "netns", "exec", self.controller, str(BIN / "ansible-playbook"),
                "-i", str(inventory), str(PLAYBOOK),
                "-e", f"audit_ports={','.join(map(str, PORTS))}",
                "-e", f"audit_directory={self.runs}", "-e", "audit_timeout=4",
                "-e", "audit_min_timeout=4", "-e", "audit_retries=0", *args]
        return subprocess.run(argv, env=self.env, cwd=self.workdir, capture_output=True,
                              text=True, timeout=240)

    def merged(self) -> dict[str, Any]:
        (path,) = self.runs.glob("*/merged.json")
        return json.loads(path.read_text())


def merged_schema() -> dict[str, Any]:
    schema = report_schema()
    return {"$schema": schema["$schema"], "$defs": schema["$defs"],
            "$ref": "#/$defs/mergedReport"}


def plan_hash(done: subprocess.CompletedProcess[str]) -> str:
    found = HASH.findall(done.stdout)
    assert found, done.stdout[-3000:]
    return found[0]


@pytest.fixture(scope="module")
def fleet(ansible_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[Fleet]:
    if not shutil.which("ip") or not shutil.which("nft") or not shutil.which("ssh"):
        pytest.skip("the fleet lab needs iproute2, nftables and an ssh client")
    workdir = tmp_path_factory.mktemp("fleet")
    lab = FleetLab(workdir)
    probe = subprocess.run(["ip", "netns", "add", f"{lab.tag}-probe"], capture_output=True,
                           text=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot create a network namespace: {probe.stderr.strip()}")
    lab.namespaces.append(f"{lab.tag}-probe")
    try:
        users = Segment(lab, "users", USERS)
        cardholder = Segment(lab, "cardholder", CARDHOLDER, dropped=(9,))
        for name in ("ua1", "ua2"):
            lab.scanner(users, name, "users")
        lab.unreachable("ua3", "users")
        lab.scanner(cardholder, "cb1", "cardholder")
        killed = lab.scanner(cardholder, "cb2", "cardholder")
        lab.wrap(killed, f"{lab.tag}-cb2", kill_after=3)
        controller = f"{lab.tag}-ctl"
        lab.namespaces.append(controller)
        subprocess.run(["ip", "netns", "add", controller], check=True)
        subprocess.run(["ip", "-n", controller, "link", "set", "lo", "up"], check=True)
        env = {**ansible_env, "PYTHONPATH": str(REPO), "ANSIBLE_FORKS": "10",
               "ANSIBLE_HOST_KEY_CHECKING": "0"}
        fleet = Fleet(lab, {"users": users, "cardholder": cardholder}, controller, env, workdir)
        fleet.first = fleet.play(lab.inventory(TARGETS, workdir / "inventory.yml"))
        yield fleet
    finally:
        lab.close()


def scanned_by(merged: dict[str, Any]) -> dict[tuple[str, str], str]:
    found = {}
    for host in merged["hosts"]:
        assert len(host["scanners"]) == 1, host
        key = (host["name"], host["vantage"])
        assert key not in found, f"{key} merged twice"
        found[key] = host["scanners"][0]
    return found


def test_every_target_is_scanned_once_from_each_vantage(fleet: Fleet) -> None:
    merged = fleet.merged()
    by = scanned_by(merged)
    assert set(by) == {(t, v) for t in TARGETS for v in ("users", "cardholder")}
    for (_, vantage), scanner in by.items():
        assert fleet.lab.scanners[scanner]["portscan_vantage"] == vantage
    assert merged["plan"] == plan_hash(fleet.first)


def test_each_vantage_sees_its_own_segment(fleet: Fleet) -> None:
    """The same addresses, other listeners: each answer is its own segment's truth."""
    checked = 0
    for host in fleet.merged()["hosts"]:
        if host["scanners"][0] in ("ua3", "cb2"):
            continue
        segment = fleet.segments[host["vantage"]]
        number = TARGETS[host["name"]]
        truth = {p: segment.truth(p, number) for p in PORTS}
        assert host["open_ports"] == [p for p in PORTS if truth[p] == "open"], host
        assert host["filtered_ports"] == [p for p in PORTS if truth[p] == "filtered"], host
        assert host["closed_count"] == sum(s == "closed" for s in truth.values()), host
        assert host["error_ports"] == [], host
        checked += 1
    assert checked >= 8


def test_a_dead_scanner_s_targets_are_errors_and_the_play_fails(fleet: Fleet) -> None:
    assert fleet.first is not None
    assert fleet.first.returncode != 0, fleet.first.stdout[-3000:]
    merged = fleet.merged()
    assert merged["complete"] is False
    runs = {s["scanner"]: s["status"] for s in merged["shards"]}
    assert runs == {"ua1": "ok", "ua2": "ok", "ua3": "missing", "cb1": "ok", "cb2": "failed"}
    dead = {"ua3": "scanner-unreachable", "cb2": "scanner-failed"}
    lost = [h for h in merged["hosts"] if h["scanners"][0] in dead]
    assert {h["scanners"][0] for h in lost} == set(dead), "a dead scanner had no targets"
    for host in lost:
        reason = dead[host["scanners"][0]]
        assert host["status"] == "error", host
        assert host["open_ports"] == [], host
        assert host["filtered_ports"] == [], host
        assert host["closed_count"] == 0, host
        assert host["error_ports"] == list(PORTS), host
        assert {p["reason"] for p in host["ports"]} == {reason}, host
    killed = next(s for s in merged["shards"] if s["scanner"] == "cb2")
    assert "Killed (rc 137)" in killed["reason"], killed
    assert "did not report in full" in fleet.first.stdout
    # the killed scanner left no engine worker behind in its namespace
    deadline = time.monotonic() + 15
    while fleet.lab.pids("cb2") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert fleet.lab.pids("cb2") == []


def expected_matrix(fleet: Fleet, groups: dict[str, list[str]], dead: tuple[str, ...] = (),
                    judge: Any = None, judged: tuple[str, ...] = ()
                    ) -> dict[tuple[str, str, int], dict[str, Any]]:
    """Every cell the matrix must have, from the segments' listeners: the hosts of each group
    per state from each vantage; the hosts of the ``dead`` scanners ``error``; for the
    ``judged`` targets, ``judge(vantage, port, state)`` says ``passed``, ``failed`` or None
    (no expectation)."""
    by = scanned_by(fleet.merged())
    cells: dict[tuple[str, str, int], dict[str, Any]] = {}
    for (name, vantage), scanner in by.items():
        for port in PORTS:
            state = ("error" if scanner in dead else
                     fleet.segments[vantage].truth(port, TARGETS[name]))
            verdict = judge(vantage, port, state) if name in judged else None
            if verdict and state == "error":
                verdict = "unjudged"
            for group in groups.get(name) or ["ungrouped"]:
                cell = cells.setdefault((vantage, group, port), {
                    "hosts": 0, "open": 0, "closed": 0, "filtered": 0, "error": 0,
                    "conflict": 0, "passed": 0, "failed": 0, "unjudged": 0})
                cell["hosts"] += 1
                cell[state] += 1
                if verdict:
                    cell[verdict] += 1
    for cell in cells.values():
        said = [s for s in ("open", "closed", "filtered") if cell[s]]
        cell["verdict"] = ("error" if cell["error"] else said[0] if len(said) == 1
                           else "mixed")
    return cells


def matrix_cells(merged: dict[str, Any]) -> dict[tuple[str, str, int], dict[str, Any]]:
    """The cells per port (a cell covers a run of ports with the same counts)."""
    found = {}
    for cell in merged["matrix"]["cells"]:
        vantage, group = cell.pop("vantage"), cell.pop("group")
        first, last = cell.pop("first"), cell.pop("last")
        for port in range(first, last + 1):
            key = (vantage, group, port)
            assert key not in found, key
            found[key] = dict(cell)
    return found


def test_the_matrix_is_the_segments_truth_and_the_dead_scanners_are_error(fleet: Fleet
                                                                          ) -> None:
    """Run before the resume: ua3 (unreachable) and cb2 (killed) answered nothing, and their
    hosts are counted ``error`` in every cell, never closed or filtered."""
    merged = fleet.merged()
    expected = expected_matrix(fleet, {}, dead=("ua3", "cb2"))
    assert matrix_cells(merged) == expected
    assert {c["verdict"] for c in expected.values()} >= {"error"}
    assert merged["matrix"]["vantages"] == ["cardholder", "users"]
    assert merged["matrix"]["groups"] == ["ungrouped"]
    assert merged["matrix"]["portless"] == []


def test_the_plan_does_not_change_when_the_inventory_is_reordered(fleet: Fleet) -> None:
    reordered = fleet.lab.inventory(TARGETS, fleet.workdir / "reordered.yml", reverse=True)
    done = fleet.play(reordered, "--tags", "plan")
    assert done.returncode == 0, done.stdout[-3000:]
    assert plan_hash(done) == plan_hash(fleet.first)


def test_a_rerun_scans_only_the_shards_that_failed(fleet: Fleet) -> None:
    before = {s["scanner"]: s for s in fleet.merged()["shards"]}
    lab = fleet.lab
    lab.wrap(Path(str(lab.scanners["cb2"]["ansible_python_interpreter"])), f"{lab.tag}-cb2")
    lab.scanner(fleet.segments["users"], "ua3", "users")  # reachable now, same name and vantage
    # the re-run's shards run as async jobs (a long shard's way), polled until done
    done = fleet.play(lab.inventory(TARGETS, fleet.workdir / "inventory.yml"),
                      "-e", "audit_async=120")
    assert done.returncode == 0, done.stdout[-3000:]
    assert "ASYNC OK on cb2" in done.stdout
    assert plan_hash(done) == plan_hash(fleet.first)
    assert "2 shards to scan, 3 kept from an earlier run" in done.stdout
    for name in ("ua1", "ua2", "cb1"):
        assert f"skipping: [{name}]" in done.stdout
    merged = fleet.merged()
    assert merged["complete"] is True
    after = {s["scanner"]: s for s in merged["shards"]}
    for name in ("ua1", "ua2", "cb1"):
        assert after[name]["started"] == before[name]["started"]  # kept, not scanned again
    for host in merged["hosts"]:
        segment = fleet.segments[host["vantage"]]
        number = TARGETS[host["name"]]
        assert host["open_ports"] == [p for p in PORTS if segment.truth(p, number) == "open"]
        assert host["error_ports"] == []


def test_expectations_are_judged_per_vantage_on_the_merged_answers(fleet: Fleet) -> None:
    """Run after the resume: every shard is kept, so nothing is scanned again; the merge judges
    the new expectations on the kept answers. t8 has listeners on 22 and 5432 in the users
    segment, 9 (dropped) in the cardholder one; t3 has none in the users segment."""
    extra: dict[str, dict[str, object]] = {
        "t8": {"portscan_expect_closed": "80",
               "portscan_vantage_policy": {"users": {"allowed_open": "22"},
                                           "cardholder": {"expect_filtered": "9"}}},
        "t3": {"portscan_vantage_policy": {"users": {"allowed_open": ""}}},
    }
    inventory = fleet.lab.inventory(TARGETS, fleet.workdir / "policy.yml", extra=extra)
    done = fleet.play(inventory)
    assert plan_hash(done) == plan_hash(fleet.first)  # the policy's ports are scanned already
    assert "0 shards to scan, 5 kept from an earlier run" in done.stdout
    assert done.returncode != 0, done.stdout[-3000:]
    assert "1 of 16 hosts did not pass" in done.stdout
    assert "t8 (198.18.0.8) from users: port 5432 open (expected not open)" in done.stdout
    merged = fleet.merged()
    assert merged["complete"] is True
    assert merged["failed_hosts"] == ["t8@users"]
    assert merged["compliance"] == {"compliant": 2, "non_compliant": 1, "error": 0,
                                    "violations": 1}


GROUPS = {"pos": ["t1", "t2", "t3", "t4"], "web": ["t3", "t4", "t5", "t6"]}


def grouped_inventory(fleet: Fleet, path: Path, extra: dict[str, dict[str, object]]) -> Path:
    """The lab's inventory with the targets also in the groups ``GROUPS``."""
    fleet.lab.inventory(TARGETS, path, extra=extra)
    data = yaml.safe_load(path.read_text())
    targets = data["all"]["children"]["portscan_targets"]
    targets["children"] = {g: {"hosts": dict.fromkeys(names)} for g, names in GROUPS.items()}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_the_matrix_per_group_is_judged_per_vantage_and_shown_as_a_page(fleet: Fleet) -> None:
    """Run after the resume (every shard kept, nothing scanned): the targets in groups pos
    and web (t3 and t4 in both, t7 and t8 in none), expectations per vantage on pos: from
    cardholder port 9 filtered, from users nothing open but 22 and 80 (t2 has 443 open)."""
    policy = {"portscan_vantage_policy": {"cardholder": {"expect_filtered": "9"},
                                          "users": {"allowed_open": "22,80"}}}
    inventory = grouped_inventory(fleet, fleet.workdir / "grouped.yml",
                                  dict.fromkeys(GROUPS["pos"], policy))
    page = fleet.workdir / "matrix.md"
    done = fleet.play(inventory, "-e", f"audit_page={page}")
    assert "0 shards to scan, 5 kept from an earlier run" in done.stdout
    assert done.returncode != 0, done.stdout[-3000:]
    assert "t2 (198.18.0.2) from users: port 443 open (expected not open)" in done.stdout

    def judge(vantage: str, port: int, state: str) -> str | None:
        if vantage == "cardholder":
            return None if port != 9 else "passed" if state == "filtered" else "failed"
        if port in (22, 80):
            return None
        return "failed" if state == "open" else "passed"

    merged = fleet.merged()
    groups = {t: [g for g, names in GROUPS.items() if t in names] for t in TARGETS}
    expected = expected_matrix(fleet, groups, judge=judge, judged=tuple(GROUPS["pos"]))
    assert matrix_cells(merged) == expected
    assert merged["matrix"]["groups"] == ["pos", "web", "ungrouped"]
    assert expected[("users", "pos", 443)]["failed"] == 1
    assert merged["failed_hosts"] == ["t2@users"]
    jsonschema.validate(fleet.merged(), merged_schema())
    text = page.read_text()
    assert "| users | pos | 443 | **mixed** | 1 | 3 | 0 | 0 | 0 | 3 pass, 1 FAIL |" in text
    assert "| cardholder | pos | 9 | filtered | 0 | 0 | 4 | 0 | 0 | 4 pass |" in text
    # the same as an HTML page, and only the groups asked for
    html = fleet.workdir / "matrix.html"
    done = fleet.play(inventory, "-e", f"audit_page={html}",
                      "-e", json.dumps({"audit_matrix_groups": ["web"]}))
    assert "0 shards to scan, 5 kept from an earlier run" in done.stdout
    assert "<h2>Reachability matrix</h2>" in html.read_text()
    merged = fleet.merged()
    assert merged["matrix"]["groups"] == ["web", "ungrouped"]
    web = {t: ["web"] for t in GROUPS["web"]}
    assert matrix_cells(merged) == expected_matrix(fleet, web, judge=judge,
                                                   judged=tuple(GROUPS["pos"]))


def test_drift_is_per_vantage_and_rechecked_from_the_same_vantage(fleet: Fleet) -> None:
    """Run after the resume. The baseline says t2 had 22 open from users (it is closed there,
    open from cardholder) and t7 had 443 closed from cardholder (open there, closed from
    users): a re-check from the wrong vantage would not confirm either change."""
    merged = fleet.merged()
    baseline = json.loads(json.dumps(merged))
    for host in baseline["hosts"]:
        if (host["name"], host["vantage"]) == ("t2", "users"):
            host["ports"].append({"port": 22, "state": "open", "reason": "syn-ack"})
        if (host["name"], host["vantage"]) == ("t7", "cardholder"):
            host["ports"] = [p for p in host["ports"] if p["port"] != 443]
    path = fleet.workdir / "baseline.json"
    path.write_text(json.dumps(baseline))
    done = fleet.play(fleet.lab.inventory(TARGETS, fleet.workdir / "inventory.yml"),
                      "-e", f"audit_baseline={path}")
    assert "0 shards to scan, 5 kept from an earlier run" in done.stdout
    assert done.returncode != 0, done.stdout[-3000:]
    assert "2 of 16 hosts did not pass" in done.stdout, done.stdout[-3000:]
    drift = fleet.merged()["drift"]
    assert [(h["name"], h["vantage"], h["opened"], h["closed"], h["unexpected"])
            for h in drift["hosts"]] == [("t2", "users", [], [22], [22]),
                                         ("t7", "cardholder", [443], [], [443])]  # fmt: skip
    assert (drift["rechecked"], drift["confirmed"], drift["confirming"]) == (2, 2, True)
    assert (drift["appeared"], drift["disappeared"]) == ([], [])
    by = scanned_by(merged)
    assert fleet.merged()["recheck"] == {
        by[("t2", "users")]: [{"name": "t2", "address": "198.18.0.2", "ports": "22"}],
        by[("t7", "cardholder")]: [{"name": "t7", "address": "198.18.0.7", "ports": "443"}],
    }
    rechecked = {by[("t2", "users")], by[("t7", "cardholder")]}
    for name in set(fleet.lab.scanners) - rechecked:
        assert f"skipping: [{name}] => (item=re-check 1)" in done.stdout
    for name in rechecked:
        assert f"ok: [{name}] => (item=re-check 3)" in done.stdout, done.stdout[-3000:]
    assert sorted(fleet.merged()["failed_hosts"]) == ["t2@users", "t7@cardholder"]
    jsonschema.validate(fleet.merged(), merged_schema())


def test_a_change_its_scanner_cannot_recheck_is_unchecked_and_fails(fleet: Fleet) -> None:
    """The scanner that saw t2's change from users dies at the re-check (killed at once): the
    change is neither confirmed nor dismissed, and the merge fails saying so."""
    merged = fleet.merged()
    baseline = json.loads(json.dumps(merged))
    for host in baseline["hosts"]:
        if (host["name"], host["vantage"]) == ("t2", "users"):
            host["ports"].append({"port": 22, "state": "open", "reason": "syn-ack"})
    path = fleet.workdir / "baseline-t2.json"
    path.write_text(json.dumps(baseline))
    scanner = scanned_by(merged)[("t2", "users")]
    lab = fleet.lab
    wrapper = Path(str(lab.scanners[scanner]["ansible_python_interpreter"]))
    lab.wrap(wrapper, f"{lab.tag}-{scanner}", kill_after=0.01)
    try:
        done = fleet.play(lab.inventory(TARGETS, fleet.workdir / "inventory.yml"),
                          "-e", f"audit_baseline={path}")
    finally:
        lab.wrap(wrapper, f"{lab.tag}-{scanner}")
    assert done.returncode != 0, done.stdout[-3000:]
    assert ("drift since the baseline: not re-checked from users (no answer): t2 ports 22"
            in done.stdout), done.stdout[-3000:]
    drift = fleet.merged()["drift"]
    assert drift["hosts"] == []
    assert drift["unchecked"] == [{"name": "t2", "address": "198.18.0.2", "vantage": "users",
                                   "ports": [22]}]
    assert (drift["rechecked"], drift["confirmed"]) == (1, 0)


def test_a_vantage_missing_from_the_baseline_is_said_once(fleet: Fleet) -> None:
    baseline = json.loads(json.dumps(fleet.merged()))
    baseline["hosts"] = [h for h in baseline["hosts"] if h["vantage"] != "cardholder"]
    path = fleet.workdir / "users-baseline.json"
    path.write_text(json.dumps(baseline))
    done = fleet.play(fleet.lab.inventory(TARGETS, fleet.workdir / "inventory.yml"),
                      "-e", f"audit_baseline={path}")
    assert done.returncode != 0, done.stdout[-3000:]
    assert ("drift since the baseline: appeared: vantage 'cardholder' (8 hosts)"
            in done.stdout), done.stdout[-3000:]
    drift = fleet.merged()["drift"]
    assert (drift["hosts"], drift["appeared"], drift["vantages_appeared"]) == (
        [], ["vantage 'cardholder' (8 hosts)"], ["cardholder"])
    assert fleet.merged()["recheck"] == {}
    jsonschema.validate(fleet.merged(), merged_schema())


@pytest.mark.usefixtures("collection_import")
def test_a_scanner_name_cannot_lead_out_of_the_plan_directory(tmp_path: Path) -> None:
    from ansible_collections.nornir_portscan.portscan.plugins.module_utils import (
        portscan_fleet,
    )

    for name in ("../../etc/x", "a/b", ".."):
        path = Path(portscan_fleet.shard_path(str(tmp_path), name))
        assert path.parent == tmp_path / "shards", path
        assert "/" not in path.name


@pytest.mark.usefixtures("collection_import")
def test_a_bad_page_path_is_one_line_before_the_merge(tmp_path: Path) -> None:
    from ansible_collections.nornir_portscan.portscan.plugins.module_utils import (
        portscan_fleet,
    )

    for path, message in (
        (tmp_path / "x.txt", f"unknown report format '{tmp_path}/x.txt': use a .md or .html "
                             "file name, e.g. 'audit.html'"),
        (tmp_path / "no" / "x.md", f"cannot write the Markdown report to '{tmp_path}/no/x.md': "
                                   f"no such directory '{tmp_path}/no'; give a path in an "
                                   "existing directory, e.g. 'x.md'"),
    ):
        with pytest.raises(portscan_fleet.InputError) as caught:
            portscan_fleet.check_page(str(path))
        assert str(caught.value) == message


@pytest.mark.usefixtures("collection_import")
def test_changes_no_recheck_answered_fail_the_confirming_merge() -> None:
    from ansible_collections.nornir_portscan.portscan.plugins.action import portscan_merge

    drift = {"appeared": [], "disappeared": ["vantage 'mgmt' (2 hosts)"],
             "unchecked": [{"name": "t2", "address": "198.18.0.2", "vantage": "users",
                            "ports": [22, 80]}]}
    assert portscan_merge._drift_failure(drift) == (
        "drift since the baseline: disappeared: vantage 'mgmt' (2 hosts); not re-checked from "
        "users (no answer): t2 ports 22,80")
    assert portscan_merge._drift_failure({"appeared": [], "disappeared": [],
                                          "unchecked": []}) is None


@pytest.mark.usefixtures("collection_import")
def test_an_empty_shard_reports_no_hosts_as_the_cli_does(tmp_path: Path) -> None:
    """A shard the plan gave no target (two scanners, one target) is a report of no hosts,
    with its shard section, as ``portscan --shard`` gives; never "no targets given"."""
    from ansible_collections.nornir_portscan.portscan.plugins.module_utils import (
        portscan_fleet,
    )

    from nornir_portscan.fleet import merge_reports, plan_inputs

    plan = portscan_fleet.inventory_plan(
        [("s1", "users"), ("s2", "users")], [("t1", {"ansible_host": "127.0.0.1"})], "9",
        {"timeout": 0.2})
    empty = next(s.scanner for s in plan.shards if not s.targets)
    full = next(s.scanner for s in plan.shards if s.targets)
    _, report = portscan_fleet.scan_shard(plan_inputs(plan), empty, processes=1)
    assert report["hosts"] == []
    assert report["summary"]["hosts"] == 0
    assert report["shard"]["scanner"] == empty
    jsonschema.validate(report, report_schema())
    _, other = portscan_fleet.scan_shard(plan_inputs(plan), full, processes=1)
    merged = merge_reports([report, other], plan=plan)
    assert [(s.scanner, s.status) for s in merged.shards] == sorted(
        [(empty, "ok"), (full, "ok")], key=lambda s: [x.scanner for x in plan.shards].index(s[0]))
    assert [h.name for h in merged.hosts] == ["t1"]
