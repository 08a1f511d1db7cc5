"""The CLI writes every report format from one scan."""

import json
import xml.etree.ElementTree as ET

from support import closed_port


def test_json_xml_and_html_from_one_scan(listeners, run_cli, tmp_path):
    port = listeners.open("127.0.0.31")
    closed = closed_port("127.0.0.31")
    out = {s: tmp_path / f"scan.{s}" for s in ("json", "xml", "html")}
    done = run_cli("-p", f"{port},{closed}", "127.0.0.31", "--json", str(out["json"]),
                   "--xml", str(out["xml"]), "--report", str(out["html"]),
                   "--expect-open", str(port))  # fmt: skip
    assert done.returncode == 0, done.stderr
    (host,) = json.loads(out["json"].read_text())["hosts"]
    assert (host["open_ports"], host["closed_count"], host["compliant"]) == ([port], 1, True)
    xml_host = ET.parse(out["xml"]).getroot().find("host")
    assert xml_host is not None
    states = {p.get("portid"): p.find("state").get("state") for p in xml_host.iter("port")}  # type: ignore[union-attr]
    assert states[str(port)] == "open"
    page = out["html"].read_text()
    assert page.startswith("<!DOCTYPE html>")
    assert "127.0.0.31" in page


def test_markdown_report(listeners, run_cli, tmp_path):
    port = listeners.open("127.0.0.32")
    report = tmp_path / "audit.md"
    done = run_cli("-p", str(port), "127.0.0.32", "--report", str(report), "--allowed-open", "1")
    assert done.returncode == 1, done.stderr
    text = report.read_text()
    assert "127.0.0.32" in text
    assert str(port) in text


def test_unknown_report_format_is_refused_before_scanning(run_cli, tmp_path):
    done = run_cli("-p", "22", "127.0.0.1", "--report", str(tmp_path / "x.pdf"))
    assert done.returncode == 2
    assert done.stderr == (
        f"portscan: error: unknown report format '{tmp_path / 'x.pdf'}': use a .md or .html "
        "file name, e.g. 'audit.html'\n"
    )
    assert not (tmp_path / "x.pdf").exists()
