"""Run one command and print, as JSON, what it cost: the CPU of every process it started.

    python benchmarks/measure.py [--timeout S] [--stdout FILE] -- CMD [ARG ...]

Prints ``{"rc", "wall", "user", "sys", "peak_mb", "left_behind", "stdout", "stderr"}``.
This process makes itself a child subreaper (prctl PR_SET_CHILD_SUBREAPER), so a descendant
whose parent exits first is re-parented here instead of to init; after CMD exits it waits for
every remaining descendant, so ``getrusage(RUSAGE_CHILDREN)`` holds the user and system time of
CMD and of all its descendants, and nothing of this process itself (its own Python start-up is
not counted). ``left_behind`` counts descendants still alive 10 s after CMD exited (then
killed): a tool that leaks processes. ``peak_mb`` is the largest resident set of any one
descendant; its floor is this process's own size (a child keeps its parent's high-water mark
until it execs).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import resource
import select
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO

PR_SET_CHILD_SUBREAPER = 36
GRACE_S = 10.0


def become_subreaper() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def descendants() -> list[int]:
    """Our children (orphaned descendants are re-parented to us, so children suffice)."""
    me = str(os.getpid())
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = (entry / "stat").read_text().rsplit(")", 1)[1].split()[1]
            except (OSError, IndexError):
                continue
            if ppid == me:
                found.append(int(entry.name))
    return found


def exited_within(pid: int, timeout: float) -> bool:
    """Whether ``pid`` exited within ``timeout`` seconds, woken by its pidfd at the exit
    itself (``Popen.wait`` with a timeout polls with sleeps of up to 50 ms: wall times came
    out in steps of 50 ms)."""
    pidfd = os.pidfd_open(pid)
    try:
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        return bool(poller.poll(timeout * 1000))
    finally:
        os.close(pidfd)


def reap_all(grace: float) -> int:
    """Wait for every descendant; kill those still alive after ``grace`` seconds and return
    how many those were."""
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        try:
            if os.waitpid(-1, os.WNOHANG)[0] == 0:
                time.sleep(0.01)
        except ChildProcessError:
            return 0
    alive = descendants()
    for child in alive:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGKILL)
    try:
        while True:
            os.waitpid(-1, 0)
    except ChildProcessError:
        return len(alive)


def tail(file: IO[bytes]) -> str:
    file.seek(0, os.SEEK_END)
    file.seek(max(0, file.tell() - 2000))
    return file.read().decode(errors="replace")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=1800.0)
    parser.add_argument("--stdout", help="write CMD's stdout here (default: keep its tail)")
    parser.add_argument("cmd", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        parser.error("no command given")
    become_subreaper()
    # files, not pipes: a descendant holding a pipe open must not stretch the wall time
    with (
        Path(args.stdout).open("w+b") if args.stdout else tempfile.TemporaryFile() as out,
        tempfile.TemporaryFile() as err,
    ):
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        if not exited_within(proc.pid, args.timeout):
            proc.kill()
        proc.wait()
        wall = time.perf_counter() - start
        left_behind = reap_all(GRACE_S)
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        result = {
            "rc": proc.returncode,
            "wall": wall,
            "user": usage.ru_utime,
            "sys": usage.ru_stime,
            "peak_mb": usage.ru_maxrss / 1024,
            "left_behind": left_behind,
            "stdout": "" if args.stdout else tail(out),
            "stderr": tail(err),
        }
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
