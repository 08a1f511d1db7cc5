"""Loopback benchmark: the `portscan` CLI against `nmap -sT -T5 --min-rate 20000`, in one run.

Scenarios (issue 2):
  a  127.0.0.1, ports 1-65535, a few listeners
  b  1,000 loopback addresses x 100 ports
  c  16 loopback addresses x 65,535 ports
  s  127.0.0.1 x 1 port: the fixed cost of a scan (start-up, workers, report); not run unless
     asked for (--scenarios abcs)

It re-runs itself inside a network namespace of its own (so the machine's listeners do not leak
in), starts the listeners, and runs portscan (default options), portscan --processes 1 and nmap
N times per scenario, alternating (the order rotates run by run). For each it prints the median
wall time, CPU time (user + sys of every process the tool started, measured the same way for
every tool by benchmarks/measure.py), user and sys apart, CPU microseconds per probe (probes =
hosts x ports), the ratios of wall and CPU per probe to nmap's, peak memory of the largest
process, and how many runs found exactly the open ports. ``--contention`` adds the same runs
beside one busy-looping process pinned to one CPU (rows marked so). The machine (lscpu model,
CPU count, kernel, Python, nmap, git commit, load) heads every table. Traffic goes to
127.0.0.0/8 only.

    python benchmarks/bench_engine.py [--runs 3] [--scenarios abc] [--contention]
        [--tools portscan,nmap] [--portscan-args "..."] [--markdown FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common import (
    Usage,
    checkout_env,
    command_line,
    contention,
    listen,
    load,
    machine,
    median,
    portscan_command,
    reexec_in_netns,
    timed,
)

NETNS_FLAG = "PORTSCAN_BENCH_NETNS"
NMAP = ["nmap", "-sT", "-T5", "--min-rate", "20000", "-n", "-Pn", "--open"]


@dataclass
class Scenario:
    key: str
    title: str
    targets: list[str]
    ports: str
    listeners: list[tuple[str, int]]

    @property
    def probes(self) -> int:
        count = 65535 if self.ports == "1-65535" else len(self.ports.split(","))
        if "-" in self.ports and self.ports != "1-65535":
            low, high = self.ports.split("-")
            count = int(high) - int(low) + 1
        return count * len(self.targets)


def scenarios() -> dict[str, Scenario]:
    a_open = [22, 80, 443, 8080, 31337]
    b_hosts = [f"127.1.{i // 250}.{i % 250 + 1}" for i in range(1000)]
    b_open = [(h, p) for i, h in enumerate(b_hosts) for p in (22, 80) if i % 10 == 0]
    c_hosts = [f"127.2.0.{i + 1}" for i in range(16)]
    c_open = [(h, p) for i, h in enumerate(c_hosts) for p in (443, 8000 + i, 60000 + i)]
    return {
        "a": Scenario(
            "a",
            "127.0.0.1 x 65,535 ports",
            ["127.0.0.1"],
            "1-65535",
            [("127.0.0.1", p) for p in a_open],
        ),
        "b": Scenario("b", "1,000 addresses x 100 ports", b_hosts, "1-100", b_open),
        "c": Scenario("c", "16 addresses x 65,535 ports", c_hosts, "1-65535", c_open),
        # not a goal: what a scan costs before its first probe (start-up, workers, report)
        "s": Scenario(
            "s", "127.0.0.1 x 1 port (start-up)", ["127.0.0.1"], "80", [("127.0.0.1", 80)]
        ),
    }


@dataclass
class Run:
    usage: Usage
    found: set[tuple[str, int]]


def portscan(extra: list[str]) -> Callable[[Scenario, Path], Run]:
    def run(sc: Scenario, workdir: Path) -> Run:
        report = workdir / f"{sc.key}.json"
        cmd = [*portscan_command(), "-iL", str(workdir / f"{sc.key}.targets"), "-p", sc.ports]
        cmd += ["--json", str(report), "--no-progress", "--max-hosts", "100000", *extra]
        report.unlink(missing_ok=True)  # read this run's report, never an earlier one's
        usage = timed(cmd, env=checkout_env())
        data = json.loads(report.read_text())
        found = {(h["address"], p) for h in data["hosts"] for p in h["open_ports"]}
        return Run(usage, found)

    return run


def run_nmap(sc: Scenario, workdir: Path) -> Run:
    targets = workdir / f"{sc.key}.targets"
    xml = workdir / f"{sc.key}.xml"
    xml.unlink(missing_ok=True)
    usage = timed([*NMAP, "-p", sc.ports, "-iL", str(targets), "-oX", str(xml)])
    found = set()
    for host in ET.parse(xml).getroot().iter("host"):
        address = host.find("address").get("addr")  # type: ignore[union-attr]
        for port in host.iter("port"):
            if port.find("state").get("state") == "open":  # type: ignore[union-attr]
                found.add((address, int(port.get("portid"))))  # type: ignore[arg-type]
    return Run(usage, found)


def tools(portscan_args: list[str]) -> dict[str, Callable[[Scenario, Path], Run]]:
    return {
        "portscan": portscan(portscan_args),
        "portscan --processes 1": portscan([*portscan_args, "--processes", "1"]),
        "nmap": run_nmap,
    }


def in_own_netns() -> bool:
    return bool(os.environ.get(NETNS_FLAG))


def row(sc: Scenario, tool: str, beside: str, runs: list[Run]) -> dict[str, Any]:
    truth = set(sc.listeners)
    cpu = median(r.usage.cpu for r in runs)
    return {
        "scenario": f"({sc.key}) {sc.title}",
        "tool": tool,
        "beside": beside,
        "wall": median(r.usage.wall for r in runs),
        "walls": [r.usage.wall for r in runs],
        "cpu": cpu,
        "user": median(r.usage.user for r in runs),
        "sys": median(r.usage.sys for r in runs),
        "per_probe_us": cpu / sc.probes * 1e6,
        "probes": sc.probes,
        "peak_mb": max(r.usage.peak_mb for r in runs),
        "exact": sum(r.found == truth for r in runs),
        "runs": len(runs),
    }


def table(rows: list[dict[str, Any]]) -> str:
    """The rows as Markdown; ratios are to nmap's row of the same scenario and contention."""
    reference = {(r["scenario"], r["beside"]): r for r in rows if r["tool"] == "nmap"}
    lines = [
        "| scenario | tool | contention | wall s | runs | CPU s | user s | sys s | "
        "CPU µs/probe | probes | wall vs nmap | CPU/probe vs nmap | peak MB | exact runs |",
        "|---|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        ref = reference.get((r["scenario"], r["beside"]))
        wall_ratio = cpu_ratio = ""
        if ref is not None and r is not ref:
            wall_ratio = f"{r['wall'] / ref['wall']:.2f}x"
            cpu_ratio = f"{r['per_probe_us'] / ref['per_probe_us']:.2f}x"
        walls = " ".join(f"{w:.2f}" for w in r["walls"])
        lines.append(
            f"| {r['scenario']} | {r['tool']} | {r['beside'] or '-'} | {r['wall']:.2f} | "
            f"{walls} | {r['cpu']:.2f} | {r['user']:.2f} | {r['sys']:.2f} | "
            f"{r['per_probe_us']:.1f} | "
            f"{r['probes']:,} | {wall_ratio} | {cpu_ratio} | {r['peak_mb']:.0f} | "
            f"{r['exact']}/{r['runs']} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--scenarios", default="abc")
    parser.add_argument("--markdown", type=Path, help="also write the table as Markdown here")
    parser.add_argument(
        "--contention",
        action="store_true",
        help="also run every tool beside one busy-looping process pinned to one CPU",
    )
    parser.add_argument(
        "--tools",
        default="portscan,portscan --processes 1,nmap",
        help="comma-separated subset of: portscan, portscan --processes 1, nmap (default: all)",
    )
    parser.add_argument("--portscan-args", default="", help="extra options for portscan")
    args = parser.parse_args()
    everything = tools(args.portscan_args.split())
    chosen = [t.strip() for t in args.tools.split(",")]
    if set(chosen) - set(everything) or set(args.scenarios) - set(scenarios()):
        raise SystemExit(f"use --tools from: {', '.join(everything)}; --scenarios from: abcs")
    code = reexec_in_netns("portscan-bench", NETNS_FLAG)
    if code is not None:
        return code
    if not in_own_netns():
        print(
            "note: running in the machine's own network namespace (no root or no 'ip');"
            " its listeners may leak into the results"
        )
    if not shutil.which("nmap"):
        raise SystemExit("nmap is not installed (apt-get install nmap)")
    header = [machine(), f"run: {command_line()}"]
    conditions = [False, True] if args.contention else [False]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        for key in args.scenarios:
            sc = scenarios()[key]
            (workdir / f"{key}.targets").write_text("\n".join(sc.targets) + "\n")
            listeners = listen(sc.listeners)
            results: dict[tuple[str, str], list[Run]] = {}
            try:
                # alternate tools (and contention) run by run, so machine noise hits all alike
                for number in range(args.runs):
                    for busy in conditions:
                        with contention(busy) as hog:
                            beside = str(hog or "")
                            turn = number % len(chosen)
                            for tool in chosen[turn:] + chosen[:turn]:
                                run = everything[tool](sc, workdir)
                                results.setdefault((tool, beside), []).append(run)
                                print(
                                    f"({key}) run {number + 1} {tool}{' + ' if beside else ''}"
                                    f"{beside}: {run.usage.wall:.2f} s, CPU {run.usage.cpu:.2f} s"
                                    f"; load {load()}",
                                    file=sys.stderr,
                                    flush=True,
                                )
            finally:
                listeners.close()
            rows += [row(sc, tool, beside, runs) for (tool, beside), runs in results.items()]
    rows.sort(key=lambda r: (r["scenario"], bool(r["beside"])))
    header.append(
        f"runs per tool: {args.runs}, medians (wall, CPU, user, sys each); CPU = user + sys of "
        f"every process of the tool; probes = hosts x ports; nmap: {' '.join(NMAP)}; portscan "
        f"with {args.portscan_args or 'default options'}; load at the end {load()}"
    )
    text = "\n".join(header) + "\n\n" + table(rows)
    print(text)
    if args.markdown:
        args.markdown.write_text(text + "\n")
    ours = [r for r in rows if r["tool"] != "nmap"]
    return 0 if all(r["exact"] == r["runs"] for r in ours) else 1


if __name__ == "__main__":
    resource.setrlimit(resource.RLIMIT_NOFILE, resource.getrlimit(resource.RLIMIT_NOFILE))
    sys.exit(main())
