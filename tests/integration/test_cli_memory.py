"""Memory stays flat as the scan grows: the CLI's own process (its workers not counted) scans
65,536 addresses x 1 port and writes every report format in under 100 MB. Real sockets:
every 127/8 address answers on loopback (a reset: closed), so this takes some seconds."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from support import REPO

LIMIT_MB = 100
# The CLI in a process that says its own peak RSS (ru_maxrss of RUSAGE_SELF: not the workers)
# on its last stderr line.
MEASURED = (
    "import resource, sys\n"
    "from nornir_portscan.cli import main\n"
    "code = main(sys.argv[1:])\n"
    "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n"
    "sys.exit(code)\n"
)


@pytest.mark.slow
def test_the_parent_stays_under_100_mb_for_65536_hosts(tmp_path):
    json_path = tmp_path / "r.json"
    reports = ["--json", str(json_path), "--xml", str(tmp_path / "r.xml")]
    reports += ["--report", str(tmp_path / "r.html")]
    done = subprocess.run(
        [sys.executable, "-c", MEASURED, "-p", "9", "127.0.0.0/16", "--no-progress", *reports],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        timeout=240,
        cwd=REPO,
    )
    *lines, peak = done.stderr.splitlines()
    assert done.returncode == 0, done.stderr
    assert lines == []
    peak_mb = int(peak) / 1024
    assert peak_mb < LIMIT_MB, f"the parent peaked at {peak_mb:.0f} MB"
    data = json.loads(json_path.read_text())
    assert data["summary"]["hosts"] == 65536
    assert data["summary"]["closed_ports"] == 65536
