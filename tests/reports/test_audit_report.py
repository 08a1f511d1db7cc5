"""The audit report: exact Markdown of a hand-built audit, escaped self-contained HTML, the file
writer, and the HTML page of a real audit rendered by headless Chromium."""

from __future__ import annotations

import dataclasses
import re
import struct
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from report_support import STARTED, RealAudit, hand_audit, hand_report, port, tool

from nornir_portscan.audit.gates import Audit
from nornir_portscan.audit.policy import HostVerdict, Violation
from nornir_portscan.errors import InputError
from nornir_portscan.models import HostResult, HostStatus, PortState, ScanOptions, ScanReport
from nornir_portscan.reports.files import ReportFiles, page_format, write_reports

from nornir_portscan.reports.pages import (  # isort: skip
    audit_to_html,
    audit_to_markdown,
)

HAND_MARKDOWN = """\
# Port exposure audit

**FAILED: violations, drift or unmet expectations**

2026-01-01T00:00:00.000+00:00 to 2026-01-01T00:00:01.250+00:00

| Summary | |
|---|---|
| Hosts | 4 |
| Up | 2 |
| Compliant | 1 |
| Non-compliant | **1** |
| Not judged (error) | **1** |
| Violations | **2** |
| Hosts drifted | **1** |
| Hosts appeared | **1** |
| Hosts disappeared | **1** |
| Wait | **NOT converged: 2 unmet after 4 rounds in 12.50 s** |
| Ports | 3 open, 1 filtered, 3 closed, 1 with errors |
| Duration | 1.25 s, 12 probes |

## Hosts

| Host | Address | Status | Open | Filtered | Closed | Compliant |
|---|---|---|---|---|---|---|
| web | 127.0.0.10 | up | 22,80 | 8443 | 2 | **no** |
| 127.0.0.11 | 127.0.0.11 | up | 5432 | — | 1 | yes |
| gone.example | — | unresolved (Name or service not known) | — | — | 0 | error |
| slow | ::1 | timed_out (host timeout after 5 s); errors on 22 | — | — | 0 | — |

## Violations

| Host | Port | Expected | Actual | Reason |
|---|---|---|---|---|
| web | 80 | not open | **open** | syn-ack |
| web | 443 | open | **closed** | conn-refused |

## Drift

| Host | Address | Change | Port | Before | After |
|---|---|---|---|---|---|
| web | 127.0.0.10 | **opened** | 80 | not open | open |
| web | 127.0.0.10 | **closed** | 443 | open | not open |
| web | 127.0.0.10 | **changed** | 8443 | closed | filtered |
| 127.0.0.11 | — | **appeared** | — | — | — |
| old (127.0.0.12) | — | **disappeared** | — | — | — |

Re-checked 3 differing ports; 3 confirmed.

## Wait

| Host | Port | Expected | Actual |
|---|---|---|---|
| web | 443 | open | **closed** |
| gone.example | — | judged | **err** |

## Warnings

- raised the open-files limit -- to 4096
"""


def test_markdown_of_a_hand_built_audit_is_exact():
    assert audit_to_markdown(hand_audit(wait=True)) == HAND_MARKDOWN


def test_markdown_of_a_plain_scan_has_no_audit_sections():
    text = audit_to_markdown(hand_report())
    assert text == audit_to_markdown(Audit(hand_report()))
    assert text.split("## Hosts")[0].splitlines()[2:] == [
        "**scan only: no expectations**",
        "",
        "2026-01-01T00:00:00.000+00:00 to 2026-01-01T00:00:01.250+00:00",
        "",
        "| Summary | |",
        "|---|---|",
        "| Hosts | 4 |",
        "| Up | 2 |",
        "| Compliance | no policy |",
        "| Drift | not compared |",
        "| Wait | not requested |",
        "| Ports | 3 open, 1 filtered, 3 closed, 1 with errors |",
        "| Duration | 1.25 s, 12 probes |",
        "",
    ]
    assert "| web | 127.0.0.10 | up | 22,80 | 8443 | 2 | — |" in text.splitlines()
    assert [line for line in text.splitlines() if line.startswith("## ")] == [
        "## Hosts",
        "## Warnings",
    ]


def test_markdown_of_a_passing_audit():
    report = hand_report()
    passing = Audit(
        dataclasses.replace(report, hosts=report.hosts[1:2], warnings=()),
        (HostVerdict("127.0.0.11", True),),
    )
    text = audit_to_markdown(passing)
    assert text.splitlines()[2] == "**PASSED: every expectation met**"
    assert text.endswith("## Violations\n\nNo violations.\n")


def test_markdown_escapes_table_syntax():
    host = HostResult("a|b*c_", "127.0.0.1", HostStatus.UP, (port(80, PortState.OPEN, "x"),))
    report = ScanReport((host,), ScanOptions(), STARTED, STARTED + 1, 1)
    rows = [line for line in audit_to_markdown(report).splitlines() if "127.0.0.1" in line]
    assert rows == ["| a\\|b\\*c\\_ | 127.0.0.1 | up | 80 | — | 0 | — |"]


# HTML


class Text(HTMLParser):
    """The text of a page (headings as "## Title"), and every tag with its attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.chunks: list[str] = []
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self._in: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag not in ("meta",):
            self._in.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in self._in:
            del self._in[len(self._in) - 1 - self._in[::-1].index(tag) :]

    def handle_data(self, data: str) -> None:
        if not data.strip() or {"style", "title"} & set(self._in):
            return
        self.chunks.append(("## " if "h2" in self._in else "") + data.strip())


def page_text(html: str) -> Text:
    parser = Text()
    parser.feed(html)
    return parser


def test_html_escapes_every_value_and_loads_nothing():
    evil = '<img src=x onerror="alert(1)">&amp;'
    host = HostResult(evil, "127.0.0.1", HostStatus.UP, (port(80, PortState.OPEN, "syn-ack"),))
    report = ScanReport((host,), ScanOptions(), STARTED, STARTED + 1, 1, warnings=(evil,))
    verdict = HostVerdict(evil, False, (Violation(80, "not open", "open", evil),))
    html = audit_to_html(Audit(report, (verdict,)))
    assert "<img" not in html
    assert html.count("&lt;img src=x onerror=&quot;alert(1)&quot;&gt;&amp;amp;") == 4
    parsed = page_text(html)
    assert parsed.chunks.count(evil) == 4  # host cell, violation host and reason, warning
    assert {tag for tag, _ in parsed.tags} == {
        "html", "head", "meta", "title", "style", "body", "h1", "div", "p", "section", "h2",
        "table", "thead", "tr", "th", "tbody", "td", "ul", "li",
    }  # fmt: skip
    assert not [
        (tag, attrs) for tag, attrs in parsed.tags if {"src", "href", "action"} & attrs.keys()
    ]
    assert not re.search(r"url\(|@import|https?:", html)


def test_html_of_a_plain_scan():
    html = audit_to_html(hand_report())
    assert html == audit_to_html(Audit(hand_report()))
    chunks = page_text(html).chunks
    assert chunks[:4] == [
        "Port exposure audit",
        "scan only: no expectations",
        "2026-01-01T00:00:00.000+00:00 to 2026-01-01T00:00:01.250+00:00",
        "Hosts",
    ]
    assert [c for c in chunks if c.startswith("## ")] == ["## Hosts", "## Warnings"]
    assert table_rows(chunks, "Hosts", 7)[0] == ["web", "127.0.0.10", "up", "22,80", "8443",
                                                 "2", "—"]  # fmt: skip


# Writing a file


def write_report(path, audit):
    """A readable report to ``path``, its format by the suffix, as the CLI's --report."""
    write_reports(ReportFiles(**{page_format(path): path}), audit)


@pytest.mark.parametrize(
    ("name", "first_line"),
    [
        ("audit.md", "# Port exposure audit"),
        ("audit.html", "<!DOCTYPE html>"),
        ("audit.htm", "<!DOCTYPE html>"),
        ("AUDIT.HTML", "<!DOCTYPE html>"),
    ],
)
def test_write_report_picks_the_format_from_the_suffix(name, first_line, tmp_path, audit):
    path = tmp_path / name
    write_report(path, audit)
    assert path.read_text(encoding="utf-8").splitlines()[0] == first_line


@pytest.mark.parametrize("name", ["x.pdf", "audit", "audit.json"])
def test_write_report_refuses_other_suffixes(name, tmp_path, audit):
    with pytest.raises(InputError) as caught:
        write_report(name, audit)
    assert str(caught.value) == (
        f"unknown report format {name!r}: use a .md or .html file name, e.g. 'audit.html'"
    )
    assert isinstance(caught.value, ValueError)
    assert list(tmp_path.iterdir()) == []


# Headless Chromium


def chromium(tmp_path: Path, page: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Headless Chromium on a file:// page only, with every background service off."""
    browser = tool("chromium")
    return subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--disable-extensions", f"--user-data-dir={tmp_path / 'profile'}",
         *args, page.resolve().as_uri()],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


@pytest.fixture
def rendered(real_audit: RealAudit, tmp_path: Path) -> tuple[Text, Path]:
    """The real audit's page as Chromium rendered it (its DOM), and the page's path."""
    page = tmp_path / "audit.html"
    write_report(page, real_audit.after)
    done = chromium(tmp_path, page, "--dump-dom")
    assert done.returncode == 0, done.stderr
    assert '<html lang="en">' in done.stdout[:100], done.stdout[:100]
    return page_text(done.stdout), page


def test_chromium_shows_the_summary_numbers(rendered):
    chunks = rendered[0].chunks
    start = chunks.index("Hosts")  # the first card
    assert chunks[start : start + 18] == [
        "Hosts", "3",
        "Up", "3",
        "Compliant", "1",
        "Non-compliant", "2",
        "Not judged (error)", "0",
        "Violations", "2",
        "Hosts drifted", "2",
        "Hosts appeared", "0",
        "Hosts disappeared", "0",
    ]  # fmt: skip
    assert chunks[1] == "FAILED: violations, drift or unmet expectations"
    assert chunks[start + 18 : start + 20] == ["Wait", "not requested"]


def table_rows(chunks: list[str], title: str, width: int) -> list[list[str]]:
    """The body rows of the table under the heading ``title``."""
    start = chunks.index(f"## {title}") + 1 + width  # past the header row
    end = start
    while end < len(chunks) and not chunks[end].startswith(("## ", "Re-checked")):
        end += 1
    body = chunks[start:end]
    assert len(body) % width == 0, body
    return [body[i : i + width] for i in range(0, len(body), width)]


def test_chromium_shows_the_violations_and_the_drift(rendered, real_audit: RealAudit):
    chunks = rendered[0].chunks
    first, second, third = real_audit.addresses
    assert table_rows(chunks, "Violations", 5) == [
        [first, str(real_audit.gone), "open", "closed", "conn-refused"],
        [second, str(real_audit.new), "not open", "open", "syn-ack"],
    ]
    assert table_rows(chunks, "Drift", 6) == [
        [first, first, "closed", str(real_audit.gone), "open", "not open"],
        [second, second, "opened", str(real_audit.new), "not open", "open"],
    ]
    assert chunks[-1] == "Re-checked 2 differing ports; 2 confirmed."
    hosts = table_rows(chunks, "Hosts", 7)
    assert [(row[0], row[2], row[6]) for row in hosts] == [
        (first, "up", "no"),
        (second, "up", "no"),
        (third, "up", "yes"),
    ]
    # highlighted rows: two non-compliant hosts, two violations, two drift rows
    classes = [attrs.get("class") for tag, attrs in rendered[0].tags if tag == "tr"]
    assert (classes.count("violation"), classes.count("drift")) == (4, 2)


def test_chromium_screenshot_of_the_page(rendered, tmp_path):
    """A picture to look at; here only its size is checked."""
    shot = tmp_path / "audit.png"
    done = chromium(tmp_path, rendered[1], f"--screenshot={shot}", "--window-size=1200,900")
    assert done.returncode == 0, done.stderr
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", data[16:24]) == (1200, 900)
