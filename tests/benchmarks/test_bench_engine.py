"""bench_engine.py end to end on scenario (a), one run per tool: the machine line, the run's
command and a row per tool with CPU per probe and both ratios to nmap."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.netns,
    pytest.mark.skipif(
        os.geteuid() != 0 or not shutil.which("nmap") or not shutil.which("ip"),
        reason="needs root (a namespace of its own), ip and nmap",
    ),
]


def test_scenario_a_table(tmp_path: Path) -> None:
    markdown = tmp_path / "engine.md"
    run = subprocess.run(
        [sys.executable, str(BENCH / "bench_engine.py"), "--runs", "1", "--scenarios", "a",
         "--tools", "portscan,portscan --processes 1,nmap", "--markdown", str(markdown)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    text = markdown.read_text()
    assert text.startswith("machine (lscpu): ")
    assert "run: python benchmarks/bench_engine.py --runs 1" in text
    assert "| CPU µs/probe |" in text
    rows = [line.split(" | ") for line in text.splitlines() if line.startswith("| (a)")]
    assert [r[1] for r in rows] == ["portscan", "portscan --processes 1", "nmap"]
    for cells in rows[:2]:  # ours: a wall ratio and a CPU-per-probe ratio to nmap, exact
        assert cells[10].endswith("x")
        assert cells[11].endswith("x")
        assert cells[13] == "1/1 |"
