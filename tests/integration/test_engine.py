"""The engine against real sockets on loopback (and in private network namespaces)."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from support import CLI, REPO, closed_port, in_netns, ipv6_loopback, listening_ports, nft

from nornir_portscan import (
    HostStatus,
    OptionError,
    PortState,
    Progress,
    WorkerPool,
    build_request,
    scan,
)


def test_open_and_closed_ports_are_exact_and_repeatable(listeners):
    hosts = ["127.0.0.1", "127.0.0.2", "127.3.4.5"]
    expected = {h: sorted(listeners.open(h) for _ in range(3)) for h in hosts}
    closed = closed_port()
    ports = sorted({p for ps in expected.values() for p in ps} | {closed})
    request = build_request(hosts, ports, processes=2)
    for _ in range(3):
        report = scan(request)
        assert [h.name for h in report.hosts] == hosts
        for host in report.hosts:
            assert host.status is HostStatus.UP
            assert host.open_ports == expected[host.name]
            assert host.filtered_ports == []
            assert host.error_ports == []
            assert host.closed_count == len(ports) - 3
            assert {p.reason for p in host.ports} == {"syn-ack"}
            assert all(p.rtt_ms is not None and p.attempts == 1 for p in host.ports)


def test_full_port_range_has_no_false_opens(listeners):
    """All 65,535 ports, ephemeral range included: a self-connect must never read as open."""
    opened = sorted(listeners.open("127.0.0.9") for _ in range(2))
    report = scan(build_request(["127.0.0.9"], "-"))
    (host,) = report.hosts
    assert host.open_ports == sorted(listening_ports("127.0.0.9"))
    assert set(opened) <= set(host.open_ports)
    assert host.closed_count == 65535 - len(host.open_ports)
    assert report.probes_sent >= 65535


def test_closed_ports_listed_on_request(listeners):
    port = listeners.open()
    closed = closed_port()
    report = scan(build_request(["127.0.0.1"], [port, closed], include_closed=True))
    states = {p.port: (p.state, p.reason) for p in report.hosts[0].ports}
    assert states == {port: (PortState.OPEN, "syn-ack"), closed: (PortState.CLOSED, "conn-refused")}
    assert report.hosts[0].closed_count == 1


@pytest.mark.skipif(not ipv6_loopback(), reason="no IPv6 loopback here")
def test_ipv6_loopback(listeners):
    port = listeners.open("::1")
    report = scan(build_request(["[::1]"], [port, closed_port("::1")]))
    (host,) = report.hosts
    assert (host.address, host.open_ports, host.closed_count) == ("::1", [port], 1)


def test_progress_reaches_the_total(listeners):
    seen: list[Progress] = []
    scan(build_request(["127.0.0.1"], "1-3000"), progress=seen.append)
    assert seen[-1].done == seen[-1].total == 3000
    assert all(a.done <= b.done for a, b in itertools.pairwise(seen))


def test_rate_limit_is_held(listeners):
    report = scan(build_request(["127.0.0.1"], "1-3000", rate=2000))
    assert report.duration >= 1.3
    assert report.rate <= 2000 * 1.1


def test_host_timeout_keeps_partial_results(listeners):
    port = listeners.open("127.0.0.1", 0)
    report = scan(build_request(["127.0.0.1"], f"1-20000,{port}", rate=4000, host_timeout=0.6))
    (host,) = report.hosts
    assert host.status is HostStatus.TIMED_OUT
    assert host.error is not None
    assert "ports not scanned" in host.error
    assert 0 < host.closed_count < 20000


def _zombie(pid: int) -> bool:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"


def _children() -> set[int]:
    return {int(pid) for pid in Path(f"/proc/self/task/{os.getpid()}/children").read_text().split()}


def test_a_worker_pool_serves_the_scan_and_leaves_no_process(listeners):
    port = listeners.open("127.0.0.1")
    before = _children()
    with WorkerPool(3) as pool:
        assert len(_children() - before) == 3
        request = build_request(["127.0.0.1"], [port, closed_port()], processes=1)
        report = scan(request, workers=pool)
        assert len(_children() - before) == 2  # the scan took one, and stopped it
        again = scan(request, workers=pool)  # takes another
    assert _children() == before
    for done in (report, again):
        assert (done.hosts[0].open_ports, done.hosts[0].closed_count) == ([port], 1)


def test_pool_workers_that_died_while_idle_are_not_taken(listeners):
    port = listeners.open("127.0.0.1")
    before = _children()
    with WorkerPool(3) as pool:
        idle = _children() - before
        for pid in idle:
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while not all(_zombie(pid) for pid in idle) and time.monotonic() < deadline:
            time.sleep(0.01)
        request = build_request(["127.0.0.1"], f"1-300,{port}", processes=1)
        report = scan(request, workers=pool)
    (host,) = report.hosts
    assert (host.status, host.error_ports) == (HostStatus.UP, [])
    assert host.open_ports == sorted(listening_ports("127.0.0.1") & {*range(1, 301), port})
    assert _children() == before


def test_a_worker_pool_dropped_without_close_stops_its_workers():
    before = _children()
    pool = WorkerPool(2)
    assert len(_children() - before) == 2
    del pool
    assert _children() == before


def test_a_worker_pool_of_no_processes_is_refused():
    with pytest.raises(OptionError, match="invalid processes 0"):
        WorkerPool(0)


def test_worker_killed_mid_scan_loses_nothing(listeners):
    opened = sorted(listeners.open("127.0.0.1") for _ in range(3))
    killed: list[int] = []

    def kill_one_worker(progress: Progress) -> None:
        if not killed and progress.done > 2000:
            children = Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children").read_text()
            pid = int(children.split()[0])
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    report = scan(
        build_request(
            ["127.0.0.1"], "1-12000," + ",".join(map(str, opened)), rate=8000, processes=2
        ),
        progress=kill_one_worker,
    )
    assert killed
    (host,) = report.hosts
    scanned = set(range(1, 12001)) | set(opened)
    assert host.open_ports == sorted(listening_ports("127.0.0.1") & scanned)
    assert host.error_ports == []
    assert host.closed_count == len(scanned) - len(host.open_ports)


def test_unresolvable_name_is_a_host_status(netns):
    """In a namespace with only loopback, so no resolver query leaves the machine."""
    done = in_netns(netns, *CLI, "--json", "-", "-p", "80", "no-such-host.invalid", cwd=str(REPO))
    assert done.returncode == 0, done.stderr
    (host,) = json.loads(done.stdout)["hosts"]
    assert (host["name"], host["address"], host["status"]) == (
        "no-such-host.invalid",
        None,
        "unresolved",
    )
    assert host["error"]


REJECT_RULES = {
    "127.0.0.1": ("ip", "icmp type admin-prohibited", "icmp type host-unreachable"),
    # Linux reports an ICMPv6 admin-prohibited as EACCES: the error queue must decide.
    "::1": ("ip6", "icmpv6 type admin-prohibited", "icmpv6 type addr-unreachable"),
}


def test_a_port_that_drops_for_a_while_gets_more_tries(netns):
    """Port 80 listens but drops its first two SYNs (a full accept queue does that), port 81
    drops its first one only, port 82 all: once 81 answers a retry, the silent ports get
    more attempts (the schedule's unit tests say which), one of which finds 80 open; 82 stays
    filtered."""
    nft(
        netns,
        """
        table ip t {
          chain input {
            type filter hook input priority 0;
            tcp dport 80 tcp flags syn quota until 120 bytes drop
            tcp dport 81 tcp flags syn quota until 60 bytes drop
            tcp dport 82 drop
          }
        }
    """,
    )
    script = (
        "import socket, subprocess, sys\n"
        "listener = socket.create_server(('127.0.0.1', 80))\n"
        "sys.exit(subprocess.run(sys.argv[1:]).returncode)\n"
    )
    done = in_netns(
        netns, sys.executable, "-c", script, *CLI, "--json", "-", "-p", "80-83", "127.0.0.1",
        cwd=str(REPO),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    (host,) = json.loads(done.stdout)["hosts"]
    assert [(p["port"], p["state"], p["reason"]) for p in host["ports"]] == [
        (80, "open", "syn-ack"),
        (82, "filtered", "no-response"),
    ]
    attempts = {p["port"]: p["attempts"] for p in host["ports"]}
    assert attempts[80] >= 3
    assert attempts[82] >= 5
    assert host["closed_count"] == 2


@pytest.mark.parametrize("address", list(REJECT_RULES))
def test_dropped_and_rejected_ports_are_filtered_with_their_reason(netns, address):
    family, admin_prohibited, unreachable = REJECT_RULES[address]
    if address == "::1" and "::1" not in in_netns(netns, "ip", "-6", "addr", "show").stdout:
        pytest.skip("no IPv6 loopback in the namespace")
    nft(
        netns,
        f"""
        table {family} t {{
          chain input {{
            type filter hook input priority 0;
            tcp dport 81 drop
            tcp dport 82 reject with {admin_prohibited}
            tcp dport 83 reject with {unreachable}
          }}
        }}
    """,
    )
    done = in_netns(
        netns, *CLI, "--json", "-", "-p", "80-83", "--timeout", "0.5", address, cwd=str(REPO)
    )
    assert done.returncode == 0, done.stderr
    (host,) = json.loads(done.stdout)["hosts"]
    by_port = {p["port"]: (p["state"], p["reason"], p["attempts"]) for p in host["ports"]}
    assert by_port == {
        81: ("filtered", "no-response", 2),
        82: ("filtered", "admin-prohibited", 1),
        83: ("filtered", "host-unreach", 1),
    }
    assert host["closed_count"] == 1
    assert host["status"] == "up"


def test_low_open_file_limit_lowers_concurrency_and_stays_exact(listeners):
    opened = sorted(listeners.open("127.0.0.1") for _ in range(2))
    done = subprocess.run(
        [
            "prlimit",
            "--nofile=64:64",
            *CLI,
            "--json",
            "-",
            "-p",
            "1-5000," + ",".join(map(str, opened)),
            "--concurrency",
            "5000",
            "127.0.0.1",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    (host,) = report["hosts"]
    scanned = set(range(1, 5001)) | set(opened)
    assert host["open_ports"] == sorted(listening_ports("127.0.0.1") & scanned)
    assert host["error_ports"] == []
    assert any("open-file limit is 64" in w for w in report["warnings"])


def test_ctrl_c_stops_fast_writes_partial_report_and_leaves_no_process(tmp_path, listeners):
    listeners.open("127.0.0.1")
    out = tmp_path / "partial.json"
    tag = f"PORTSCAN_TEST_TAG_{os.getpid()}_{time.monotonic_ns()}"
    proc = subprocess.Popen(
        [*CLI, "--json", str(out), "-p", "-", "--rate", "2000", "127.0.0.1"],
        env={**os.environ, tag: "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(1.5)
    proc.send_signal(signal.SIGINT)
    sent = time.monotonic()
    _, stderr = proc.communicate(timeout=10)
    assert time.monotonic() - sent < 1.0
    assert proc.returncode == 130
    assert "interrupted" in stderr
    assert "Traceback" not in stderr
    report = json.loads(out.read_text())
    assert report["interrupted"] is True
    leftovers = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if tag.encode() in environ.read_bytes():
                leftovers.append(environ.parent.name)
        except OSError:
            continue
    assert leftovers == []


SCRIPT_WITHOUT_MAIN_GUARD = """
import sys, threading, warnings
from nornir_portscan import build_request, scan
port = int(sys.argv[1])
results = []
def work():
    results.append(scan(build_request(["127.0.0.1"], [port], processes=2)))
threads = [threading.Thread(target=work) for _ in range(3)]
for t in threads: t.start()
for t in threads: t.join()
assert all(r.hosts[0].open_ports == [port] for r in results), results
assert "gevent" not in sys.modules, "gevent leaked into the caller"
print("ok")
"""


def test_script_without_main_guard_from_threads_under_warnings_as_errors(tmp_path, listeners):
    port = listeners.open()
    script = tmp_path / "scan_me.py"
    script.write_text(SCRIPT_WITHOUT_MAIN_GUARD)
    done = subprocess.run(
        [sys.executable, "-W", "error", str(script), str(port)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
    assert done.stderr == ""


def test_scan_from_a_thread_in_this_process(listeners):
    port = listeners.open()
    box = []
    thread = threading.Thread(target=lambda: box.append(scan(build_request(["127.0.0.1"], [port]))))
    thread.start()
    thread.join(60)
    assert box[0].hosts[0].open_ports == [port]
    assert "gevent" not in sys.modules


def test_host_concurrency_cap_keeps_answers_exact(listeners):
    opened = sorted(listeners.open("127.0.0.1") for _ in range(2))
    report = scan(
        build_request(["127.0.0.1"], "1-2000," + ",".join(map(str, opened)), host_concurrency=4)
    )
    (host,) = report.hosts
    scanned = set(range(1, 2001)) | set(opened)
    assert host.open_ports == sorted(listening_ports("127.0.0.1") & scanned)
    assert host.closed_count == len(scanned) - len(host.open_ports)


def test_progress_bar_only_on_a_terminal(listeners):
    import pty

    listeners.open()
    primary, secondary = pty.openpty()
    with subprocess.Popen(
        [*CLI, "-p", "1-3000", "--rate", "3000", "127.0.0.1"],
        stdout=subprocess.PIPE,
        stderr=secondary,
    ) as proc:
        os.close(secondary)
        proc.wait(timeout=60)
        out = proc.stdout.read().decode() if proc.stdout else ""
    shown = b""
    with contextlib.suppress(OSError):
        while chunk := os.read(primary, 65536):
            shown += chunk
    os.close(primary)
    assert proc.returncode == 0
    assert b"/3000 probes" in shown
    assert b"ETA" in shown
    assert "probes" not in out.splitlines()[0]
    quiet = subprocess.run(
        [*CLI, "-p", "1-100", "127.0.0.1"], capture_output=True, text=True, timeout=60
    )
    assert quiet.stderr == ""


def test_open_ports_leave_no_time_wait_on_either_side(listeners):
    """Connections to open ports are reset (SO_LINGER 0), not closed: no TIME_WAIT piles up."""
    port = listeners.open("127.0.0.44")
    for _ in range(20):
        scan(build_request(["127.0.0.44"], [port], processes=1))
    time_wait = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, state = fields[1], fields[2], fields[3]
        if state == "06" and f"{port:04X}" in (local.split(":")[1], remote.split(":")[1]):
            time_wait += 1
    assert time_wait == 0


def test_a_clock_step_during_the_scan_changes_neither_duration_nor_rate(monkeypatch):
    """NTP stepping the wall clock an hour ahead while a scan runs: the report's duration is
    the scan's (it said an hour and a rate near 0/s)."""
    real = time.time
    calls = itertools.count()
    # the first reading (the start) is true, every later one an hour ahead
    monkeypatch.setattr(time, "time", lambda: real() + (3600.0 if next(calls) else 0.0))
    report = scan(build_request(["127.0.0.1"], [closed_port()]))
    monkeypatch.undo()
    assert report.duration < 60
    assert report.rate > 0.01
