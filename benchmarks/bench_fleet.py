"""Fleet benchmark (issue 15): 4 scanners of 1 process each against 1 scanner of 4 processes.

The same targets and ports are scanned both ways, through two doors:

  ansible  the collection's modules (portscan_plan on the controller, portscan_shard on each
           scanner, portscan_merge on the controller) run by ansible-playbook; each scanner is
           a network namespace reached through a local connection whose interpreter runs
           Python in that namespace (``tests/ansible/fleet_lab.py``)
  cli      ``portscan --shard I/4 --processes 1`` in each of 4 scanner namespaces at once, then
           ``portscan merge``, against ``portscan --processes 4`` in one scanner namespace

The targets are a segment namespace of ``tests/ansible/fleet_lab.py`` (198.18.0.x, only inside
the namespaces this script creates) with real listeners on a few ports of each host and two
ports dropped (filtered). Every scanner namespace has a veth into that segment only. The
figures are for correctness and the overhead of a shard, not speed-up: the machine has few
cores, and the 4 scanners share them.

Printed, all from one run: wall time and CPU time (user + system of every process: the
scanners, their workers, ansible-playbook and its forks; medians of ``--runs``), probes sent,
the overhead per shard ((4 scanners - 1 scanner) / 4), whether each run's states equal the
ground truth port by port, the load average (a shared machine makes wall times longer),
and the plan's cost: ``build_plan`` of 65,536 hosts x 256 shards
(this checkout, and ``--before REV``'s plan.py for comparison) and one shard report's
``shard`` section. Needs root, iproute2, nftables and ansible-playbook in this Python's
directory.

    python benchmarks/bench_fleet.py [--runs 3] [--hosts 64] [--ports 1-1024] [--before REV]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests" / "ansible")]
# the portscan of this checkout, in every process this script starts
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))

from fleet_lab import PREFIX, FleetLab, Segment  # noqa: E402

from nornir_portscan.fleet import build_plan  # noqa: E402
from nornir_portscan.ports import parse_ports  # noqa: E402

BIN = Path(sys.executable).parent
SHARDS = 4
DROPPED = (9, 139)
PLAYBOOK = """\
- name: Fleet benchmark
  hosts: portscan_scanners
  gather_facts: false
  tasks:
    - name: Plan
      nornir_portscan.portscan.portscan_plan:
        ports: "{{ bench_ports }}"
        timeout: "{{ bench_timeout }}"
        directory: "{{ bench_directory }}"
        resume: false
      run_once: true
      delegate_to: localhost
      register: plan
    - name: Scan this scanner's shard
      nornir_portscan.portscan.portscan_shard:
        plan: "{{ plan.plan }}"
        scanner: "{{ inventory_hostname }}"
        processes: "{{ portscan_processes }}"
      register: portscan_shard
    - name: Merge
      nornir_portscan.portscan.portscan_merge:
        plan: "{{ plan }}"
        report: "{{ bench_report }}"
      run_once: true
      delegate_to: localhost
"""


@dataclass
class Runs:
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    probes: list[int] = field(default_factory=list)
    exact: int = 0
    notes: list[str] = field(default_factory=list)

    def add(self, wall: float, cpu: float, report: dict[str, Any], bad: list[str]) -> None:
        self.wall.append(wall)
        self.cpu.append(cpu)
        summary = report.get("summary", {})
        self.probes.append(int(summary.get("probes_sent", report.get("probes_sent", 0))))
        self.exact += not bad
        if bad:
            self.notes.append(f"{len(bad)} ports wrong, e.g. {', '.join(bad[:3])}")


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measured(start: Callable[[], list[subprocess.Popen[str]]]) -> tuple[float, float]:
    """Wall and CPU time (user + system of every process, as each is waited for) of the
    processes ``start`` starts, run to their end; fails loudly when one fails."""
    cpu, wall = children_cpu(), time.perf_counter()
    procs = start()
    outputs = [proc.communicate(timeout=600) for proc in procs]
    wall, cpu = time.perf_counter() - wall, children_cpu() - cpu
    for proc, (out, err) in zip(procs, outputs, strict=True):
        if proc.returncode != 0:
            raise SystemExit(
                f"failed ({proc.returncode}): {proc.args}\n{out[-3000:]}\n{err[-3000:]}"
            )
    return wall, cpu


def popen(argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )


def wrong(
    report: dict[str, Any], segment: Segment, hosts: list[int], ports: tuple[int, ...]
) -> list[str]:
    """Every (host, port) whose state in ``report`` (a scan's or a merge's JSON) is not the
    segment's truth, or that is missing or listed twice."""
    seen: dict[str, dict[int, str]] = {}
    bad = []
    for host in report["hosts"]:
        if host["name"] in seen:
            bad.append(f"{host['name']} listed twice")
        scanned = parse_ports(host["scanned_ports"]) if host["scanned_ports"] else ()
        states = dict.fromkeys(scanned, "closed")
        states.update({entry["port"]: entry["state"] for entry in host["ports"]})
        seen[host["name"]] = states
    for octet in hosts:
        states = seen.get(f"{PREFIX}{octet}", {})
        for port in ports:
            got, truth = states.get(port, "missing"), segment.truth(port, octet)
            if got != truth:
                bad.append(f"{PREFIX}{octet}:{port} {got} (truth {truth})")
    return bad


class Bench:
    def __init__(self, workdir: Path, hosts: int, ports: str, timeout: float) -> None:
        self.workdir, self.ports, self.timeout = workdir, ports, timeout
        self.port_list = parse_ports(ports)
        self.hosts = list(range(1, hosts + 1))
        self.lab = FleetLab(workdir)
        self.segment: Segment | None = None
        self.controller = f"{self.lab.tag}-ctl"

    def up(self) -> None:
        lab = self.lab
        opened = {h: sorted({22, 80, 443, (h * 37) % 1000 + 1000, h + 1}) for h in self.hosts}
        opened = {h: [p for p in ports if p not in DROPPED] for h, ports in opened.items()}
        self.segment = Segment(lab, "targets", opened, dropped=DROPPED)
        for name in [f"fleet{i}" for i in range(SHARDS)] + ["single"]:
            lab.scanner(self.segment, name, "lab")
        lab.namespaces.append(self.controller)
        subprocess.run(["ip", "netns", "add", self.controller], check=True)
        subprocess.run(["ip", "-n", self.controller, "link", "set", "lo", "up"], check=True)
        collections = self.workdir / "collections" / "ansible_collections" / "nornir_portscan"
        collections.mkdir(parents=True)
        (collections / "portscan").symlink_to(REPO)
        (self.workdir / "bench.yml").write_text(PLAYBOOK)

    def netns(self, name: str) -> str:
        return f"{self.lab.tag}-{name}"

    def targets(self) -> list[str]:
        return [f"{PREFIX}{h}" for h in self.hosts]

    # -- the CLI door ---------------------------------------------------------------------

    def cli(
        self, names: list[str], processes: int, run: int
    ) -> tuple[float, float, dict[str, Any]]:
        out = self.workdir / f"cli-{len(names)}-{run}"
        out.mkdir()
        common = ["-p", self.ports, "--timeout", str(self.timeout), "--processes", str(processes)]
        scan = [sys.executable, "-m", "nornir_portscan", *common]

        def argv(index: int, name: str) -> list[str]:
            shard = ["--shard", f"{index}/{len(names)}"] if len(names) > 1 else []
            return [
                "ip",
                "netns",
                "exec",
                self.netns(name),
                *scan,
                *shard,
                "--json",
                str(out / f"{name}.json"),
                *self.targets(),
            ]

        wall, cpu = measured(lambda: [popen(argv(i, n)) for i, n in enumerate(names)])
        if len(names) == 1:
            return wall, cpu, json.loads((out / f"{names[0]}.json").read_text())
        files = [str(out / f"{n}.json") for n in names]
        merge = [
            sys.executable,
            "-m",
            "nornir_portscan",
            "merge",
            *files,
            "--json",
            str(out / "merged.json"),
        ]
        merge_wall, merge_cpu = measured(lambda: [popen(merge)])
        return wall + merge_wall, cpu + merge_cpu, json.loads((out / "merged.json").read_text())

    # -- the Ansible door -----------------------------------------------------------------

    def ansible(
        self, names: list[str], processes: int, run: int
    ) -> tuple[float, float, dict[str, Any]]:
        out = self.workdir / f"ansible-{len(names)}-{run}"
        out.mkdir()
        scanners = {n: {**self.lab.scanners[n], "portscan_processes": processes} for n in names}
        inventory = {
            "all": {
                "children": {
                    "portscan_scanners": {"hosts": scanners},
                    "portscan_targets": {"hosts": {t: {"ansible_host": t} for t in self.targets()}},
                }
            }
        }
        path = out / "inventory.json"
        path.write_text(json.dumps(inventory))
        home = out / "home"
        env = {
            **os.environ,
            "ANSIBLE_COLLECTIONS_PATH": str(self.workdir / "collections"),
            "ANSIBLE_HOME": str(home),
            "ANSIBLE_LOCAL_TEMP": str(home / "tmp"),
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_FORKS": "10",
            "ANSIBLE_RETRY_FILES_ENABLED": "0",
            "ANSIBLE_DEPRECATION_WARNINGS": "0",
            "ANSIBLE_HOST_KEY_CHECKING": "0",
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        }
        report = out / "merged.json"
        argv = [
            "ip",
            "netns",
            "exec",
            self.controller,
            str(BIN / "ansible-playbook"),
            "-i",
            str(path),
            str(self.workdir / "bench.yml"),
            "-e",
            f"bench_ports={self.ports}",
            "-e",
            f"bench_timeout={self.timeout}",
            "-e",
            f"bench_directory={out / 'runs'}",
            "-e",
            f"bench_report={report}",
        ]
        wall, cpu = measured(lambda: [popen(argv, env)])
        return wall, cpu, json.loads(report.read_text())

    def close(self) -> None:
        self.lab.close()


def plan_cost(before: str | None) -> list[str]:
    """``build_plan`` of 65,536 hosts x 256 shards, here and in ``before``'s plan.py, and the
    size of one shard's ``shard`` section."""
    names = [f"10.{i >> 16}.{(i >> 8) & 255}.{i & 255}" for i in range(65536)]
    lines = []
    versions: list[tuple[str, Any]] = [("this checkout", sys.modules[build_plan.__module__])]
    if before:
        source = subprocess.run(
            ["git", "-C", str(REPO), "show", f"{before}:nornir_portscan/fleet/plan.py"],
            capture_output=True,
            text=True,
        )
        if source.returncode == 0:
            path = Path(tempfile.mkdtemp()) / "plan_before.py"
            path.write_text(source.stdout)
            spec = importlib.util.spec_from_file_location("plan_before", path)
            assert spec
            assert spec.loader
            module = importlib.util.module_from_spec(spec)
            sys.modules["plan_before"] = module  # dataclasses look their module up
            spec.loader.exec_module(module)
            versions.append((f"{before} (before)", module))
    for label, module in versions:
        targets = [module.FleetTarget(n, n) for n in names]
        scanners = [module.Scanner(str(i)) for i in range(256)]
        cpu, wall = time.process_time(), time.perf_counter()
        plan = module.build_plan(scanners, targets, "22,80,443")
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        shard = plan.shard("0")
        section = {"plan": module.plan_inputs(plan), "scanner": "0", "hosts": len(shard.targets)}
        size = len(json.dumps(section))
        lines.append(
            f"  build_plan 65,536 hosts x 256 shards, {label}: {wall:.2f} s wall, "
            f"{cpu:.2f} s CPU; a shard report's 'shard' section: {size:,} bytes"
        )
    return lines


def machine() -> str:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in subprocess.run(
                ["lscpu"], capture_output=True, text=True
            ).stdout.splitlines()
            if line.startswith("Model name")
        ),
        "unknown",
    )
    commit = (
        subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip()
        or "unknown"
    )
    dirty = subprocess.run(
        ["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    return (
        f"{model}, {os.cpu_count()} cores; commit {commit}{' (modified)' if dirty else ''}; "
        f"{load()}"
    )


def load() -> str:
    """The load average: the machine may be shared, and then wall times are longer."""
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--hosts", type=int, default=64, help="target hosts (at most 95)")
    parser.add_argument("--ports", default="1-1024")
    parser.add_argument("--timeout", type=float, default=1.0)
    parser.add_argument("--doors", default="cli,ansible")
    parser.add_argument("--before", default="338cbec", help="a commit whose plan.py to time too")
    args = parser.parse_args()
    if not 1 <= args.hosts <= 95:
        parser.error("--hosts must be 1 to 95 (the scanners use 198.18.0.101 and up)")
    print(f"machine: {machine()}")
    print("plan cost:")
    for line in plan_cost(args.before):
        print(line)
    if os.geteuid() != 0 or not shutil.which("ip") or not shutil.which("nft"):
        print("skipped the scans: they need root, iproute2 and nftables (network namespaces)")
        return 0
    doors = [d for d in args.doors.split(",") if d]
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp:
        bench = Bench(Path(tmp), args.hosts, args.ports, args.timeout)
        try:
            bench.up()
            assert bench.segment is not None
            fleet = [f"fleet{i}" for i in range(SHARDS)]
            ways = {
                "4 scanners x 1 process": (fleet, 1),
                "1 scanner x 4 processes": (["single"], 4),
            }
            results: dict[tuple[str, str], Runs] = {}
            for run in range(args.runs):  # the ways alternate, run after run
                for door in doors:
                    for way, (names, processes) in ways.items():
                        do = bench.cli if door == "cli" else bench.ansible
                        wall, cpu, report = do(names, processes, run)
                        bad = wrong(report, bench.segment, bench.hosts, bench.port_list)
                        results.setdefault((door, way), Runs()).add(wall, cpu, report, bad)
        finally:
            bench.close()
    probes = args.hosts * len(bench.port_list)
    print(
        f"\n{args.hosts} hosts x {len(bench.port_list)} ports ({args.ports}) = {probes:,} "
        f"ports, {len(DROPPED)} of them dropped on every host; --timeout {args.timeout}; "
        f"{args.runs} runs each, medians"
    )
    print(f"after the scans: {load()}")
    print(
        f"{'door':8} {'way':24} {'wall s':>7} {'CPU s':>7} {'probes':>7} {'exact':>6}  wall range"
    )
    for (door, way), runs in results.items():
        print(
            f"{door:8} {way:24} {statistics.median(runs.wall):7.2f} "
            f"{statistics.median(runs.cpu):7.2f} {statistics.median(runs.probes):7.0f} "
            f"{runs.exact:>4}/{len(runs.wall)}  {min(runs.wall):.2f}-{max(runs.wall):.2f}"
        )
        for note in runs.notes:
            print(f"         {note}")
    for door in doors:
        many, one = (
            results[(door, "4 scanners x 1 process")],
            results[(door, "1 scanner x 4 processes")],
        )
        wall = (statistics.median(many.wall) - statistics.median(one.wall)) / SHARDS
        cpu = (statistics.median(many.cpu) - statistics.median(one.cpu)) / SHARDS
        print(f"overhead per shard, {door}: {wall:+.2f} s wall, {cpu:+.2f} s CPU")
    return 0 if all(r.exact == len(r.wall) for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
