"""Lab benchmark: the `portscan` CLI against nmap -T5 and -T4 connect scans, at 20 ms round trip.

Scenarios (issue 3), on the lab of ``tests/lab`` (brought up here and torn down after):
  d  256 hosts x nmap's top 100 ports; every host has open, closed, dropped (no answer) and
     rejected ports
  e  16 hosts x 65,535 ports
  f  (d) with 2% random loss in each direction (TCP and ICMP, both ways), on a second lab

The engine runs with its default options apart from targets and ports. nmap runs as
``nmap -sT -T5 --min-rate 20000 -n -Pn`` and ``nmap -sT -T4 -n -Pn``. Runs alternate between the
three tools. Every run is compared with the lab's ground truth port by port: "state" counts the
runs where every port's state is right, "+reason" those where the reason is right too (nmap's
connect scan only sees the errno, so it calls an IPv4 admin-prohibited reject host-unreach).
Wall time and CPU time are medians; CPU includes every worker process; probes/s is
hosts x ports / wall. Needs root, nmap, iproute2, nftables and iptables. Traffic stays in the
lab's namespaces (the lab verifies its routes before anything is sent).

    python benchmarks/bench_lab.py [--runs 3] [--scenarios def] [--markdown FILE] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
# the portscan of this checkout, not whatever the venv has installed
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))

from nornir_portscan.ports import parse_ports  # noqa: E402
from tests.lab.exact import nmap_mismatches, nmap_scanned_ports, report_mismatches  # noqa: E402
from tests.lab.lab import Lab, LabError, down, up  # noqa: E402
from tests.lab.truth import LabConfig  # noqa: E402

NMAP_BASE = ["nmap", "-sT", "-n", "-Pn"]
TOOLS = {
    "portscan": None,
    "nmap -T5": [*NMAP_BASE, "-T5", "--min-rate", "20000"],
    "nmap -T4": [*NMAP_BASE, "-T4"],
}
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
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
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


def timed(cmd: list[str]) -> tuple[float, float]:
    """Run cmd; return wall time and CPU time (user + sys of it and every child it waited for)."""
    code = (
        "import resource,subprocess,sys,time,json;t=time.perf_counter();"
        "r=subprocess.run(sys.argv[1:],stdout=subprocess.DEVNULL);w=time.perf_counter()-t;"
        "u=resource.getrusage(resource.RUSAGE_CHILDREN);"
        "print(json.dumps([r.returncode,w,u.ru_utime+u.ru_stime]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, *cmd], capture_output=True, text=True, check=True, timeout=1800
    ).stdout
    rc, wall, cpu = json.loads(out)
    if rc != 0:
        raise SystemExit(f"command failed ({rc}): {' '.join(cmd)}")
    return wall, cpu


def run_tool(tool: str, sc: Scenario, lab: Lab, workdir: Path, runs: Runs, extra: str = "") -> None:
    targets = workdir / f"{sc.key}.targets"
    if tool == "portscan":
        portscan = shutil.which("portscan", path=str(Path(sys.executable).parent)) or "portscan"
        report_path = workdir / f"{sc.key}.json"
        cmd = [portscan, "-iL", str(targets), "-p", sc.ours, "--json", str(report_path)]
        cmd += extra.split()
        wall, cpu = timed([*lab.netns_exec, *cmd, "--no-progress"])
        report = json.loads(report_path.read_text())
        wrong = report_mismatches(lab.truth, report, sc.hosts, sc.ports)
        states = report_mismatches(lab.truth, report, sc.hosts, sc.ports, reasons=False)
    else:
        xml = workdir / f"{sc.key}.xml"
        cmd = [*TOOLS[tool], *sc.nmap, "-iL", str(targets), "-oX", str(xml)]  # type: ignore[misc]
        wall, cpu = timed([*lab.netns_exec, *cmd])
        if sorted(nmap_scanned_ports(xml)) != sorted(parse_ports(sc.ports)):
            raise SystemExit(f"{tool} scanned other ports than portscan -p {sc.ours}")
        states = nmap_mismatches(lab.truth, xml, sc.hosts)
        wrong = nmap_mismatches(lab.truth, xml, sc.hosts, reasons=True)
    runs.wall.append(wall)
    runs.cpu.append(cpu)
    runs.state_exact += not states
    runs.reason_exact += not wrong
    if wrong:
        note = f"{len(wrong)} differences, e.g. {wrong[:3]}"
        if note not in runs.notes:
            runs.notes.append(note)


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
    args = parser.parse_args()
    tools = [t.strip() for t in args.tools.split(",")]
    if set(tools) - set(TOOLS):
        raise SystemExit(f"unknown tool in --tools {args.tools!r}: use {', '.join(TOOLS)}")
    if any(t != "portscan" for t in tools) and not shutil.which("nmap"):
        raise SystemExit("nmap is not installed (apt-get install nmap)")
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
                results = {tool: Runs() for tool in tools}
                for number in range(args.runs):  # alternate so machine noise hits all alike
                    for tool in tools:
                        run_tool(tool, sc, lab, workdir, results[tool], args.portscan_args)
                        print(
                            f"({key}) run {number + 1} {tool}: {results[tool].wall[-1]:.2f} s",
                            file=sys.stderr,
                            flush=True,
                        )
                ours = statistics.median(results["portscan"].wall) if "portscan" in tools else 0
                for tool, runs in results.items():
                    wall = statistics.median(runs.wall)
                    rows.append(
                        {
                            "scenario": f"({key}) {sc.title}",
                            "tool": tool,
                            "wall": wall,
                            "walls": runs.wall,
                            "cpu": statistics.median(runs.cpu),
                            "rate": sc.probes / wall,
                            "ratio": f"{ours / wall:.2f}x" if ours and tool != "portscan" else "",
                            "state": f"{runs.state_exact}/{len(runs.wall)}",
                            "reason": f"{runs.reason_exact}/{len(runs.wall)}",
                            "notes": runs.notes,
                        }
                    )
    finally:
        if not args.keep:
            for prefix in built:
                down(prefix)
    header = (
        "| scenario | tool | wall s (median) | runs | CPU s | probes/s | portscan wall / this "
        "| exact: state | exact: +reason |"
    )
    lines = [header, "|---|---|---:|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        walls = " ".join(f"{w:.2f}" for w in r["walls"])
        lines.append(
            f"| {r['scenario']} | {r['tool']} | {r['wall']:.2f} | {walls} | {r['cpu']:.2f} | "
            f"{r['rate']:,.0f} | {r['ratio']} | {r['state']} | {r['reason']} |"
        )
    table = "\n".join(lines)
    print(
        f"runs per tool: {args.runs}; {os.cpu_count()} CPUs; labs: {LAB.latency_ms:g} ms round "
        f"trip, listen backlog {LAB.backlog}, (f) {LOSSY_LAB.loss:g}% loss each way; portscan "
        f"with {args.portscan_args or 'default options'}"
    )
    print(table)
    for r in rows:
        for note in r["notes"]:
            print(f"{r['scenario']} {r['tool']}: {note}")
    if args.markdown:
        args.markdown.write_text(table + "\n")
    ours_exact = all(
        r["reason"] == f"{args.runs}/{args.runs}" for r in rows if r["tool"] == "portscan"
    )
    return 0 if ours_exact else 1


if __name__ == "__main__":
    sys.exit(main())
