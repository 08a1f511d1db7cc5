"""Compare a scan with the lab's ground truth, port by port: a ``portscan`` JSON report or an
nmap XML file. Pure functions of the truth dict, shared by ``test_accuracy.py`` and
``benchmarks/bench_lab.py``; each returns the differences, empty when the scan is exact.
Ports are port keys (``nornir_portscan.ports``: a UDP port is its number plus ``ports.UDP``);
a lab's truth is of one protocol and names ports by number."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path
from typing import Any

from nornir_portscan.ports import parse_ports, port_label, port_number, port_protocol, udp_key

__all__ = [
    "expected",
    "nmap_mismatches",
    "nmap_states",
    "report_mismatches",
    "report_states",
    "wrong_states",
]

Truth = dict[str, Any]
States = dict[str, dict[int, str]]  # address -> port key -> state
CLOSED_REASON = {"tcp": "conn-refused", "udp": "port-unreach"}  # of ports a report leaves out


def expected(truth: Truth, address: str, port: int) -> tuple[str, str]:
    """(state, reason) the lab promises for ``address:port`` (a port key)."""
    host = truth["hosts"][address]
    entry = host["ports"].get(str(port_number(port)), host["default"])
    return entry["state"], entry["reason"]


def _key(entry: dict[str, Any]) -> int:
    """The port key of a report's (or nmap's) port entry."""
    port = int(entry["port"])
    return udp_key(port) if entry.get("protocol") == "udp" else port


def _name(port: int) -> str:
    """A port key as the problems name it: ``22``, ``53/udp``."""
    return port_label(port) if port_protocol(port) == "udp" else str(port)


def _listed(host: dict[str, Any]) -> dict[int, tuple[str, str]]:
    return {_key(p): (p["state"], p["reason"]) for p in host["ports"]}


def _scanned(host: dict[str, Any]) -> set[int]:
    return set(parse_ports(host["scanned_ports"])) if host["scanned_ports"] else set()


def report_states(report: dict[str, Any]) -> States:
    """Every scanned port's state in a ``portscan`` JSON report (the unlisted ones closed)."""
    states: States = {}
    for host in report["hosts"]:
        listed = _listed(host)
        states[host["address"]] = {
            port: listed.get(port, ("closed", ""))[0] for port in _scanned(host)
        }
    return states


def wrong_states(truth: Truth, states: States, hosts: list[str], ports: str) -> Counter[str]:
    """How many ports of ``hosts`` x ``ports`` have which wrong state, as
    ``"<expected> as <got>"``; a port not in ``states`` counts as ``missing``."""
    wrong: Counter[str] = Counter()
    for address in hosts:
        got = states.get(address, {})
        for port in parse_ports(ports):
            want = expected(truth, address, port)[0]
            state = got.get(port, "missing")
            if state != want:
                wrong[f"{want} as {state}"] += 1
    return wrong


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
    ports, each listed port's state and reason, ``closed_count`` (``udp_closed_count``) for
    the rest, errors.

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
        scanned = _scanned(host)
        if not partial and scanned != wanted:
            problems.append(f"{address}: scanned {len(scanned)} of {len(wanted)} ports")
        if scanned - wanted:
            problems.append(f"{address}: scanned unrequested ports {sorted(scanned - wanted)[:5]}")
        listed = _listed(host)
        if set(listed) - scanned:
            problems.append(
                f"{address}: results for unscanned ports {sorted(set(listed) - scanned)}"
            )
        for port in sorted(scanned):
            got = listed.get(port, ("closed", CLOSED_REASON[port_protocol(port)]))
            want = expected(truth, address, port)
            if got[0] != want[0] or (reasons and got != want):
                problems.append(
                    f"{address}:{_name(port)} {got[0]}/{got[1]}, expected {want[0]}/{want[1]}"
                )
        for protocol, count in (("tcp", "closed_count"), ("udp", "udp_closed_count")):
            unlisted = sum(port_protocol(p) == protocol for p in scanned - set(listed))
            if host.get(count, 0) != unlisted:
                problems.append(f"{address}: {count} {host.get(count, 0)}, expected {unlisted}")
        for errors in ("error_ports", "udp_error_ports"):
            if host.get(errors):
                problems.append(f"{address}: {errors} {host[errors][:5]}")
    return problems


def nmap_scanned_ports(xml: Path) -> list[int]:
    """The port keys nmap says it scanned (``<scaninfo protocol=... services=...>``)."""
    keys: list[int] = []
    for info in ET.parse(xml).getroot().iter("scaninfo"):
        protocol = info.get("protocol", "tcp")
        keys += parse_ports(info.get("services", ""), protocol=protocol)
    return keys


def nmap_states(truth: Truth, xml: Path) -> States:
    """Every scanned port's state in nmap's XML. Ports folded into ``<extraports>`` get their
    true state while that state's folded count lasts, then the states left over: the fewest
    mismatches the counts allow (exact when nmap folded one state)."""
    root = ET.parse(xml).getroot()
    scanned = nmap_scanned_ports(xml)
    states: States = {}
    for host in root.iter("host"):
        addr_el = host.find("address")
        assert addr_el is not None
        address = addr_el.get("addr", "")
        got: dict[int, str] = {}
        for port in host.iter("port"):
            state = port.find("state")
            assert state is not None
            got[_key(port.attrib | {"port": port.get("portid", "0")})] = state.get("state", "")
        left = Counter(
            {e.get("state", ""): int(e.get("count", "0")) for e in host.iter("extraports")}
        )
        rest = [p for p in scanned if p not in got]
        unmatched = []
        for port in rest:
            want = expected(truth, address, port)[0]
            if left[want] > 0:
                left[want] -= 1
                got[port] = want
            else:
                unmatched.append(port)
        spare = [state for state, count in sorted(left.items()) for _ in range(count)]
        got.update(zip(unmatched, spare, strict=False))
        states[address] = got
    return states


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
            key = _key(port.attrib | {"port": port.get("portid", "0")})
            listed[key] = (state.get("state", ""), state.get("reason", ""))
        extra = {e.get("state", ""): int(e.get("count", "0")) for e in host.iter("extraports")}
        rest = [p for p in scanned if p not in listed]
        for port, (state, reason) in sorted(listed.items()):
            want = expected(truth, address, port)
            if state != want[0] or (reasons and reason != want[1]):
                problems.append(
                    f"{address}:{_name(port)} {state}/{reason}, expected {want[0]}/{want[1]}"
                )
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
