"""A scan (or an audit) as nmap XML, as ``nmap -sT -oX`` (``-sT -sU`` with UDP ports) writes it.

The document is valid against nmap's DTD (``nmap.dtd``), so nmap's own tools (``ndiff``), and
libraries that read nmap XML (python-libnmap), take it as they take nmap's. Where our model says
more, or other, than nmap can, it is mapped like this:

- A host that did not resolve is not a ``<host>``: like nmap, the document has a
  ``<target specification="NAME" status="skipped" reason="invalid"/>`` for it, and it is not
  counted in ``<runstats><hosts>``.
- Host state comes from the ports, as we scan without host discovery: ``up`` when a port
  answered (reason ``syn-ack`` for an open port, else ``conn-refused``), ``down`` (reason
  ``no-response``) when every port was filtered, and nmap's ``unknown`` when nothing is known
  (reason ``local-error``, or ``no-result`` when a host timeout came first). A host timeout also
  sets ``timedout="true"`` and keeps the partial ports; a host's error message goes in its
  ``comment`` attribute. A host an interrupt left partly scanned or not scanned, and that no
  port answered, is ``unknown`` (reason ``interrupted`` or ``not-scanned``), never ``down``.
- A port with a local ``error`` gets nmap's ``unknown`` port state (what nmap calls a port it
  could not tell), with our errno name as the reason: it is neither hidden nor called closed.
- Closed (and filtered) ports are listed one by one when there are at most 25 of them, and
  otherwise counted in ``<extraports>`` with per-reason ``<extrareasons ports=...>``, the rule
  nmap follows; closed ports that a report only counts (no ``scanned`` list) are always counted.
- UDP ports are ``<port protocol="udp">`` with nmap's states and reasons (``open``
  ``udp-response``, ``closed`` ``port-unreach``, ``open|filtered`` ``no-response``), a
  ``<scaninfo type="udp">`` of their own, and ``proto="udp"`` in ``<extrareasons>``;
  ``open|filtered`` ports are listed or counted like filtered ones. A host whose ICMP rate
  limit slowed its scan says so in its ``comment``.
- Service names come from the system services database (``method="table"``); a port it does
  not name has no ``<service>``, as in nmap. Names can differ from nmap's own table.
- An audit adds a ``portscan-audit`` host script per judged or drifted host (compliance,
  violations, drift) and a ``portscan-audit`` post-script (totals, appeared and disappeared
  hosts, the wait); ``ndiff`` compares script output like any other.
"""

from __future__ import annotations

import functools
import socket
import statistics
import time
import xml.etree.ElementTree as ET
from collections import defaultdict
from collections.abc import Iterable, Iterator
from typing import Any

from nornir_portscan.audit.drift import change_text
from nornir_portscan.audit.gates import Audit, unconfirmed_text, violation_text
from nornir_portscan.models import HostResult, HostStatus, PortResult, PortState, ScanReport
from nornir_portscan.ports import UDP, format_ports, label_ports
from nornir_portscan.reports.data import (
    host_entry,
    rate_limit_note,
    report_to_dict,
    udp_closed_count,
)

__all__ = ["iter_xml", "report_to_xml", "service_name"]

XML_OUTPUT_VERSION = "1.05"  # the xmloutputversion of nmap 7.x
_MAX_LISTED = 25  # nmap lists at most this many ports of one closed or filtered state


def report_to_xml(scan: ScanReport | Audit) -> str:
    """The report (of a scan or an audit) as an nmap XML document (``nmap -sT -oX``)."""
    return "".join(iter_xml(scan))


def iter_xml(scan: ScanReport | Audit) -> Iterator[str]:
    """``report_to_xml`` in chunks, a ``<host>`` at a time: memory stays flat however many
    hosts there are (the document around the hosts is built first, with their counts)."""
    from nornir_portscan import __version__

    audit = scan if isinstance(scan, Audit) else Audit(scan)
    report = audit.report
    start = _timestr(report.started)
    root = ET.Element(
        "nmaprun",
        scanner="nmap",  # the DTD allows no other value
        start=str(int(report.started)),
        startstr=start,
        version=__version__,
        xmloutputversion=XML_OUTPUT_VERSION,
    )
    services = sorted({p for h in report.hosts if h.address for p in _scanned(h)})
    udp = [p - UDP for p in services if p > UDP]
    tcp = services[: len(services) - len(udp)]
    for kind, protocol, ports in (("connect", "tcp", tcp), ("udp", "udp", udp)):
        if ports or (protocol == "tcp" and not udp):  # as nmap: one per protocol scanned
            ET.SubElement(
                root,
                "scaninfo",
                type=kind,
                protocol=protocol,
                numservices=str(len(ports)),
                services=format_ports(ports),
            )
    ET.SubElement(root, "verbose", level="0")
    ET.SubElement(root, "debugging", level="0")
    for warning in report.warnings:
        root.append(ET.Comment(_comment(f" warning: {warning} ")))
    for host in report.hosts:
        if host.address is None:  # nmap names an unresolvable target and skips it
            ET.SubElement(
                root, "target", specification=host.name, status="skipped", reason="invalid"
            )
    scanned = [i for i, host in enumerate(report.hosts) if host.address is not None]
    up = sum(_host_state(report.hosts[i])[0] == "up" for i in scanned)
    after = "runstats"
    if audit.verdicts or audit.drift is not None or audit.wait is not None:
        post = ET.SubElement(root, "postscript")
        post.append(_run_script(audit))
        after = "postscript"
    _runstats(root, report, up, len(scanned))
    ET.indent(root, space="")
    text = ET.tostring(root, encoding="unicode")
    cut = text.rindex(f"\n<{after}>") + 1  # the hosts go before the post-script or the stats
    yield (
        '<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE nmaprun>\n'
        f"<!-- nornir-portscan {__version__} scan initiated {start} -->\n"
    ) + text[:cut]
    for index in scanned:
        element = _host(audit, index)
        ET.indent(element, space="")
        yield ET.tostring(element, encoding="unicode") + "\n"
    yield text[cut:] + "\n"


def _timestr(timestamp: float) -> str:
    return time.strftime("%a %b %d %H:%M:%S %Y", time.localtime(timestamp))


def _comment(text: str) -> str:
    # "--" may not appear inside an XML comment
    while "--" in text:
        text = text.replace("--", "- -")
    return text


def _scanned(host: HostResult) -> set[int]:
    return set(host.scanned) | {p.key for p in host.ports}


def _host(audit: Audit, index: int) -> ET.Element:
    report, verdict, drift = audit.report, audit.verdict(index), audit.drift
    host = report.hosts[index]
    assert host.address is not None
    element = ET.Element(
        "host", starttime=str(int(report.started)), endtime=str(int(report.finished))
    )
    if host.status is HostStatus.TIMED_OUT:
        element.set("timedout", "true")
    comment = [host.error] if host.error else []
    if host.rate_limited:
        comment.append(rate_limit_note(host))
    if comment:
        element.set("comment", "; ".join(comment))
    state, reason = _host_state(host)
    ET.SubElement(element, "status", state=state, reason=reason, reason_ttl="0")
    family = "ipv6" if ":" in host.address else "ipv4"
    ET.SubElement(element, "address", addr=host.address, addrtype=family)
    names = ET.SubElement(element, "hostnames")
    if host.name != host.address:
        ET.SubElement(names, "hostname", name=host.name, type="user")
    element.append(_ports(host))
    host_drift = drift.for_host(host.name, host.address) if drift is not None else None
    if verdict is not None or host_drift:
        scripts = ET.SubElement(element, "hostscript")
        scripts.append(_host_script(audit, index))
    times = _times(host, report)
    if times is not None:
        element.append(times)
    return element


def _host_state(host: HostResult) -> tuple[str, str]:
    """nmap's host state and its reason, from what the ports said."""
    if host.open_ports:
        return "up", "syn-ack" if host.open_ports[0] < UDP else "udp-response"
    if host.closed_count or host.status is HostStatus.UP:  # a RST, or the host's own ICMP error
        filtered = (p.reason for p in host.ports if p.state is PortState.FILTERED)
        if host.closed_count > udp_closed_count(host):
            reason = "conn-refused"
        else:  # UDP ports only: their ICMP port-unreachable
            reason = "port-unreach" if host.closed_count else next(filtered, "")
        return "up", reason
    if host.status in (HostStatus.INTERRUPTED, HostStatus.NOT_SCANNED):  # no verdict: unknown
        return "unknown", host.status.value
    if host.filtered_ports or any(p.state is PortState.OPEN_FILTERED for p in host.ports):
        return "down", "no-response"
    if host.error_ports or host.status is HostStatus.ERROR:
        return "unknown", "local-error"
    return "unknown", "no-result"  # e.g. a host timeout before any answer


def _ports(host: HostResult) -> ET.Element:
    listed = {p.key for p in host.ports}
    closed = [p for p in host.ports if p.state is PortState.CLOSED]
    closed.extend(
        PortResult(port, PortState.CLOSED, "conn-refused", None, 1)
        if port < UDP
        else PortResult(port - UDP, PortState.CLOSED, "port-unreach", None, 1, "udp")
        for port in host.scanned
        if port not in listed
    )
    groups = {
        PortState.CLOSED: closed,
        PortState.FILTERED: [p for p in host.ports if p.state is PortState.FILTERED],
        PortState.OPEN_FILTERED: [p for p in host.ports if p.state is PortState.OPEN_FILTERED],
    }
    counted_only = len(closed) != host.closed_count  # the report counts them but not which
    element = ET.Element("ports")
    shown = [p for p in host.ports if p.state in (PortState.OPEN, PortState.ERROR)]
    for state, ports in groups.items():
        if state is PortState.CLOSED and counted_only:
            extra = ET.SubElement(
                element, "extraports", state="closed", count=str(host.closed_count)
            )
            ET.SubElement(
                extra, "extrareasons", reason="conn-refused", count=str(host.closed_count)
            )
        elif len(ports) > _MAX_LISTED:
            element.append(_extraports(state, ports))
        else:
            shown.extend(ports)
    for port in sorted(shown, key=lambda p: p.key):
        element.append(_port(port))
    return element


def _extraports(state: PortState, ports: Iterable[PortResult]) -> ET.Element:
    by_reason: dict[tuple[str, str], list[int]] = defaultdict(list)
    for port in ports:
        by_reason[port.reason, port.protocol].append(port.port)
    count = sum(len(p) for p in by_reason.values())
    element = ET.Element("extraports", state=state.value, count=str(count))
    for (reason, proto), numbers in sorted(
        by_reason.items(), key=lambda item: (-len(item[1]), item[0])
    ):
        ET.SubElement(
            element,
            "extrareasons",
            reason=reason,
            count=str(len(numbers)),
            proto=proto,
            ports=format_ports(sorted(numbers)),
        )
    return element


def _port(port: PortResult) -> ET.Element:
    element = ET.Element("port", protocol=port.protocol, portid=str(port.port))
    state = "unknown" if port.state is PortState.ERROR else port.state.value
    ET.SubElement(element, "state", state=state, reason=port.reason, reason_ttl="0")
    name = service_name(port.port, port.protocol)
    if name is not None:  # nmap writes no <service> for a port its table does not name
        ET.SubElement(element, "service", name=name, method="table", conf="3")
    return element


@functools.lru_cache(maxsize=4096)
def service_name(port: int, protocol: str = "tcp") -> str | None:
    """The service name of ``port`` (``tcp`` or ``udp``) in the system services database, if it
    has one."""
    try:
        return socket.getservbyport(port, protocol)
    except OSError:
        return None


def _times(host: HostResult, report: ScanReport) -> ET.Element | None:
    """Round-trip times in microseconds; ``to`` is the adaptive timeout the scan would use."""
    rtts = [p.rtt_ms * 1000 for p in host.ports if p.rtt_ms is not None]
    if not rtts:
        return None
    srtt = statistics.fmean(rtts)
    rttvar = statistics.fmean(abs(r - srtt) for r in rtts)
    options = report.options
    timeout = min(options.timeout * 1e6, max(options.min_timeout * 1e6, srtt + 4 * rttvar))
    if not options.adaptive:
        timeout = options.timeout * 1e6
    return ET.Element(
        "times", srtt=str(round(srtt)), rttvar=str(round(rttvar)), to=str(round(timeout))
    )


def _host_script(audit: Audit, index: int) -> ET.Element:
    """Compliance and drift of one host, from the JSON report's host entry."""
    entry = host_entry(audit, index)
    verdict = audit.verdict(index)
    lines: list[str] = []
    script = ET.Element("script", id="portscan-audit")
    if verdict is not None:
        compliant = {True: "true", False: "false", None: "error"}[verdict.compliant]
        _elem(script, "compliant", compliant)
        lines.append(
            {"true": "compliant", "false": "NOT compliant", "error": "not judged"}[compliant]
            + (f" ({verdict.error})" if verdict.error else "")
        )
        table = ET.SubElement(script, "table", key="violations")
        for violation, row_data in zip(verdict.violations, entry["violations"], strict=True):
            _row(table, row_data, ("port", "protocol", "expected", "actual", "reason"))
            lines.append(f"  {violation_text(violation)} ({violation.reason})")
        if verdict.unconfirmed:
            table = ET.SubElement(script, "table", key="unconfirmed")
            for item, row_data in zip(verdict.unconfirmed, entry["unconfirmed"], strict=True):
                _row(table, row_data, ("port", "protocol", "expected", "actual", "reason"))
                lines.append(f"  unconfirmed: {unconfirmed_text(item)}")
    host = audit.report.hosts[index]
    host_drift = audit.drift.for_host(host.name, host.address) if audit.drift else None
    if "drift" in entry:
        changes = entry["drift"]
        opened = label_ports(host_drift.opened) if host_drift else ""
        closed = label_ports(host_drift.closed) if host_drift else ""
        table = ET.SubElement(script, "table", key="drift")
        _elem(table, "opened", opened)
        _elem(table, "closed", closed)
        changed = ET.SubElement(table, "table", key="changed")
        for change in changes["changed"]:
            _row(changed, change, ("port", "protocol", "before", "after"))
        parts = [f"opened {opened}"] if opened else []
        parts += [f"closed {closed}"] if closed else []
        parts += [
            change_text(c).removeprefix("port ").replace(" -> ", "->")
            for c in (host_drift.changed if host_drift else ())
        ]
        lines.append("drift: " + ("; ".join(parts) or "none"))
    script.set("output", "\n".join(lines))
    return script


def _run_script(audit: Audit) -> ET.Element:
    """Totals of the audit, from the JSON report."""
    data = report_to_dict(audit, hosts=False)
    script = ET.Element("script", id="portscan-audit")
    lines = []
    if "compliance" in data:
        counts = data["compliance"]
        table = ET.SubElement(script, "table", key="compliance")
        for key, value in counts.items():
            _elem(table, key, str(value))
        lines.append(
            f"compliance: {counts['compliant']} compliant, {counts['non_compliant']} "
            f"non-compliant, {counts['error']} not judged; violations: {counts['violations']}"
        )
    if "drift" in data:
        drift = data["drift"]
        table = ET.SubElement(script, "table", key="drift")
        _elem(table, "hosts_changed", str(drift["hosts_changed"]))
        for key in ("appeared", "disappeared"):
            hosts = ET.SubElement(table, "table", key=key)
            for label in drift[key]:
                _elem(hosts, None, label)
        _elem(table, "rechecked", str(drift["rechecked"]))
        _elem(table, "confirmed", str(drift["confirmed"]))
        lines.append(
            f"drift: hosts {drift['hosts_changed']} changed, {len(drift['appeared'])} appeared, "
            f"{len(drift['disappeared'])} disappeared; ports {drift['confirmed']} confirmed of "
            f"{drift['rechecked']} re-checked"
        )
    if "wait" in data:
        wait = data["wait"]
        table = ET.SubElement(script, "table", key="wait")
        _elem(table, "converged", str(wait["converged"]).lower())
        _elem(table, "elapsed", str(wait["elapsed"]))
        _elem(table, "rounds", str(wait["rounds"]))
        unmet = ET.SubElement(table, "table", key="unmet")
        for item in wait["unmet"]:
            _row(unmet, item, ("host", "port", "protocol", "expected", "actual"))
        lines.append(
            f"wait: {'converged' if wait['converged'] else 'NOT converged'} in "
            f"{wait['elapsed']} s, rounds: {wait['rounds']}, unmet: {len(wait['unmet'])}"
        )
    script.set("output", "\n".join(lines))
    return script


def _row(parent: ET.Element, data: dict[str, Any], keys: tuple[str, ...]) -> None:
    """A ``<table>`` of ``data``'s ``keys`` (a missing key is left out: ``protocol`` is given
    for UDP ports only; None is written empty)."""
    row = ET.SubElement(parent, "table")
    for key in keys:
        if key in data:
            _elem(row, key, "" if data[key] is None else str(data[key]))


def _elem(parent: ET.Element, key: str | None, text: str) -> None:
    elem = ET.SubElement(parent, "elem") if key is None else ET.SubElement(parent, "elem", key=key)
    elem.text = text


def _runstats(root: ET.Element, report: ScanReport, up: int, total: int) -> None:
    stats = ET.SubElement(root, "runstats")
    done = _timestr(report.finished)
    elapsed = f"{report.duration:.2f}"
    addresses = f"{total} IP address{'' if total == 1 else 'es'}"
    summary = (
        f"nornir-portscan done at {done}; {addresses} ({up} host{'' if up == 1 else 's'} up) "
        f"scanned in {elapsed} seconds"
    )
    finished = ET.SubElement(
        stats,
        "finished",
        time=str(int(report.finished)),
        timestr=done,
        summary=summary,
        elapsed=elapsed,
        exit="error" if report.interrupted else "success",
    )
    if report.interrupted:
        finished.set("errormsg", "interrupted: the results are partial")
    ET.SubElement(stats, "hosts", up=str(up), down=str(total - up), total=str(total))
