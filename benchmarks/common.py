"""What the benchmarks share: real listeners, a network namespace of their own, timing a command.

Benchmarks send traffic only to 127.0.0.0/8 inside a namespace they create (when they can).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from support import Listeners  # noqa: E402 - the tests' listeners, one implementation

__all__ = ["REPO", "Listeners", "listen", "reexec_in_netns", "timed"]


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


def timed(
    cmd: list[str], env: dict[str, str] | None = None, cwd: Path | None = None
) -> tuple[float, float, float]:
    """Run ``cmd``; return its wall time, CPU time (user + system, with its children) and the
    peak resident memory of its largest process, in MB. Fails loudly if the command fails."""
    code = (
        "import resource,subprocess,sys,time,json;t=time.perf_counter();"
        "r=subprocess.run(sys.argv[1:],capture_output=True,text=True);w=time.perf_counter()-t;"
        "u=resource.getrusage(resource.RUSAGE_CHILDREN);"
        "print(json.dumps([r.returncode,w,u.ru_utime+u.ru_stime,u.ru_maxrss/1024,"
        "r.stdout[-2000:],r.stderr[-2000:]]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, *cmd], capture_output=True, text=True, check=True,
        env=env, cwd=cwd,
    ).stdout  # fmt: skip
    rc, wall, cpu, peak, stdout, stderr = json.loads(out)
    if rc != 0:
        raise SystemExit(f"command failed ({rc}): {' '.join(cmd)}\n{stdout}\n{stderr}")
    return wall, cpu, peak
