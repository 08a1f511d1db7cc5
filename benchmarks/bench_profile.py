"""Where portscan's CPU goes: py-spy over the CLI and its workers on one bench_engine scenario.

Runs ``py-spy record --subprocesses`` (sampling, every process of the scan) on portscan for one
scenario of bench_engine.py, in a network namespace of its own with the same listeners, and
prints the share of samples per process, the functions with the most samples of their own
(self) and those with the most under them (inclusive). A sample is taken while a process is
on CPU, in Python or in a syscall it made from Python; py-spy's idle detection leaves out
waiting. py-spy is not a dependency: pass its path with --py-spy or have it on PATH
(``pip install --target DIR py-spy`` puts it in DIR/bin). Traffic goes to 127.0.0.0/8 only.

    python benchmarks/bench_profile.py [--scenario a] [--portscan-args "--processes 1"]
        [--top 25] [--rate 500] [--py-spy PATH] [--raw FILE]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

from bench_engine import NETNS_FLAG, scenarios
from common import checkout_env, command_line, listen, machine, portscan_command, reexec_in_netns

PROCESS = re.compile(r'^process \d+:"(.*)"$')


def summarize(raw: str, top: int) -> str:
    """py-spy's raw (collapsed) stacks as three tables: per process, self, inclusive."""
    by_process: Counter[str] = Counter()
    own: Counter[str] = Counter()
    under: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        samples = int(count)
        total += samples
        # with --subprocesses a stack starts with its process and those above it
        frames = stack.split(";")
        processes = [m.group(1) for m in map(PROCESS.match, frames) if m]
        frames = [f for f in frames if not PROCESS.match(f)] or ["(process only)"]
        worker = processes and "engine.worker" in processes[-1]
        by_process["worker" if worker else "parent (CLI)"] += samples
        own[frames[-1]] += samples
        for frame in set(frames):
            under[frame] += samples
    if not total:
        return "no samples"
    parts = []
    for title, counts, limit in (
        ("process", by_process, top),
        ("function (self)", own, top),
        ("function (inclusive)", under, top),
    ):
        lines = [f"| {title} | samples | share |", "|---|---:|---:|"]
        for key, samples in counts.most_common(limit):
            lines.append(f"| {key.replace('|', '/')} | {samples} | {samples / total:.1%} |")
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="a", choices=sorted(scenarios()))
    parser.add_argument("--portscan-args", default="", help="extra options for portscan")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--rate", type=int, default=500, help="samples per second")
    parser.add_argument("--py-spy", dest="pyspy", default=shutil.which("py-spy"))
    parser.add_argument("--raw", type=Path, help="keep py-spy's raw stacks here")
    args = parser.parse_args()
    if not args.pyspy:
        raise SystemExit(
            "py-spy not found: pip install --target DIR py-spy; --py-spy DIR/bin/py-spy"
        )
    code = reexec_in_netns("portscan-profile", NETNS_FLAG)
    if code is not None:
        return code
    if not os.environ.get(NETNS_FLAG):
        print("note: in the machine's own network namespace; its listeners may leak in")
    sc = scenarios()[args.scenario]
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        targets = workdir / "targets"
        targets.write_text("\n".join(sc.targets) + "\n")
        raw = args.raw or workdir / "raw.txt"
        cmd = [*portscan_command(), "-iL", str(targets), "-p", sc.ports, "--no-progress"]
        cmd += ["--max-hosts", "100000", "--json", str(workdir / "out.json")]
        cmd += args.portscan_args.split()
        spy = [args.pyspy, "record", "--subprocesses", "--format", "raw", "-r", str(args.rate)]
        listeners = listen(sc.listeners)
        try:
            run = subprocess.run(
                [*spy, "-o", str(raw), "--", *cmd], env=checkout_env(), capture_output=True
            )
        finally:
            listeners.close()
        if run.returncode != 0:
            raise SystemExit(f"py-spy failed ({run.returncode}): {run.stderr[-2000:]!r}")
        text = summarize(raw.read_text(), args.top)
    print(
        f"{machine()}\nrun: {command_line()}\nscenario ({sc.key}) {sc.title}; portscan with "
        f"{args.portscan_args or 'default options'}; py-spy at {args.rate} samples/s\n\n{text}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
