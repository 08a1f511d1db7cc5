"""What the benchmarks share: real listeners, a network namespace of their own, timing a command.

Benchmarks send traffic only to 127.0.0.0/8 inside a namespace they create (when they can).
"""

from __future__ import annotations

import compileall
import contextlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MEASURE = Path(__file__).resolve().parent / "measure.py"
sys.path.insert(0, str(REPO / "tests"))

from support import Listeners  # noqa: E402 - the tests' listeners, one implementation

__all__ = [
    "REPO",
    "Hog",
    "Listeners",
    "Usage",
    "checkout_env",
    "command_line",
    "contention",
    "listen",
    "load",
    "machine",
    "median",
    "portscan_command",
    "reexec_in_netns",
    "timed",
]


def listen(endpoints: Iterable[tuple[str, int]]) -> Listeners:
    """Real listeners on every (host, port), accepting and closing on a thread."""
    listeners = Listeners()
    for host, port in sorted(endpoints):
        listeners.open(host, port)
    return listeners


def reexec_in_netns(name: str, flag: str, nft_rules: str | None = None) -> int | None:
    """Run this script again inside a fresh namespace with only ``lo`` (and ``nft_rules``
    loaded, if given): the machine's own listeners stay out and no traffic leaves. The child
    sees the environment variable ``flag`` set to ``filtered`` (rules loaded) or ``plain``.
    Returns the child's exit code; None when already inside or a namespace cannot be made."""
    if os.environ.get(flag) or os.geteuid() != 0 or not shutil.which("ip"):
        return None
    namespace = f"{name}-{os.getpid()}"
    if subprocess.run(["ip", "netns", "add", namespace], capture_output=True).returncode != 0:
        return None
    inside = ["ip", "netns", "exec", namespace]
    try:
        subprocess.run([*inside, "ip", "link", "set", "lo", "up"], check=True)
        loaded = bool(nft_rules) and bool(shutil.which("nft")) and subprocess.run(
            [*inside, "nft", "-f", "-"], input=nft_rules, text=True, capture_output=True
        ).returncode == 0  # fmt: skip
        env = {**os.environ, flag: "filtered" if loaded else "plain"}
        return subprocess.run([*inside, sys.executable, *sys.argv], env=env).returncode
    finally:
        subprocess.run(["ip", "netns", "del", namespace], capture_output=True)


@dataclass(frozen=True)
class Usage:
    """What one run of a command cost: wall time, and the user and system CPU time of the
    command and of every process it started; peak resident memory of the largest, in MB."""

    wall: float
    user: float
    sys: float
    peak_mb: float

    @property
    def cpu(self) -> float:
        return self.user + self.sys


def timed(
    cmd: list[str],
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 1800.0,
) -> Usage:
    """Run ``cmd`` under ``measure.py`` (the same method for every tool: a subreaper that
    collects every descendant, so their CPU is counted and its own is not). Fails loudly if
    the command fails, times out or leaves a process behind."""
    out = subprocess.run(
        [sys.executable, str(MEASURE), "--timeout", str(timeout), "--", *cmd],
        capture_output=True, text=True, check=True, env=env, cwd=cwd,
    ).stdout  # fmt: skip
    r = json.loads(out)
    if r["rc"] != 0:
        output = f"{r['stdout']}\n{r['stderr']}"
        raise SystemExit(f"command failed ({r['rc']}): {' '.join(cmd)}\n{output}")
    if r["left_behind"]:
        raise SystemExit(f"{' '.join(cmd)} left {r['left_behind']} process(es) behind")
    return Usage(r["wall"], r["user"], r["sys"], r["peak_mb"])


def portscan_command() -> list[str]:
    """The ``portscan`` CLI of this checkout (not whatever the venv has installed)."""
    return [sys.executable, "-m", "nornir_portscan"]


def checkout_env() -> dict[str, str]:
    """The environment with this checkout first on PYTHONPATH, its bytecode compiled as an
    install has it (with PYTHONDONTWRITEBYTECODE set, every run would parse the sources)."""
    compileall.compile_dir(REPO / "nornir_portscan", quiet=1)
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path}


def _run(cmd: list[str]) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def load() -> str:
    """The 1-, 5- and 15-minute load averages, as uptime prints them."""
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def machine() -> str:
    """One line naming the machine and the code: lscpu model and CPU count, kernel, Python,
    nmap, git commit (and whether the tree differs from it), the time and the load now."""
    lscpu = {
        key.strip(): value.strip()
        for key, _, value in (line.partition(":") for line in _run(["lscpu"]).splitlines())
    }
    model = lscpu.get("Model name", platform.processor() or "unknown CPU")
    cpus = f"{lscpu.get('CPU(s)', os.cpu_count())} CPUs"
    try:
        cores = int(lscpu["Core(s) per socket"]) * int(lscpu["Socket(s)"])
        cpus += f" ({cores} cores, {lscpu['Thread(s) per core']} thread(s) per core)"
    except (KeyError, ValueError):
        pass
    nmap = (_run(["nmap", "--version"]).splitlines() or ["nmap: not installed"])[0]
    commit = _run(["git", "rev-parse", "--short", "HEAD"]).strip() or "unknown"
    dirty = " (dirty)" if _run(["git", "status", "--porcelain", "--untracked-files=no"]) else ""
    now = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    return (
        f"machine (lscpu): {model}, {cpus}; kernel {platform.release()}; "
        f"Python {platform.python_version()}; {nmap.replace(' ( https://nmap.org )', '')}; "
        f"commit {commit}{dirty}; {now}; load {load()}"
    )


def command_line() -> str:
    """How this benchmark was started, to say which run a figure comes from."""
    return " ".join(["python", os.path.relpath(sys.argv[0], REPO), *sys.argv[1:]])


class Hog:
    """One busy-looping process pinned to one CPU (the last one this process may use), for
    the contention runs: the scan shares the machine with a process that never sleeps."""

    def __init__(self) -> None:
        self.cpu = max(os.sched_getaffinity(0))
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Hog:
        self.proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        os.sched_setaffinity(self.proc.pid, {self.cpu})
        return self

    def __exit__(self, *_: object) -> None:
        if self.proc is not None:
            died = self.proc.poll() is not None
            self.proc.kill()
            self.proc.wait()
            self.proc = None
            if died:  # the rows measured beside it would be mislabelled
                raise SystemExit("the busy loop of the contention run died before the run ended")

    def __str__(self) -> str:
        return f"1 busy loop pinned to CPU {self.cpu}"


def contention(busy: bool) -> contextlib.AbstractContextManager[object]:
    """A :class:`Hog` when ``busy``, else nothing."""
    return Hog() if busy else contextlib.nullcontext()


def median(values: Iterable[float]) -> float:
    return statistics.median(list(values))
