"""Lab benchmark: the `portscan` CLI against nmap -T5 and -T4 connect scans, at 20 ms round trip.

Scenarios (issue 3), on the lab of ``tests/lab`` (brought up here and torn down after):
  d  256 hosts x nmap's top 100 ports; every host has open, closed, dropped (no answer) and
     rejected ports
  e  16 hosts x 65,535 ports
  f  (d) with 2% random loss in each direction (TCP and ICMP, both ways), on a second lab

The engine runs with its default options apart from targets and ports, and again with
``--processes 1``. nmap runs as ``nmap -sT -T5 --min-rate 20000 -n -Pn`` and
``nmap -sT -T4 -n -Pn``. Runs alternate between the tools (the order rotates run by run).
Every run is compared with the lab's ground truth port by port: "state" counts the runs where
every port's state is right, "+reason" those where the reason is right too (nmap's connect scan
only sees the errno, so it calls an IPv4 admin-prohibited reject host-unreach). Wall, CPU, user
and sys are medians; CPU is user + sys of every process the tool started (benchmarks/measure.py,
the same for every tool; the lab's latency program and listeners are not counted, they load the
machine alike for every tool); CPU per probe divides by hosts x ports; ratios are to nmap -T5.
``--contention`` adds the same runs beside one busy-looping process pinned to one CPU. The
machine (lscpu model, CPU count, kernel, Python, nmap, git commit, load) heads the table. Needs
root, nmap, iproute2, nftables and iptables. Traffic stays in the lab's namespaces (the lab
verifies its routes before anything is sent).

    python benchmarks/bench_lab.py [--runs 3] [--scenarios def] [--contention] [--tools ...]
        [--portscan-args "..."] [--markdown FILE] [--keep]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common import (
    REPO,
    Usage,
    checkout_env,
    command_line,
    contention,
    load,
    machine,
    median,
    portscan_command,
    timed,
)

sys.path.insert(0, str(REPO))
from nornir_portscan.ports import parse_ports
from tests.lab.exact import nmap_mismatches, nmap_scanned_ports, report_mismatches
from tests.lab.lab import Lab, LabError, down, up
from tests.lab.truth import LabConfig

NMAP_BASE = ["nmap", "-sT", "-n", "-Pn"]
TOOLS: dict[str, list[str]] = {  # portscan's options, or nmap's command
    "portscan": [],
    "portscan --processes 1": ["--processes", "1"],
    "nmap -T5": [*NMAP_BASE, "-T5", "--min-rate", "20000"],
    "nmap -T4": [*NMAP_BASE, "-T4"],
}
REFERENCE = "nmap -T5"
LAB = LabConfig(prefix="npbench", hosts=256, hosts6=0, latency_ms=20)
LOSSY_LAB = LabConfig(prefix="npbenchl", hosts=256, hosts6=0, latency_ms=20, loss=2)
LABS = {"d": LAB, "e": LAB, "f": LOSSY_LAB}


@dataclass
class Scenario:
    key: str
    title: str
    hosts: list[str]
    ours: str  # -p for portscan
    nmap: list[str]  # port arguments for nmap
    ports: str  # the same ports, for the comparison

    @property
    def probes(self) -> int:
        return len(self.hosts) * len(parse_ports(self.ports))


@dataclass
class Runs:
    usage: list[Usage] = field(default_factory=list)
    state_exact: int = 0
    reason_exact: int = 0
    notes: list[str] = field(default_factory=list)


def scenarios(lab: Lab) -> dict[str, Scenario]:
    top100 = ",".join(map(str, parse_ports("top100")))
    return {
        "d": Scenario(
            "d", "256 hosts x top 100 ports", lab.hosts4[:256], "top100", ["--top-ports", "100"],
            top100,
        ),
        "e": Scenario(
            "e", "16 hosts x 65,535 ports", lab.hosts4[:16], "1-65535", ["-p", "1-65535"],
            "1-65535",
        ),
        "f": Scenario(
            "f", "256 hosts x top 100 ports, 2% loss", lab.hosts4[:256], "top100",
            ["--top-ports", "100"], top100,
        ),
    }  # fmt: skip


def run_tool(tool: str, sc: Scenario, lab: Lab, workdir: Path, runs: Runs, extra: str = "") -> None:
    targets = workdir / f"{sc.key}.targets"
    if tool.startswith("portscan"):
        report_path = workdir / f"{sc.key}.json"
        cmd = [*portscan_command(), "-iL", str(targets), "-p", sc.ours, "--json", str(report_path)]
        cmd += [*extra.split(), *TOOLS[tool], "--no-progress"]
        report_path.unlink(missing_ok=True)  # this run's report, never an earlier one's
        usage = timed([*lab.netns_exec, *cmd], env=checkout_env())
        report = json.loads(report_path.read_text())
        wrong = report_mismatches(lab.truth, report, sc.hosts, sc.ports)
        states = report_mismatches(lab.truth, report, sc.hosts, sc.ports, reasons=False)
    else:
        xml = workdir / f"{sc.key}.xml"
        cmd = [*TOOLS[tool], *sc.nmap, "-iL", str(targets), "-oX", str(xml)]
        xml.unlink(missing_ok=True)
        usage = timed([*lab.netns_exec, *cmd])
        if sorted(nmap_scanned_ports(xml)) != sorted(parse_ports(sc.ports)):
            raise SystemExit(f"{tool} scanned other ports than portscan -p {sc.ours}")
        states = nmap_mismatches(lab.truth, xml, sc.hosts)
        wrong = nmap_mismatches(lab.truth, xml, sc.hosts, reasons=True)
    runs.usage.append(usage)
    runs.state_exact += not states
    runs.reason_exact += not wrong
    if wrong:
        note = f"{len(wrong)} differences, e.g. {wrong[:3]}"
        if note not in runs.notes:
            runs.notes.append(note)


def row(sc: Scenario, tool: str, beside: str, runs: Runs) -> dict[str, Any]:
    cpu = median(u.cpu for u in runs.usage)
    return {
        "scenario": f"({sc.key}) {sc.title}",
        "tool": tool,
        "beside": beside,
        "wall": median(u.wall for u in runs.usage),
        "walls": [u.wall for u in runs.usage],
        "cpu": cpu,
        "user": median(u.user for u in runs.usage),
        "sys": median(u.sys for u in runs.usage),
        "per_probe_us": cpu / sc.probes * 1e6,
        "probes": sc.probes,
        "state": f"{runs.state_exact}/{len(runs.usage)}",
        "reason": f"{runs.reason_exact}/{len(runs.usage)}",
        "exact": runs.reason_exact == len(runs.usage),
        "notes": runs.notes,
    }


def table(rows: list[dict[str, Any]]) -> str:
    """The rows as Markdown; ratios are to nmap -T5's row of the same scenario and contention."""
    reference = {(r["scenario"], r["beside"]): r for r in rows if r["tool"] == REFERENCE}
    lines = [
        "| scenario | tool | contention | wall s (median) | runs | CPU s | user s | sys s | "
        f"CPU µs/probe | probes | wall vs {REFERENCE} | CPU/probe vs {REFERENCE} | "
        "exact: state | exact: +reason |",
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
            f"{r['per_probe_us']:.1f} | {r['probes']:,} | {wall_ratio} | {cpu_ratio} | "
            f"{r['state']} | {r['reason']} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--scenarios", default="de")
    parser.add_argument("--markdown", type=Path, help="also write the table as Markdown here")
    parser.add_argument("--keep", action="store_true", help="leave the labs up afterwards")
    parser.add_argument(
        "--portscan-args", default="", help="extra options for portscan (default: none)"
    )
    parser.add_argument(
        "--tools",
        default=",".join(TOOLS),
        help=f"comma-separated subset of: {', '.join(TOOLS)} (default: all)",
    )
    parser.add_argument(
        "--contention",
        action="store_true",
        help="also run every tool beside one busy-looping process pinned to one CPU",
    )
    args = parser.parse_args()
    tools = [t.strip() for t in args.tools.split(",")]
    if set(tools) - set(TOOLS) or set(args.scenarios) - set(LABS):
        raise SystemExit(f"use --tools from: {', '.join(TOOLS)}; --scenarios from: def")
    if any(t.startswith("nmap") for t in tools) and not shutil.which("nmap"):
        raise SystemExit("nmap is not installed (apt-get install nmap)")
    header = [machine(), f"run: {command_line()}"]
    conditions = [False, True] if args.contention else [False]
    labs: dict[str, Lab] = {}
    built: list[str] = []
    rows = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            workdir = Path(tmp)
            for key in args.scenarios:
                config = LABS[key]
                if config.prefix not in labs:
                    try:
                        truth_path, fresh = up(config)
                    except LabError as exc:
                        raise SystemExit(f"cannot bring up the lab: {exc}") from exc
                    labs[config.prefix] = Lab.load(config, truth_path)
                    if fresh:
                        built.append(config.prefix)
                lab = labs[config.prefix]
                sc = scenarios(lab)[key]
                (workdir / f"{key}.targets").write_text("\n".join(sc.hosts) + "\n")
                results: dict[tuple[str, str], Runs] = {}
                # alternate tools (and contention) run by run, so machine noise hits all alike
                for number in range(args.runs):
                    for busy in conditions:
                        with contention(busy) as hog:
                            beside = str(hog or "")
                            turn = number % len(tools)
                            for tool in tools[turn:] + tools[:turn]:
                                runs = results.setdefault((tool, beside), Runs())
                                run_tool(tool, sc, lab, workdir, runs, args.portscan_args)
                                print(
                                    f"({key}) run {number + 1} {tool}{' + ' if beside else ''}"
                                    f"{beside}: {runs.usage[-1].wall:.2f} s, CPU "
                                    f"{runs.usage[-1].cpu:.2f} s; load {load()}",
                                    file=sys.stderr,
                                    flush=True,
                                )
                order = {(t, b): (bool(b), tools.index(t)) for t, b in results}
                for tool, beside in sorted(results, key=order.__getitem__):
                    rows.append(row(sc, tool, beside, results[tool, beside]))
    finally:
        if not args.keep:
            for prefix in built:
                down(prefix)
    header.append(
        f"runs per tool: {args.runs}; labs: {LAB.latency_ms:g} ms round trip, listen backlog "
        f"{LAB.backlog}, (f) {LOSSY_LAB.loss:g}% loss each way; portscan with "
        f"{args.portscan_args or 'default options'}; CPU = user + sys of every process of the "
        f"tool; probes = hosts x ports; load at the end {load()}"
    )
    text = "\n".join(header) + "\n\n" + table(rows)
    print(text)
    for r in rows:
        for note in r["notes"]:
            beside = f" + {r['beside']}" if r["beside"] else ""
            print(f"{r['scenario']} {r['tool']}{beside}: {note}")
    if args.markdown:
        args.markdown.write_text(text + "\n")
    return 0 if all(r["exact"] for r in rows if r["tool"].startswith("portscan")) else 1


if __name__ == "__main__":
    sys.exit(main())
