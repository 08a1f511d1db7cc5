"""The readable report of a merged scan: its reachability matrix, exact in Markdown, escaped in
HTML, short for many ports; a lost shard's cells are errors, never closed or filtered."""

from __future__ import annotations

import json
from html.parser import HTMLParser

from nornir_portscan.audit.policy import parse_policy
from nornir_portscan.fleet import FleetTarget, Scanner, build_plan, merge_reports, shard_section
from nornir_portscan.fleet.baseline import drift_section, merged_drift, rechecks
from nornir_portscan.fleet.matrix import reachability_matrix
from nornir_portscan.models import HostResult, HostStatus, PortResult, PortState, ScanOptions
from nornir_portscan.models import ScanReport as Report
from nornir_portscan.reports.data import report_to_dict
from nornir_portscan.reports.pages import merged_to_html, merged_to_markdown

OPEN = PortResult(22, PortState.OPEN, "syn-ack", 0.1, 1)
FILTERED_80 = PortResult(80, PortState.FILTERED, "no-response", None, 2)


def _shard(plan, scanner, opened):
    hosts = [
        HostResult(t.name, t.address, HostStatus.UP, (OPEN,) if t.name in opened else (),
                   1 if t.name in opened else 2, None, (22, 80))
        for t in plan.shard(scanner).targets
    ]  # fmt: skip
    data = report_to_dict(Report(tuple(hosts), ScanOptions(), 1.0, 2.0, 7))
    data["shard"] = shard_section(plan, plan.shard(scanner), {"host": f"m-{scanner}"})
    return json.loads(json.dumps(data))


def _merged():
    """pos1 and pos2 (group cardholder) and web1 (no group), from users (scanner u, its report
    lost) and mgmt (scanner m: port 22 open on pos1 and web1)."""
    targets = [FleetTarget(n, f"127.0.0.{i}") for i, n in enumerate(("pos1", "pos2", "web1"), 1)]
    plan = build_plan([Scanner("u", "users"), Scanner("m", "mgmt")], targets, "22,80")
    merged = merge_reports([_shard(plan, "m", {"pos1", "web1"})], plan=plan)
    policy = {"mgmt": parse_policy({"expect_open": "22"}),
              "users": parse_policy({"expect_filtered": "22"})}  # fmt: skip
    groups = {"pos1": ["cardholder"], "pos2": ["cardholder"]}
    matrix = reachability_matrix(merged, groups, {"pos1": policy, "pos2": policy})
    return merged.to_dict(matrix=matrix)


MATRIX = """\
## Reachability matrix

| Vantage | Group | Ports | Verdict | Open | Closed | Filtered | Error | Conflict | Expectations |
|---|---|---|---|---|---|---|---|---|---|
| mgmt | cardholder | 22 | **mixed** | 1 | 1 | 0 | 0 | 0 | 1 pass, 1 FAIL |
| mgmt | cardholder | 80 | closed | 0 | 2 | 0 | 0 | 0 | — |
| mgmt | ungrouped | 22 | open | 1 | 0 | 0 | 0 | 0 | — |
| mgmt | ungrouped | 80 | closed | 0 | 1 | 0 | 0 | 0 | — |
| users | cardholder | 22 | **error** | 0 | 0 | 0 | 2 | 0 | 2 not judged |
| users | cardholder | 80 | **error** | 0 | 0 | 0 | 2 | 0 | — |
| users | ungrouped | 22,80 | **error** | 0 | 0 | 0 | 1 | 0 | — |
"""


def test_the_matrix_of_a_merge_with_a_lost_shard_is_exact():
    text = merged_to_markdown(_merged())
    assert text.splitlines()[:3] == [
        "# Port exposure audit from many vantages",
        "",
        "**FAILED: some (target, vantage) did not meet its expectations (incomplete: some "
        "ports have no answer)**",
    ]
    assert MATRIX in text
    assert "| u | users | **missing (scanner-unreachable)** | 0 | 0 | — |" in text
    assert [line for line in text.splitlines() if line.startswith("## ")] == [
        "## Reachability matrix",
        "## Hosts",
        "## Shards",
    ]


def test_a_thousand_closed_ports_are_one_row():
    plan = build_plan([Scanner("m", "mgmt")], [FleetTarget("web1", "127.0.0.1")], "1-1000")
    host = HostResult("web1", "127.0.0.1", HostStatus.UP, (OPEN, FILTERED_80), 998, None,
                      tuple(range(1, 1001)))  # fmt: skip
    data = report_to_dict(Report((host,), ScanOptions(), 1.0, 2.0, 7))
    data["shard"] = shard_section(plan, plan.shard("m"), {})
    merged = merge_reports([json.loads(json.dumps(data))], plan=plan).to_dict()
    # a cell per run of ports that say the same: 1-21, 22, 23-79, 80, 81-1000
    assert [(c["first"], c["last"]) for c in merged["matrix"]["cells"]] == [
        (1, 21), (22, 22), (23, 79), (80, 80), (81, 1000)
    ]  # fmt: skip
    rows = merged_to_markdown(merged).split("## Reachability matrix")[1].split("## Hosts")[0]
    assert [line.split(" | ")[2:4] for line in rows.splitlines() if line.startswith("| mgmt")] == [
        ["1-21,23-79,81-1000", "closed"],
        ["22", "open"],
        ["80", "filtered"],
    ]
    assert merged_to_markdown(merged).splitlines()[2] == "**merged: no expectations**"


class _Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: set[str] = set()
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_html_escapes_every_group_and_host_name():
    data = _merged()
    for cell in data["matrix"]["cells"]:
        cell["group"] = "<script>alert(1)</script>"
    data["hosts"][0]["name"] = '"><img src=x>'
    page = merged_to_html(data)
    parsed = _Collect()
    parsed.feed(page)
    assert "script" not in parsed.tags
    assert "img" not in parsed.tags
    assert "<script>alert(1)</script>" in "".join(parsed.text)
    assert "<img" not in page
    assert page.count('<tr class="violation">') >= 4  # the failing and error cells, and more


def test_the_drift_of_a_merge_is_shown_per_vantage():
    data = _merged()
    baseline = json.loads(json.dumps(data))
    for host in baseline["hosts"]:
        if (host["name"], host["vantage"]) == ("web1", "mgmt"):
            host["ports"] = []  # 22 was closed from mgmt; it is open now
    baseline["hosts"].append({**baseline["hosts"][0], "name": "old", "address": "127.0.0.9"})
    targets = [FleetTarget(n, f"127.0.0.{i}") for i, n in enumerate(("pos1", "pos2", "web1"), 1)]
    plan = build_plan([Scanner("u", "users"), Scanner("m", "mgmt")], targets, "22,80")
    merged = merge_reports([_shard(plan, "m", {"pos1", "web1"})], plan=plan)
    drift = merged_drift(baseline, merged)
    data.update(drift_section(drift, rechecks(drift, merged)))
    text = merged_to_markdown(data)
    section = text.split("## Drift\n\n")[1].split("\n\n## ")[0]
    assert section.splitlines() == [
        "| Host | Vantage | Change | Port | Before | After | Unexpected |",
        "|---|---|---|---|---|---|---|",
        "| web1 (127.0.0.3) | mgmt | **opened** | 22 | not open | open | yes |",
        f"| old (127.0.0.9) from {baseline['hosts'][0]['vantage']} | — | **disappeared** | — | — "
        "| — | — |",
        "",
        "1 differing ports, not re-checked yet: each is to be probed again from its own vantage "
        "(recheck).",
    ]
    data["drift"].update(confirming=True, rechecked=1, confirmed=1)
    assert "Re-checked 1 differing ports, each from its own vantage; 1 confirmed." in (
        merged_to_html(data)
    )
