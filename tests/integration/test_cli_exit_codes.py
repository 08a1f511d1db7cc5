"""Exit 3 when the CLI could not do its job, with one line (or, with no stderr, none): every
worker dead, a closed stdout or stderr, a reader that left (``| head -1``), too little memory.
Real processes, real sockets on loopback. The rule's boundary, with the scheduler's fake
worker, is ``tests/unit/test_cli_exit_rule.py``."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import time

from support import CLI, closed_port

EXIT_OK, EXIT_SCAN = 0, 3


def run(*args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args, "--no-progress"],
        capture_output=kwargs.pop("capture_output", True),  # type: ignore[arg-type]
        text=True,
        timeout=60,
        **kwargs,  # type: ignore[call-overload]
    )


def test_every_worker_killed_exits_3_with_one_line(tmp_path):
    """The issue's case: the workers die (here: killed as soon as they start), the ports end
    ``error`` ("no worker process left"), and that is no successful scan."""
    report = tmp_path / "r.json"
    proc = subprocess.Popen(
        [
            *CLI,
            "-p",
            "1-2000",
            "127.0.0.1-4",
            "--rate",
            "2000",
            "--no-progress",
            "--json",
            str(report),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:
        found = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True)
        for pid in map(int, found.stdout.split()):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.01)
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == EXIT_SCAN, err
    assert re.fullmatch(
        r"portscan: error: the scan could not tell the state of (\d+) of 8000 ports "
        r"\(([a-z -]+(, )?)+\); they are listed as error_ports in the report\n",
        err,
    ), err
    data = json.loads(report.read_text())  # the report is written all the same
    assert data["summary"]["error_ports"] > 0
    assert "HOST" in out  # and the table shown


def test_a_clean_scan_exits_0():
    done = run("-p", str(closed_port()), "127.0.0.1")
    assert (done.returncode, done.stderr) == (EXIT_OK, "")


def test_a_closed_stdout_is_one_line_and_exit_3():
    done = run("-p", "9", "127.0.0.1", stdout=None, capture_output=False,
               stderr=subprocess.PIPE, preexec_fn=lambda: os.close(1))  # fmt: skip
    assert done.returncode == EXIT_SCAN
    assert done.stderr == (
        "portscan: error: standard output is closed; give the command somewhere to write, "
        "e.g. '>/dev/null'\n"
    )


def test_a_closed_stderr_exits_3_quietly():
    done = run("-p", "9", "127.0.0.1", stderr=None, capture_output=False,
               stdout=subprocess.PIPE, preexec_fn=lambda: os.close(2))  # fmt: skip
    assert (done.returncode, done.stdout) == (EXIT_SCAN, "")


def test_a_reader_that_left_is_no_traceback_and_the_report_is_still_written(tmp_path):
    """``portscan ... | head -1``: stdout is a pipe nobody reads."""
    report = tmp_path / "r.json"
    read, write = os.pipe()
    os.close(read)
    try:
        done = run("-p", "1-100", "127.0.0.1", "--json", str(report), stdout=write,
                   capture_output=False, stderr=subprocess.PIPE)  # fmt: skip
    finally:
        os.close(write)
    assert (done.returncode, done.stderr) == (EXIT_SCAN, "")  # no "Exception ignored" either
    assert len(json.loads(report.read_text())["hosts"]) == 1


def test_json_to_a_reader_that_left_exits_3_quietly():
    read, write = os.pipe()
    os.close(read)
    try:
        done = run("-p", "9", "127.0.0.1", "--json", "-", stdout=write, capture_output=False,
                   stderr=subprocess.PIPE)  # fmt: skip
    finally:
        os.close(write)
    assert (done.returncode, done.stderr) == (EXIT_SCAN, "")


def test_too_little_memory_is_one_line_and_exit_3():
    # 21 MB of address space: enough to start, not to plan a scan of every port (below ~15 MB
    # an import may already fail, above ~27 MB the scan runs: limits that depend on how the
    # libraries land in memory; 21 is in the middle of that window on the machines seen)
    done = subprocess.run(
        ["prlimit", "--as=21000000", *CLI, "-p", "-", "127.0.0.1", "--no-progress"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == EXIT_SCAN, done.stderr
    assert re.fullmatch(
        r"portscan: error: out of memory \(the address-space limit, ulimit -v, is 20 MiB\): "
        r"scan fewer hosts or ports at once, or allow more memory\n",
        done.stderr,
    ), done.stderr
