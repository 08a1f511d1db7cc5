"""Compare a scan with the lab's ground truth, port by port: a ``portscan`` JSON report or an
nmap XML file. Pure functions of the truth dict, shared by ``test_accuracy.py`` and
``benchmarks/bench_lab.py``; each returns the differences, empty when the scan is exact."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from nornir_portscan.ports import parse_ports

__all__ = ["expected", "nmap_mismatches", "report_mismatches"]

Truth = dict[str, Any]


def expected(truth: Truth, address: str, port: int) -> tuple[str, str]:
    """(state, reason) the lab promises for ``address:port``."""
    host = truth["hosts"][address]
    entry = host["ports"].get(str(port), host["default"])
    return entry["state"], entry["reason"]


def report_mismatches(
    truth: Truth,
    report: dict[str, Any],
    hosts: list[str],
    ports: str,
    *,
    partial: bool = False,
    reasons: bool = True,
) -> list[str]:
    """Every way a ``portscan`` JSON report differs from the truth: hosts, status, the scanned
    ports, each listed port's state and reason, ``closed_count`` for the rest, errors.

    ``partial``: every host must have timed out; then only what it reports as scanned counts.
    ``reasons=False`` compares states only."""
    wanted = set(parse_ports(ports))
    problems: list[str] = []
    seen = [h["address"] for h in report["hosts"]]
    if sorted(seen) != sorted(hosts):
        problems.append(f"hosts in the report differ: {sorted(set(seen) ^ set(hosts))[:5]}")
    for host in report["hosts"]:
        address = host["address"]
        status = "timed_out" if partial else truth["hosts"][address]["status"]
        if host["status"] != status:
            problems.append(f"{address}: status {host['status']}, expected {status}")
        scanned = set(parse_ports(host["scanned_ports"])) if host["scanned_ports"] else set()
        if not partial and scanned != wanted:
            problems.append(f"{address}: scanned {len(scanned)} of {len(wanted)} ports")
        if scanned - wanted:
            problems.append(f"{address}: scanned unrequested ports {sorted(scanned - wanted)[:5]}")
        listed = {p["port"]: (p["state"], p["reason"]) for p in host["ports"]}
        if set(listed) - scanned:
            problems.append(
                f"{address}: results for unscanned ports {sorted(set(listed) - scanned)}"
            )
        for port in sorted(scanned):
            got = listed.get(port, ("closed", "conn-refused"))
            want = expected(truth, address, port)
            if got[0] != want[0] or (reasons and got != want):
                problems.append(f"{address}:{port} {got[0]}/{got[1]}, expected {want[0]}/{want[1]}")
        unlisted = len(scanned - set(listed))
        if host["closed_count"] != unlisted:
            problems.append(f"{address}: closed_count {host['closed_count']}, expected {unlisted}")
        if host["error_ports"]:
            problems.append(f"{address}: error ports {host['error_ports'][:5]}")
    return problems


def nmap_scanned_ports(xml: Path) -> list[int]:
    """The ports nmap says it scanned (``<scaninfo services=...>``)."""
    info = ET.parse(xml).getroot().find("scaninfo")
    assert info is not None
    return list(parse_ports(info.get("services", "")))


def nmap_mismatches(
    truth: Truth, xml: Path, hosts: list[str], *, reasons: bool = False
) -> list[str]:
    """Every way an nmap XML result differs from the truth in port states (and reasons too if
    ``reasons``). Ports nmap folds into ``<extraports>`` count as that state when it folded
    only one state; with several, only the counts per state can be compared."""
    root = ET.parse(xml).getroot()
    scanned = nmap_scanned_ports(xml)
    problems: list[str] = []
    seen: set[str] = set()
    for host in root.iter("host"):
        addr_el = host.find("address")
        assert addr_el is not None
        address = addr_el.get("addr", "")
        seen.add(address)
        listed: dict[int, tuple[str, str]] = {}
        for port in host.iter("port"):
            state = port.find("state")
            assert state is not None
            listed[int(port.get("portid", "0"))] = (state.get("state", ""), state.get("reason", ""))
        extra = {e.get("state", ""): int(e.get("count", "0")) for e in host.iter("extraports")}
        rest = [p for p in scanned if p not in listed]
        for port, (state, reason) in sorted(listed.items()):
            want = expected(truth, address, port)
            if state != want[0] or (reasons and reason != want[1]):
                problems.append(f"{address}:{port} {state}/{reason}, expected {want[0]}/{want[1]}")
        want_rest: dict[str, int] = {}
        for port in rest:
            state = expected(truth, address, port)[0]
            want_rest[state] = want_rest.get(state, 0) + 1
        if extra != want_rest:
            problems.append(f"{address}: nmap folded {extra}, expected {want_rest}")
    missing = sorted(set(hosts) - seen)
    if missing:
        problems.append(f"hosts missing from nmap's output: {missing[:5]}")
    return problems
