"""nmap XML: exact structure of hand-built reports, then the real tools on real scans: nmap's
DTD (xmllint), python-libnmap against the JSON report, nmap's ndiff, and nmap itself."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from report_support import (
    CLOSED,
    ERROR,
    FILTERED,
    OPEN,
    STARTED,
    RealAudit,
    hand_audit,
    hand_report,
    ndiff,
    parse_xml,
    port,
    tool,
    xmllint_errors,
)

from nornir_portscan.audit.gates import Audit
from nornir_portscan.models import HostResult, HostStatus, ScanOptions, ScanReport
from nornir_portscan.ports import parse_ports
from nornir_portscan.reports.data import report_to_dict
from nornir_portscan.reports.nmap_xml import report_to_xml


def tree(scan: ScanReport | Audit) -> ET.Element:
    return ET.fromstring(report_to_xml(scan))


def outline(element: ET.Element) -> list[tuple[str, dict[str, str]]]:
    """Every element under ``element`` (itself included), in document order."""
    return [(e.tag, dict(e.attrib)) for e in element.iter()]


def one_host(*hosts: HostResult, **options: Any) -> ScanReport:
    return ScanReport(tuple(hosts), ScanOptions(**options), STARTED, STARTED + 2, 10)


# Exact structure


def test_document_starts_like_nmaps():
    text = report_to_xml(hand_report())
    assert text.splitlines()[:2] == ['<?xml version="1.0" encoding="UTF-8"?>', "<!DOCTYPE nmaprun>"]
    root = ET.fromstring(text)
    assert root.tag == "nmaprun"
    assert {k: root.get(k) for k in ("scanner", "start", "xmloutputversion")} == {
        "scanner": "nmap",
        "start": "1767225600",
        "xmloutputversion": "1.05",
    }
    assert [child.tag for child in root] == [
        "scaninfo", "verbose", "debugging", "target", "host", "host", "host", "runstats"
    ]  # fmt: skip
    assert root.find("scaninfo").attrib == {  # type: ignore[union-attr]
        "type": "connect",
        "protocol": "tcp",
        "numservices": "6",
        "services": "22,80,443,5432,8080,8443",
    }


def test_host_lists_closed_ports_it_knows_and_names_services():
    web = tree(hand_report()).findall("host")[0]
    assert outline(web) == [
        ("host", {"starttime": "1767225600", "endtime": "1767225601"}),
        ("status", {"state": "up", "reason": "syn-ack", "reason_ttl": "0"}),
        ("address", {"addr": "127.0.0.10", "addrtype": "ipv4"}),
        ("hostnames", {}),
        ("hostname", {"name": "web", "type": "user"}),
        ("ports", {}),
        ("port", {"protocol": "tcp", "portid": "22"}),
        ("state", {"state": "open", "reason": "syn-ack", "reason_ttl": "0"}),
        ("service", {"name": "ssh", "method": "table", "conf": "3"}),
        ("port", {"protocol": "tcp", "portid": "80"}),
        ("state", {"state": "open", "reason": "syn-ack", "reason_ttl": "0"}),
        ("service", {"name": "http", "method": "table", "conf": "3"}),
        ("port", {"protocol": "tcp", "portid": "443"}),
        ("state", {"state": "closed", "reason": "conn-refused", "reason_ttl": "0"}),
        ("service", {"name": "https", "method": "table", "conf": "3"}),
        ("port", {"protocol": "tcp", "portid": "8080"}),
        ("state", {"state": "closed", "reason": "conn-refused", "reason_ttl": "0"}),
        ("service", {"name": "http-alt", "method": "table", "conf": "3"}),
        ("port", {"protocol": "tcp", "portid": "8443"}),  # no name in the table: no <service>
        ("state", {"state": "filtered", "reason": "no-response", "reason_ttl": "0"}),
        # microseconds: mean and mean deviation of 0.2 and 0.4 ms; "to" is the 0.1 s floor
        ("times", {"srtt": "300", "rttvar": "100", "to": "100000"}),
    ]


def test_unresolved_host_is_a_skipped_target_and_not_counted():
    root = tree(hand_report())
    assert [t.attrib for t in root.findall("target")] == [
        {"specification": "gone.example", "status": "skipped", "reason": "invalid"}
    ]
    assert [h.find("address").get("addr") for h in root.findall("host")] == [  # type: ignore[union-attr]
        "127.0.0.10",
        "127.0.0.11",
        "::1",
    ]
    assert root.find("runstats/hosts").attrib == {"up": "2", "down": "1", "total": "3"}  # type: ignore[union-attr]
    done = time.strftime("%a %b %d %H:%M:%S %Y", time.localtime(STARTED + 1.25))  # as nmap
    assert root.find("runstats/finished").attrib == {  # type: ignore[union-attr]
        "time": "1767225601",
        "timestr": done,
        "summary": f"nornir-portscan done at {done}; 3 IP addresses (2 hosts up) scanned in "
        "1.25 seconds",
        "elapsed": "1.25",
        "exit": "success",
    }


def test_error_port_is_nmaps_unknown_state_with_the_errno_reason():
    slow = tree(hand_report()).findall("host")[2]
    assert outline(slow)[:4] == [
        (
            "host",
            {
                "starttime": "1767225600",
                "endtime": "1767225601",
                "timedout": "true",
                "comment": "host timeout after 5 s",
            },
        ),
        ("status", {"state": "unknown", "reason": "local-error", "reason_ttl": "0"}),
        ("address", {"addr": "::1", "addrtype": "ipv6"}),
        ("hostnames", {}),
    ]
    assert [e.attrib for e in slow.iter("state")] == [
        {"state": "unknown", "reason": "EMFILE", "reason_ttl": "0"}
    ]
    assert slow.find("times") is None  # no round-trip time was measured


@pytest.mark.parametrize(
    ("status", "ports", "closed", "expected"),
    [
        (HostStatus.UP, [port(80, OPEN, "syn-ack")], 0, ("up", "syn-ack")),
        (HostStatus.UP, [], 3, ("up", "conn-refused")),
        (HostStatus.NO_RESPONSE, [port(80, FILTERED, "no-response")], 0, ("down", "no-response")),
        (HostStatus.ERROR, [port(80, ERROR, "EMFILE", None)], 0, ("unknown", "local-error")),
        (HostStatus.TIMED_OUT, [], 0, ("unknown", "no-result")),
        (HostStatus.TIMED_OUT, [], 2, ("up", "conn-refused")),
    ],
)
def test_host_state_comes_from_what_the_ports_said(status, ports, closed, expected):
    host = HostResult("h", "127.0.0.1", status, tuple(ports), closed_count=closed)
    (status_element,) = tree(one_host(host)).iter("status")
    assert (status_element.get("state"), status_element.get("reason")) == expected


def test_more_than_25_closed_or_filtered_ports_are_extraports_like_nmap():
    filtered = [port(p, FILTERED, "no-response") for p in range(100, 120)]
    filtered += [port(p, FILTERED, "admin-prohibited") for p in range(200, 207)]
    host = HostResult(
        "h",
        "127.0.0.1",
        HostStatus.UP,
        (port(22, OPEN, "syn-ack"), *filtered),
        closed_count=26,
        scanned=(22, *range(30, 56), *range(100, 120), *range(200, 207)),
    )
    ports = tree(one_host(host)).find("host/ports")
    assert outline(ports) == [  # type: ignore[arg-type]
        ("ports", {}),
        ("extraports", {"state": "closed", "count": "26"}),
        (
            "extrareasons",
            {"reason": "conn-refused", "count": "26", "proto": "tcp", "ports": "30-55"},
        ),
        ("extraports", {"state": "filtered", "count": "27"}),
        (
            "extrareasons",
            {"reason": "no-response", "count": "20", "proto": "tcp", "ports": "100-119"},
        ),
        (
            "extrareasons",
            {"reason": "admin-prohibited", "count": "7", "proto": "tcp", "ports": "200-206"},
        ),
        ("port", {"protocol": "tcp", "portid": "22"}),
        ("state", {"state": "open", "reason": "syn-ack", "reason_ttl": "0"}),
        ("service", {"name": "ssh", "method": "table", "conf": "3"}),
    ]


def test_closed_ports_only_counted_are_extraports_without_a_port_list():
    host = HostResult("h", "127.0.0.1", HostStatus.UP, closed_count=5)  # no ``scanned``
    assert outline(tree(one_host(host)).find("host/ports")) == [  # type: ignore[arg-type]
        ("ports", {}),
        ("extraports", {"state": "closed", "count": "5"}),
        ("extrareasons", {"reason": "conn-refused", "count": "5"}),
    ]


def test_listed_closed_ports_are_not_listed_twice():
    host = HostResult(
        "h",
        "127.0.0.1",
        HostStatus.UP,
        (port(22, CLOSED, "conn-refused", None), port(80, OPEN, "syn-ack")),
        closed_count=2,
        scanned=(22, 80, 443),
    )
    states = [
        (p.get("portid"), p.find("state").get("state")) for p in tree(one_host(host)).iter("port")
    ]  # type: ignore[union-attr]
    assert states == [("22", "closed"), ("80", "open"), ("443", "closed")]


def test_audit_adds_host_and_post_scripts():
    root = tree(hand_audit(wait=True))
    scripts = [h.find("hostscript/script") for h in root.findall("host")]
    assert [s.get("output") if s is not None else None for s in scripts] == [
        "NOT compliant\n"
        "  port 80 open (not in allowed_open) (syn-ack)\n"
        "  port 443 closed (expected open) (conn-refused)\n"
        "drift: opened 80; closed 443; 8443 closed->filtered",
        "compliant\ndrift: none",
        None,  # no policy and no drift
    ]
    post = root.find("postscript/script")
    assert post is not None
    assert post.get("id") == "portscan-audit"
    assert post.get("output") == (
        "compliance: 1 compliant, 1 non-compliant, 1 not judged; violations: 2\n"
        "drift: hosts 1 changed, 1 appeared, 1 disappeared; ports 3 confirmed of 3 re-checked\n"
        "wait: NOT converged in 12.5 s, rounds: 4, unmet: 2"
    )
    web = scripts[0]
    assert web is not None
    assert [
        [e.text for e in row.iter("elem")] for row in web.findall("table[@key='violations']/table")
    ] == [["80", "not open", "open", "syn-ack"], ["443", "open", "closed", "conn-refused"]]
    assert [t.attrib for t in root.iter("target")] == [
        {"specification": "gone.example", "status": "skipped", "reason": "invalid"}
    ]


def test_plain_scan_has_no_scripts():
    root = tree(hand_report())
    assert root.find(".//script") is None
    assert root.find("postscript") is None


def test_interrupted_scan_exits_with_error_and_says_why():
    report = dataclasses.replace(hand_report(), interrupted=True)
    finished = tree(report).find("runstats/finished")
    assert finished is not None
    assert (finished.get("exit"), finished.get("errormsg")) == (
        "error",
        "interrupted: the results are partial",
    )


# nmap's DTD


def awkward_report() -> ScanReport:
    host = HostResult(
        'a<b>&"c"--d',
        "127.0.0.1",
        HostStatus.UP,
        (port(80, OPEN, "syn-ack"),),
        error="odd -- <message> & more",
        scanned=(80,),
    )
    empty = ScanReport((), ScanOptions(), STARTED, STARTED, 0)
    return dataclasses.replace(
        empty, hosts=(host,), warnings=("-- dashes --- and <tags> & ampersands --",)
    )


@pytest.mark.parametrize(
    "make",
    [
        hand_report,
        hand_audit,
        lambda: hand_audit(wait=True),
        lambda: dataclasses.replace(hand_report(), interrupted=True),
        lambda: ScanReport((), ScanOptions(), STARTED, STARTED, 0),
        awkward_report,
    ],
    ids=["scan", "audit", "audit-wait", "interrupted", "empty", "awkward-names"],
)
def test_hand_built_reports_are_valid_against_nmaps_dtd(make, tmp_path):
    path = tmp_path / "scan.xml"
    path.write_text(report_to_xml(make()))
    assert xmllint_errors(path) == ""


def test_awkward_names_round_trip():
    root = tree(awkward_report())
    host = root.find("host")
    assert host is not None
    assert host.find("hostnames/hostname").get("name") == 'a<b>&"c"--d'  # type: ignore[union-attr]
    assert host.get("comment") == "odd -- <message> & more"
    comments = re.findall(r"<!--(.*?)-->", report_to_xml(awkward_report()))
    assert comments[1] == " warning: - - dashes - - - and <tags> & ampersands - - "


def test_real_reports_are_valid_against_nmaps_dtd(real_audit: RealAudit, tmp_path):
    for name, scan in (("before", real_audit.before), ("after", real_audit.after)):
        path = tmp_path / f"{name}.xml"
        path.write_text(report_to_xml(scan))
        assert xmllint_errors(path) == "", name


def test_xmllint_does_reject_what_the_dtd_forbids(tmp_path):
    """The check has teeth: a connect scan called 'tcp' instead of 'connect' is invalid."""
    path = tmp_path / "bad.xml"
    path.write_text(report_to_xml(hand_report()).replace('type="connect"', 'type="tcp"'))
    assert "scaninfo" in xmllint_errors(path)


# python-libnmap reads what the JSON report says


STATE = {"open": "open", "closed": "closed", "filtered": "filtered", "error": "unknown"}


def json_view(data: dict[str, Any]) -> dict[str, dict[int, tuple[str, str]]]:
    """Address -> port -> (nmap state, reason) as the JSON report tells it."""
    view = {}
    for host in data["hosts"]:
        if host["address"] is None:
            continue
        ports = {p["port"]: (STATE[p["state"]], p["reason"]) for p in host["ports"]}
        for number in parse_ports(host["scanned_ports"]) if host["scanned_ports"] else ():
            ports.setdefault(number, ("closed", "conn-refused"))
        view[host["address"]] = ports
    return view


def libnmap_view(parsed: Any) -> dict[str, dict[int, tuple[str, str]]]:
    """The same from python-libnmap (it keeps the last <extraports> of a host)."""
    view = {}
    for host in parsed.hosts:
        ports = {s.port: (s.state, s.reason) for s in host.services}
        # libnmap 0.7 files the whole <extraports> attribute map under "state"
        extra = host.extraports_state["state"]["state"] if host.extraports_state else None
        for reason in host.extraports_reasons or []:
            for number in parse_ports(reason["ports"]):
                ports[number] = (extra, reason["reason"])
        view[host.address] = ports
    return view


def test_libnmap_reads_the_hand_built_audit_like_the_json_report():
    audit = hand_audit()
    parsed = parse_xml(report_to_xml(audit))
    data = report_to_dict(audit)
    assert libnmap_view(parsed) == json_view(data)
    assert [(h.address, h.status, h.hostnames) for h in parsed.hosts] == [
        ("127.0.0.10", "up", ["web"]),
        ("127.0.0.11", "up", []),
        ("::1", "unknown", ["slow"]),
    ]
    assert (parsed.hosts_total, parsed.hosts_up, parsed.hosts_down) == (3, 2, 1)
    assert parsed.scan_type == "connect"
    assert [s["id"] for s in parsed.hosts[0].scripts_results] == ["portscan-audit"]


def test_libnmap_reads_the_real_audit_like_the_json_report(real_audit: RealAudit):
    for scan in (real_audit.before, real_audit.after):
        parsed = parse_xml(report_to_xml(scan))
        data = report_to_dict(scan)
        assert libnmap_view(parsed) == json_view(data)
        assert [(h.address, h.status) for h in parsed.hosts] == [
            (h["address"], "up") for h in data["hosts"]
        ]
        assert parsed.hosts_total == data["summary"]["hosts"] == 3
    gone = libnmap_view(parse_xml(report_to_xml(real_audit.after)))[real_audit.addresses[0]]
    assert gone[real_audit.gone] == ("closed", "conn-refused")
    new = libnmap_view(parse_xml(report_to_xml(real_audit.after)))[real_audit.addresses[1]]
    assert new[real_audit.new] == ("open", "syn-ack")


# nmap's ndiff


def host_lines(text: str) -> list[str]:
    """ndiff's text output without the scan header lines, whitespace normalized."""
    lines = [" ".join(line.split()) for line in text.splitlines()]
    return [line for line in lines if line and not line.lstrip("+- ").startswith("Nmap ")]


def write(tmp_path: Path, name: str, scan: ScanReport | Audit) -> str:
    path = tmp_path / name
    path.write_text(report_to_xml(scan))
    return str(path)


def test_ndiff_shows_the_port_that_closed_and_the_one_that_opened(real_audit: RealAudit, tmp_path):
    before = write(tmp_path, "before.xml", real_audit.before.report)
    after = write(tmp_path, "after.xml", real_audit.after.report)
    done = ndiff(before, after)
    assert done.returncode == 1
    first, second, _ = real_audit.addresses
    low = {a: 30 - len(real_audit.low_listening[a]) for a in real_audit.addresses}
    # more than 25 closed ports are "Not shown", as nmap does: 1-30 and the other hosts'
    # listener ports (3 of the 5 on the first host, 4 then 3 on the second)
    assert host_lines(done.stdout) == [
        f"{first}:",
        f"-Not shown: {low[first] + 3} closed ports",
        f"+Not shown: {low[first] + 4} closed ports",
        "PORT STATE SERVICE VERSION",
        f"-{real_audit.gone}/tcp open",
        f"{second}:",
        f"-Not shown: {low[second] + 4} closed ports",
        f"+Not shown: {low[second] + 3} closed ports",
        "PORT STATE SERVICE VERSION",
        f"+{real_audit.new}/tcp open",
    ]


def test_ndiff_of_a_report_with_itself_is_empty(real_audit: RealAudit, tmp_path):
    path = write(tmp_path, "after.xml", real_audit.after)
    assert ndiff(path, path).returncode == 0


def test_ndiff_reads_audit_scripts_and_every_host_state(tmp_path):
    done = ndiff(
        write(tmp_path, "scan.xml", hand_report()),
        write(tmp_path, "audit.xml", hand_audit(wait=True)),
    )
    assert done.returncode == 1
    assert host_lines(done.stdout) == [
        "web (127.0.0.10):",
        "+Host script results:",
        "+| portscan-audit: NOT compliant",
        "+| port 80 open (not in allowed_open) (syn-ack)",
        "+| port 443 closed (expected open) (conn-refused)",
        "+|_ drift: opened 80; closed 443; 8443 closed->filtered",
        "127.0.0.11:",
        "+Host script results:",
        "+| portscan-audit: compliant",
        "+|_ drift: none",
        "+Post-scan script results:",
        "+| portscan-audit: compliance: 1 compliant, 1 non-compliant, 1 not judged; violations: 2",
        "+| drift: hosts 1 changed, 1 appeared, 1 disappeared; ports 3 confirmed of 3 re-checked",
        "+|_ wait: NOT converged in 12.5 s, rounds: 4, unmet: 2",
    ]


def nmap_scan(real_audit: RealAudit, path: Path) -> str:
    """nmap's own connect scan of the same listeners, as XML at ``path``."""
    nmap = tool("nmap")
    # loopback targets only, no DNS, no host discovery: the same connect scan as ours
    done = subprocess.run(
        [nmap, "-sT", "-n", "-Pn", "-p", real_audit.spec, *real_audit.addresses,
         "-oX", str(path)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert xmllint_errors(path) == ""  # the reference passes the same check
    return str(path)


def test_ndiff_finds_no_difference_between_our_scan_and_nmaps(real_audit: RealAudit, tmp_path):
    theirs = nmap_scan(real_audit, tmp_path / "nmap.xml")
    ours = write(tmp_path, "ours.xml", real_audit.after.report)
    done = ndiff(ours, theirs)
    assert host_lines(done.stdout) == []  # same hosts, states, ports and "Not shown" counts
    assert done.stdout.splitlines()[1].startswith("+Nmap 7")  # only the scan header differs


def test_ndiff_between_our_audit_and_nmap_shows_only_the_audit(real_audit: RealAudit, tmp_path):
    theirs = nmap_scan(real_audit, tmp_path / "nmap.xml")
    ours = write(tmp_path, "ours.xml", real_audit.after)
    first, second, third = real_audit.addresses
    assert host_lines(ndiff(ours, theirs).stdout) == [
        f"{first}:",
        "-Host script results:",
        "-| portscan-audit: NOT compliant",
        f"-| port {real_audit.gone} closed (expected open) (conn-refused)",
        f"-|_ drift: closed {real_audit.gone}",
        f"{second}:",
        "-Host script results:",
        "-| portscan-audit: NOT compliant",
        f"-| port {real_audit.new} open (not in allowed_open) (syn-ack)",
        f"-|_ drift: opened {real_audit.new}",
        f"{third}:",
        "-Host script results:",
        "-| portscan-audit: compliant",
        "-|_ drift: none",
        "-Post-scan script results:",
        "-| portscan-audit: compliance: 1 compliant, 2 non-compliant, 0 not judged; violations: 2",
        "-|_ drift: hosts 2 changed, 0 appeared, 0 disappeared; ports 2 confirmed of 2 re-checked",
    ]
