"""Nornir benchmark: ``nr.run(task=portscan)`` against nornir_utils' ``tcp_ping``, in one run.

1,000 inventory hosts (127.1.0.1 - 127.1.3.250) x 10 ports (20001-20010): 20001 is open on every
host, 20002 on every 10th host, the rest closed, except a few filtered ports (dropped by
nftables): 20010 on the first 20 hosts (a port an ACL blocks) and every port of the last 2 hosts
(firewalled hosts that drop everything) - 40 of 10,000. Both tasks run through the same
``ThreadedRunner(num_workers=100)``, taking turns, ``--runs`` times each; the script prints the
median wall times, the speedup (goal >= 10x) and what each tool answered: ``portscan`` says
open, closed or filtered, ``tcp_ping`` only True or False.

It re-runs itself in a network namespace of its own, where the nftables rule lives and dies with
the namespace; without one (no root, no ``ip``/``nft``) it runs on the machine's loopback with no
filtered ports and says so. The machine's firewall is never touched; traffic stays in
127.0.0.0/8.

    python benchmarks/bench_nornir.py [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time
from collections import Counter
from typing import Any

from common import listen, reexec_in_netns
from nornir.core import Nornir
from nornir.core.inventory import Defaults, Groups, Host, Hosts, Inventory
from nornir.plugins.runners import ThreadedRunner
from nornir_utils.plugins.tasks.networking import tcp_ping

from nornir_portscan.nornir.tasks import portscan

HOSTS = [f"127.1.{i // 250}.{i % 250 + 1}" for i in range(1000)]
PORTS = list(range(20001, 20011))
ACL_HOSTS = HOSTS[:20]  # port 20010 is dropped
ACL_PORT = 20010
DARK_HOSTS = HOSTS[-2:]  # every port is dropped
FILTERED = {(h, ACL_PORT) for h in ACL_HOSTS} | {(h, p) for h in DARK_HOSTS for p in PORTS}
OPEN = {(h, 20001) for h in HOSTS} | {(h, 20002) for h in HOSTS[::10]}
NFT_RULES = f"""
table inet bench {{
  chain input {{
    type filter hook input priority 0;
    ip daddr {{ {", ".join(ACL_HOSTS)} }} tcp dport {ACL_PORT} drop
    ip daddr {{ {", ".join(DARK_HOSTS)} }} tcp dport {PORTS[0]}-{PORTS[-1]} drop
  }}
}}
"""
ENV_FLAG = "PORTSCAN_BENCH_NORNIR_NETNS"


def inventory() -> Nornir:
    defaults = Defaults()
    hosts = Hosts(
        {
            f"h{i:04}": Host(f"h{i:04}", hostname=address, defaults=defaults)
            for i, address in enumerate(HOSTS)
        }
    )
    return Nornir(
        inventory=Inventory(hosts, Groups(), defaults), runner=ThreadedRunner(num_workers=100)
    )


def run_portscan(nr: Nornir) -> tuple[float, Counter[str], set[tuple[str, int]], set[Any]]:
    start = time.perf_counter()
    result = nr.run(task=portscan, ports=PORTS)
    wall = time.perf_counter() - start
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
    parser.add_argument("--runs", type=int, default=3, help="runs of each tool (default 3)")
    args = parser.parse_args()
    code = reexec_in_netns("portscan-bench-nornir", ENV_FLAG, NFT_RULES)
    if code is not None:
        return code
    mode = os.environ.get(ENV_FLAG)
    filtered = FILTERED if mode == "filtered" else set()
    open_ports = OPEN - filtered
    if mode != "filtered":
        print(
            "note: no network namespace with nftables here (needs root, 'ip' and 'nft'): "
            "no filtered ports in this run, and the machine's loopback listeners may leak in"
        )
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8192)), hard))
    closed = len(HOSTS) * len(PORTS) - len(open_ports) - len(filtered)
    print(
        f"{len(HOSTS)} inventory hosts x {len(PORTS)} ports: {len(open_ports)} open, "
        f"{closed} closed, {len(filtered)} filtered; ThreadedRunner(num_workers=100); "
        f"{args.runs} runs each"
    )
    nr = inventory()
    listeners = listen(OPEN)
    try:
        scans = []
        pings = []
        for _ in range(args.runs):  # taking turns, so machine noise hits both alike
            scans.append(run_portscan(nr))
            pings.append(run_tcp_ping(nr))
    finally:
        listeners.close()
    scan_wall = statistics.median(s[0] for s in scans)
    ping_wall = statistics.median(p[0] for p in pings)
    exact = all(s[2] == open_ports and s[3] == filtered and s[1]["closed"] == closed for s in scans)
    ping_exact = all(p[2] == open_ports for p in pings)
    states, answers = scans[-1][1], pings[-1][1]
    print(f"{'task':<10}{'wall (median)':>15}  answers")
    print(
        f"{'portscan':<10}{scan_wall:>13.2f} s  open {states['open']}, closed "
        f"{states['closed']}, filtered {states['filtered']} (three-state; "
        f"{'exact' if exact else 'NOT EXACT'})"
    )
    print(
        f"{'tcp_ping':<10}{ping_wall:>13.2f} s  True {answers['True']}, False "
        f"{answers['False']} (closed and filtered look alike; open ports "
        f"{'exact' if ping_exact else 'NOT EXACT'})"
    )
    speedup = ping_wall / scan_wall
    print(f"speedup: {speedup:.1f}x (goal >= 10x): {'met' if speedup >= 10 else 'NOT met'}")
    return 0 if exact else 1


if __name__ == "__main__":
    sys.exit(main())
