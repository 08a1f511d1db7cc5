"""The CLI at every stage of a run: report destinations, full disks, and Ctrl-C while names
resolve, during a wait and during a baseline re-check. Real processes, real sockets."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support import CLI, closed_port, in_netns, nft, wait_for_main_scan

EXIT_INPUT, EXIT_SCAN, EXIT_INTERRUPTED = 2, 3, 130
FAST = ("--timeout", "0.5", "--no-progress")


def start_cli(*args: str, netns: str | None = None) -> subprocess.Popen[str]:
    prefix = ["ip", "netns", "exec", netns] if netns else []
    return subprocess.Popen(
        [*prefix, *CLI, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # a process group of its own, as a terminal's job
    )


def interrupt(proc: subprocess.Popen[str], *, limit: float) -> tuple[int, str, str, float]:
    """Ctrl-C as a terminal sends it (to the process group of the CLI); returns the exit code,
    stdout, stderr and how long the CLI took to leave."""
    os.killpg(proc.pid, signal.SIGINT)
    sent = time.monotonic()
    out, err = proc.communicate(timeout=limit + 10)
    return proc.returncode, out, err, time.monotonic() - sent


@pytest.mark.parametrize("option", ["--json", "--xml", "--report"])
def test_a_report_into_a_missing_directory_is_refused_before_the_scan(run_cli, tmp_path, option):
    path = tmp_path / "missing" / ("r.html" if option == "--report" else "r.out")
    done = run_cli(option, str(path), "-p", str(closed_port()), *FAST, "127.0.0.1")
    what = {"--json": "JSON report", "--xml": "XML report", "--report": "HTML report"}[option]
    assert (done.returncode, done.stdout) == (EXIT_INPUT, "")
    assert done.stderr == (
        f"portscan: error: cannot write the {what} to '{path}': no such directory "
        f"'{path.parent}'; give a path in an existing directory, e.g. '{path.name}'\n"
    )


@pytest.fixture
def tiny_disk(tmp_path: Path):
    """A 64 KiB tmpfs, as root; skipped where it cannot be mounted."""
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / "disk"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)],
                          capture_output=True, text=True)  # fmt: skip
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {made.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_a_full_disk_keeps_the_previous_report_and_still_shows_the_outcome(run_cli, tiny_disk):
    report = tiny_disk / "scan.json"
    first = run_cli("--json", str(report), "-p", str(closed_port()), *FAST, "127.0.0.1")
    assert first.returncode == 0, first.stderr
    previous = report.read_bytes()
    fd = os.open(tiny_disk / "filler", os.O_WRONLY | os.O_CREAT)
    try:  # fill the disk up to the last byte
        for size in (4096, 1):
            while True:
                try:
                    os.write(fd, b"x" * size)
                except OSError:
                    break
    finally:
        os.close(fd)
    done = run_cli("--json", str(report), "-p", "1-3", *FAST, "127.0.0.1-60")  # a bigger report
    assert done.returncode == EXIT_SCAN
    assert done.stdout.startswith("HOST")  # the table is printed all the same
    assert done.stderr.startswith(f"portscan: error: cannot write the JSON report '{report}': ")
    assert done.stderr.count("\n") == 1
    assert "Traceback" not in done.stderr
    assert report.read_bytes() == previous
    assert sorted(p.name for p in tiny_disk.iterdir()) == ["filler", "scan.json"]


SILENT_DNS = """
import socket, sys, time
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind(("127.0.0.1", 53))
print("ready", flush=True)
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    sock.settimeout(1)
    try:
        sock.recvfrom(4096)  # and never answer
        print("asked", flush=True)
    except OSError:
        pass
"""


@pytest.fixture
def slow_resolver(netns: str):
    """``netns`` whose resolver asks a server on its own loopback that never answers: a name
    lookup there waits seconds and nothing can leave (the namespace has no route out)."""
    conf = Path("/etc/netns") / netns
    conf.mkdir(parents=True, exist_ok=True)
    (conf / "resolv.conf").write_text("nameserver 127.0.0.1\noptions timeout:5 attempts:3\n")
    server = subprocess.Popen(["ip", "netns", "exec", netns, sys.executable, "-c", SILENT_DNS],
                              stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert server.stdout is not None
        assert server.stdout.readline() == "ready\n"
        yield server
    finally:
        server.kill()
        server.wait(5)
        shutil.rmtree(conf, ignore_errors=True)


@pytest.mark.netns
def test_ctrl_c_while_names_resolve_is_one_line_at_once(netns, slow_resolver):
    proc = start_cli("-p", "22", *FAST, "slow-a.test", "slow-b.test", netns=netns)
    assert slow_resolver.stdout.readline() == "asked\n"  # the CLI waits for an answer now
    code, out, err, took = interrupt(proc, limit=1)
    assert (code, out) == (EXIT_INTERRUPTED, ""), err
    assert err == "portscan: interrupted before the scan\n"
    assert took < 1.0


def test_ctrl_c_during_a_wait_keeps_the_main_scan(tmp_path):
    port = closed_port()
    out = tmp_path / "wait.json"
    proc = start_cli("--wait", "--expect-open", str(port), "-p", str(port), "--interval", "30",
                     "--wait-timeout", "120", "--json", str(out), *FAST, "127.0.0.1")  # fmt: skip
    wait_for_main_scan(proc)
    time.sleep(0.5)  # into the 30 s interval (driving the test)
    code, stdout, err, took = interrupt(proc, limit=1)
    assert code == EXIT_INTERRUPTED
    assert "Traceback" not in err
    assert err.endswith("portscan: interrupted; the report holds partial results\n")
    assert took < 1.0
    data = json.loads(out.read_text())
    assert data["interrupted"] is True
    assert data["probes_sent"] >= 1
    (host,) = data["hosts"]
    assert (host["status"], host["closed_count"]) == ("up", 1)
    assert stdout.startswith("HOST")


@pytest.mark.netns
def test_ctrl_c_during_a_recheck_keeps_the_main_scan(netns, tmp_path):
    """The re-check of a drifted, now dropped port takes seconds; Ctrl-C during it must leave
    the main scan's report, not the re-check's partial one."""
    listener = subprocess.Popen(
        ["ip", "netns", "exec", netns, sys.executable, "-c",
         "import socket,time\ns=socket.socket()\ns.bind(('127.0.0.1',2000))\ns.listen()\n"
         "print('ready',flush=True)\ntime.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert listener.stdout is not None
        assert listener.stdout.readline() == "ready\n"
        base = tmp_path / "base.json"
        saved = in_netns(netns, *CLI, "-p", "2000,2001", *FAST, "--json", str(base), "127.0.0.1")
        assert saved.returncode == 0, saved.stderr
        data = json.loads(base.read_text())  # say 2001 was open, then drop it: it drifted
        data["hosts"][0]["ports"].append(
            {"port": 2001, "protocol": "tcp", "state": "open", "reason": "syn-ack",
             "rtt_ms": 0.1, "attempts": 1})  # fmt: skip
        base.write_text(json.dumps(data))
        nft(netns, "table inet t {\n chain input {\n type filter hook input priority 0;\n"
                   " tcp dport 2001 drop\n }\n}\n")  # fmt: skip
        out = tmp_path / "now.json"
        proc = start_cli("-p", "2000,2001", "--timeout", "1", "--retries", "0", "--no-progress",
                         "--baseline", str(base), "--recheck", "5", "--json", str(out),
                         "127.0.0.1", netns=netns)  # fmt: skip
        wait_for_main_scan(proc)
        time.sleep(0.5)  # into the re-check, which takes seconds (driving the test)
        code, stdout, err, took = interrupt(proc, limit=1)
    finally:
        listener.kill()
        listener.wait(5)
    assert code == EXIT_INTERRUPTED, err
    assert "Traceback" not in err
    assert took < 1.0
    report = json.loads(out.read_text())
    assert report["interrupted"] is True
    (host,) = report["hosts"]
    assert (host["status"], host["open_ports"], host["filtered_ports"]) == ("up", [2000], [2001])
    assert report["probes_sent"] >= 2
    assert stdout.startswith("HOST")
