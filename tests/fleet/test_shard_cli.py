"""``portscan --shard i/n`` and ``portscan merge`` through the real command line, on loopback:
the shards' merge is the unsharded scan; a missing shard's hosts are error and the merge exits
3; a real change between two runs of a shard is a conflict; bad input is one line, exit 2."""

from __future__ import annotations

import json
import os
from pathlib import Path

import jsonschema
import pytest
from support import CLI, REPO, closed_port, in_netns

from nornir_portscan.cli import main
from nornir_portscan.fleet import parse_shard
from nornir_portscan.reports.data import report_schema

HOSTS = "127.0.0.1-8"


def _scan(run_cli, tmp_path, name, *args):
    path = tmp_path / name
    done = run_cli(*args, "--json", str(path), "--no-progress", "--processes", "1")
    assert done.returncode == 0, done.stderr
    return json.loads(path.read_text())


def _states(hosts):
    return {
        (h["name"], h["address"]): (h["status"], h["open_ports"], h["filtered_ports"],
                                    h["closed_count"], h["error_ports"])
        for h in hosts
    }  # fmt: skip


@pytest.fixture
def ports(listeners):
    """Two ports open on some loopback hosts, one closed everywhere."""
    first = listeners.open("127.0.0.2")
    listeners.open("127.0.0.5", first)
    second = listeners.open("127.0.0.7")
    return f"{first},{second},{closed_port()}"


def test_the_merged_shards_are_the_unsharded_scan(run_cli, tmp_path, ports):
    whole = _scan(run_cli, tmp_path, "whole.json", HOSTS, "-p", ports)
    a = _scan(run_cli, tmp_path, "a.json", "--shard", "0/2", HOSTS, "-p", ports)
    b = _scan(run_cli, tmp_path, "b.json", "--shard", "1/2", HOSTS, "-p", ports)
    for shard in (a, b):
        jsonschema.validate(shard, report_schema())
    names = [h["name"] for h in a["hosts"]] + [h["name"] for h in b["hosts"]]
    assert sorted(names) == sorted(h["name"] for h in whole["hosts"])  # each once
    assert a["shard"]["plan"]["hash"] == b["shard"]["plan"]["hash"]
    assert (a["shard"]["scanner"], b["shard"]["scanner"]) == ("0", "1")
    out = tmp_path / "merged.json"
    done = run_cli("merge", str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--json", str(out))
    assert (done.returncode, done.stderr) == (0, "")
    merged = json.loads(out.read_text())
    assert _states(merged["hosts"]) == _states(whole["hosts"])
    assert merged["complete"] is True
    assert [s["status"] for s in merged["shards"]] == ["ok", "ok"]
    assert sum(s["probes_sent"] for s in merged["shards"]) == merged["summary"]["probes_sent"]
    assert merged["summary"]["open_ports"] == 3
    assert "8 hosts, 2 of 2 shards ok, 3 open" in done.stdout
    # the expanded range is one entry of each shard's plan, whatever its size
    assert a["shard"]["plan"]["targets"] == [["127.0.0.1", 8]]


def test_a_missing_shard_of_a_large_range_is_listed_host_by_host(run_cli, tmp_path):
    """A shard of 4,096 hosts carries its plan as one run of addresses; the merge remakes the
    plan from it and lists every host of the shards that did not report as error."""
    hosts, port = "127.77.0.0/20", str(closed_port())
    done = run_cli("--shard", "0/64", hosts, "-p", port, "--timeout", "0.2", "--json",
                   str(tmp_path / "a.json"), "--no-progress", "--processes", "1")  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "a.json").read_text())
    assert report["shard"]["plan"]["targets"] == [["127.77.0.0", 4096]]
    assert len(json.dumps(report["shard"])) < 2000
    out = tmp_path / "merged.json"
    done = run_cli("merge", str(tmp_path / "a.json"), "--json", str(out))
    assert done.returncode == 3, done.stderr
    merged = json.loads(out.read_text())
    assert len(merged["hosts"]) == 4096
    lost = [h for h in merged["hosts"] if h["error_ports"]]
    assert len(lost) == 4096 - len(report["hosts"])
    assert all(h["error"] == "scanner-unreachable" for h in lost)


def test_where_a_shard_ran_is_in_its_report(run_cli, tmp_path):
    report = _scan(run_cli, tmp_path, "a.json", "--shard", "0/1", "127.0.0.1", "-p", "9")
    where = report["shard"]["where"]
    assert where["host"] == os.uname().nodename
    assert where["source_addresses"] == ["127.0.0.1"]
    assert where["netns"] == Path("/proc/self/ns/net").stat().st_ino


def test_a_shard_run_in_a_namespace_says_which(netns, tmp_path):
    out = tmp_path / "ns.json"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = in_netns(netns, *CLI, "--shard", "0/1", "127.0.0.1", "-p", "9", "--json",
                    str(out), "--no-progress", env=env)  # fmt: skip
    assert done.returncode == 0, done.stderr
    where = json.loads(out.read_text())["shard"]["where"]
    assert where["netns"] == Path(f"/run/netns/{netns}").stat().st_ino
    assert where["netns"] != Path("/proc/self/ns/net").stat().st_ino


def test_a_missing_shard_is_error_and_the_merge_exits_3(run_cli, tmp_path, ports):
    a = _scan(run_cli, tmp_path, "a.json", "--shard", "0/2", HOSTS, "-p", ports)
    out = tmp_path / "merged.json"
    done = run_cli("merge", str(tmp_path / "a.json"), "--json", str(out))
    assert done.returncode == 3
    lost = 8 - len(a["hosts"])
    assert done.stderr == (
        f"portscan: error: 1 of 2 shards did not report in full (1 missing); {3 * lost} ports "
        "have no answer, listed as error_ports or unscanned_ports\n"
    )
    merged = json.loads(out.read_text())
    mine = {h["name"] for h in a["hosts"]}
    for host in merged["hosts"]:
        if host["name"] not in mine:
            assert host["status"] == "error"
            assert host["error"] == "scanner-unreachable"
            assert host["closed_count"] == 0
            assert host["open_ports"] == []
            assert len(host["error_ports"]) == 3
    assert len(merged["hosts"]) == 8
    assert merged["shards"][1] == {**merged["shards"][1], "status": "missing", "source": None}


def test_a_port_that_changed_between_two_runs_of_a_shard_is_a_conflict(
    run_cli, tmp_path, listeners
):
    port = listeners.open("127.0.0.1")
    _scan(run_cli, tmp_path, "first.json", "--shard", "0/1", "127.0.0.1", "-p", str(port))
    listeners.close()
    _scan(run_cli, tmp_path, "again.json", "--shard", "0/1", "127.0.0.1", "-p", str(port))
    done = run_cli("merge", str(tmp_path / "first.json"), str(tmp_path / "again.json"))
    assert done.returncode == 1
    assert done.stderr == "portscan: error: shards answered 1 port differently (conflicts)\n"
    assert f"conflict: 127.0.0.1 port {port} from -: open by 0, closed by 0" in done.stdout


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (["--shard", "3/2", "127.0.0.1"], "portscan: error: invalid shard '3/2': the index "
         "counts from 0 and must be below the count 2, e.g. '1/2'"),
        (["--shard", "x", "127.0.0.1"], "portscan: error: invalid shard 'x': use INDEX/COUNT, "
         "counting from 0, e.g. '0/2' and '1/2'"),
        (["--shard", "0/0", "127.0.0.1"], "portscan: error: invalid shard '0/0': the count "
         "must be 1 to 4096, e.g. '0/2'"),
        (["--shard", "0/2"], "portscan: error: no targets given"),
        (["merge"], "portscan merge: error: the following arguments are required: REPORT"),
        (["merge", "missing.json"], "portscan: error: cannot read report 'missing.json': No "
         "such file or directory"),
        (["merge", "notjson.json"], "portscan: error: report 'notjson.json' is not JSON"),
        (["merge", "list.json"], "portscan: error: report 'list.json' is not a portscan JSON "
         "report; give JSON reports written by 'portscan --json FILE ...'"),
        (["merge", "list.json", "--json", "nodir/m.json"], "portscan: error: cannot write the "
         "merged report to 'nodir/m.json': no such directory 'nodir'"),
    ],
)  # fmt: skip
def test_bad_input_gets_one_line_and_exit_2(capsys, tmp_path, monkeypatch, argv, line):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notjson.json").write_text("{")
    (tmp_path / "list.json").write_text("[]")
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse's own errors
        code = exit_.code
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith(line), err
    assert err.count("\n") == 1


@pytest.mark.parametrize(("text", "shard"), [("0/1", (0, 1)), ("1/2", (1, 2)), (" 7/8 ", (7, 8))])
def test_valid_shards(text, shard):
    assert parse_shard(text) == shard


def test_every_shard_of_a_job_scans_its_part_once():
    from nornir_portscan.fleet import shard_job
    from nornir_portscan.pipeline import build_job

    job = build_job(["127.0.0.1-40", "127.0.1.0/30"], "22")
    parts = [shard_job(job, i, 3) for i in range(3)]
    seen = [t for part, _, _ in parts for t in part.request.targets]
    assert sorted(seen, key=str) == sorted(job.request.targets, key=str)
    assert len({plan.hash for _, plan, _ in parts}) == 1
    assert all(part.reports.json is None for part, _, _ in parts)


def test_a_shard_compared_with_a_whole_baseline_misses_no_host(run_cli, tmp_path):
    """The other shards' hosts are not gone: the baseline keeps only this shard's (without
    that, 6 of 8 hosts 'disappeared' and the exit was 1)."""
    _scan(run_cli, tmp_path, "full.json", HOSTS, "-p", "9")
    done = run_cli("--shard", "0/2", HOSTS, "-p", "9", "--baseline", str(tmp_path / "full.json"),
                   "--no-progress")  # fmt: skip
    assert done.returncode == 0, done.stdout
    assert "0 appeared, 0 disappeared" in done.stdout


def test_a_shard_report_goes_to_stdout_too(run_cli):
    done = run_cli("--shard", "1/2", HOSTS, "-p", "9", "--json", "-", "--no-progress")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["shard"]["scanner"] == "1"
    assert report["shard"]["hosts"] == len(report["hosts"])


def test_an_interrupted_shard_is_written_and_the_merge_says_run_it_again(tmp_path):
    """Ctrl-C part way: the shard's partial report still has its shard section; the merge
    calls the shard interrupted, keeps what it answered and exits 3."""
    import signal
    import subprocess
    import time

    out = tmp_path / "cut.json"
    argv = [*CLI, "--shard", "0/1", "127.0.0.1", "-p", "1-4000", "--rate", "400", "--json",
            str(out), "--no-progress", "--processes", "1"]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # until a worker runs: the scan has begun
        found = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True).stdout
        if found:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    report = json.loads(out.read_text())
    assert report["interrupted"] is True
    assert report["shard"]["scanner"] == "0"
    merged = subprocess.run([*CLI, "merge", str(out), "--json", "-"], capture_output=True,
                            text=True, timeout=60)  # fmt: skip
    assert merged.returncode == 3, merged.stderr
    data = json.loads(merged.stdout)
    assert data["shards"][0]["status"] == "interrupted"
    (host,) = data["hosts"]
    assert host["unscanned_ports"]
    assert host["closed_count"] == report["hosts"][0]["closed_count"]
