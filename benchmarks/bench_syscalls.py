"""Syscalls per probe: `strace -c -f` (and with --perf, `perf stat`) on portscan and nmap -sT.

One scenario of bench_engine.py (default (a): 127.0.0.1 x 65,535 ports), in a network namespace
of its own with the same listeners. Each tool runs once under ``strace -c -f`` (every process
and thread it starts); the table lists, by syscall name, the calls per probe (probes = hosts x
ports) of every tool side by side, the most frequent first, and the total. strace slows the
traced tool down many times, so counts that depend on timing (epoll_wait, poll, select, read of
a pipe) differ from an untraced run; ``--perf`` adds a second, untraced count from the kernel's
syscall tracepoints (``perf stat -e 'syscalls:sys_enter_*'``, every descendant), plus task-clock,
context switches and CPU migrations. Traffic goes to 127.0.0.0/8 only.

    python benchmarks/bench_syscalls.py [--scenario a] [--tools portscan,nmap] [--perf]
        [--top 25] [--markdown FILE]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bench_engine import NETNS_FLAG, NMAP, Scenario, scenarios
from common import checkout_env, command_line, listen, machine, portscan_command, reexec_in_netns

TOOLS = ("portscan", "portscan --processes 1", "nmap")
PERF_SYSCALLS = "syscalls:sys_enter_*"
# counted in a run of their own: hundreds of syscall tracepoints make every syscall dearer
PERF_EVENTS = "task-clock,context-switches,cpu-migrations,page-faults"


def command(tool: str, sc: Scenario, workdir: Path, portscan_args: list[str]) -> list[str]:
    targets = str(workdir / f"{sc.key}.targets")
    if tool == "nmap":
        return [*NMAP, "-p", sc.ports, "-iL", targets, "-oX", str(workdir / "nmap.xml")]
    cmd = [*portscan_command(), "-iL", targets, "-p", sc.ports, "--no-progress"]
    cmd += ["--max-hosts", "100000", "--json", str(workdir / "portscan.json"), *portscan_args]
    return cmd + (["--processes", "1"] if tool.endswith("--processes 1") else [])


def parse_strace(text: str) -> tuple[dict[str, float], dict[str, float]]:
    """strace -c's summary: calls and errors by syscall name (and "total")."""
    calls, errors = {}, {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 5 and fields[3].isdigit() and not line.startswith("%"):
            calls[fields[-1]] = float(fields[3])
            if len(fields) == 6:
                errors[fields[-1]] = float(fields[4])
    return calls, errors


def parse_perf(text: str) -> dict[str, float]:
    """perf stat -x, output: counts by event; for syscall tracepoints by syscall name, with
    their sum as "total"."""
    counts: dict[str, float] = {}
    for line in text.splitlines():
        fields = line.split(",")
        if len(fields) < 3 or not fields[0].replace(".", "", 1).isdigit():
            continue
        event, value = fields[2], float(fields[0])
        if event.startswith("syscalls:sys_enter_"):
            if value:
                counts[event.removeprefix("syscalls:sys_enter_")] = value
                counts["total"] = counts.get("total", 0) + value
        else:
            counts[event] = value
    return counts


def traced(prefix: list[str], cmd: list[str], out: Path) -> None:
    run = subprocess.run([*prefix, *cmd], env=checkout_env(), capture_output=True, text=True)
    if run.returncode != 0:
        raise SystemExit(f"failed ({run.returncode}): {' '.join(cmd)}\n{run.stderr[-2000:]}")
    if not out.exists():
        out.write_text(run.stderr)


def table(
    counts: dict[str, dict[str, float]],
    probes: int,
    top: int,
    errors: dict[str, dict[str, float]] | None = None,
) -> str:
    """Calls per probe by syscall, a column per tool; "(x err)": those that failed."""
    tools = list(counts)
    names = {name for per_tool in counts.values() for name in per_tool if name != "total"}
    ranked = sorted(names, key=lambda n: -max(c.get(n, 0) for c in counts.values()))
    lines = [
        "| syscall | " + " | ".join(f"{t}: calls/probe" for t in tools) + " |",
        "|---|" + "---:|" * len(tools),
    ]
    for name in [*ranked[:top], "total"]:
        cells = []
        for tool, c in counts.items():
            failed = (errors or {}).get(tool, {}).get(name)
            cell = f"{c[name] / probes:.3f}" if c.get(name) else ""
            cells.append(f"{cell} ({failed / probes:.3f} err)" if failed else cell)
        shown = f"**{name}**" if name == "total" else name
        lines.append(f"| {shown} | " + " | ".join(cells) + " |")
    rest = len(ranked) - top
    if rest > 0:
        lines.append(f"| ({rest} more, in the total) |" + " |" * len(tools))
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="a", choices=sorted(scenarios()))
    parser.add_argument(
        "--tools", default="portscan,nmap", help=f"comma-separated subset of: {', '.join(TOOLS)}"
    )
    parser.add_argument("--perf", action="store_true", help="also count with perf stat")
    parser.add_argument("--top", type=int, default=25, help="syscalls listed (default: 25)")
    parser.add_argument("--portscan-args", default="", help="extra options for portscan")
    parser.add_argument("--markdown", type=Path, help="also write the tables as Markdown here")
    args = parser.parse_args()
    tools = [t.strip() for t in args.tools.split(",")]
    if set(tools) - set(TOOLS):
        raise SystemExit(f"unknown tool in --tools {args.tools!r}: use {', '.join(TOOLS)}")
    for needed in ["strace", "nmap", *(["perf"] if args.perf else [])]:
        if not shutil.which(needed):
            raise SystemExit(f"{needed} is not installed")
    code = reexec_in_netns("portscan-syscalls", NETNS_FLAG)
    if code is not None:
        return code
    if not os.environ.get(NETNS_FLAG):
        print("note: in the machine's own network namespace; its listeners may leak in")
    sc = scenarios()[args.scenario]
    header = [machine(), f"run: {command_line()}"]
    strace: dict[str, dict[str, float]] = {}
    failed: dict[str, dict[str, float]] = {}
    perf: dict[str, dict[str, float]] = {}
    events: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        (workdir / f"{sc.key}.targets").write_text("\n".join(sc.targets) + "\n")
        listeners = listen(sc.listeners)
        try:
            for tool in tools:
                cmd = command(tool, sc, workdir, args.portscan_args.split())
                out = workdir / f"{tool}.strace"
                traced(["strace", "-f", "-c", "-o", str(out)], cmd, out)
                strace[tool], failed[tool] = parse_strace(out.read_text())
                print(f"{tool}: strace done", file=sys.stderr, flush=True)
                if args.perf:
                    for name, wanted, into in (
                        ("syscalls", PERF_SYSCALLS, perf),
                        ("events", PERF_EVENTS, events),
                    ):
                        out = workdir / f"{tool}.{name}.perf"
                        traced(["perf", "stat", "-x,", "-o", str(out), "-e", wanted], cmd, out)
                        into[tool] = parse_perf(out.read_text())
                    print(f"{tool}: perf done", file=sys.stderr, flush=True)
        finally:
            listeners.close()
    header.append(
        f"scenario ({sc.key}) {sc.title}: {sc.probes:,} probes (hosts x ports); one run per tool; "
        f"nmap: {' '.join(NMAP)}; portscan with {args.portscan_args or 'default options'}"
    )
    parts = ["\n".join(header), "strace -c -f (traced: timing-dependent counts inflate or shrink)"]
    parts.append(table(strace, sc.probes, args.top, failed))
    if perf:
        parts.append("perf stat, syscalls:sys_enter_* (untraced)")
        parts.append(table(perf, sc.probes, args.top))
        parts.append("perf stat, a run of its own (all descendants)")
        lines = [
            "| tool | task-clock ms | CPU µs/probe | context switches | CPU migrations | "
            "page faults |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for tool, c in events.items():
            lines.append(
                f"| {tool} | {c.get('task-clock', 0):.0f} | "
                f"{c.get('task-clock', 0) * 1000 / sc.probes:.1f} | "
                f"{c.get('context-switches', 0):,.0f} | {c.get('cpu-migrations', 0):,.0f} | "
                f"{c.get('page-faults', 0):,.0f} |"
            )
        parts.append("\n".join(lines))
    text = "\n\n".join(parts)
    print(text)
    if args.markdown:
        args.markdown.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
