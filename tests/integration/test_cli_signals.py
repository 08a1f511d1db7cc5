"""Ending the CLI part way: Ctrl-C, SIGTERM (``timeout``, a cancelled CI job) and SIGHUP (a
closed terminal) all stop the workers, write the partial report and say which hosts were not
scanned. Real processes, real sockets on loopback (every 127/8 address answers there)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from support import CLI

from nornir_portscan import cli
from nornir_portscan.pipeline import build_job, run_job

# 40 hosts x 600 ports at 1000 probes/s: 24 s, so an interrupt after a few seconds always
# finds hosts done, hosts in flight and hosts never started. concurrency 50: each of the two
# workers holds one unit of 256 ports at a time.
SLOW = ("-p", "1-600", "127.0.1.1-40", "--rate", "1000", "--concurrency", "50", "--processes", "2")
PORTS = set(range(1, 601))


def start(*args: str, **kwargs: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*CLI, *args, "--no-progress"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # a process group of its own, as a terminal's job
        **kwargs,  # type: ignore[call-overload]
    )


def workers_of(proc: subprocess.Popen[str], count: int = 2, limit: float = 20) -> list[int]:
    """Poll until ``proc`` runs ``count`` worker processes; their pids."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and proc.poll() is None:
        found = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True)
        pids = [int(p) for p in found.stdout.split()]
        if len(pids) >= count:
            return pids
        time.sleep(0.02)
    raise AssertionError(f"the CLI did not start {count} workers")


def gone(pids: list[int], limit: float = 5) -> bool:
    """Poll until no process of ``pids`` is left (a zombie counts as left)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if not any(Path(f"/proc/{pid}").exists() for pid in pids):
            return True
        time.sleep(0.02)
    return False


def ports_of(spec: str) -> set[int]:
    found: set[int] = set()
    for part in filter(None, spec.split(",")):
        low, _, high = part.partition("-")
        found.update(range(int(low), int(high or low) + 1))
    return found


def stop(proc: subprocess.Popen[str], signum: int, *, group: bool) -> tuple[int, str, str]:
    if group:
        os.killpg(proc.pid, signum)  # Ctrl-C: the terminal signals the foreground group
    else:
        proc.send_signal(signum)  # `timeout`, a CI runner, `kill`: the process alone
    out, err = proc.communicate(timeout=15)
    return proc.returncode, out, err


@pytest.mark.parametrize(
    ("signum", "group", "code"),
    [(signal.SIGINT, True, 130), (signal.SIGTERM, False, 143), (signal.SIGHUP, False, 129)],
    ids=["ctrl-c", "sigterm", "sighup"],
)
def test_a_stopped_scan_writes_the_partial_report_and_leaves_no_worker(
    tmp_path, signum, group, code
):
    json_path, xml_path, html_path = tmp_path / "r.json", tmp_path / "r.xml", tmp_path / "r.html"
    proc = start(
        *SLOW,
        "--expect-closed",
        "9",
        "--json",
        str(json_path),
        "--xml",
        str(xml_path),
        "--report",
        str(html_path),
    )
    pids = workers_of(proc)
    time.sleep(3)  # when to stop: some hosts are done by then (see SLOW)
    sent = time.monotonic()
    returncode, out, err = stop(proc, signum, group=group)
    assert time.monotonic() - sent < 5
    assert returncode == code, err
    assert err.endswith("portscan: interrupted; the report holds partial results\n")
    assert "Traceback" not in err
    assert gone(pids), "a worker process was left behind"

    data = json.loads(json_path.read_text())
    assert data["interrupted"] is True
    statuses = [h["status"] for h in data["hosts"]]
    # every 127/8 address answers on loopback: a host is up, or not (fully) scanned; an
    # interrupt never makes a host "no-response"
    assert set(statuses) <= {"up", "interrupted", "not-scanned"}
    assert "up" in statuses
    assert "not-scanned" in statuses
    for host in data["hosts"]:
        scanned, unscanned = ports_of(host["scanned_ports"]), ports_of(host["unscanned_ports"])
        assert scanned | unscanned == PORTS
        assert not scanned & unscanned
        if host["status"] == "up":
            assert (host["up"], host["compliant"], host["passed"], unscanned) == (
                True,
                True,
                True,
                set(),
            )
        elif host["status"] == "not-scanned":
            assert (host["up"], host["compliant"], host["passed"], scanned) == (
                False,
                None,
                False,
                set(),
            )
            assert host["failure"].endswith(
                "host not-scanned: interrupted before any result of this host came in"
            )
        else:  # part way: what it said counts, the rest is named
            assert host["error"] == f"{len(unscanned)} of 600 ports not scanned"
            assert unscanned
    not_scanned = statuses.count("not-scanned")
    assert f"{not_scanned} not scanned" in out
    assert "no-response" not in out

    root = ET.fromstring(xml_path.read_text().split("\n", 3)[3])
    states = {h.find("status").get("state") for h in root.findall("host")}
    assert "down" not in states
    assert root.find("runstats/finished").get("exit") == "error"
    page = html_path.read_text()
    assert "interrupted: partial results" in page or "INCOMPLETE" in page
    assert "PASSED" not in page


def test_sighup_ignored_by_nohup_stays_ignored(tmp_path):
    json_path = tmp_path / "r.json"
    proc = start(*SLOW, "--json", str(json_path), preexec_fn=_ignore_sighup)
    pids = workers_of(proc)
    proc.send_signal(signal.SIGHUP)
    time.sleep(0.5)  # had SIGHUP stopped it, it would be gone by now
    assert proc.poll() is None
    returncode, _, err = stop(proc, signal.SIGTERM, group=False)
    assert returncode == 143, err
    assert json.loads(json_path.read_text())["interrupted"] is True
    assert gone(pids)


def _ignore_sighup() -> None:
    signal.signal(signal.SIGHUP, signal.SIG_IGN)


def test_the_cli_restores_the_signal_handlers_it_found(capsys):
    def mine(signum, frame):  # pragma: no cover - never called
        pass

    before = signal.signal(signal.SIGTERM, mine)
    try:
        assert cli.main(["-p", "9", "127.0.0.1", "--no-progress"]) == 0
        assert signal.getsignal(signal.SIGTERM) is mine
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_DFL
    finally:
        signal.signal(signal.SIGTERM, before)
    assert "127.0.0.1" in capsys.readouterr().out


def test_a_library_scan_installs_no_signal_handler():
    seen = []
    job = build_job(["127.0.0.1"], "1-300")
    run_job(job, progress=lambda _: seen.append(signal.getsignal(signal.SIGTERM)))
    assert seen
    assert set(seen) == {signal.SIG_DFL}


def blocked_opening_a_fifo(proc: subprocess.Popen[str], limit: float = 20) -> None:
    """Poll until ``proc`` waits in the kernel for a reader of a FIFO: the scan is over."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and proc.poll() is None:
        with contextlib.suppress(OSError):
            if Path(f"/proc/{proc.pid}/wchan").read_text() == "wait_for_partner":
                return
        time.sleep(0.02)
    raise AssertionError("the CLI did not come to write its report")


@pytest.mark.parametrize(
    ("signum", "group", "code"),
    [(signal.SIGINT, True, 130), (signal.SIGTERM, False, 143)],
    ids=["ctrl-c", "sigterm"],
)
def test_a_signal_while_the_report_is_written_does_not_break_it_off(tmp_path, signum, group, code):
    fifo = tmp_path / "r.json"
    os.mkfifo(fifo)
    proc = start("-p", "1-100", "127.0.0.1", "--json", str(fifo))
    blocked_opening_a_fifo(proc)
    if group:
        os.killpg(proc.pid, signum)
    else:
        proc.send_signal(signum)
    with fifo.open() as reader:  # let it write, after the signal
        text = reader.read()
    out, err = proc.communicate(timeout=15)
    assert (proc.returncode, err) == (code, "")
    data = json.loads(text)  # whole: the scan was over when the signal came
    assert data["interrupted"] is False
    assert [h["status"] for h in data["hosts"]] == ["up"]
    assert "127.0.0.1" in out


@pytest.mark.parametrize("progress", [False, True], ids=["table", "table-and-bar"])
def test_a_terminal_that_hangs_up_still_gets_the_report_written(tmp_path, progress):
    """The CLI on a real terminal (a pty) that is closed mid-scan: SIGHUP, and every later
    write to the terminal fails (EIO). The report file is written first, the exit is 129."""
    import pty

    report = tmp_path / "r.json"
    argv = [*CLI, *SLOW, "--json", str(report), *([] if progress else ["--no-progress"])]
    pid, master = pty.fork()
    if pid == 0:  # the child: its stdin, stdout and stderr are the terminal
        os.execv(argv[0], argv)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # until its workers run: the scan is under way
            found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
            if len(found.stdout.split()) >= 2:
                break
            time.sleep(0.02)
        workers = [int(p) for p in found.stdout.split()]
        assert len(workers) >= 2, "the CLI did not start its workers"
    finally:
        os.close(master)  # the terminal hangs up
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.05)
    else:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise AssertionError("the CLI did not end after the hang-up")
    assert os.waitstatus_to_exitcode(status) == 129
    data = json.loads(report.read_text())
    assert data["interrupted"] is True
    assert gone(workers)
