"""Loopback benchmark: the `portscan` CLI against `nmap -sT -T5 --min-rate 20000`, in one run.

Scenarios (issue 2):
  a  127.0.0.1, ports 1-65535, a few listeners
  b  1,000 loopback addresses x 100 ports
  c  16 loopback addresses x 65,535 ports

It re-runs itself inside a network namespace of its own (so the machine's listeners do not leak
in), starts the listeners, runs both tools N times per scenario and prints wall time, CPU time,
peak memory of the largest process, probes/s, the ratio to nmap and whether both found exactly
the open ports. Traffic goes to 127.0.0.0/8 only.

    python benchmarks/bench_engine.py [--runs 3] [--scenarios abc] [--markdown FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import sys
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from common import listen, reexec_in_netns, timed

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
    }


@dataclass
class Run:
    wall: float
    cpu: float
    peak_mb: float
    found: set[tuple[str, int]]


def run_engine(sc: Scenario, workdir: Path) -> Run:
    targets = workdir / f"{sc.key}.targets"
    report = workdir / f"{sc.key}.json"
    portscan = shutil.which("portscan", path=str(Path(sys.executable).parent)) or "portscan"
    wall, cpu, peak = timed(
        [
            portscan,
            "-iL",
            str(targets),
            "-p",
            sc.ports,
            "--json",
            str(report),
            "--no-progress",
            "--max-hosts",
            "100000",
        ]
    )
    data = json.loads(report.read_text())
    found = {(h["address"], p) for h in data["hosts"] for p in h["open_ports"]}
    return Run(wall, cpu, peak, found)


def run_nmap(sc: Scenario, workdir: Path) -> Run:
    targets = workdir / f"{sc.key}.targets"
    xml = workdir / f"{sc.key}.xml"
    wall, cpu, peak = timed([*NMAP, "-p", sc.ports, "-iL", str(targets), "-oX", str(xml)])
    found = set()
    for host in ET.parse(xml).getroot().iter("host"):
        address = host.find("address").get("addr")  # type: ignore[union-attr]
        for port in host.iter("port"):
            if port.find("state").get("state") == "open":  # type: ignore[union-attr]
                found.add((address, int(port.get("portid"))))  # type: ignore[arg-type]
    return Run(wall, cpu, peak, found)


def in_own_netns() -> bool:
    return bool(os.environ.get(NETNS_FLAG))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--scenarios", default="abc")
    parser.add_argument("--markdown", type=Path, help="also write the table as Markdown here")
    args = parser.parse_args()
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
    rows = []
    all_exact = True
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        for key in args.scenarios:
            sc = scenarios()[key]
            (workdir / f"{key}.targets").write_text("\n".join(sc.targets) + "\n")
            listeners = listen(sc.listeners)
            truth = set(sc.listeners)
            try:
                engine_runs, nmap_runs = [], []
                for _ in range(args.runs):  # alternate so machine noise hits both alike
                    engine_runs.append(run_engine(sc, workdir))
                    nmap_runs.append(run_nmap(sc, workdir))
            finally:
                listeners.close()
            for tool, runs in (("portscan", engine_runs), ("nmap", nmap_runs)):
                exact = all(r.found == truth for r in runs)
                all_exact &= exact or tool == "nmap"
                wall = statistics.median(r.wall for r in runs)
                rows.append(
                    {
                        "scenario": f"({key}) {sc.title}",
                        "tool": tool,
                        "wall": wall,
                        "cpu": statistics.median(r.cpu for r in runs),
                        "peak_mb": max(r.peak_mb for r in runs),
                        "rate": sc.probes / wall,
                        "exact": f"{sum(r.found == truth for r in runs)}/{len(runs)}",
                    }
                )
            rows[-2]["ratio"] = rows[-2]["wall"] / rows[-1]["wall"]
    header = (
        "| scenario | tool | wall s (median) | CPU s | peak MB | probes/s | "
        "wall vs nmap | exact runs |"
    )
    lines = [header, "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        ratio = f"{r['ratio']:.2f}x" if "ratio" in r else ""
        lines.append(
            f"| {r['scenario']} | {r['tool']} | {r['wall']:.2f} | {r['cpu']:.2f} | "
            f"{r['peak_mb']:.0f} | {r['rate']:,.0f} | {ratio} | {r['exact']} |"
        )
    table = "\n".join(lines)
    print(f"runs per tool: {args.runs}; {os.cpu_count()} CPUs; nmap: {' '.join(NMAP)}")
    print(table)
    if args.markdown:
        args.markdown.write_text(table + "\n")
    return 0 if all_exact else 1


if __name__ == "__main__":
    resource.setrlimit(resource.RLIMIT_NOFILE, resource.getrlimit(resource.RLIMIT_NOFILE))
    sys.exit(main())
