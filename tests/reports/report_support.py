"""Helpers of the report tests: hand-built audits for exact checks, a real audit of loopback
listeners, and the tools that read what we write (xmllint, ndiff, nmap, python-libnmap)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from support import Listeners, closed_port, listening_ports

from nornir_portscan import build_request
from nornir_portscan.audit.drift import Drift, HostDrift, PortChange
from nornir_portscan.audit.gates import Audit, Unmet, WaitResult, run_audit
from nornir_portscan.audit.policy import HostVerdict, Violation, parse_policy
from nornir_portscan.models import (
    HostResult,
    HostStatus,
    PortResult,
    PortState,
    ScanOptions,
    ScanReport,
)
from nornir_portscan.reports.data import report_to_dict

DTD = Path("/usr/share/nmap/nmap.dtd")
STARTED = 1767225600.0  # 2026-01-01T00:00:00Z
OPEN, CLOSED, FILTERED, ERROR = (
    PortState.OPEN,
    PortState.CLOSED,
    PortState.FILTERED,
    PortState.ERROR,
)


def tool(name: str) -> str:
    """The path of a command-line tool; skips the test when it is not installed."""
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name!r} is not installed (Debian: {DEBIAN.get(name, name)})")
    return path


DEBIAN = {"xmllint": "libxml2-utils", "ndiff": "ndiff", "nmap": "nmap", "chromium": "chromium"}


def xmllint_errors(path: Path) -> str:
    """What ``xmllint`` says about ``path`` checked against nmap's DTD ('' when it is valid)."""
    xmllint = tool("xmllint")
    if not DTD.exists():
        pytest.skip(f"nmap's DTD is missing at {DTD} (Debian: nmap)")
    done = subprocess.run(
        [xmllint, "--noout", "--nonet", "--dtdvalid", str(DTD), str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode in (0, 3, 4), done.stderr  # 3, 4: validation errors
    return done.stderr


def ndiff(*args: str) -> subprocess.CompletedProcess[str]:
    """Run nmap's ``ndiff``; exit code 0 means no differences and 1 differences."""
    done = subprocess.run([tool("ndiff"), *args], capture_output=True, text=True, timeout=60)
    assert done.returncode in (0, 1), done.stderr
    assert done.stderr == ""
    return done


def port(number: int, state: PortState, reason: str, rtt: float | None = 0.25) -> PortResult:
    return PortResult(number, state, reason, rtt if state is not FILTERED else None, 1)


def hand_report() -> ScanReport:
    """Four hosts: one with violations and drift, one compliant, one unresolved, one timed out."""
    web = HostResult(
        "web",
        "127.0.0.10",
        HostStatus.UP,
        (
            port(22, OPEN, "syn-ack", 0.2),
            port(80, OPEN, "syn-ack", 0.4),
            port(8443, FILTERED, "no-response"),
        ),
        closed_count=2,
        scanned=(22, 80, 443, 8080, 8443),
    )
    db = HostResult(
        "127.0.0.11",
        "127.0.0.11",
        HostStatus.UP,
        (port(5432, OPEN, "syn-ack", 0.3),),
        closed_count=1,
        scanned=(22, 5432),
    )
    gone = HostResult(
        "gone.example", None, HostStatus.UNRESOLVED, error="Name or service not known"
    )
    slow = HostResult(
        "slow",
        "::1",
        HostStatus.TIMED_OUT,
        (port(22, ERROR, "EMFILE", None),),
        closed_count=0,
        error="host timeout after 5 s",
        scanned=(22,),
    )
    return ScanReport(
        (web, db, gone, slow),
        ScanOptions(),
        started=STARTED,
        finished=STARTED + 1.25,
        probes_sent=12,
        warnings=("raised the open-files limit -- to 4096",),
    )


def hand_audit(*, wait: bool = False) -> Audit:
    report = hand_report()
    verdicts = (
        HostVerdict(
            "web",
            False,
            (
                Violation(80, "not open", "open", "syn-ack"),
                Violation(443, "open", "closed", "conn-refused"),
            ),
        ),
        HostVerdict("127.0.0.11", True),
        HostVerdict("gone.example", None, error="Name or service not known"),
        None,
    )
    drift = Drift(
        (
            HostDrift(
                "web",
                "127.0.0.10",
                opened=(80,),
                closed=(443,),
                changed=(PortChange(8443, "closed", "filtered"),),
            ),
        ),
        appeared=("127.0.0.11",),
        disappeared=("old (127.0.0.12)",),
        rechecked=3,
        confirmed=3,
    )
    waited = None
    if wait:
        waited = WaitResult(
            False,
            12.5,
            4,
            (Unmet("web", 443, "open", "closed"), Unmet("gone.example", None, "judged", "err")),
        )
    return Audit(report, verdicts, drift, waited)


@pytest.fixture
def audit() -> Audit:
    """A hand-built audit with policies and drift, no wait."""
    return hand_audit()


def named_ports() -> set[int]:
    """TCP ports that nmap's or the system's services table names."""
    named = set()
    for table in (Path("/usr/share/nmap/nmap-services"), Path("/etc/services")):
        try:
            lines = table.read_text(errors="replace").splitlines()
        except OSError:
            continue
        for line in lines:
            fields = line.split("#", 1)[0].split()
            if len(fields) >= 2 and fields[1].endswith("/tcp"):
                named.add(int(fields[1].split("/")[0]))
    return named


_NAMED = named_ports()


def unnamed_port(host: str) -> int:
    """A free port that no services table names, so nmap and we both show no service name."""
    while True:
        port = closed_port(host)
        if port not in _NAMED:
            return port


@dataclass
class RealAudit:
    """A baseline scan and an audit of the same loopback listeners after a change."""

    before: Audit
    after: Audit
    addresses: list[str]
    spec: str
    gone: int  # open in the baseline, closed now (on addresses[0])
    new: int  # closed in the baseline, open now (on addresses[1])
    low_listening: dict[str, set[int]]  # listeners in 1-30 we did not open (wildcard binds)


@pytest.fixture(scope="session")
def real_audit() -> Iterator[RealAudit]:
    """Three hosts on 127.0.0.4x, ports 1-30 plus five listener ports.

    After the baseline, one listener closes (.41) and one opens (.42). Policies: .41 expects
    both of its listeners open (one violation), .42 allows only its first listener (one
    violation), .43 expects its listener open and port 1 closed (compliant)."""
    stays, leaves = Listeners(), Listeners()
    try:
        addresses = ["127.0.0.41", "127.0.0.42", "127.0.0.43"]
        a = stays.open(addresses[0], unnamed_port(addresses[0]))
        gone = leaves.open(addresses[0], unnamed_port(addresses[0]))
        c = stays.open(addresses[1], unnamed_port(addresses[1]))
        new = unnamed_port(addresses[1])
        e = stays.open(addresses[2], unnamed_port(addresses[2]))
        spec = f"1-30,{a},{gone},{c},{new},{e}"
        request = build_request(addresses, spec)
        before = run_audit(request)
        leaves.close()
        stays.open(addresses[1], new)
        policies = [
            parse_policy({"expect_open": f"{a},{gone}"}),
            parse_policy({"allowed_open": str(c)}),
            parse_policy({"expect_open": str(e), "expect_closed": "1"}),
        ]
        after = run_audit(request, policies, baseline=report_to_dict(before), recheck=2)
        low = {addr: {p for p in listening_ports(addr) if p <= 30} for addr in addresses}
        yield RealAudit(before, after, addresses, spec, gone, new, low)
    finally:
        stays.close()
        leaves.close()


def parse_xml(text: str) -> Any:
    """python-libnmap's report of ``text``; skips when python-libnmap is not installed."""
    parser = pytest.importorskip(
        "libnmap.parser", reason="python-libnmap is not installed (pip: python-libnmap)"
    )
    return parser.NmapParser.parse_fromstring(text)
