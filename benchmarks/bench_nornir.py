"""Nornir benchmark: ``nr.run(task=portscan)`` and ``scan_inventory`` against nornir_utils'
``tcp_ping``, in one run.

1,000 inventory hosts (127.1.0.1 - 127.1.3.250; ``--hosts`` for fewer) x 10 ports (20001-20010):
20001 is open on every host, 20002 on every 10th host, the rest closed, except a few filtered
ports (dropped by nftables): 20010 on the first 20 hosts (a port an ACL blocks) and every port of
the last 2 hosts (firewalled hosts that drop everything) - 40 of 10,000. Each form runs
``--runs`` times, taking turns: ``portscan`` and ``tcp_ping`` through the same
``ThreadedRunner(num_workers=100)``, each host scanned by its own task; ``scan_inventory`` as one
engine run over the whole inventory. The script prints the median wall times, the speedup of
each ``portscan`` form over ``tcp_ping`` (goal >= 10x) and what each answered: ``portscan`` says
open, closed or filtered, ``tcp_ping`` only True or False.

It re-runs itself in a network namespace of its own, where the nftables rule lives and dies with
the namespace; without one (no root, no ``ip``/``nft``) it runs on the machine's loopback with no
filtered ports and says so. The machine's firewall is never touched; traffic stays in
127.0.0.0/8.

    python benchmarks/bench_nornir.py [--runs 3] [--hosts 1000]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from common import listen, reexec_in_netns
from nornir.core import Nornir
from nornir.core.inventory import Defaults, Groups, Host, Hosts, Inventory
from nornir.core.task import AggregatedResult
from nornir.plugins.runners import ThreadedRunner
from nornir_utils.plugins.tasks.networking import tcp_ping

from nornir_portscan.nornir.tasks import portscan, scan_inventory

PORTS = list(range(20001, 20011))
ACL_PORT = 20010


@dataclass(frozen=True)
class Lab:
    """The hosts and the ground truth of one benchmark size."""

    hosts: list[str]
    open: set[tuple[str, int]]
    filtered: set[tuple[str, int]]
    nft_rules: str


def make_lab(count: int) -> Lab:
    hosts = [f"127.1.{i // 250}.{i % 250 + 1}" for i in range(count)]
    acl_hosts = hosts[:20]  # port 20010 is dropped
    dark_hosts = hosts[-2:]  # every port is dropped
    filtered = {(h, ACL_PORT) for h in acl_hosts} | {(h, p) for h in dark_hosts for p in PORTS}
    opened = {(h, 20001) for h in hosts} | {(h, 20002) for h in hosts[::10]}
    rules = f"""
table inet bench {{
  chain input {{
    type filter hook input priority 0;
    ip daddr {{ {", ".join(acl_hosts)} }} tcp dport {ACL_PORT} drop
    ip daddr {{ {", ".join(dark_hosts)} }} tcp dport {PORTS[0]}-{PORTS[-1]} drop
  }}
}}
"""
    return Lab(hosts, opened, filtered, rules)


ENV_FLAG = "PORTSCAN_BENCH_NORNIR_NETNS"


def inventory(addresses: list[str]) -> Nornir:
    defaults = Defaults()
    hosts = Hosts(
        {
            f"h{i:04}": Host(f"h{i:04}", hostname=address, defaults=defaults)
            for i, address in enumerate(addresses)
        }
    )
    return Nornir(
        inventory=Inventory(hosts, Groups(), defaults), runner=ThreadedRunner(num_workers=100)
    )


Outcome = tuple[float, Counter[str], set[tuple[str, int]], set[Any]]


def run_portscan(nr: Nornir) -> Outcome:
    """Each host scanned by its own task, on the runner's threads."""
    start = time.perf_counter()
    result = nr.run(task=portscan, ports=PORTS)
    return tally(time.perf_counter() - start, result)


def run_scan_inventory(nr: Nornir) -> Outcome:
    """The whole inventory in one engine run."""
    start = time.perf_counter()
    result = scan_inventory(nr, ports=PORTS)
    return tally(time.perf_counter() - start, result)


def tally(wall: float, result: AggregatedResult) -> Outcome:
    states: Counter[str] = Counter()
    found_open, found_filtered = set(), set()
    for multi in result.values():
        entry = multi[0].result
        states["open"] += len(entry["open_ports"])
        states["filtered"] += len(entry["filtered_ports"])
        states["closed"] += entry["closed_count"]
        found_open |= {(entry["address"], p) for p in entry["open_ports"]}
        found_filtered |= {(entry["address"], p) for p in entry["filtered_ports"]}
    return wall, states, found_open, found_filtered


def run_tcp_ping(nr: Nornir) -> tuple[float, Counter[str], set[tuple[str, int]]]:
    start = time.perf_counter()
    result = nr.run(task=tcp_ping, ports=PORTS)
    wall = time.perf_counter() - start
    answers: Counter[str] = Counter()
    found_open = set()
    for multi in result.values():
        for port, up in multi[0].result.items():
            answers[str(up)] += 1
            if up:
                found_open.add((multi[0].host.hostname, port))
    return wall, answers, found_open


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs of each form (default 3)")
    parser.add_argument(
        "--hosts", type=int, default=1000, help="inventory hosts, 3 to 1000 (default 1000)"
    )
    args = parser.parse_args()
    lab = make_lab(max(3, min(args.hosts, 1000)))
    code = reexec_in_netns("portscan-bench-nornir", ENV_FLAG, lab.nft_rules)
    if code is not None:
        return code
    mode = os.environ.get(ENV_FLAG)
    filtered = lab.filtered if mode == "filtered" else set()
    open_ports = lab.open - filtered
    if mode != "filtered":
        print(
            "note: no network namespace with nftables here (needs root, 'ip' and 'nft'): "
            "no filtered ports in this run, and the machine's loopback listeners may leak in"
        )
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8192)), hard))
    closed = len(lab.hosts) * len(PORTS) - len(open_ports) - len(filtered)
    print(
        f"{len(lab.hosts)} inventory hosts x {len(PORTS)} ports: {len(open_ports)} open, "
        f"{closed} closed, {len(filtered)} filtered; ThreadedRunner(num_workers=100); "
        f"{args.runs} runs each"
    )
    nr = inventory(lab.hosts)
    listeners = listen(lab.open)
    try:
        scans, inventories, pings = [], [], []
        for _ in range(args.runs):  # taking turns, so machine noise hits all alike
            scans.append(run_portscan(nr))
            inventories.append(run_scan_inventory(nr))
            pings.append(run_tcp_ping(nr))
    finally:
        listeners.close()
    ping_wall = statistics.median(p[0] for p in pings)
    ping_exact = all(p[2] == open_ports for p in pings)
    answers = pings[-1][1]
    print(f"{'form':<16}{'wall (median)':>15}  answers")
    exact = True
    for label, outcomes in (("portscan", scans), ("scan_inventory", inventories)):
        wall = statistics.median(o[0] for o in outcomes)
        right = all(
            o[2] == open_ports and o[3] == filtered and o[1]["closed"] == closed for o in outcomes
        )
        exact = exact and right
        states = outcomes[-1][1]
        print(
            f"{label:<16}{wall:>13.2f} s  open {states['open']}, closed {states['closed']}, "
            f"filtered {states['filtered']} (three-state; {'exact' if right else 'NOT EXACT'}); "
            f"{ping_wall / wall:.1f}x tcp_ping (goal >= 10x)"
        )
    print(
        f"{'tcp_ping':<16}{ping_wall:>13.2f} s  True {answers['True']}, False "
        f"{answers['False']} (closed and filtered look alike; open ports "
        f"{'exact' if ping_exact else 'NOT EXACT'})"
    )
    return 0 if exact else 1


if __name__ == "__main__":
    sys.exit(main())
