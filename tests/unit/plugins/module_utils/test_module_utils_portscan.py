"""The collection's module_utils without a scan: the engine version check, the task's msg and
changed."""

from __future__ import annotations

import pytest
from ansible_collections.nornir_portscan.portscan.plugins.module_utils import portscan


@pytest.mark.parametrize(("text", "version"), [
    ("0.1.0", (0, 1, 0)), ("0.1", (0, 1, 0)), ("0.1.0.dev2", (0, 1, 0)), ("1.2rc1", (1, 2, 0)),
    ("unknown", None), ("", None)])
def test_version_tuple(text, version):
    assert portscan.version_tuple(text) == version


def test_the_installed_engine_is_the_one_required():
    assert portscan.ENGINE_ERROR is None


@pytest.mark.parametrize("found", ["0.0.9", "0.2.0", "unknown"])
def test_a_wrong_engine_names_the_requirement_and_the_install_command(found):
    message = portscan.engine_problem(found, "/x/nornir_portscan/__init__.py", "/usr/bin/python3")
    assert message.startswith(f"this collection needs nornir-portscan>=0.1.0,<0.2.0, found "
                              f"nornir-portscan {found} at /x/nornir_portscan/__init__.py ")
    assert message.endswith("/usr/bin/python3 -m pip install 'nornir-portscan>=0.1.0,<0.2.0'")


def test_a_missing_engine_names_the_python_and_delegate_to():
    message = portscan.engine_problem(None, python="/opt/py/bin/python")
    assert "is not installed on the host that runs the scan (Python /opt/py/bin/python;" in message
    assert "delegate_to: localhost" in message


SUMMARY = {"hosts": 3, "up": 2, "open_ports": 4, "filtered_ports": 1, "closed_ports": 7}


@pytest.mark.parametrize(("failed", "tail"), [
    ([], ""), (["web2"], "; 1 did not pass: web2"),
    ([f"h{n}" for n in range(7)], "; 7 did not pass: h0, h1, h2, h3, h4, ...")])
def test_summary_message(failed, tail):
    result = {"summary": SUMMARY, "failed_hosts": failed}
    assert portscan.summary_message(result) == (
        "scanned 3 hosts (2 up): 4 open, 1 filtered, 7 closed ports" + tail)


@pytest.mark.parametrize(("result", "changed"), [
    ({"reports": []}, False), ({"reports": ["/r.json"]}, True),
    ({"reports": [], "would_write": ["/r.json"]}, True), ({}, False)])
def test_changed_only_when_reports_are_written_or_would_be(result, changed):
    assert portscan.changed(result) is changed


@pytest.mark.parametrize(("status", "unscanned", "all_open"), [
    ("up", (), True),
    ("timed_out", (81,), False),  # 80 open, 81 never scanned: not "every port open"
    ("interrupted", (81,), False),
])
def test_all_open_only_when_every_port_asked_for_was_scanned(status, unscanned, all_open):
    from nornir_portscan.audit.gates import Audit
    from nornir_portscan.models import (
        HostResult,
        HostStatus,
        PortResult,
        PortState,
        ScanOptions,
        ScanReport,
    )

    host = HostResult("h", "127.0.0.1", HostStatus(status),
                      (PortResult(80, PortState.OPEN, "syn-ack", 0.1, 1),),
                      scanned=(80,), unscanned=unscanned)
    report = ScanReport((host,), ScanOptions(), 0.0, 1.0, 1)
    entry = portscan.host_result(Audit(report), 0)
    assert (entry["any_open"], entry["all_open"]) == (True, all_open)
