"""A readable audit report, as Markdown or as a self-contained HTML page.

Both show the same things, in this order: the outcome and a summary (hosts, up, compliance,
violations, drift, the wait, ports, duration), a table of hosts, the policy violations, the
drift against the baseline, the expectations a wait never saw met, and the scan's warnings.
Every number comes from the JSON report (``report_to_dict``), so the three never disagree.

The HTML page needs nothing else: the CSS is inline, there is no script and no external link,
and every value from the scan is escaped.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from nornir_portscan.audit.gates import Audit
from nornir_portscan.audit.policy import port_text
from nornir_portscan.models import ScanReport
from nornir_portscan.ports import UDP, label_ports
from nornir_portscan.reports.data import entry_ports, host_entry, report_to_dict

__all__ = [
    "audit_to_html",
    "audit_to_markdown",
    "iter_html",
    "iter_markdown",
    "iter_merged_html",
    "iter_merged_markdown",
    "merged_to_html",
    "merged_to_markdown",
]

NONE = "—"  # an empty cell
_TITLE = "Port exposure audit"
_COMPLIANT = {True: "yes", False: "no", None: "error"}


Row = tuple[str, ...]


@dataclass(slots=True)
class _Table:
    headers: tuple[str, ...]
    key: int  # the column that Markdown puts in bold on a highlighted row
    rows: list[Row] = field(default_factory=list)
    marked: set[int] = field(default_factory=set)  # rows to highlight
    # Rows made as they are written, (row, marked), and how many: a table of every host
    # is never all in memory.
    source: Callable[[], Iterator[tuple[Row, bool]]] | None = None
    count: int = 0

    def items(self) -> Iterator[tuple[Row, bool]]:
        if self.source is not None:
            yield from self.source()
        else:
            yield from ((row, i in self.marked) for i, row in enumerate(self.rows))

    @property
    def empty(self) -> bool:
        return not (self.count if self.source is not None else self.rows)


@dataclass(slots=True)
class _Section:
    """A titled table; ``empty`` is said instead of an empty one (Markdown shows an empty
    table of ``always`` sections), ``note`` follows it."""

    title: str
    table: _Table
    mark: str  # the HTML class of a highlighted row
    empty: str
    note: str = ""
    always: bool = False


@dataclass(slots=True)
class _View:
    """What both formats show, as text."""

    title: str
    outcome: str
    failed: bool
    incomplete: bool  # interrupted: partial results
    started: str
    summary: list[tuple[str, str, bool]]  # label, value, whether it calls for attention
    sections: list[_Section]
    warnings: list[str]


def _view(audit: Audit) -> _View:
    data = report_to_dict(audit, hosts=False)
    hosts, violations = _host_tables(audit, data)
    drift, drift_note = _drift_table(audit, data)
    sections = [_Section("Hosts", hosts, "violation", "No hosts.", always=True)]
    if violations is not None:
        sections.append(_Section("Violations", violations, "violation", "No violations."))
    unconfirmed = _unconfirmed_table(audit)
    if unconfirmed is not None:
        sections.append(
            _Section(
                "Unconfirmed",
                unconfirmed,
                "drift",
                "",
                "UDP ports outside allowed_open that never answered (open|filtered): maybe "
                "open, not proven; not counted as violations.",
            )
        )
    if drift is not None:
        sections.append(_Section("Drift", drift, "drift", "No drift.", drift_note))
    unmet = _unmet_table(data)
    if unmet is not None:
        sections.append(_Section("Wait", unmet, "unmet", "Every expectation was met."))
    return _View(
        title=_TITLE,
        outcome=_outcome(audit),
        failed=audit.violated,
        incomplete=audit.report.interrupted,
        started=f"{data['started']} to {data['finished']}",
        summary=_summary(data),
        sections=sections,
        warnings=list(data["warnings"]),
    )


def _outcome(audit: Audit) -> str:
    judged = bool(audit.verdicts) or audit.drift is not None or audit.wait is not None
    if audit.violated:
        outcome = "FAILED: violations, drift or unmet expectations"
    elif audit.report.interrupted:  # what was not scanned is neither passed nor failed
        return "INCOMPLETE: interrupted, partial results" + ("" if judged else "; no expectations")
    elif judged:
        outcome = "PASSED: every expectation met"
    else:
        outcome = "scan only: no expectations"
    if audit.report.interrupted:
        outcome += " (interrupted: partial results)"
    return outcome


def _summary(data: dict[str, Any]) -> list[tuple[str, str, bool]]:
    counts = data["summary"]
    summary = [("Hosts", str(counts["hosts"]), False), ("Up", str(counts["up"]), False)]
    if data["interrupted"]:
        summary += [
            _count("Partly scanned", counts["interrupted"]),
            _count("Not scanned", counts["not_scanned"]),
        ]
    compliance = data.get("compliance")
    if compliance is None:
        summary.append(("Compliance", "no policy", False))
    else:
        summary += [
            ("Compliant", str(compliance["compliant"]), False),
            _count("Non-compliant", compliance["non_compliant"]),
            _count("Not judged (error)", compliance["error"]),
            _count("Violations", compliance["violations"]),
        ]
    drift = data.get("drift")
    if drift is None:
        summary.append(("Drift", "not compared", False))
    else:
        summary += [
            _count("Hosts drifted", drift["hosts_changed"]),
            _count("Hosts appeared", len(drift["appeared"])),
            _count("Hosts disappeared", len(drift["disappeared"])),
        ]
    wait = data.get("wait")
    summary.append(("Wait", _wait_text(wait), wait is not None and not wait["converged"]))
    silent = (
        f"{counts['open_filtered_ports']} open|filtered, "
        if "open_filtered_ports" in counts
        else ""
    )
    ports = (
        f"{counts['open_ports']} open, {counts['filtered_ports']} filtered, {silent}"
        f"{counts['closed_ports']} closed, {counts['error_ports']} with errors"
    )
    summary.append(("Ports", ports, False))
    summary.append(("Duration", f"{data['duration']:.2f} s, {data['probes_sent']} probes", False))
    return summary


def _count(label: str, count: int) -> tuple[str, str, bool]:
    return label, str(count), count > 0


def _host_tables(audit: Audit, data: dict[str, Any]) -> tuple[_Table, _Table | None]:
    count = len(audit.report.hosts)

    def entries() -> Iterator[dict[str, Any]]:
        return (host_entry(audit, index) for index in range(count))

    udp = "open_filtered_ports" in data["summary"]  # some UDP port never answered

    def host_rows() -> Iterator[tuple[Row, bool]]:
        for entry in entries():
            status = entry["status"] + (f" ({entry['error']})" if entry["error"] else "")
            errors = entry_ports(entry, "error_ports")
            if errors:
                status += f"; errors on {label_ports(errors)}"
            if entry.get("rate_limited"):
                status += "; its ICMP rate limit slowed the UDP scan"
            compliant = _COMPLIANT[entry["compliant"]] if "compliant" in entry else NONE
            closed = entry["closed_count"] + entry.get("udp_closed_count", 0)
            silent = [UDP + p for p in entry.get("udp_open_filtered_ports", ())]
            row = (
                entry["name"],
                entry["address"] or NONE,
                status,
                label_ports(entry_ports(entry, "open_ports")) or NONE,
                label_ports(entry_ports(entry, "filtered_ports")) or NONE,
                *((label_ports(silent) or NONE,) if udp else ()),
                str(closed),
                compliant,
            )
            yield row, entry.get("compliant") is False

    def violation_rows() -> Iterator[tuple[Row, bool]]:
        for entry in entries():
            for v in entry.get("violations", []):
                yield (entry["name"], _port(v), v["expected"], v["actual"], v["reason"]), True

    headers = ("Host", "Address", "Status", "Open", "Filtered",
               *(("Open|filtered",) if udp else ()), "Closed", "Compliant")  # fmt: skip
    hosts = _Table(headers, len(headers) - 1, source=host_rows, count=count)
    if "compliance" not in data:
        return hosts, None
    found = data["compliance"]["violations"]
    violations = _Table(
        ("Host", "Port", "Expected", "Actual", "Reason"), 3, source=violation_rows, count=found
    )
    return hosts, violations


def _key(item: Mapping[str, Any]) -> int:
    """The port key of a JSON entry with a ``port`` (and a ``protocol`` for UDP)."""
    return int(item["port"]) + (UDP if item.get("protocol") == "udp" else 0)


def _port(item: Mapping[str, Any]) -> str:
    """The ``port`` of a JSON entry as it reads: ``22``, ``53/udp``, or an empty cell."""
    if item["port"] is None:
        return NONE
    return f"{item['port']}/udp" if item.get("protocol") == "udp" else str(item["port"])


def _unconfirmed_table(audit: Audit) -> _Table | None:
    rows: list[Row] = [
        (v.name, port_text(u.port), u.expected, u.actual, u.reason)
        for v in audit.verdicts
        if v is not None
        for u in v.unconfirmed
    ]
    if not rows:
        return None
    return _Table(("Host", "Port", "Expected", "Actual", "Reason"), 3, rows, set(range(len(rows))))


def _drift_table(audit: Audit, data: dict[str, Any]) -> tuple[_Table | None, str]:
    if audit.drift is None:
        return None, ""
    table = _Table(("Host", "Address", "Change", "Port", "Before", "After"), 2)
    for host in audit.drift.hosts:
        for change in host.changes:
            if change.port in host.opened:
                kind = "opened"
            elif change.port in host.closed:
                kind = "closed"
            else:
                kind = "changed"
            table.rows.append(
                (
                    host.name,
                    host.address or NONE,
                    kind,
                    port_text(change.port),
                    change.before,
                    change.after,
                )
            )
    drift = data["drift"]
    for kind in ("appeared", "disappeared"):
        table.rows.extend((label, NONE, kind, NONE, NONE, NONE) for label in drift[kind])
    table.marked.update(range(len(table.rows)))
    note = f"Re-checked {drift['rechecked']} differing ports; {drift['confirmed']} confirmed."
    return table, note


def _unmet_table(data: dict[str, Any]) -> _Table | None:
    if "wait" not in data:
        return None
    table = _Table(("Host", "Port", "Expected", "Actual"), 3)
    for item in data["wait"]["unmet"]:
        table.rows.append((item["host"], _port(item), item["expected"], item["actual"]))
    table.marked.update(range(len(table.rows)))
    return table


def _wait_text(wait: dict[str, Any] | None) -> str:
    if wait is None:
        return "not requested"
    rounds = f"{wait['rounds']} round{'' if wait['rounds'] == 1 else 's'}"
    if wait["converged"]:
        return f"converged after {rounds} in {wait['elapsed']:.2f} s"
    return f"NOT converged: {len(wait['unmet'])} unmet after {rounds} in {wait['elapsed']:.2f} s"


# A merged report (``MergedReport.to_dict``, judged by the Ansible merge or not)

_MERGED_TITLE = "Port exposure audit from many vantages"


def _merged_view(data: Mapping[str, Any]) -> _View:
    cells = data["matrix"]["cells"]
    judged = "compliance" in data or any(c["passed"] or c["failed"] for c in cells)
    failed = bool(data.get("failed_hosts")) or any(c["failed"] for c in cells)
    incomplete = not data["complete"]
    if failed:
        outcome = "FAILED: some (target, vantage) did not meet its expectations"
    elif incomplete:
        outcome = "INCOMPLETE: some shard did not report in full, or some port has no answer"
    elif data["conflicts"]:
        outcome = "INCONSISTENT: shards answered some ports differently"
    else:
        outcome = "PASSED: every expectation met" if judged else "merged: no expectations"
    if failed and incomplete:
        outcome += " (incomplete: some ports have no answer)"
    shards = data["shards"]
    started = sorted(s["started"] for s in shards if s.get("started"))
    finished = sorted(s["finished"] for s in shards if s.get("finished"))
    when = f"{started[0]} to {finished[-1]}" if started and finished else "no shard reported"
    if data.get("plan"):
        when += f"; plan {data['plan'][:12]}"
    sections = [_Section("Reachability matrix", _matrix_table(data), "violation", "No ports.")]
    if data["matrix"]["portless"]:
        sections.append(_portless_section(data))
    sections.append(_Section("Hosts", _merged_hosts(data), "violation", "No hosts.", always=True))
    if "compliance" in data:  # the hosts were judged (the Ansible merge judges them)
        broken = [
            (f"{h['name']} from {h['vantage'] or NONE}", _port(v), v["expected"], v["actual"])
            for h in data["hosts"]
            for v in h.get("violations", [])
        ]
        table = _all_marked(("Host", "Port", "Expected", "Actual"), 3, broken)
        sections.append(_Section("Violations", table, "violation", "No violations."))
    if "drift" in data:
        sections.append(_merged_drift(data["drift"]))
    sections.append(_Section("Shards", _shard_table(data), "violation", "No shards."))
    if data["conflicts"]:
        answers = [
            (
                c["name"],
                c["vantage"] or NONE,
                _port(c),
                ", ".join(f"{a['state']} by {a['scanner']}" for a in c["answers"]),
            )
            for c in data["conflicts"]
        ]
        table = _all_marked(("Host", "Vantage", "Port", "Answers"), 3, answers)
        sections.append(_Section("Conflicts", table, "violation", "No conflicts."))
    return _View(
        title=_MERGED_TITLE,
        outcome=outcome,
        failed=failed or incomplete or bool(data["conflicts"]),
        incomplete=incomplete,
        started=when,
        summary=_merged_summary(data),
        sections=sections,
        warnings=[],
    )


def _all_marked(headers: Row, key: int, rows: Sequence[Row]) -> _Table:
    return _Table(headers, key, list(rows), set(range(len(rows))))


def _merged_summary(data: Mapping[str, Any]) -> list[tuple[str, str, bool]]:
    counts = data["summary"]
    bad = counts["shards"] - counts["shards_ok"]
    summary = [
        ("Hosts (target, vantage)", str(counts["hosts"]), False),
        ("Vantages", str(len(data["matrix"]["vantages"])), False),
        ("Shards ok", f"{counts['shards_ok']} of {counts['shards']}", bad > 0),
        _count("Ports with no answer", counts["error_ports"]),
        _count("Conflicts", counts["conflicts"]),
    ]
    compliance = data.get("compliance")
    if compliance is None:
        summary.append(("Compliance", "no policy", False))
    else:
        summary += [
            ("Compliant", str(compliance["compliant"]), False),
            _count("Non-compliant", compliance["non_compliant"]),
            _count("Not judged (error)", compliance["error"]),
            _count("Violations", compliance["violations"]),
        ]
    silent = counts.get("open_filtered_ports")
    silent = "" if silent is None else f"{silent} open|filtered, "
    ports = (
        f"{counts['open_ports']} open, {counts['filtered_ports']} filtered, {silent}"
        f"{counts['closed_ports']} closed, {counts['error_ports']} with no answer"
    )
    summary += [("Ports", ports, False), ("Probes", str(counts["probes_sent"]), False)]
    return summary


_CELL_COUNTS = ("open", "closed", "filtered", "error", "conflict")


def _matrix_table(data: Mapping[str, Any]) -> _Table:
    """A row per vantage, group and what its cells say, with the ports that say it: exact,
    and short for a thousand ports that are all closed."""
    udp = any(cell.get("protocol") == "udp" for cell in data["matrix"]["cells"])
    counted = (*_CELL_COUNTS, "open_filtered") if udp else _CELL_COUNTS
    headers = ("Vantage", "Group", "Ports", "Verdict", "Open", "Closed", "Filtered", "Error",
               "Conflict", *(("Open|filtered",) if udp else ()), "Expectations")  # fmt: skip
    table = _Table(headers, 3)
    # in cell order: by vantage, group, first port; each row its runs of ports (port keys)
    rows: dict[tuple[Any, ...], list[tuple[int, int]]] = {}
    for cell in data["matrix"]["cells"]:
        said = (cell["verdict"], *(cell.get(k, 0) for k in counted))
        judged = (cell["passed"], cell["failed"], cell["unjudged"])
        runs = rows.setdefault((cell["vantage"], cell["group"], *said, *judged), [])
        base = UDP if cell.get("protocol") == "udp" else 0
        first, last = base + cell["first"], base + cell["last"]
        if runs and runs[-1][1] + 1 == first:
            runs[-1] = (runs[-1][0], last)
        else:
            runs.append((first, last))
    for (vantage, group, verdict, *counts, passed, failed, unjudged), found in rows.items():
        ports = _runs_text(found)
        expected = ", ".join(
            f"{n} {word}"
            for n, word in ((passed, "pass"), (failed, "FAIL"), (unjudged, "not judged"))
            if n
        )
        row = (vantage or NONE, group, ports, verdict, *map(str, counts))
        table.rows.append((*row, expected or NONE))
        if failed or verdict in ("error", "conflict"):
            table.marked.add(len(table.rows) - 1)
    return table


def _runs_text(runs: Sequence[tuple[int, int]]) -> str:
    """Sorted runs of port keys as a table shows them: ``22,80-90,53/udp``."""
    return ",".join(
        (str(first % UDP) if first == last else f"{first % UDP}-{last % UDP}")
        + ("/udp" if first > UDP else "")
        for first, last in runs
    )


def _merged_drift(drift: Mapping[str, Any]) -> _Section:
    table = _Table(("Host", "Vantage", "Change", "Port", "Before", "After", "Unexpected"), 2)
    for host in drift["hosts"]:
        label = (
            host["name"]
            if host["address"] in (None, host["name"])
            else (f"{host['name']} ({host['address']})")
        )
        changes = [
            *(("opened", p, "not open", "open") for p in entry_ports(host, "opened")),
            *(("closed", p, "open", "not open") for p in entry_ports(host, "closed")),
            *(("changed", _key(c), c["before"], c["after"]) for c in host["changed"]),
        ]
        surprising = set(entry_ports(host, "unexpected"))
        for kind, port, before, after in sorted(changes, key=lambda c: c[1]):
            unexpected = "yes" if port in surprising else "no"
            row = (label, host["vantage"] or NONE, kind, port_text(port), before, after,
                   unexpected)  # fmt: skip
            table.rows.append(row)
    for item in drift.get("unchecked", []):
        table.rows.extend(
            (
                item["name"],
                item["vantage"] or NONE,
                "no re-check answer",
                port_text(port),
                NONE,
                NONE,
                NONE,
            )
            for port in entry_ports(item, "ports")
        )
    differing = len(table.rows)
    for kind in ("appeared", "disappeared"):
        table.rows.extend((label, NONE, kind, NONE, NONE, NONE, NONE) for label in drift[kind])
    table.marked.update(range(len(table.rows)))
    if drift.get("confirming"):
        unchecked = sum(len(entry_ports(u, "ports")) for u in drift["unchecked"])
        note = (
            f"Re-checked {drift['rechecked']} differing ports, each from its own vantage; "
            f"{drift['confirmed']} confirmed"
            + (
                f", {unchecked} with no answer (not confirmed, not dismissed)."
                if unchecked
                else "."
            )
        )
    else:
        note = (
            f"{differing} differing ports, not re-checked yet: each is to be probed again from "
            "its own vantage (recheck)."
        )
    return _Section("Drift", table, "drift", "No drift.", note)


def _portless_section(data: Mapping[str, Any]) -> _Section:
    rows = [
        (p["vantage"] or NONE, p["group"], p["host"], p["status"])
        for p in data["matrix"]["portless"]
    ]
    table = _all_marked(("Vantage", "Group", "Host", "Status"), 3, rows)
    return _Section("Hosts in no cell", table, "violation", "None.")


def _merged_hosts(data: Mapping[str, Any]) -> _Table:
    udp = "open_filtered_ports" in data["summary"]  # some UDP port never answered
    headers = ("Host", "Address", "Vantage", "Status", "Open", "Filtered",
               *(("Open|filtered",) if udp else ()), "Closed", "Scanners", "Passed")  # fmt: skip
    table = _Table(headers, len(headers) - 1)
    for host in data["hosts"]:
        status = host["status"] + (f" ({host['error']})" if host["error"] else "")
        errors = entry_ports(host, "error_ports")
        if errors:
            status += f"; no answer on {label_ports(errors)}"
        if host["unscanned_ports"]:
            status += f"; unscanned {host['unscanned_ports']}"
        if host.get("rate_limited"):
            status += "; its ICMP rate limit slowed the UDP scan"
        silent = [UDP + p for p in host.get("udp_open_filtered_ports", ())]
        table.rows.append(
            (
                host["name"],
                host["address"] or NONE,
                host["vantage"] or NONE,
                status,
                label_ports(entry_ports(host, "open_ports")) or NONE,
                label_ports(entry_ports(host, "filtered_ports")) or NONE,
                *((label_ports(silent) or NONE,) if udp else ()),
                str(host["closed_count"] + host.get("udp_closed_count", 0)),
                ", ".join(host["scanners"]),
                "yes" if host["passed"] else "no",
            )
        )
        if not host["passed"]:
            table.marked.add(len(table.rows) - 1)
    return table


def _shard_table(data: Mapping[str, Any]) -> _Table:
    table = _Table(("Scanner", "Vantage", "Status", "Hosts", "Probes", "Ran on"), 2)
    for shard in data["shards"]:
        where = shard.get("where") or {}
        status = shard["status"] + (f" ({shard['reason']})" if shard.get("reason") else "")
        table.rows.append(
            (
                shard["scanner"],
                shard["vantage"] or NONE,
                status,
                str(shard["hosts"]),
                str(shard["probes_sent"]),
                str(where.get("host") or NONE),
            )
        )
        if shard["status"] != "ok":
            table.marked.add(len(table.rows) - 1)
    return table


def merged_to_markdown(data: Mapping[str, Any]) -> str:
    """A merged report (``MergedReport.to_dict()``) as a Markdown document, with its
    reachability matrix."""
    return "".join(iter_merged_markdown(data))


def iter_merged_markdown(data: Mapping[str, Any]) -> Iterator[str]:
    """``merged_to_markdown`` in chunks, a line at a time."""
    return (line + "\n" for line in _markdown_lines(_merged_view(data)))


def merged_to_html(data: Mapping[str, Any]) -> str:
    """A merged report as a self-contained HTML page, with its reachability matrix."""
    return "".join(iter_merged_html(data))


def iter_merged_html(data: Mapping[str, Any]) -> Iterator[str]:
    """``merged_to_html`` in chunks, a line at a time."""
    return (line + "\n" for line in _html_lines(_merged_view(data)))


def _as_audit(audit: Audit | ScanReport) -> Audit:
    return audit if isinstance(audit, Audit) else Audit(audit)


# Markdown


_MD_SPECIAL = str.maketrans({c: "\\" + c for c in "\\`*[]<>|"})
_MD_UNDERSCORE = re.compile(r"(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])")  # intraword "_" is plain


def _md(text: str) -> str:
    return _MD_UNDERSCORE.sub(r"\_", text.translate(_MD_SPECIAL))


def _md_table(table: _Table) -> Iterator[str]:
    yield "| " + " | ".join(_md(header) for header in table.headers) + " |"
    yield "|" + "|".join("---" for _ in table.headers) + "|"
    for row, marked in table.items():
        cells = [_md(cell) for cell in row]
        if marked:
            cells[table.key] = f"**{cells[table.key]}**"
        yield "| " + " | ".join(cells) + " |"


def audit_to_markdown(audit: Audit | ScanReport) -> str:
    """The audit (or a plain scan) as a Markdown document."""
    return "".join(iter_markdown(audit))


def iter_markdown(audit: Audit | ScanReport) -> Iterator[str]:
    """``audit_to_markdown`` in chunks, a line at a time."""
    return (line + "\n" for line in _markdown_lines(_view(_as_audit(audit))))


def _markdown_lines(view: _View) -> Iterator[str]:
    lines = [f"# {_md(view.title)}", "", f"**{_md(view.outcome)}**", "", _md(view.started), ""]
    lines += ["| Summary | |", "|---|---|"]
    lines += [
        f"| {label} | {f'**{_md(value)}**' if alert else _md(value)} |"
        for label, value, alert in view.summary
    ]
    yield from lines
    for section in view.sections:
        yield from ("", f"## {_md(section.title)}", "")
        empty = section.table.empty and not section.always
        yield from (section.empty,) if empty else _md_table(section.table)
        if section.note:
            yield from ("", _md(section.note))
    if view.warnings:
        yield from ("", "## Warnings", "", *(f"- {_md(w)}" for w in view.warnings))


# HTML

_CSS = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1f2328;
  margin: 2rem auto; max-width: 72rem; padding: 0 1rem; }
h1 { font-size: 1.6rem; margin-bottom: .3rem; }
h2 { font-size: 1.2rem; margin-top: 2rem; border-bottom: 1px solid #d0d7de; padding-bottom: .2rem; }
.outcome { display: inline-block; padding: .3rem .8rem; border-radius: 6px; font-weight: 600; }
.outcome.failed { background: #ffebe9; color: #a40e26; border: 1px solid #ff8182; }
.outcome.incomplete { background: #fff8c5; color: #7d4e00; border: 1px solid #d4a72c; }
.outcome.passed { background: #dafbe1; color: #116329; border: 1px solid #4ac26b; }
.when { color: #59636e; margin: .4rem 0 1rem; }
.cards { display: flex; flex-wrap: wrap; gap: .6rem; }
.card { border: 1px solid #d0d7de; border-radius: 6px; padding: .5rem .8rem; min-width: 7rem; }
.card .label { color: #59636e; font-size: .8rem; text-transform: uppercase; letter-spacing: .03em; }
.card .value { font-size: 1.05rem; font-weight: 600; }
.card.alert { border-color: #ff8182; background: #ffebe9; }
.card.alert .value { color: #a40e26; }
table { border-collapse: collapse; width: 100%; margin-top: .5rem; }
th, td { border: 1px solid #d0d7de; padding: .3rem .6rem; text-align: left; vertical-align: top; }
th { background: #f6f8fa; }
td { font-variant-numeric: tabular-nums; }
tr.violation td { background: #ffebe9; }
tr.drift td { background: #fff8c5; }
tr.unmet td { background: #ffebe9; }
td.key { font-weight: 600; }
.note { color: #59636e; }
"""


def _h(text: str) -> str:
    return html.escape(text, quote=True)


def _html_table(table: _Table, mark: str) -> Iterator[str]:
    yield "<table>"
    yield "<thead><tr>" + "".join(f"<th>{_h(h)}</th>" for h in table.headers)
    yield "</tr></thead><tbody>"
    for row, marked in table.items():
        cells = "".join(
            f'<td class="key">{_h(cell)}</td>'
            if marked and column == table.key
            else f"<td>{_h(cell)}</td>"
            for column, cell in enumerate(row)
        )
        yield (f'<tr class="{mark}">' if marked else "<tr>") + cells + "</tr>"
    yield "</tbody></table>"


def _html_section(section: _Section) -> Iterator[str]:
    yield f"<h2>{_h(section.title)}</h2>"
    if section.table.empty:
        yield f'<p class="note">{_h(section.empty)}</p>'
    else:
        yield from _html_table(section.table, section.mark)
    if section.note:
        yield f'<p class="note">{_h(section.note)}</p>'


def audit_to_html(audit: Audit | ScanReport) -> str:
    """The audit (or a plain scan) as a self-contained HTML page."""
    return "".join(iter_html(audit))


def iter_html(audit: Audit | ScanReport) -> Iterator[str]:
    """``audit_to_html`` in chunks, a line at a time."""
    return (line + "\n" for line in _html_lines(_view(_as_audit(audit))))


def _html_lines(view: _View) -> Iterator[str]:
    tone = "failed" if view.failed else "incomplete" if view.incomplete else "passed"
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_h(view.title)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{_h(view.title)}</h1>",
        f'<div class="outcome {tone}" id="outcome">{_h(view.outcome)}</div>',
        f'<p class="when">{_h(view.started)}</p>',
        '<section class="cards" id="summary">',
    ]
    out += [
        f'<div class="card{" alert" if alert else ""}"><div class="label">{_h(label)}</div>'
        f'<div class="value">{_h(value)}</div></div>'
        for label, value, alert in view.summary
    ]
    out.append("</section>")
    yield from out
    for section in view.sections:
        yield from _html_section(section)
    if view.warnings:
        yield "<h2>Warnings</h2><ul>"
        yield from (f"<li>{_h(w)}</li>" for w in view.warnings)
        yield "</ul>"
    yield "</body></html>"
