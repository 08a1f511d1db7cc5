"""An interrupted scan in every report format: scanned, partly scanned and not scanned hosts
are told apart, and no host gets a network verdict (``no-response``, ``down``, a pass or a
failure of its expectations) for ports that were never scanned.

The engine runs the scheduler's fake worker (``tests/unit/fake_worker.py``: port p open when
p % 7 == 0, else closed), which never answers a unit holding port 600: with one worker and one
unit in flight the interrupt then always finds the same state. The CLI test with real sockets
is ``tests/integration/test_cli_signals.py``.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import jsonschema
import pytest
from report_support import xmllint_errors

from nornir_portscan import HostStatus, ScanOptions, ScanRequest, Target
from nornir_portscan.audit.gates import Audit, run_audit
from nornir_portscan.engine import processes
from nornir_portscan.errors import ScanInterrupted
from nornir_portscan.models import Policy, Progress
from nornir_portscan.reports.data import host_entry, render_table, report_schema, report_to_dict
from nornir_portscan.reports.nmap_xml import report_to_xml
from nornir_portscan.reports.pages import audit_to_html, audit_to_markdown

FAKE = str(Path(__file__).parent.parent / "unit" / "fake_worker.py")
PORTS = tuple(range(1, 1001))  # units of 256 ports: 1-256, 257-512, 513-768 (hangs), 769-1000


@pytest.fixture
def interrupted(monkeypatch) -> Audit:
    """h0 scanned in part (two units done, the third hangs, the fourth never sent), h1 and h2
    not at all; h0 expects 7 closed (it is open: a real violation) and 600 closed (never
    scanned), h1 expects 22 open."""
    monkeypatch.setattr(processes, "WORKER_COMMAND", [FAKE])
    monkeypatch.setenv("FAKE_HANG_ON_PORT", "600")
    targets = (
        Target("h0", "127.0.0.1", policy=Policy(expect_closed=frozenset({7, 600}))),
        Target("h1", "127.0.0.2", policy=Policy(expect_open=frozenset({22}))),
        Target("h2", "127.0.0.3", ports=(1, 2, 3)),
    )
    request = ScanRequest(targets, PORTS, ScanOptions(processes=1, concurrency=1))

    def ctrl_c_once_two_units_are_in(progress: Progress) -> None:
        if progress.done >= 512:  # only a merged unit credits its last port
            raise KeyboardInterrupt

    with pytest.raises(ScanInterrupted) as caught:
        run_audit(request, progress=ctrl_c_once_two_units_are_in)
    assert caught.value.audit is not None
    return caught.value.audit


def test_hosts_not_scanned_or_partly_scanned_have_statuses_of_their_own(interrupted):
    h0, h1, h2 = interrupted.report.hosts
    assert interrupted.report.interrupted
    assert (h0.status, h1.status, h2.status) == (
        HostStatus.INTERRUPTED,
        HostStatus.NOT_SCANNED,
        HostStatus.NOT_SCANNED,
    )
    assert (h0.scanned, h0.unscanned) == (PORTS[:512], PORTS[512:])
    assert h0.error == "488 of 1000 ports not scanned"
    assert (h1.scanned, h1.unscanned, h1.error) == (
        (),
        PORTS,
        "interrupted before any result of this host came in",
    )
    assert h2.unscanned == (1, 2, 3)


def test_the_host_entry_says_what_was_not_scanned_and_judges_only_what_was(interrupted):
    h0, h1, h2 = (host_entry(interrupted, i) for i in range(3))
    # h0 answered (closed ports): it is up, whatever it did not get to
    assert (h0["status"], h0["up"], h0["unscanned_ports"]) == ("interrupted", True, "513-1000")
    assert h0["compliant"] is False  # port 7 is open: a network answer
    assert [(v["port"], v["actual"]) for v in h0["violations"]] == [(7, "open")]  # not 600
    assert h0["passed"] is False
    assert h0["failure"] == (
        "h0 (127.0.0.1): host interrupted: 488 of 1000 ports not scanned; "
        "port 7 open (expected closed)"
    )
    for entry, ports in ((h1, "1-1000"), (h2, "1-3")):
        assert (entry["status"], entry["up"], entry["unscanned_ports"]) == (
            "not-scanned",
            False,
            ports,
        )
        assert (entry["scanned_ports"], entry["open_ports"], entry["closed_count"]) == ("", [], 0)
        assert entry["passed"] is False
        assert "not-scanned: interrupted before any result of this host came in" in entry["failure"]
    assert h1["compliant"] is None  # neither compliant nor not: nothing was asked of h1
    assert h1["violations"] == []


def test_json_counts_and_validates(interrupted):
    data = report_to_dict(interrupted)
    jsonschema.validate(data, report_schema())
    summary = data["summary"]
    assert (summary["interrupted"], summary["not_scanned"], summary["no_response"]) == (1, 2, 0)
    assert data["compliance"] == {"compliant": 0, "non_compliant": 1, "error": 1, "violations": 1}


def test_the_table_shows_the_statuses_and_the_counts(interrupted):
    table = render_table(interrupted)
    rows = {line.split()[0]: line for line in table.splitlines()[1:4]}
    assert "interrupted (488 of 1000 ports not scanned)" in rows["h0"]
    assert "not-scanned (interrupted before any result of this host came in)" in rows["h1"]
    assert "1 partly scanned, 2 not scanned" in table
    assert "no-response" not in table


def test_xml_calls_no_host_down(interrupted, tmp_path):
    text = report_to_xml(interrupted)
    hosts = ET.fromstring(text.split("\n", 3)[3]).findall("host")
    states = [(h.find("status").get("state"), h.find("status").get("reason")) for h in hosts]
    assert states == [("up", "syn-ack"), ("unknown", "not-scanned"), ("unknown", "not-scanned")]
    comment = [h.get("comment") for h in hosts][1]
    assert comment == "interrupted before any result of this host came in"
    path = tmp_path / "r.xml"
    path.write_text(text)
    assert xmllint_errors(path) == ""


@pytest.mark.parametrize("render", [audit_to_markdown, audit_to_html])
def test_pages_say_incomplete_not_passed(interrupted, render):
    # the only violation is judged on a scanned port: the page fails, and says it is partial
    page = render(interrupted)
    for text in ("FAILED", "interrupted: partial results", "not-scanned", "Not scanned"):
        assert text in page


def test_an_interrupt_with_nothing_violated_is_incomplete_never_passed(interrupted):
    from dataclasses import replace

    clean = replace(interrupted, verdicts=(None, *interrupted.verdicts[1:]))
    for page in (audit_to_markdown(clean), audit_to_html(clean)):
        assert "PASSED" not in page
        assert "INCOMPLETE: interrupted, partial results" in page
