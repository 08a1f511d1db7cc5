"""The one serializer: a ``ScanReport`` (or an ``Audit`` of one) as plain data, and as a table.

The JSON shape is described by ``data/report.schema.json`` (``report_schema()``), versioned by
``REPORT_VERSION``; every front door (CLI, Ansible, Nornir) uses ``report_to_dict`` and
``host_to_dict``. An audit adds ``compliant``, ``violations`` and ``drift`` to each host and
``compliance``, ``drift`` and ``wait`` to the report.

UDP ports: a port entry names its ``protocol``. The host's lists of port numbers
(``open_ports``, ``filtered_ports``, ``error_ports``, ``closed_count``; a drift's ``opened``,
``closed``, ``unexpected``) hold TCP ports, as they always did; a host that scanned UDP ports
also has ``udp_open_ports``, ``udp_open_filtered_ports``, ``udp_filtered_ports``,
``udp_error_ports`` and ``udp_closed_count`` (and ``udp_opened``, ``udp_closed`` and
``udp_unexpected`` in its drift). An entry with a ``port`` (a violation, a change, an unmet
expectation) adds ``"protocol": "udp"`` for a UDP port. Port specs write UDP after ``U:``.
The summary counts ``open_filtered_ports`` when there are any.
A TCP-only report is exactly what it was.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from importlib import resources
from typing import Any

from nornir_portscan.audit.drift import HostDrift, PortChange, change_text, unexpected_changes
from nornir_portscan.audit.gates import Audit, Unmet, unconfirmed_text
from nornir_portscan.audit.policy import HostVerdict, Violation
from nornir_portscan.models import (
    HostResult,
    HostStatus,
    Policy,
    PortResult,
    PortState,
    ScanReport,
)
from nornir_portscan.ports import UDP, format_ports, label_ports

__all__ = [
    "REPORT_VERSION",
    "host_entry",
    "iter_json",
    "iter_table",
    "policy_to_dict",
    "port_to_dict",
    "render_table",
    "report_schema",
    "report_to_dict",
    "report_to_json",
]

REPORT_VERSION = "1.0"


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, tz=UTC).isoformat(timespec="milliseconds")


def port_to_dict(port: PortResult) -> dict[str, Any]:
    """One port entry."""
    return {
        "port": port.port,
        "protocol": port.protocol,
        "state": port.state.value,
        "reason": port.reason,
        "rtt_ms": port.rtt_ms,
        "attempts": port.attempts,
    }


def port_fields(key: int) -> dict[str, Any]:
    """A port key as the ``port`` of a JSON entry: ``{"port": 22}``, or ``{"port": 53,
    "protocol": "udp"}`` for UDP."""
    return {"port": key} if key < UDP else {"port": key - UDP, "protocol": "udp"}


def _port_or_none(key: int | None) -> dict[str, Any]:
    return {"port": None} if key is None else port_fields(key)


def _keyed(item: Violation | PortChange) -> dict[str, Any]:
    """A violation or a change (its ``port`` first, a port key) as JSON."""
    data = dataclasses.asdict(item)
    return {**port_fields(data.pop("port")), **data}


def _tcp(keys: list[int] | tuple[int, ...]) -> list[int]:
    return [k for k in keys if k < UDP]


def _udp(keys: list[int] | tuple[int, ...]) -> list[int]:
    return [k - UDP for k in keys if k > UDP]


def entry_ports(entry: Mapping[str, Any], key: str) -> list[int]:
    """The port keys of a host entry's ``key`` list (``open_ports``, ``filtered_ports``,
    ``error_ports``; a drift's ``opened``, ...): its TCP ports and its ``udp_<key>`` ones, for
    ``format_ports`` (``'22,U:53'``).

    >>> entry_ports({"open_ports": [22], "udp_open_ports": [53]}, "open_ports")
    [22, 1000053]
    """
    return [*entry[key], *(UDP + p for p in entry.get(f"udp_{key}", ()))]


def udp_closed_count(host: HostResult) -> int:
    """How many of ``host.closed_count`` are UDP ports (scanned, not listed otherwise)."""
    scanned = sum(1 for k in host.scanned if k > UDP)
    listed = sum(1 for p in host.ports if p.protocol == "udp" and p.state is not PortState.CLOSED)
    return max(0, scanned - listed)


def policy_to_dict(policy: Policy) -> dict[str, str | None]:
    """A policy as port specs."""
    allowed = policy.allowed_open
    return {
        "expect_open": format_ports(sorted(policy.expect_open)),
        "expect_closed": format_ports(sorted(policy.expect_closed)),
        "expect_filtered": format_ports(sorted(policy.expect_filtered)),
        "allowed_open": None if allowed is None else format_ports(sorted(allowed)),
    }


def host_entry(scan: ScanReport | Audit, index: int) -> dict[str, Any]:
    """The entry of ``scan.hosts[index]`` (of ``audit.report.hosts`` for an audit), judged: its
    ports, its verdict, drift and wait, and whether it ``passed`` and if not why (``failure``).

    The one shape of a host everywhere: the JSON report's ``hosts``, the Nornir task's
    ``Result.result`` and the Ansible module's ``hosts``.
    """
    audit = scan if isinstance(scan, Audit) else Audit(scan)
    host = audit.report.hosts[index]
    scanned, unscanned = sorted(host.scanned), sorted(host.unscanned)
    entry: dict[str, Any] = {
        "name": host.name,
        "address": host.address,
        "vantage": host.vantage,
        "status": host.status.value,
        "up": host.answered,
        "open_ports": _tcp(host.open_ports),
        "filtered_ports": _tcp(host.filtered_ports),
        "closed_count": host.closed_count,
        "error_ports": _tcp(host.error_ports),
        "error": host.error,
        "scanned_ports": format_ports(scanned),
        "unscanned_ports": format_ports(unscanned),
        "ports": [port_to_dict(p) for p in host.ports],
    }
    udp = any(p.protocol == "udp" for p in host.ports)
    if udp or (scanned and scanned[-1] > UDP) or (unscanned and unscanned[-1] > UDP):
        udp_closed = udp_closed_count(host)
        entry["closed_count"] = host.closed_count - udp_closed
        entry.update(
            udp_open_ports=_udp(host.open_ports),
            udp_open_filtered_ports=[
                p.port for p in host.ports if p.state is PortState.OPEN_FILTERED
            ],
            udp_filtered_ports=_udp(host.filtered_ports),
            udp_closed_count=udp_closed,
            udp_error_ports=_udp(host.error_ports),
        )
    verdict = audit.verdict(index)
    if verdict is not None:
        entry["compliant"] = verdict.compliant
        entry["violations"] = [_keyed(v) for v in verdict.violations]
        if verdict.unconfirmed:
            entry["unconfirmed"] = [_keyed(v) for v in verdict.unconfirmed]
        entry["policy"] = policy_to_dict(verdict.policy)
    drift = audit.drift
    if drift is not None:
        seen = (host.name, host.address, host.vantage)
        entry["drift"] = _host_drift(drift.for_host(*seen), verdict)
        entry["drift"]["in_baseline"] = drift.in_baseline(*seen)
    if audit.wait is not None and verdict is not None:
        entry["wait"] = {
            "converged": verdict.compliant is True,
            "elapsed": audit.wait.elapsed,
            "rounds": audit.wait.rounds,
            "unmet": [
                {**_port_or_none(u.port), "expected": u.expected, "actual": u.actual}
                for u in audit.unmet(index)
            ],
        }
    if host.rate_limited:  # UDP: a host-level fact, absent from every other host
        entry["rate_limited"] = True
    failure = audit.failure(index)
    entry["passed"] = not failure
    entry["failure"] = failure
    return entry


def _host_drift(drift: HostDrift | None, verdict: HostVerdict | None) -> dict[str, Any]:
    if drift is None:
        return {"opened": [], "closed": [], "changed": [], "unexpected": []}
    unexpected = unexpected_changes(drift, verdict.policy if verdict else None)
    entry: dict[str, Any] = {
        "opened": _tcp(drift.opened),
        "closed": _tcp(drift.closed),
        "changed": [_keyed(c) for c in drift.changed],
        "unexpected": _tcp(unexpected),
    }
    if any(c.port > UDP for c in drift.changes):
        entry.update(
            udp_opened=_udp(drift.opened),
            udp_closed=_udp(drift.closed),
            udp_unexpected=_udp(unexpected),
        )
    return entry


def summary(report: ScanReport) -> dict[str, Any]:
    """Counts over the whole scan."""
    statuses = [h.status for h in report.hosts]
    silent = sum(1 for h in report.hosts for p in h.ports if p.state is PortState.OPEN_FILTERED)
    return {
        "hosts": len(report.hosts),
        **{status.value.replace("-", "_"): statuses.count(status) for status in HostStatus},
        "open_ports": sum(len(h.open_ports) for h in report.hosts),
        "filtered_ports": sum(len(h.filtered_ports) for h in report.hosts),
        "closed_ports": sum(h.closed_count for h in report.hosts),
        "error_ports": sum(len(h.error_ports) for h in report.hosts),
        **({"open_filtered_ports": silent} if silent else {}),  # UDP ports that never answered
        "probes_sent": report.probes_sent,
        "duration": round(report.duration, 3),
        "rate": round(report.rate, 1),
    }


def report_to_dict(scan: ScanReport | Audit, *, hosts: bool = True) -> dict[str, Any]:
    """The whole report (of a scan or an audit) as JSON-ready data, in a stable order.

    With ``hosts=False``, only the totals: no ``hosts`` key, and no cost per host for it.
    """
    from nornir_portscan import __version__

    audit = scan if isinstance(scan, Audit) else Audit(scan)
    report = audit.report
    data: dict[str, Any] = {
        "version": REPORT_VERSION,
        "scanner": {"name": "nornir-portscan", "version": __version__},
        "started": _iso(report.started),
        "finished": _iso(report.finished),
        "duration": round(report.duration, 3),
        "probes_sent": report.probes_sent,
        "rate": round(report.rate, 1),
        "interrupted": report.interrupted,
        "options": dataclasses.asdict(report.options),
        "warnings": list(report.warnings),
        "summary": summary(report),
    }
    if hosts:
        data["hosts"] = [host_entry(audit, i) for i in range(len(report.hosts))]
    if audit.verdicts:
        judged = [v for v in audit.verdicts if v is not None]
        data["compliance"] = {
            "compliant": sum(1 for v in judged if v.compliant is True),
            "non_compliant": sum(1 for v in judged if v.compliant is False),
            "error": sum(1 for v in judged if v.compliant is None),
            "violations": sum(len(v.violations) for v in judged),
        }
    if audit.drift is not None:
        data["drift"] = {
            "drifted": bool(audit.drift),
            "hosts_changed": len(audit.drift.hosts),
            "appeared": list(audit.drift.appeared),
            "disappeared": list(audit.drift.disappeared),
            "rechecked": audit.drift.rechecked,
            "confirmed": audit.drift.confirmed,
        }
    if audit.wait is not None:
        data["wait"] = {
            "converged": audit.wait.converged,
            "elapsed": audit.wait.elapsed,
            "rounds": audit.wait.rounds,
            "unmet": [_unmet_entry(u) for u in audit.wait.unmet],
        }
    return data


def _unmet_entry(unmet: Unmet) -> dict[str, Any]:
    data = dataclasses.asdict(unmet)
    return {"host": data.pop("host"), **_port_or_none(data.pop("port")), **data}


_ENCODE = json.JSONEncoder(separators=(", ", ": ")).encode  # the C encoder: no indent


def report_to_json(scan: ScanReport | Audit) -> str:
    """The report as JSON text: one top-level key per line and one host per line, which reads
    and diffs well and is written by the fast C encoder even for a million ports."""
    return "".join(iter_json(scan))


def iter_json(scan: ScanReport | Audit) -> Iterator[str]:
    """``report_to_json`` in chunks, a host at a time: memory stays flat however many hosts
    there are."""
    audit = scan if isinstance(scan, Audit) else Audit(scan)
    data = report_to_dict(audit, hosts=False)
    yield "{\n" + "".join(f"  {_ENCODE(key)}: {_ENCODE(value)},\n" for key, value in data.items())
    count = len(audit.report.hosts)
    yield '  "hosts": ['
    for index in range(count):
        yield ("\n    " if index == 0 else ",\n    ") + _ENCODE(host_entry(audit, index))
    yield ("\n  " if count else "") + "]\n}\n"


def report_schema() -> dict[str, Any]:
    """The JSON Schema of ``report_to_dict``'s output."""
    text = resources.files("nornir_portscan").joinpath("data/report.schema.json").read_text()
    schema: dict[str, Any] = json.loads(text)
    return schema


def render_table(scan: ScanReport | Audit) -> str:
    """A readable table: one line per host with its open and filtered ports, then a summary
    and, for an audit, the violations, the drift and the wait."""
    return "".join(iter_table(scan))


_HEADERS = ("HOST", "ADDRESS", "STATUS", "OPEN", "FILTERED", "CLOSED")


def _row(host: HostResult) -> tuple[str, ...]:
    extra = f" ({host.error})" if host.error else ""
    silent = [p.key for p in host.ports if p.state is PortState.OPEN_FILTERED]
    maybe = f" open|filtered:{label_ports(silent)}" if silent else ""
    errors = f" errors:{label_ports(host.error_ports)}" if host.error_ports else ""
    return (
        host.name,
        host.address or "-",
        host.status.value + extra,
        label_ports(host.open_ports) or "-",
        (label_ports(host.filtered_ports) or "-") + maybe + errors,
        str(host.closed_count),
    )


def rate_limit_note(host: HostResult) -> str:
    """The note a report gives a rate-limited host."""
    label = host.name if host.address in (None, host.name) else f"{host.name} ({host.address})"
    return (
        f"{label}: its ICMP rate limit slowed the UDP scan (closed ports answer about one a second)"
    )


def iter_table(scan: ScanReport | Audit) -> Iterator[str]:
    """``render_table`` in chunks, a line at a time: the column widths are found in a first
    pass, so no row is kept."""
    audit = scan if isinstance(scan, Audit) else Audit(scan)
    report = audit.report
    widths = [len(header) for header in _HEADERS[:-1]]
    for host in report.hosts:
        for i, cell in enumerate(_row(host)[:-1]):
            widths[i] = max(widths[i], len(cell))

    def line(row: tuple[str, ...]) -> str:
        cells = "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False))
        return (cells + "  " + row[-1]).rstrip() + "\n"

    yield line(_HEADERS)
    for host in report.hosts:
        yield line(_row(host))
    s = summary(report)
    lines = [""]
    partial = (
        f", {s['interrupted']} partly scanned, {s['not_scanned']} not scanned"
        if report.interrupted
        else ""
    )
    lines.append(
        f"{s['hosts']} hosts ({s['up']} up, {s['unresolved']} unresolved, {s['timed_out']} timed "
        f"out{partial}), {s['open_ports']} open, {s['filtered_ports']} filtered, "
        + (f"{s['open_filtered_ports']} open|filtered, " if "open_filtered_ports" in s else "")
        + f"{s['closed_ports']} closed, {s['error_ports']} errors; {s['probes_sent']} probes in "
        f"{s['duration']:.2f} s ({s['rate']:.0f}/s)"
        + (" - INTERRUPTED, partial results" if report.interrupted else "")
    )
    lines.extend(f"warning: {w}" for w in report.warnings)
    lines.extend(f"note: {rate_limit_note(h)}" for h in report.hosts if h.rate_limited)
    lines.extend(_audit_lines(audit))
    yield "".join(line.rstrip() + "\n" for line in lines)


def _audit_lines(audit: Audit) -> list[str]:
    lines: list[str] = []
    judged = [v for v in audit.verdicts if v]
    if judged:
        bad = sum(1 for v in judged if v.compliant is False)
        errors = sum(1 for v in judged if v.compliant is None)
        lines.append(
            f"policy: {len(judged) - bad - errors} compliant, {bad} non-compliant, "
            f"{errors} not judged"
        )
        lines.extend(
            f"  unconfirmed: {v.name}: {unconfirmed_text(u)}" for v in judged for u in v.unconfirmed
        )
    if audit.drift is not None:
        drift = audit.drift
        lines.append(
            f"drift: {len(drift.hosts)} hosts changed ({drift.confirmed} of {drift.rechecked} "
            f"differences confirmed on re-check), {len(drift.appeared)} appeared, "
            f"{len(drift.disappeared)} disappeared"
        )
        for changed in drift.hosts:
            lines.extend(f"  {changed.name} {change_text(c)}" for c in changed.changes)
        lines.extend(f"  appeared: {name}" for name in drift.appeared)
        lines.extend(f"  disappeared: {name}" for name in drift.disappeared)
    if audit.wait is not None:
        wait = audit.wait
        outcome = "converged" if wait.converged else "did NOT converge"
        lines.append(f"wait: {outcome} after {wait.elapsed:.1f} s, {wait.rounds} rounds")
    failures = [audit.failure(i) for i in range(len(audit.report.hosts))]
    failed = [f for f in failures if f]
    if failed and (judged or audit.drift is not None or audit.wait is not None):
        lines.append(f"failed: {len(failed)} of {len(failures)} hosts")
        lines.extend(f"  {failure}" for failure in failed)
    return lines
