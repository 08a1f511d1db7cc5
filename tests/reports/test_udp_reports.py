"""UDP ports in every report: JSON (a protocol per port, TCP lists as they were), nmap XML
(checked with nmap's DTD, ndiff and against ``nmap -sU`` on loopback), the Markdown and HTML
pages and the table; no port key (``ports.UDP`` + port) anywhere a person or a program reads."""

from __future__ import annotations

import re
import socket
import subprocess
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator

import jsonschema
import pytest
from report_support import STARTED, ndiff, parse_xml, tool, xmllint_errors

from nornir_portscan import build_request
from nornir_portscan.audit.drift import Drift, HostDrift, PortChange
from nornir_portscan.audit.gates import Audit, Unmet, WaitResult
from nornir_portscan.audit.policy import evaluate, parse_policy
from nornir_portscan.engine.executor import scan
from nornir_portscan.models import (
    HostResult,
    HostStatus,
    PortResult,
    PortState,
    ScanOptions,
    ScanReport,
)
from nornir_portscan.ports import udp_key
from nornir_portscan.reports.data import (
    host_entry,
    render_table,
    report_schema,
    report_to_dict,
    report_to_json,
)
from nornir_portscan.reports.nmap_xml import report_to_xml
from nornir_portscan.reports.pages import audit_to_html, audit_to_markdown

OPEN, CLOSED, FILTERED, SILENT = (
    PortState.OPEN,
    PortState.CLOSED,
    PortState.FILTERED,
    PortState.OPEN_FILTERED,
)
U = udp_key


def tcp(number: int, state: PortState, reason: str) -> PortResult:
    return PortResult(number, state, reason, None if state is FILTERED else 0.2, 1)


def udp(number: int, state: PortState, reason: str) -> PortResult:
    rtt = 0.3 if state is OPEN else None
    return PortResult(number, state, reason, rtt, 1 if state is OPEN else 3, "udp")


def mixed_report() -> ScanReport:
    """web1: TCP and UDP, rate-limited; db: TCP only; bulk: 40 UDP ports, 30 of them silent."""
    web = HostResult(
        "web1",
        "127.0.0.10",
        HostStatus.UP,
        (
            tcp(22, OPEN, "syn-ack"),
            tcp(443, FILTERED, "no-response"),
            udp(53, OPEN, "udp-response"),
            udp(137, FILTERED, "admin-prohibited"),
            udp(161, SILENT, "no-response"),
            udp(500, SILENT, "no-response"),
        ),
        closed_count=3,  # TCP 80, UDP 123 and 1900
        scanned=(22, 80, 443, U(53), U(123), U(137), U(161), U(500), U(1900)),
        rate_limited=True,
    )
    db = HostResult(
        "db", "127.0.0.11", HostStatus.UP, (tcp(5432, OPEN, "syn-ack"),), 1, scanned=(22, 5432)
    )
    bulk = HostResult(
        "bulk",
        "127.0.0.12",
        HostStatus.UP,
        tuple(udp(p, SILENT, "no-response") for p in range(40000, 40030)),
        closed_count=10,
        scanned=tuple(U(p) for p in range(40000, 40040)),
    )
    return ScanReport((web, db, bulk), ScanOptions(), STARTED, STARTED + 3, 90)


def mixed_audit() -> Audit:
    report = mixed_report()
    policy = parse_policy(
        {
            "expect_open": "22,U:53,U:161",
            "expect_closed": "U:123",
            "allowed_open": "22,U:53,U:161",
        }
    )
    verdicts = (evaluate(report.hosts[0], policy), None, None)
    drift = Drift(
        (
            HostDrift(
                "web1",
                "127.0.0.10",
                opened=(U(53),),
                closed=(443,),
                changed=(
                    PortChange(U(137), "closed", "filtered"),
                    PortChange(U(161), "open", "open|filtered"),
                ),
            ),
        ),
        rechecked=4,
        confirmed=4,
    )
    wait = WaitResult(False, 3.0, 2, (Unmet("web1", U(161), "open", "open|filtered"),), 3.0)
    return Audit(report, verdicts, drift, wait)


# JSON


def test_the_host_entry_keeps_tcp_lists_and_adds_udp_ones():
    entry = host_entry(mixed_audit(), 0)
    assert {k: entry[k] for k in (
        "open_ports", "filtered_ports", "closed_count", "error_ports", "scanned_ports",
        "udp_open_ports", "udp_open_filtered_ports", "udp_filtered_ports", "udp_closed_count",
        "udp_error_ports", "rate_limited",
    )} == {
        "open_ports": [22], "filtered_ports": [443], "closed_count": 1, "error_ports": [],
        "scanned_ports": "22,80,443,U:53,123,137,161,500,1900",
        "udp_open_ports": [53], "udp_open_filtered_ports": [161, 500], "udp_filtered_ports": [137],
        "udp_closed_count": 2, "udp_error_ports": [], "rate_limited": True,
    }  # fmt: skip
    assert entry["ports"][2:4] == [
        {"port": 53, "protocol": "udp", "state": "open", "reason": "udp-response",
         "rtt_ms": 0.3, "attempts": 1},
        {"port": 137, "protocol": "udp", "state": "filtered", "reason": "admin-prohibited",
         "rtt_ms": None, "attempts": 3},
    ]  # fmt: skip
    assert entry["violations"] == [
        {"port": 161, "protocol": "udp", "expected": "open", "actual": "open|filtered",
         "reason": "no-response"},
    ]  # fmt: skip
    assert entry["unconfirmed"] == [
        {"port": 500, "protocol": "udp", "expected": "not open", "actual": "open|filtered",
         "reason": "no-response"},
    ]  # fmt: skip
    assert entry["policy"] == {
        "expect_open": "22,U:53,161",
        "expect_closed": "U:123",
        "expect_filtered": "",
        "allowed_open": "22,U:53,161",
    }
    assert entry["drift"] == {
        "opened": [],
        "closed": [443],
        "changed": [
            {"port": 137, "protocol": "udp", "before": "closed", "after": "filtered"},
            {"port": 161, "protocol": "udp", "before": "open", "after": "open|filtered"},
        ],
        "unexpected": [443],
        "udp_opened": [53],
        "udp_closed": [],
        "udp_unexpected": [137, 161],  # 53 opened as expected
        "in_baseline": True,
    }
    assert entry["wait"]["unmet"] == [
        {"port": 161, "protocol": "udp", "expected": "open", "actual": "open|filtered"}
    ]
    assert entry["failure"] == (
        "web1 (127.0.0.10): did not converge within 3 s: port 161/udp open|filtered (no "
        "response; expected open); unexpected drift since the baseline: port 443 open -> not "
        "open, port 137/udp closed -> filtered, port 161/udp open -> open|filtered"
    )


def test_a_tcp_only_host_of_a_mixed_report_has_no_udp_keys():
    entry = host_entry(mixed_audit(), 1)
    assert not [k for k in entry if "udp" in k or k in ("unconfirmed", "rate_limited")]
    assert "protocol" not in str(entry["ports"]).replace("'protocol': 'tcp'", "")


def test_the_mixed_report_is_valid_against_the_schema_and_counts_open_filtered():
    data = report_to_dict(mixed_audit())
    jsonschema.validate(data, report_schema())
    assert data["summary"]["open_filtered_ports"] == 32
    assert data["wait"]["unmet"] == [
        {"host": "web1", "port": 161, "protocol": "udp", "expected": "open",
         "actual": "open|filtered"}
    ]  # fmt: skip
    assert (
        "open_filtered_ports"
        not in report_to_dict(ScanReport((), ScanOptions(), 0, 1, 0))["summary"]
    )


# nmap XML


def ports_of(xml: str, address: str) -> list[tuple[str, str, str, str]]:
    root = ET.fromstring(xml)
    host = next(h for h in root.iter("host") if h.find(f"address[@addr='{address}']") is not None)
    return [
        (p.get("protocol"), p.get("portid"), s.get("state"), s.get("reason"))
        for p in host.iter("port")
        for s in p.iter("state")
    ]


def test_xml_has_a_scaninfo_per_protocol_and_udp_ports_as_nmap_writes_them():
    xml = report_to_xml(mixed_audit())
    root = ET.fromstring(xml)
    assert [s.attrib for s in root.iter("scaninfo")] == [
        {"type": "connect", "protocol": "tcp", "numservices": "4", "services": "22,80,443,5432"},
        {"type": "udp", "protocol": "udp", "numservices": "46",
         "services": "53,123,137,161,500,1900,40000-40039"},
    ]  # fmt: skip
    assert ports_of(xml, "127.0.0.10") == [
        ("tcp", "22", "open", "syn-ack"),
        ("tcp", "80", "closed", "conn-refused"),
        ("tcp", "443", "filtered", "no-response"),
        ("udp", "53", "open", "udp-response"),
        ("udp", "123", "closed", "port-unreach"),
        ("udp", "137", "filtered", "admin-prohibited"),
        ("udp", "161", "open|filtered", "no-response"),
        ("udp", "500", "open|filtered", "no-response"),
        ("udp", "1900", "closed", "port-unreach"),
    ]
    web = next(root.iter("host"))
    assert web.get("comment") == (
        "web1 (127.0.0.10): its ICMP rate limit slowed the UDP scan (closed ports answer about "
        "one a second)"
    )
    services = {p.get("portid"): p.find("service") for p in web.iter("port")}
    assert services["53"].get("name") == socket.getservbyport(53, "udp")  # type: ignore[union-attr]


def test_more_than_25_open_filtered_ports_are_extraports_with_the_udp_proto():
    root = ET.fromstring(report_to_xml(mixed_report()))
    bulk = list(root.iter("host"))[2]
    assert ports_of(report_to_xml(mixed_report()), "127.0.0.12") == [
        ("udp", str(p), "closed", "port-unreach") for p in range(40030, 40040)
    ]
    extra = bulk.find("ports/extraports")
    assert extra is not None
    assert extra.attrib == {"state": "open|filtered", "count": "30"}
    assert [r.attrib for r in extra] == [
        {"reason": "no-response", "count": "30", "proto": "udp", "ports": "40000-40029"}
    ]
    assert bulk.find("status").attrib == {  # type: ignore[union-attr]
        "state": "up", "reason": "port-unreach", "reason_ttl": "0"
    }  # fmt: skip


def test_the_audit_script_names_udp_ports():
    root = ET.fromstring(report_to_xml(mixed_audit()))
    script = next(root.iter("host")).find("hostscript/script")
    assert script is not None
    assert script.get("output") == "\n".join(
        [
            "NOT compliant",
            "  port 161/udp open|filtered (no response; expected open) (no-response)",
            "  unconfirmed: port 500/udp open|filtered (no response; not in allowed_open, not "
            "proven open)",
            "drift: opened 53/udp; closed 443; 137/udp closed->filtered; "
            "161/udp open->open|filtered",
        ]
    )
    violation = script.find("table[@key='violations']/table")
    assert violation is not None
    assert [(e.get("key"), e.text) for e in violation] == [
        ("port", "161"),
        ("protocol", "udp"),
        ("expected", "open"),
        ("actual", "open|filtered"),
        ("reason", "no-response"),
    ]


@pytest.mark.parametrize("make", [mixed_report, mixed_audit])
def test_mixed_reports_are_valid_against_nmaps_dtd(make, tmp_path):
    path = tmp_path / "mixed.xml"
    path.write_text(report_to_xml(make()))
    assert xmllint_errors(path) == ""


def test_libnmap_reads_udp_ports_like_the_json_report():
    audit = mixed_audit()
    parsed = parse_xml(report_to_xml(audit))
    web = report_to_dict(audit)["hosts"][0]
    listed = {(p["port"], p["protocol"]): p["state"] for p in web["ports"]}
    closed = {(80, "tcp"), (123, "udp"), (1900, "udp")}
    assert {(s.port, s.protocol): s.state for s in parsed.hosts[0].services} == {
        **listed, **dict.fromkeys(closed, "closed")
    }  # fmt: skip


def test_ndiff_reads_udp_ports_and_their_changes(tmp_path):
    before = mixed_report()
    web = before.hosts[0]
    changed = HostResult(
        web.name,
        web.address,
        web.status,
        tuple(
            udp(161, OPEN, "udp-response") if p.key == U(161) else p for p in web.ports
        ),  # open|filtered -> open
        web.closed_count,
        scanned=web.scanned,
    )
    after = ScanReport((changed,), before.options, before.started, before.finished, 9)
    old, new = tmp_path / "before.xml", tmp_path / "after.xml"
    old.write_text(report_to_xml(ScanReport((web,), before.options, STARTED, STARTED + 3, 9)))
    new.write_text(report_to_xml(after))
    done = ndiff(str(old), str(new))
    lines = [" ".join(line.split()) for line in done.stdout.splitlines()]
    assert "-161/udp open|filtered snmp" in lines
    assert "+161/udp open snmp" in lines


# Real scans: ours and nmap's of the same UDP ports on loopback


@pytest.fixture
def udp_ports() -> Iterator[tuple[int, int, int]]:
    """(an echoing port, a silent bound port, a closed port) on 127.0.0.1."""
    echo = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    free = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for sock in (echo, silent, free):
        sock.bind(("127.0.0.1", 0))
    closed = free.getsockname()[1]
    free.close()
    echo.settimeout(0.2)
    stop = threading.Event()

    def answer() -> None:
        while not stop.is_set():
            try:
                _, peer = echo.recvfrom(2048)
            except TimeoutError:
                continue
            echo.sendto(b"pong", peer)

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    try:
        yield echo.getsockname()[1], silent.getsockname()[1], closed
    finally:
        stop.set()
        thread.join(timeout=5)
        echo.close()
        silent.close()


def test_our_udp_scan_reads_like_nmaps_in_ndiff(udp_ports, tmp_path):
    nmap = tool("nmap")
    spec = ",".join(map(str, udp_ports))
    ours = tmp_path / "ours.xml"
    report = scan(build_request(["127.0.0.1"], ports=f"U:{spec}", timeout=0.5))
    ours.write_text(report_to_xml(report))
    theirs = tmp_path / "nmap.xml"
    # loopback only, no DNS, no host discovery, two retries at most
    done = subprocess.run(
        [nmap, "-sU", "-n", "-Pn", "--max-retries", "2", "-p", spec, "127.0.0.1",
         "-oX", str(theirs)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    if done.returncode != 0:
        pytest.skip(f"nmap -sU did not run here (it needs root): {done.stderr.strip()}")
    assert xmllint_errors(ours) == ""
    assert xmllint_errors(theirs) == ""
    echo, silent, closed = udp_ports
    expected = sorted(
        [
            ("udp", str(echo), "open", "udp-response"),
            ("udp", str(silent), "open|filtered", "no-response"),
            ("udp", str(closed), "closed", "port-unreach"),
        ],
        key=lambda p: int(p[1]),
    )
    assert ports_of(ours.read_text(), "127.0.0.1") == expected
    assert ports_of(theirs.read_text(), "127.0.0.1") == expected
    root = ET.fromstring(ours.read_text())
    assert [s.get("type") for s in root.iter("scaninfo")] == ["udp"]
    diff = ndiff(str(ours), str(theirs))
    # the same ports and states: a port line differs at most by the service nmap calls
    # "unknown" (we name none that the services table does not name)
    said = {"-": set(), "+": set()}
    for line in diff.stdout.splitlines():
        if line[:1] in "+-" and "/udp" in line:
            said[line[0]].add(tuple(line[1:].split()[:2]))
    assert said["-"] == said["+"], diff.stdout


# Pages and the table


def test_markdown_shows_udp_ports_open_filtered_and_the_rate_limit():
    text = audit_to_markdown(mixed_audit())
    header = "| Host | Address | Status | Open | Filtered | Open\\|filtered | Closed | Compliant |"
    assert header in text
    assert (
        "| web1 | 127.0.0.10 | up; its ICMP rate limit slowed the UDP scan | 22,53/udp | "
        "443,137/udp | 161/udp,500/udp | 3 | **no** |"
    ) in text
    assert "| web1 | 161/udp | open | **open\\|filtered** | no-response |" in text
    assert "| web1 | 500/udp | not open | **open\\|filtered** | no-response |" in text
    assert "| web1 | 127.0.0.10 | **changed** | 161/udp | open | open\\|filtered |" in text
    assert "| Ports | 3 open, 2 filtered, 32 open\\|filtered, 14 closed, 0 with errors |" in text


def test_a_tcp_only_page_has_no_open_filtered_column():
    tcp_only = ScanReport((mixed_report().hosts[1],), ScanOptions(), STARTED, STARTED + 1, 2)
    text = audit_to_markdown(Audit(tcp_only))
    assert "| Host | Address | Status | Open | Filtered | Closed | Compliant |" in text
    assert "open|filtered" not in text


def test_html_shows_udp_ports():
    page = audit_to_html(mixed_audit())
    for shown in ("161/udp", "500/udp", "161/udp,500/udp", "open|filtered", "ICMP rate limit"):
        assert shown in page


def test_the_table_shows_open_filtered_ports_and_notes_the_rate_limit():
    text = render_table(mixed_audit())
    lines = text.splitlines()
    assert lines[1].split() == [
        "web1", "127.0.0.10", "up", "22,53/udp", "443,137/udp", "open|filtered:161/udp,500/udp",
        "3",
    ]  # fmt: skip
    assert "32 open|filtered" in text
    assert (
        "note: web1 (127.0.0.10): its ICMP rate limit slowed the UDP scan (closed ports answer "
        "about one a second)"
    ) in lines
    assert (
        "  unconfirmed: web1: port 500/udp open|filtered (no response; not in allowed_open, not "
        "proven open)"
    ) in lines
    assert "  web1 port 161/udp open -> open|filtered" in lines


# No port key anywhere


_KEY = re.compile(r"(?<![0-9.])1[0-9]{6}(?![0-9])")  # 1000001-1065535: a UDP port key


@pytest.mark.parametrize(
    "render",
    [report_to_json, report_to_xml, audit_to_markdown, audit_to_html, render_table],
    ids=["json", "xml", "markdown", "html", "table"],
)
def test_no_output_shows_a_port_key(render):
    text = render(mixed_audit())
    assert "udp" in text
    assert _KEY.findall(text) == []


def test_a_real_udp_audit_judges_what_the_network_showed(udp_ports, tmp_path):
    from nornir_portscan.audit.gates import run_audit

    echo, silent, closed = udp_ports
    policy = {
        "expect_open": f"U:{echo},{silent}",
        "expect_closed": f"U:{closed}",
        "allowed_open": f"U:{echo}",
    }
    with pytest.raises(ValueError) as refused:
        build_request(["127.0.0.1"], ports=f"U:{closed}", policy=policy)
    assert str(refused.value) == (
        f"expectations: port {silent}/udp is in expect_open but not in allowed_open; allow what "
        f"you expect open, e.g. allowed_open: 'U:{silent}'"
    )
    policy["allowed_open"] = f"U:{echo},{silent}"
    request = build_request(["127.0.0.1"], ports=f"U:{closed}", policy=policy, timeout=0.5)
    audit = run_audit(request)
    (verdict,) = audit.verdicts
    assert verdict is not None
    assert [(v.port, v.actual, v.reason) for v in verdict.violations] == [
        (U(silent), "open|filtered", "no-response")
    ]
    assert audit.failure(0) == (
        f"127.0.0.1: port {silent}/udp open|filtered (no response; expected open)"
    )
    # without the silent port in the allow-list it is unconfirmed, and the host passes
    loose = {
        "expect_open": f"U:{echo}",
        "expect_closed": f"U:{closed}",
        "allowed_open": f"U:{echo}",
    }
    request = build_request(["127.0.0.1"], ports=f"U:{silent}", policy=loose, timeout=0.5)
    audit = run_audit(request)
    (verdict,) = audit.verdicts
    assert verdict is not None
    assert (verdict.compliant, verdict.violations) == (True, ())
    assert [(u.port, u.actual) for u in verdict.unconfirmed] == [(U(silent), "open|filtered")]
    path = tmp_path / "audit.xml"
    path.write_text(report_to_xml(audit))
    assert xmllint_errors(path) == ""
    entry = report_to_dict(audit)["hosts"][0]
    assert (entry["passed"], entry["unconfirmed"][0]["port"]) == (True, silent)
