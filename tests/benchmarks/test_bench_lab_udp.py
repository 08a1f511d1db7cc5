"""bench_lab.py's UDP scenarios end to end, on the tiny one (u0: 2 hosts x 5 UDP ports, every
state once), one run per tool: the machine line, a row per tool with ratios to nmap -sU -T4,
portscan exact against the UDP lab's ground truth."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.lab.lab import LabUnavailableError
from tests.lab.udp_lab import check_prerequisites

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def _unavailable() -> str:
    if not shutil.which("nmap"):
        return "needs nmap"
    try:
        check_prerequisites()
    except LabUnavailableError as exc:
        return str(exc)
    return ""


pytestmark = [
    pytest.mark.slow,
    pytest.mark.netns,
    pytest.mark.skipif(bool(_unavailable()), reason=_unavailable() or "-"),
]


def test_udp_scenario_table(tmp_path: Path) -> None:
    markdown = tmp_path / "lab.md"
    prefix = os.environ.get("NPL_PREFIX", "npl") + "bu"
    run = subprocess.run(
        [sys.executable, str(BENCH / "bench_lab.py"), "--runs", "1", "--scenarios", "u0",
         "--udp-prefix", prefix, "--markdown", str(markdown)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    text = markdown.read_text()
    assert text.startswith("machine (lscpu): ")
    assert "run: python benchmarks/bench_lab.py --runs 1 --scenarios u0" in text
    assert "UDP lab: one namespace per host" in text
    assert "| wall vs nmap -sU -T4 |" in text
    rows = [line.split(" | ") for line in text.splitlines() if line.startswith("| (u0)")]
    assert [r[1] for r in rows] == ["portscan", "nmap -sU -T4", "nmap -sU -T5 --max-retries 1"]
    ours = rows[0]
    assert ours[10].endswith("x")
    assert ours[11].endswith("x")
    assert ours[12:] == ["1/1", "1/1", "0 |"]  # exact in states and reasons, no wrong state
    assert not any(ns.startswith(f"{prefix}-u") for ns in _namespaces())  # the lab is down


def _namespaces() -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]
