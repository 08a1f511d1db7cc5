"""A scan (or an audit) as nmap XML, as ``nmap -sT -oX`` writes it.

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

from nornir_portscan.audit.gates import Audit, violation_text
from nornir_portscan.models import HostResult, HostStatus, PortResult, PortState, ScanReport
from nornir_portscan.ports import format_ports
from nornir_portscan.reports.data import host_entry, report_to_dict

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
    ET.SubElement(
        root,
        "scaninfo",
        type="connect",
        protocol="tcp",
        numservices=str(len(services)),
        services=format_ports(services),
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
    return set(host.scanned) | {p.port for p in host.ports}


def _host(audit: Audit, index: int) -> ET.Element:
    report, verdict, drift = audit.report, audit.verdict(index), audit.drift
    host = report.hosts[index]
    assert host.address is not None
    element = ET.Element(
        "host", starttime=str(int(report.started)), endtime=str(int(report.finished))
    )
    if host.status is HostStatus.TIMED_OUT:
        element.set("timedout", "true")
    if host.error:
        element.set("comment", host.error)
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
        return "up", "syn-ack"
    if host.closed_count or host.status is HostStatus.UP:  # a RST, or the host's own ICMP error
        filtered = (p.reason for p in host.ports if p.state is PortState.FILTERED)
        return "up", "conn-refused" if host.closed_count else next(filtered, "")
    if host.status in (HostStatus.INTERRUPTED, HostStatus.NOT_SCANNED):  # no verdict: unknown
        return "unknown", host.status.value
    if host.filtered_ports:
        return "down", "no-response"
    if host.error_ports or host.status is HostStatus.ERROR:
        return "unknown", "local-error"
    return "unknown", "no-result"  # e.g. a host timeout before any answer


def _ports(host: HostResult) -> ET.Element:
    listed = {p.port: p for p in host.ports}
    closed = [p for p in host.ports if p.state is PortState.CLOSED]
    closed.extend(
        PortResult(port, PortState.CLOSED, "conn-refused", None, 1)
        for port in host.scanned
        if port not in listed
    )
    groups = {
        PortState.CLOSED: closed,
        PortState.FILTERED: [p for p in host.ports if p.state is PortState.FILTERED],
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
    for port in sorted(shown, key=lambda p: p.port):
        element.append(_port(port))
    return element


def _extraports(state: PortState, ports: Iterable[PortResult]) -> ET.Element:
    by_reason: dict[str, list[int]] = defaultdict(list)
    for port in ports:
        by_reason[port.reason].append(port.port)
    count = sum(len(p) for p in by_reason.values())
    element = ET.Element("extraports", state=state.value, count=str(count))
    for reason, numbers in sorted(by_reason.items(), key=lambda item: (-len(item[1]), item[0])):
        ET.SubElement(
            element,
            "extrareasons",
            reason=reason,
            count=str(len(numbers)),
            proto="tcp",
            ports=format_ports(sorted(numbers)),
        )
    return element


def _port(port: PortResult) -> ET.Element:
    element = ET.Element("port", protocol="tcp", portid=str(port.port))
    state = "unknown" if port.state is PortState.ERROR else port.state.value
    ET.SubElement(element, "state", state=state, reason=port.reason, reason_ttl="0")
    name = service_name(port.port)
    if name is not None:  # nmap writes no <service> for a port its table does not name
        ET.SubElement(element, "service", name=name, method="table", conf="3")
    return element


@functools.lru_cache(maxsize=4096)
def service_name(port: int) -> str | None:
    """The TCP service name of ``port`` in the system services database, if it has one."""
    try:
        return socket.getservbyport(port, "tcp")
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
            row = ET.SubElement(table, "table")
            for key in ("port", "expected", "actual", "reason"):
                _elem(row, key, str(row_data[key]))
            lines.append(f"  {violation_text(violation)} ({violation.reason})")
    if "drift" in entry:
        changes = entry["drift"]
        table = ET.SubElement(script, "table", key="drift")
        _elem(table, "opened", format_ports(changes["opened"]))
        _elem(table, "closed", format_ports(changes["closed"]))
        changed = ET.SubElement(table, "table", key="changed")
        for change in changes["changed"]:
            row = ET.SubElement(changed, "table")
            for key in ("port", "before", "after"):
                _elem(row, key, str(change[key]))
        parts = [f"opened {format_ports(changes['opened'])}"] if changes["opened"] else []
        parts += [f"closed {format_ports(changes['closed'])}"] if changes["closed"] else []
        parts += [f"{c['port']} {c['before']}->{c['after']}" for c in changes["changed"]]
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
            row = ET.SubElement(unmet, "table")
            for key in ("host", "port", "expected", "actual"):
                _elem(row, key, "" if item[key] is None else str(item[key]))
        lines.append(
            f"wait: {'converged' if wait['converged'] else 'NOT converged'} in "
            f"{wait['elapsed']} s, rounds: {wait['rounds']}, unmet: {len(wait['unmet'])}"
        )
    script.set("output", "\n".join(lines))
    return script


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
