"""Lab benchmark: the `portscan` CLI against nmap -T5 and -T4 connect scans, at 20 ms round trip,
and against nmap -sU on real UDP services.

Scenarios (issue 3), on the lab of ``tests/lab`` (brought up here and torn down after):
  d  256 hosts x nmap's top 100 ports; every host has open, closed, dropped (no answer) and
     rejected ports
  e  16 hosts x 65,535 ports
  f  (d) with 2% random loss in each direction (TCP and ICMP, both ways), on a second lab
UDP scenarios (issue 16), on the UDP lab of ``tests/lab/udp_lab.py`` (one namespace per host,
each with the kernel's default ICMP rate limit: one error a second, a burst of six; a DNS, SNMP
or NTP daemon, dropped ports, an admin-prohibited reject, every other port closed; every run
starts 7 s after the last, when the buckets are full again):
  u1  64 hosts x nmap's top 20 UDP ports (``-p U:top20``, ``nmap -sU --top-ports 20``)
  u2  4 hosts x nmap's top 1,000 UDP ports (``-p U:top1000``, nmap -sU's default list)
  u0  2 hosts x 5 UDP ports, every state once: the harness's own test

The engine runs with its default options apart from targets and ports, and again with
``--processes 1``. nmap runs as ``nmap -sT -T5 --min-rate 20000 -n -Pn`` and
``nmap -sT -T4 -n -Pn``; for UDP ``nmap -sU -T4 -n -Pn`` and ``nmap -sU -T5 --max-retries R``
with R portscan's retries (checked against each report). Runs alternate between the tools (the
order rotates run by run).
Every run is compared with the lab's ground truth port by port: "state" counts the runs where
every port's state is right, "+reason" those where the reason is right too (nmap's connect scan
only sees the errno, so it calls an IPv4 admin-prohibited reject host-unreach). Wall, CPU, user
and sys are medians; CPU is user + sys of every process the tool started (benchmarks/measure.py,
the same for every tool; the lab's latency program and listeners are not counted, they load the
machine alike for every tool); CPU per probe divides by hosts x ports; ratios are to nmap -T5
(UDP: nmap -sU -T4). "wrong states" counts, run by run, the ports whose state differs from the
truth, by expected and reported state (ports nmap folds into ``<extraports>`` counted as the
fewest mismatches the folded counts allow).
``--contention`` adds the same runs beside one busy-looping process pinned to one CPU. The
machine (lscpu model, CPU count, kernel, Python, nmap, git commit, load) heads the table. Needs
root, nmap, iproute2, nftables and iptables. Traffic stays in the lab's namespaces (the lab
verifies its routes before anything is sent).

    python benchmarks/bench_lab.py [--runs 3] [--scenarios def,u1,u2] [--contention]
        [--tools ...] [--portscan-args "..."] [--markdown FILE] [--keep] [--udp-prefix P]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import tempfile
import time
from collections import Counter
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
from tests.lab import udp_lab
from tests.lab.exact import (
    nmap_mismatches,
    nmap_scanned_ports,
    nmap_states,
    report_mismatches,
    report_states,
    wrong_states,
)
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
UDP_RETRIES = 1  # portscan's default --retries; nmap -T5 gets the same
NMAP_UDP = ["nmap", "-sU", "-n", "-Pn"]
UDP_TOOLS: dict[str, list[str]] = {
    "portscan": [],
    "nmap -sU -T4": [*NMAP_UDP, "-T4"],
    f"nmap -sU -T5 --max-retries {UDP_RETRIES}": [
        *NMAP_UDP, "-T5", "--max-retries", str(UDP_RETRIES),
    ],
}  # fmt: skip
UDP_REFERENCE = "nmap -sU -T4"
UDP_HOSTS = {"u0": 2, "u1": 64, "u2": 4}
# a run drains the targets' ICMP buckets (a burst of 6, one back a second): the next tool
# would start with fewer answers than the first, so every UDP run starts after they refilled
UDP_REST = 7.0
LAB = LabConfig(prefix="npbench", hosts=256, hosts6=0, latency_ms=20)
LOSSY_LAB = LabConfig(prefix="npbenchl", hosts=256, hosts6=0, latency_ms=20, loss=2)
LABS = {"d": LAB, "e": LAB, "f": LOSSY_LAB}
KEYS = [*LABS, *UDP_HOSTS]


@dataclass
class Scenario:
    key: str
    title: str
    hosts: list[str]
    ours: str  # -p for portscan
    nmap: list[str]  # port arguments for nmap
    ports: str  # the same ports, for the comparison
    udp: bool = False
    timeout: float = 1800.0  # for one run of one tool

    @property
    def probes(self) -> int:
        return len(self.hosts) * len(parse_ports(self.ports))

    @property
    def tools(self) -> dict[str, list[str]]:
        return UDP_TOOLS if self.udp else TOOLS

    @property
    def reference(self) -> str:
        return UDP_REFERENCE if self.udp else REFERENCE


@dataclass(frozen=True)
class Target:
    """Where a scenario's tools run and what they should find."""

    netns_exec: list[str]
    truth: dict[str, Any]


@dataclass
class Runs:
    usage: list[Usage] = field(default_factory=list)
    state_exact: int = 0
    reason_exact: int = 0
    wrong: list[Counter[str]] = field(default_factory=list)  # per run
    notes: list[str] = field(default_factory=list)


def scenarios(hosts: list[str]) -> dict[str, Scenario]:
    top100 = ",".join(map(str, parse_ports("top100")))
    return {
        "d": Scenario(
            "d", "256 hosts x top 100 ports", hosts[:256], "top100", ["--top-ports", "100"],
            top100,
        ),
        "e": Scenario(
            "e", "16 hosts x 65,535 ports", hosts[:16], "1-65535", ["-p", "1-65535"],
            "1-65535",
        ),
        "f": Scenario(
            "f", "256 hosts x top 100 ports, 2% loss", hosts[:256], "top100",
            ["--top-ports", "100"], top100,
        ),
    }  # fmt: skip


def udp_scenarios(hosts: list[str]) -> dict[str, Scenario]:
    every_state = "53,161,137,5060,9"  # open on one host each, dropped, rejected, closed
    return {
        "u0": Scenario(
            "u0", "2 hosts x 5 UDP ports", hosts[:2], f"U:{every_state}", ["-p", every_state],
            f"U:{every_state}", udp=True, timeout=300,
        ),
        "u1": Scenario(
            "u1", "64 hosts x top 20 UDP ports", hosts[:64], "U:top20", ["--top-ports", "20"],
            "U:top20", udp=True,
        ),
        "u2": Scenario(
            "u2", "4 hosts x top 1,000 UDP ports", hosts[:4], "U:top1000",
            ["--top-ports", "1000"], "U:top1000", udp=True, timeout=7200,
        ),
    }  # fmt: skip


def run_tool(
    tool: str, sc: Scenario, target: Target, workdir: Path, runs: Runs, extra: str = ""
) -> None:
    targets = workdir / f"{sc.key}.targets"
    truth = target.truth
    if tool.startswith("portscan"):
        report_path = workdir / f"{sc.key}.json"
        cmd = [*portscan_command(), "-iL", str(targets), "-p", sc.ours, "--json", str(report_path)]
        cmd += [*extra.split(), *sc.tools[tool], "--no-progress"]
        report_path.unlink(missing_ok=True)  # this run's report, never an earlier one's
        usage = timed([*target.netns_exec, *cmd], env=checkout_env(), timeout=sc.timeout)
        report = json.loads(report_path.read_text())
        if sc.udp and report["options"]["retries"] != UDP_RETRIES:
            raise SystemExit(
                f"portscan ran with --retries {report['options']['retries']}, nmap -T5 with "
                f"--max-retries {UDP_RETRIES}: set UDP_RETRIES to portscan's"
            )
        wrong = report_mismatches(truth, report, sc.hosts, sc.ports)
        states = report_mismatches(truth, report, sc.hosts, sc.ports, reasons=False)
        tally = wrong_states(truth, report_states(report), sc.hosts, sc.ports)
    else:
        xml = workdir / f"{sc.key}.xml"
        cmd = [*sc.tools[tool], *sc.nmap, "-iL", str(targets), "-oX", str(xml)]
        xml.unlink(missing_ok=True)
        usage = timed([*target.netns_exec, *cmd], timeout=sc.timeout)
        if sorted(nmap_scanned_ports(xml)) != sorted(parse_ports(sc.ports)):
            raise SystemExit(f"{tool} scanned other ports than portscan -p {sc.ours}")
        states = nmap_mismatches(truth, xml, sc.hosts)
        wrong = nmap_mismatches(truth, xml, sc.hosts, reasons=True)
        tally = wrong_states(truth, nmap_states(truth, xml), sc.hosts, sc.ports)
    runs.usage.append(usage)
    runs.wrong.append(tally)
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
        "wrong": " / ".join(
            ", ".join(f"{k}: {n}" for k, n in sorted(w.items())) or "0" for w in runs.wrong
        ),
        "notes": runs.notes,
    }


def table(rows: list[dict[str, Any]], reference_tool: str = REFERENCE) -> str:
    """The rows as Markdown; ratios are to ``reference_tool``'s row of the same scenario and
    contention."""
    reference = {(r["scenario"], r["beside"]): r for r in rows if r["tool"] == reference_tool}
    lines = [
        "| scenario | tool | contention | wall s (median) | runs | CPU s | user s | sys s | "
        f"CPU µs/probe | probes | wall vs {reference_tool} | CPU/probe vs {reference_tool} | "
        "exact: state | exact: +reason | wrong states (per run) |",
        "|---|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
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
            f"{r['state']} | {r['reason']} | {r['wrong']} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--scenarios", default="de", help=f"any of {', '.join(KEYS)}, e.g. de or u1,u2"
    )
    parser.add_argument("--markdown", type=Path, help="also write the table as Markdown here")
    parser.add_argument("--keep", action="store_true", help="leave the labs up afterwards")
    parser.add_argument("--udp-prefix", default="npbu", help="the UDP lab's namespace prefix")
    parser.add_argument(
        "--portscan-args", default="", help="extra options for portscan (default: none)"
    )
    parser.add_argument(
        "--tools",
        default=",".join({**TOOLS, **UDP_TOOLS}),
        help=f"comma-separated subset of: {', '.join({**TOOLS, **UDP_TOOLS})} (default: all; "
        "each scenario runs those of its protocol)",
    )
    parser.add_argument(
        "--contention",
        action="store_true",
        help="also run every tool beside one busy-looping process pinned to one CPU",
    )
    args = parser.parse_args()
    tools = [t.strip() for t in args.tools.split(",")]
    keys = re.findall(r"u\d|[^,\s]", args.scenarios)
    if set(tools) - {*TOOLS, *UDP_TOOLS} or set(keys) - set(KEYS):
        raise SystemExit(
            f"use --tools from: {', '.join({**TOOLS, **UDP_TOOLS})}; "
            f"--scenarios from: {', '.join(KEYS)}"
        )
    if any(t.startswith("nmap") for t in tools) and not shutil.which("nmap"):
        raise SystemExit("nmap is not installed (apt-get install nmap)")
    header = [machine(), f"run: {command_line()}"]
    conditions = [False, True] if args.contention else [False]
    labs: dict[str, Target] = {}
    built: list[str] = []
    udp_built = False
    rows: dict[bool, list[dict[str, Any]]] = {False: [], True: []}  # by sc.udp
    try:
        with tempfile.TemporaryDirectory() as tmp:
            workdir = Path(tmp)
            for key in keys:
                if key in UDP_HOSTS:
                    if not udp_built:
                        hosts = max(UDP_HOSTS[k] for k in keys if k in UDP_HOSTS)
                        try:
                            udp_built = True
                            truth_path = udp_lab.up(args.udp_prefix, hosts)
                        except LabError as exc:
                            raise SystemExit(f"cannot bring up the UDP lab: {exc}") from exc
                        labs["udp"] = Target(
                            ["ip", "netns", "exec", f"{args.udp_prefix}-uc"],
                            json.loads(truth_path.read_text()),
                        )
                    target = labs["udp"]
                    sc = udp_scenarios(target.truth["up_hosts"]["ipv4"])[key]
                else:
                    config = LABS[key]
                    if config.prefix not in labs:
                        try:
                            truth_path, fresh = up(config)
                        except LabError as exc:
                            raise SystemExit(f"cannot bring up the lab: {exc}") from exc
                        lab = Lab.load(config, truth_path)
                        labs[config.prefix] = Target(lab.netns_exec, lab.truth)
                        if fresh:
                            built.append(config.prefix)
                    target = labs[config.prefix]
                    sc = scenarios(target.truth["up_hosts"]["ipv4"])[key]
                (workdir / f"{key}.targets").write_text("\n".join(sc.hosts) + "\n")
                mine = [t for t in tools if t in sc.tools]
                results: dict[tuple[str, str], Runs] = {}
                # alternate tools (and contention) run by run, so machine noise hits all alike
                for number in range(args.runs):
                    for busy in conditions:
                        with contention(busy) as hog:
                            beside = str(hog or "")
                            turn = number % len(mine)
                            for tool in mine[turn:] + mine[:turn]:
                                runs = results.setdefault((tool, beside), Runs())
                                time.sleep(UDP_REST if sc.udp else 0)
                                run_tool(tool, sc, target, workdir, runs, args.portscan_args)
                                print(
                                    f"({key}) run {number + 1} {tool}{' + ' if beside else ''}"
                                    f"{beside}: {runs.usage[-1].wall:.2f} s, CPU "
                                    f"{runs.usage[-1].cpu:.2f} s; load {load()}",
                                    file=sys.stderr,
                                    flush=True,
                                )
                order = {(t, b): (bool(b), mine.index(t)) for t, b in results}
                for tool, beside in sorted(results, key=order.__getitem__):
                    rows[sc.udp].append(row(sc, tool, beside, results[tool, beside]))
    finally:
        if not args.keep:
            for prefix in built:
                down(prefix)
            if udp_built:
                udp_lab.down(args.udp_prefix)
    header.append(
        f"runs per tool: {args.runs}; portscan with {args.portscan_args or 'default options'}; "
        "CPU = user + sys of every process of the tool; probes = hosts x ports; load at the end "
        f"{load()}"
    )
    if rows[False]:
        header.append(
            f"TCP labs: {LAB.latency_ms:g} ms round trip, listen backlog {LAB.backlog}, (f) "
            f"{LOSSY_LAB.loss:g}% loss each way"
        )
    if rows[True]:
        header.append(
            "UDP lab: one namespace per host, the kernel's ICMP rate limit (1 error/s, burst 6) "
            f"in each, no added latency, {UDP_REST:g} s between runs (the buckets refill); "
            f"nmap -T5 with --max-retries {UDP_RETRIES} = portscan's retries"
        )
    tables = [table(rows[False])] if rows[False] else []
    tables += [table(rows[True], UDP_REFERENCE)] if rows[True] else []
    text = "\n".join(header) + "\n\n" + "\n\n".join(tables)
    print(text)
    every = rows[False] + rows[True]
    for r in every:
        for note in r["notes"]:
            beside = f" + {r['beside']}" if r["beside"] else ""
            print(f"{r['scenario']} {r['tool']}{beside}: {note}")
    if args.markdown:
        args.markdown.write_text(text + "\n")
    return 0 if all(r["exact"] for r in every if r["tool"].startswith("portscan")) else 1


if __name__ == "__main__":
    sys.exit(main())
