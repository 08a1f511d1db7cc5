"""The benchmarks' CPU measurement (benchmarks/measure.py via common.timed): a command's own
processes, all of them, and nothing of the measuring wrapper."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCH))

from bench_profile import summarize  # noqa: E402
from bench_syscalls import parse_perf, parse_strace  # noqa: E402
from common import Hog, machine, timed  # noqa: E402

# user time: a pure Python loop, looking at the (syscall) CPU clock once per 100,000 turns
SPIN = (
    "import time\nt=time.process_time()\n"
    "while time.process_time()-t<{s}:\n for _ in range(100000): pass\n"
)


def test_true_costs_no_constant() -> None:
    """The wrapper's own Python start-up (~20 ms) is not counted: `true` costs about nothing."""
    usage = timed(["true"])
    assert usage.cpu < 0.005
    assert usage.wall < 0.5


def test_orphaned_grandchild_is_counted() -> None:
    """A grandchild whose parent exits at once (re-parented away from the command) still
    counts: 0.3 s of CPU in a process nobody waited for."""
    orphan = f"import subprocess,sys;subprocess.Popen([sys.executable,'-c',{SPIN.format(s=0.3)!r}])"
    usage = timed([sys.executable, "-c", orphan])
    assert 0.3 <= usage.cpu < 0.5


def test_user_and_sys_apart() -> None:
    spin = timed([sys.executable, "-c", SPIN.format(s=0.2)])
    assert spin.user > 0.15
    assert spin.sys < 0.05
    # system calls until the kernel has charged the child 0.1 s of sys time (bounded: 10 s),
    # so a fast or a busy machine does not decide the figure
    syscalls = (
        "import os, time\nend = time.monotonic() + 10\n"
        "while os.times().system < 0.1 and time.monotonic() < end:\n"
        "    for _ in range(1000): os.stat('/')\n"
    )
    heavy = timed([sys.executable, "-c", syscalls])
    assert heavy.sys >= 0.1


def test_a_process_left_behind_fails_the_run() -> None:
    leak = "import subprocess;subprocess.Popen(['sleep','30'])"
    with pytest.raises(SystemExit, match="left 1 process"):
        timed([sys.executable, "-c", leak])


@pytest.mark.skipif(not shutil.which("perf"), reason="needs perf")
def test_agrees_with_perf_task_clock() -> None:
    """Same figure as `perf stat -e task-clock` (which follows every descendant) within 10%,
    for a command whose CPU is spread over a parent and two children."""
    child = f"subprocess.Popen([sys.executable,'-c',{SPIN.format(s=0.2)!r}])"
    two = f"import subprocess,sys;[p.wait() for p in [{child} for _ in range(2)]]"
    cmd = [sys.executable, "-c", two]
    perf = subprocess.run(
        ["perf", "stat", "-x,", "-e", "task-clock", *cmd], capture_output=True, text=True
    )
    if perf.returncode != 0 or "task-clock" not in perf.stderr:
        pytest.skip(f"perf stat does not work here: {perf.stderr[-200:]}")
    msec = float(
        next(line for line in perf.stderr.splitlines() if "task-clock" in line).split(",")[0]
    )
    usage = timed(cmd)
    assert abs(usage.cpu - msec / 1000) < 0.1 * msec / 1000


def test_hog_pins_one_busy_process() -> None:
    with Hog() as hog:
        assert hog.proc is not None
        assert os.sched_getaffinity(hog.proc.pid) == {hog.cpu}
        pid = hog.proc.pid
    assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()


def test_machine_line_names_cpu_kernel_python_commit() -> None:
    line = machine()
    for part in ("machine (lscpu): ", "kernel ", "Python 3.", "commit ", "load "):
        assert part in line


GETPPID = "import os\nfor _ in range(1000): os.getppid()\n"


@pytest.mark.skipif(not shutil.which("strace"), reason="needs strace")
def test_strace_summary_counts_by_name(tmp_path: Path) -> None:
    """bench_syscalls reads `strace -c -f`: a child's 1,000 getppid calls, and failures."""
    out = tmp_path / "strace.txt"
    child = f"import subprocess,sys,os;subprocess.run([sys.executable,'-c',{GETPPID!r}])"
    child += ";os.path.exists('/nonexistent/x')"
    subprocess.run(["strace", "-f", "-c", "-o", str(out), sys.executable, "-c", child])
    calls, errors = parse_strace(out.read_text())
    assert calls["getppid"] == 1000
    assert errors["newfstatat"] >= 1
    assert calls["total"] >= sum(v for k, v in calls.items() if k != "total") - 1


@pytest.mark.skipif(not shutil.which("perf"), reason="needs perf")
def test_perf_syscall_counts_by_name(tmp_path: Path) -> None:
    out = tmp_path / "perf.txt"
    child = f"import subprocess,sys;subprocess.run([sys.executable,'-c',{GETPPID!r}])"
    events = "syscalls:sys_enter_getppid,syscalls:sys_enter_getpid,task-clock"
    perf = subprocess.run(
        ["perf", "stat", "-x,", "-o", str(out), "-e", events, sys.executable, "-c", child],
        capture_output=True,
        text=True,
    )
    if perf.returncode != 0 or "getppid" not in out.read_text():
        pytest.skip(f"perf cannot count syscall tracepoints here: {perf.stderr[-200:]}")
    counts = parse_perf(out.read_text())
    assert counts["getppid"] == 1000
    assert counts["total"] == counts["getppid"] + counts.get("getpid", 0)
    assert counts["task-clock"] > 0


def test_profile_summary_splits_processes_and_counts_self_and_inclusive() -> None:
    parent = 'process 1:"python -m nornir_portscan x"'
    worker = 'process 2:"python -P -m nornir_portscan.engine.worker"'
    raw = (  # py-spy --subprocesses: a child's stacks start with its parent's process frame
        f"{parent};main (cli.py:1);run (p.py:2) 3\n"
        f"{parent};{worker};hub (h.py:1);start (w.py:9) 5\n"
        f"{parent};{worker};hub (h.py:1) 2\n"
    )
    text = summarize(raw, 10)
    assert "| worker | 7 | 70.0% |" in text
    assert "| parent (CLI) | 3 | 30.0% |" in text
    assert "| start (w.py:9) | 5 | 50.0% |" in text  # self
    assert "| hub (h.py:1) | 7 | 70.0% |" in text  # inclusive


def test_a_hog_that_dies_fails_the_contention_run() -> None:
    hog = Hog().__enter__()
    assert hog.proc is not None
    hog.proc.kill()
    hog.proc.wait()
    with pytest.raises(SystemExit, match="busy loop"):
        hog.__exit__(None, None, None)
