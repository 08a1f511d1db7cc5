"""UDP engine benchmark: the worker's ``UdpProber`` (one worker, no front door yet) against
``nmap -sU -T4`` and ``nmap -sU -T5 --max-retries 1`` (our retries), on the UDP lab
(``tests/lab/udp_lab.py``: one namespace per host, each with the kernel's default ICMP rate
limit; real dnsmasq, snmpd, chronyd; dropped, rejected and closed ports).

Scenario: ``--hosts`` hosts (64) x nmap's 20 most frequent UDP ports. Runs alternate between the
three; each starts 7 s after the last one ended, so every host's ICMP bucket is full again (6
tokens). Every run is compared with the ground truth port by port ("wrong": ports whose state
or reason differs). CPU is the children's user + system time. Needs root, nmap, and the UDP
lab's Debian packages. Traffic stays in the lab's namespaces.

    python benchmarks/bench_udp_engine.py [--hosts 64] [--runs 2]
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.lab.udp_lab import UdpLab, running_udp_lab  # noqa: E402

# nmap's 20 most frequent UDP ports (nmap-services, open frequency)
TOP20 = [53, 67, 68, 69, 123, 135, 137, 138, 139, 161, 162, 445, 500, 514, 520, 631, 1434,
         1900, 4500, 49152]  # fmt: skip
PAUSE = 7.0  # s between runs: the targets' ICMP buckets refill (6 tokens at one a second)
RETRIES = 1


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _ours(lab: UdpLab) -> dict[tuple[str, int], tuple[str, str]]:
    spec = {
        "config": {
            "concurrency": 1000, "rate": None, "host_concurrency": None, "min_timeout": 0.1,
            "max_timeout": 1.0, "adaptive": True, "retries": RETRIES, "include_closed": True,
        },
        "units": [[i, host, TOP20] for i, host in enumerate(lab.hosts)],
        "limit": 3000,
    }  # fmt: skip
    out = subprocess.run(
        ["ip", "netns", "exec", lab.client_ns, sys.executable, "-m", "tests.engine.udp_driver",
         json.dumps(spec)],
        cwd=REPO, capture_output=True, text=True, check=True,
    )  # fmt: skip
    units = json.loads(out.stdout)["units"]
    return {
        (host, port): (state, reason)
        for host, unit in zip(lab.hosts, units, strict=True)
        for port, state, reason, _, _ in unit["ports"]
    }


def _nmap(lab: UdpLab, timing: list[str]) -> dict[tuple[str, int], tuple[str, str]]:
    with tempfile.NamedTemporaryFile(suffix=".xml") as xml_file:
        subprocess.run(
            ["ip", "netns", "exec", lab.client_ns, "nmap", "-n", "-Pn", "-sU", *timing,
             "-p", ",".join(map(str, TOP20)), *lab.hosts, "-oX", xml_file.name],
            capture_output=True, check=True,
        )  # fmt: skip
        xml = Path(xml_file.name).read_text()
    found: dict[tuple[str, int], tuple[str, str]] = {}
    for block in re.findall(r"<host .*?</host>", xml, re.S):
        address = re.search(r'addr="([\d.]+)" addrtype="ipv4"', block)
        if address is None:
            continue
        host = address.group(1)
        for port, state, reason in re.findall(
            r'<port protocol="udp" portid="(\d+)"><state state="([^"]+)" reason="([^"]+)"', block
        ):
            found[(host, int(port))] = (state, reason)
        extra = re.search(
            r'<extraports state="([^"]+)".*?<extrareasons reason="([^"]+)"', block, re.S
        )
        if extra:
            for port in TOP20:
                found.setdefault((host, port), (extra.group(1), extra.group(2)))
    return found


def _wrong(lab: UdpLab, found: dict[tuple[str, int], tuple[str, str]]) -> int:
    return sum(
        1
        for host in lab.hosts
        for port in TOP20
        if found.get((host, port)) != lab.expected(host, port)
    )


def machine() -> str:
    fields = {}
    for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    return f"{fields.get('Model name', '?')}, {fields.get('CPU(s)', '?')} CPUs (lscpu)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=64)
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    tools: dict[str, Any] = {
        "ours (UdpProber, retries 1)": _ours,
        "nmap -sU -T4": lambda lab: _nmap(lab, ["-T4"]),
        "nmap -sU -T5 --max-retries 1": lambda lab: _nmap(lab, ["-T5", "--max-retries", "1"]),
    }
    results: dict[str, list[tuple[float, float, int]]] = {name: [] for name in tools}
    with running_udp_lab("npbu", args.hosts) as lab:
        for _ in range(args.runs):
            for name, tool in tools.items():
                time.sleep(PAUSE)
                cpu, started = _cpu(), time.monotonic()
                found = tool(lab)
                results[name].append((time.monotonic() - started, _cpu() - cpu, _wrong(lab, found)))
    print(f"UDP: {args.hosts} hosts x top 20 UDP ports, {args.runs} runs; {machine()}")
    print(f"{'tool':32} {'median wall s':>13} {'median CPU s':>12}  wrong ports per run")
    for name, runs in results.items():
        wall = statistics.median(r[0] for r in runs)
        cpu = statistics.median(r[1] for r in runs)
        print(f"{name:32} {wall:13.1f} {cpu:12.2f}  {[r[2] for r in runs]} of {args.hosts * 20}")


if __name__ == "__main__":
    main()
