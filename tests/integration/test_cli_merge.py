"""``portscan merge`` at parity with the Ansible ``portscan_merge``, through the real command
line on loopback: the page (``--report``), the matrix by the groups of a policy file and its
expectations per vantage (``--policy``, ``--vantage-policy``), drift per vantage against a
merged baseline (``--baseline``), the vantage of a single scan (``--vantage``); bad input is
one line before the merge, a full disk one line after it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from support import closed_port

from nornir_portscan.reports.data import report_schema

EXIT_OK, EXIT_VIOLATED, EXIT_INPUT, EXIT_SCAN = 0, 1, 2, 3
FAST = ("--timeout", "0.3", "--processes", "1", "--no-progress")
WEB, DB = "127.0.0.2", "127.0.0.3"


def merged_schema() -> dict[str, Any]:
    schema = report_schema()
    return {"$schema": schema["$schema"], "$defs": schema["$defs"],
            "$ref": "#/$defs/mergedReport"}  # fmt: skip


@pytest.fixture
def lab(listeners, tmp_path: Path) -> dict[str, object]:
    """An open port on WEB only, a closed one everywhere, a policy file of two groups and a
    policy for the vantage ``users``, where WEB's open port is expected filtered."""
    port = listeners.open(WEB)
    closed = closed_port(WEB)
    policy = tmp_path / "policy.yml"
    policy.write_text(
        f"groups:\n  web: {{hosts: [{WEB}], expect_open: '{port}'}}\n"
        f"  db: {{hosts: [{DB}], expect_closed: '{port}'}}\n"
    )
    users = tmp_path / "users.yml"
    users.write_text(
        f"groups:\n  web: {{hosts: [{WEB}], expect_open: '', expect_filtered: '{port}'}}\n"
    )
    return {"port": port, "ports": f"{port},{closed}", "policy": policy, "users": users}


def _shards(run_cli, tmp_path: Path, ports: str) -> list[str]:
    paths = []
    for index in range(2):
        path = tmp_path / f"shard{index}.json"
        done = run_cli("--shard", f"{index}/2", f"{WEB}-3", "-p", ports, "--json", str(path),
                       *FAST)  # fmt: skip
        assert done.returncode == EXIT_OK, done.stderr
        paths.append(str(path))
    return paths


def test_the_merge_is_judged_by_the_policy_file_s_groups_and_shown_as_a_page(
    run_cli, lab, tmp_path: Path
) -> None:
    shards = _shards(run_cli, tmp_path, str(lab["ports"]))
    out, page, html = tmp_path / "m.json", tmp_path / "m.md", tmp_path / "m.html"
    done = run_cli("merge", *shards, "--policy", str(lab["policy"]), "--json", str(out),
                   "--report", str(page))  # fmt: skip
    assert done.returncode == EXIT_OK, done.stderr
    data = json.loads(out.read_text())
    jsonschema.validate(data, merged_schema())
    assert data["matrix"]["groups"] == ["db", "web"]
    port = lab["port"]
    cells = {(c["group"], port): (c["verdict"], c["passed"], c["failed"])
             for c in data["matrix"]["cells"] if c["first"] <= port <= c["last"]}  # fmt: skip
    assert cells == {("db", port): ("closed", 1, 0), ("web", port): ("open", 1, 0)}
    assert data["compliance"] == {"compliant": 2, "non_compliant": 0, "error": 0, "violations": 0}
    assert data["failed_hosts"] == []
    text = page.read_text()
    assert text.startswith("# Port exposure audit from many vantages")
    assert "## Reachability matrix" in text
    assert "| — | web |" in text
    done = run_cli("merge", *shards, "--policy", str(lab["policy"]), "--report", str(html))
    assert done.returncode == EXIT_OK, done.stderr
    assert html.read_text().lstrip().lower().startswith("<!doctype html>")


def test_a_single_scan_from_a_vantage_is_judged_and_compared_as_that_vantage(
    run_cli, lab, listeners, tmp_path: Path
) -> None:
    """A whole scan given ``--vantage users``: its hosts are seen from ``users``, judged by
    that vantage's policy and compared with ``users`` in the merged baseline only."""
    base = tmp_path / "base.json"
    done = run_cli(f"{WEB}-3", "-p", str(lab["ports"]), "--json", str(base), *FAST)
    assert done.returncode == EXIT_OK, done.stderr
    baseline = tmp_path / "baseline.json"
    done = run_cli("merge", "--vantage", "users", str(base), "--json", str(baseline))
    assert done.returncode == EXIT_OK, done.stderr
    assert {h["vantage"] for h in json.loads(baseline.read_text())["hosts"]} == {"users"}

    listeners.close()  # WEB's port now closed: drift from users
    scan = tmp_path / "now.json"
    done = run_cli(f"{WEB}-3", "-p", str(lab["ports"]), "--json", str(scan), *FAST)
    assert done.returncode == EXIT_OK, done.stderr
    out = tmp_path / "m.json"
    done = run_cli("merge", "--vantage", "users", str(scan), "--policy", str(lab["policy"]),
                   "--vantage-policy", f"users={lab['users']}", "--baseline", str(baseline),
                   "--json", str(out))  # fmt: skip
    assert done.returncode == EXIT_VIOLATED, done.stderr
    assert done.stderr == (
        "portscan: error: 1 (target, vantage) did not meet its expectations: see failed_hosts\n"
    )
    data = json.loads(out.read_text())
    jsonschema.validate(data, merged_schema())
    assert data["failed_hosts"] == [f"{WEB}@users"]  # expected filtered from users, closed
    (web,) = [h for h in data["hosts"] if h["name"] == WEB]
    assert web["vantage"] == "users"
    assert web["policy"] == {"expect_open": "", "expect_filtered": str(lab["port"])}
    assert [s["vantage"] for s in data["shards"]] == ["users"]
    drift = data["drift"]
    assert [(h["name"], h["vantage"], h["closed"]) for h in drift["hosts"]] == [
        (WEB, "users", [lab["port"]])
    ]
    assert (drift["vantages_appeared"], drift["vantages_disappeared"]) == ([], [])
    assert drift["confirming"] is False

    # without --vantage the scan is from no vantage: not compared with users' hosts
    done = run_cli("merge", str(scan), "--baseline", str(baseline), "--json", str(out))
    assert done.returncode == EXIT_OK, done.stderr
    drift = json.loads(out.read_text())["drift"]
    assert (drift["vantages_appeared"], drift["vantages_disappeared"]) == ([None], ["users"])
    assert drift["hosts"] == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--report", "{tmp}/m.txt"],
         "unknown report format '{tmp}/m.txt': use a .md or .html file name, e.g. 'audit.html'"),
        (["--report", "{tmp}/no/m.md"],
         "cannot write the merged page to '{tmp}/no/m.md': no such directory '{tmp}/no'; give a "
         "path in an existing directory, e.g. 'm.md'"),
        (["--vantage-policy", "users"],
         "invalid --vantage-policy 'users': use VANTAGE=FILE, e.g. users=users.yml"),
        (["--vantage", "users"],
         "report '{tmp}/shard0.json' is a shard: its vantage is its plan's; give a vantage to "
         "whole scans only, e.g. 'portscan merge --vantage users scan.json'"),
        (["--vantage", " "], "invalid vantage ' ': give a label, e.g. 'users'"),
        (["--vantage-policy", "u={tmp}/users.yml", "--vantage-policy", "u={tmp}/users.yml"],
         "--vantage-policy 'u' is given twice: give one file per vantage, e.g. u=users.yml"),
        (["--policy", "{tmp}/none.yml"], "cannot read policy file '{tmp}/none.yml': No such file"),
        (["--baseline", "{tmp}/none.json"], "cannot read baseline '{tmp}/none.json'"),
    ],
)
def test_bad_input_is_one_line_and_nothing_is_written(run_cli, lab, tmp_path, args, message):
    shards = _shards(run_cli, tmp_path, str(lab["ports"]))
    out = tmp_path / "m.json"
    done = run_cli("merge", *shards, "--json", str(out),
                   *(a.format(tmp=tmp_path) for a in args))  # fmt: skip
    assert done.returncode == EXIT_INPUT, done.stderr
    assert done.stderr.startswith("portscan: error: " + message.format(tmp=tmp_path))
    assert done.stderr.count("\n") == 1
    assert done.stdout == ""
    assert not out.exists()


def test_a_full_disk_for_the_page_is_one_line_and_exit_3(run_cli, lab, tmp_path: Path) -> None:
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a tmpfs needs root")
    shards = _shards(run_cli, tmp_path, str(lab["ports"]))
    disk = tmp_path / "disk"
    disk.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4k", "tmpfs", str(disk)],
                          capture_output=True, text=True)  # fmt: skip
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {made.stderr.strip()}")
    try:
        (disk / "filler").write_bytes(b"x" * 4096)
        page = disk / "m.html"
        done = run_cli("merge", *shards, "--report", str(page))
        assert done.returncode == EXIT_SCAN
        assert done.stdout.startswith("HOST")  # the table is shown all the same
        assert done.stderr.startswith(f"portscan: error: cannot write the merged page '{page}'")
        assert done.stderr.count("\n") == 1
        assert "Traceback" not in done.stderr
        assert sorted(p.name for p in disk.iterdir()) == ["filler"]
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def test_a_shard_that_failed_its_own_expectations_fails_the_merge(run_cli, lab, tmp_path):
    """Shards scanned with ``--expect-open`` of a port closed on DB, merged with no policy:
    DB does not pass (its shard said so), the merge exits 1."""
    paths = []
    for index in range(2):
        path = tmp_path / f"shard{index}.json"
        done = run_cli("--shard", f"{index}/2", f"{WEB}-3", "-p", str(lab["ports"]),
                       "--expect-open", str(lab["port"]), "--json", str(path), *FAST)  # fmt: skip
        assert done.returncode in (EXIT_OK, EXIT_VIOLATED), done.stderr
        paths.append(str(path))
    out = tmp_path / "m.json"
    done = run_cli("merge", *paths, "--json", str(out))
    assert done.returncode == EXIT_VIOLATED, done.stderr
    data = json.loads(out.read_text())
    assert data["failed_hosts"] == [f"{DB}@None"]
    (db,) = [h for h in data["hosts"] if h["name"] == DB]
    assert f"port {lab['port']} closed (expected open)" in db["failure"]
