"""The module with patched arguments: its main() against real listeners on loopback."""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest
from ansible_support import REPO
from support import Listeners, closed_port

from nornir_portscan.audit.gates import Audit
from nornir_portscan.models import (
    HostResult,
    HostStatus,
    PortResult,
    PortState,
    ScanOptions,
    ScanReport,
)

pytestmark = pytest.mark.usefixtures("collection_import")


def run_module(args: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    """Run the module's main() with ``args``; return its JSON result."""
    from ansible.module_utils.testing import patch_module_args
    from ansible_collections.nornir_portscan.portscan.plugins.modules import portscan

    with patch_module_args(args), pytest.raises(SystemExit) as exited:
        portscan.main()
    result: dict[str, Any] = json.loads(capsys.readouterr().out)
    assert exited.value.code == (1 if result.get("failed") else 0)
    return result


def without_rtt(entry: dict[str, Any]) -> dict[str, Any]:
    for port in entry["ports"]:
        rtt = port.pop("rtt_ms")
        assert rtt is None or rtt >= 0
    return entry


def test_scan_returns_hosts_keyed_by_name(listeners: Listeners, capsys) -> None:
    open_port = listeners.open("127.0.0.1")
    shut = closed_port("127.0.0.1")
    result = run_module({"targets": [{"name": "web1", "address": "127.0.0.1"}],
                         "ports": f"{open_port},{shut}", "timeout": 0.5}, capsys)
    assert result["changed"] is False
    assert "failed" not in result
    assert without_rtt(result["hosts"]["web1"]) == {
        "name": "web1", "address": "127.0.0.1", "vantage": None, "status": "up", "up": True,
        "open_ports": [open_port], "filtered_ports": [], "closed_count": 1, "error_ports": [],
        "error": None, "scanned_ports": ",".join(map(str, sorted([open_port, shut]))),
        "unscanned_ports": "",
        "ports": [{"port": open_port, "protocol": "tcp", "state": "open", "reason": "syn-ack",
                   "attempts": 1}],
        "resolved": True, "timed_out": False, "any_open": True, "all_open": False,
        "passed": True, "failure": "",
    }
    assert result["failed_hosts"] == []
    assert "compliance" not in result
    assert "drift" not in result
    assert "wait" not in result
    summary = result["summary"]
    assert (summary["hosts"], summary["up"], summary["open_ports"], summary["closed_ports"],
            summary["probes_sent"]) == (1, 1, 1, 1, 2)


def test_string_targets_and_per_target_ports(listeners: Listeners, capsys) -> None:
    first = listeners.open("127.0.0.2")
    second = listeners.open("127.0.0.3")
    result = run_module({"targets": ["127.0.0.2", {"name": "b", "address": "127.0.0.3",
                                                   "ports": [second]}],
                         "ports": first}, capsys)  # an int, as YAML gives `ports: 22`
    assert {name: (h["open_ports"], h["all_open"]) for name, h in result["hosts"].items()} == {
        "127.0.0.2": ([first], True), "b": ([second], True)}


@pytest.mark.parametrize(("args", "message"), [
    ({"targets": ["127.0.0.1"], "ports": "22,90-80"},
     "invalid port range '90-80' in '22,90-80': start must be <= end, e.g. '80-90'"),
    ({"targets": [{"name": "web1", "address": "127.0.0.1", "ports": "90-80"}]},
     "ports of target 'web1': invalid port range '90-80' in '90-80': start must be <= end, "
     "e.g. '80-90'"),
    ({"targets": ["127.0.0.1"], "timeout": -1},
     "invalid timeout -1: use a number of seconds > 0, e.g. timeout=1.5"),
    ({"targets": ["127.0.0.300"]},
     "invalid target '127.0.0.300': octet 300 is out of range 0-255, e.g. '127.0.0.1' or "
     "'127.0.0.1-20'"),
    ({"targets": []},
     "no targets given: list at least one, e.g. targets: ['127.0.0.1'], or omit targets to "
     "scan the play's hosts"),
    ({"targets": [42]},
     "invalid target 42: use a string or a dict, e.g. '127.0.0.1' or "
     "{name: web1, address: 127.0.0.2, ports: '22,80'}"),
    ({"targets": [{"name": "web1", "port": 22}]},
     "invalid target {'name': 'web1', 'port': 22}: unknown key 'port', use name, address, "
     "ports, expect_open, expect_closed, expect_filtered, allowed_open, e.g. '127.0.0.1' or "
     "{name: web1, address: 127.0.0.2, ports: '22,80'}"),
    ({"targets": [{"ports": "22"}]},
     "invalid target name None: a named target needs a name (a string), e.g. name 'web1', "
     "address '127.0.0.11', ports '22,443'"),
    ({"targets": ["127.0.0.1"], "address_family": "ipx"},
     "value of address_family must be one of: ipv4, ipv6, both, got: ipx"),
    ({"targets": ["127.0.0.1"], "expect_open": "90-80"},
     "expect_open: invalid port range '90-80' in '90-80': start must be <= end, "
     "e.g. '80-90'"),
    ({"targets": ["127.0.0.1"], "expect_open": "22", "allowed_open": "80"},
     "expectations: port 22 is in expect_open but not in allowed_open; allow what you expect "
     "open, e.g. allowed_open: '22'"),
    ({"targets": [{"name": "web1", "expect_open": 22, "expect_closed": "22"}]},
     "policy of 'web1': port 22 is in both expect_open and expect_closed; give each port one "
     "expected state, e.g. expect_open: '22' and expect_closed: '23'"),
    ({"targets": [{"name": "web1", "allowed_open": "http,x"}]},
     "policy of 'web1' allowed_open: unknown service name 'x' in 'http,x': not in the "
     "services database, e.g. 'ssh' or '22'"),
    ({"targets": ["127.0.0.1"], "wait": True},
     "nothing to wait for: give expectations, e.g. expect_open='8080', a policy file, or a "
     "host's own"),
    ({"targets": ["127.0.0.1"], "expect_open": 22, "wait": True, "interval": 0},
     "invalid interval 0: use a number of seconds > 0, e.g. interval=2"),
    ({"targets": ["127.0.0.1"], "recheck": -1},
     "invalid recheck -1: use how many times to re-probe a difference from the baseline, "
     "0 to 10, e.g. recheck=3"),
    ({"targets": ["127.0.0.1"], "baseline": "/nonexistent/base.json"},
     "cannot read baseline '/nonexistent/base.json': No such file or directory"),
])
def test_bad_input_fails_with_one_line(args: dict[str, Any], message: str, capsys) -> None:
    result = run_module(args, capsys)
    assert result["failed"] is True
    assert result["msg"] == message


def test_unresolvable_target_is_a_host_status(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "ghost.invalid":  # never asked of a real resolver
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    result = run_module({"targets": [{"name": "ghost", "address": "ghost.invalid"}],
                         "ports": "22"}, capsys)
    assert "failed" not in result
    ghost = result["hosts"]["ghost"]
    assert (ghost["status"], ghost["address"], ghost["error"], ghost["up"], ghost["resolved"],
            ghost["any_open"], ghost["all_open"]) == (
        "unresolved", None, "Name or service not known", False, False, False, False)
    assert result["summary"]["unresolved"] == 1


def test_reports_are_written(listeners: Listeners, tmp_path: Path, capsys) -> None:
    port = listeners.open("127.0.0.4")
    result = run_module({"targets": ["127.0.0.4"], "ports": port,
                         "report": str(tmp_path / "r.json"),
                         "report_table": str(tmp_path / "r.txt")}, capsys)
    report = json.loads((tmp_path / "r.json").read_text())
    assert [(h["name"], h["open_ports"]) for h in report["hosts"]] == [("127.0.0.4", [port])]
    assert report["summary"] == result["summary"]
    table = (tmp_path / "r.txt").read_text().splitlines()
    assert table[0].split() == ["HOST", "ADDRESS", "STATUS", "OPEN", "FILTERED", "CLOSED"]
    assert table[1].split() == ["127.0.0.4", "127.0.0.4", "up", str(port), "-", "0"]


def test_check_mode_scans_but_writes_nothing(listeners: Listeners, tmp_path: Path,
                                             capsys) -> None:
    port = listeners.open("127.0.0.5")
    result = run_module({"targets": ["127.0.0.5"], "ports": port, "_ansible_check_mode": True,
                         "report": str(tmp_path / "r.json")}, capsys)
    assert result["hosts"]["127.0.0.5"]["open_ports"] == [port]
    assert not (tmp_path / "r.json").exists()
    # changed says what a real run would do: write the report
    assert (result["changed"], result["reports"], result["would_write"]) == (
        True, [], [str(tmp_path / "r.json")])


@pytest.mark.parametrize("option", ["report", "report_html"])
def test_report_in_a_missing_directory_fails_before_the_scan(tmp_path: Path, capsys,
                                                              option: str) -> None:
    path = tmp_path / "missing" / "r.json"
    result = run_module({"targets": ["127.0.0.1"], "ports": closed_port(), "expect_open": 1,
                         "wait": True, "wait_timeout": 60, option: str(path)}, capsys)
    what = {"report": "JSON report", "report_html": "HTML report"}[option]
    assert result["msg"] == (
        f"cannot write the {what} to '{path}': no such directory '{path.parent}'; give a "
        "path in an existing directory, e.g. 'r.json'"
    )


def test_missing_engine_names_the_version_and_how_to_install_it(
        monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    from ansible_collections.nornir_portscan.portscan.plugins.module_utils import portscan as utils
    from ansible_collections.nornir_portscan.portscan.plugins.modules import portscan

    monkeypatch.setattr(portscan, "ENGINE_ERROR", utils.engine_problem(None))
    result = run_module({"targets": ["127.0.0.1"]}, capsys)
    assert result["msg"].startswith("the nornir-portscan engine (nornir-portscan>=0.1.0,<0.2.0) "
                                    "is not installed on the host that runs the scan")
    assert f"install it with: {sys.executable} -m pip install " \
           "'nornir-portscan>=0.1.0,<0.2.0'" in result["msg"]
    assert "delegate_to: localhost" in result["msg"]


@pytest.mark.parametrize(("found", "ok"), [
    ("0.1.0", True), ("0.1.7", True), ("0.1.0.dev3", True), ("0.0.9", False),
    ("0.2.0", False), ("1.0", False), ("unknown", False)])
def test_engine_version_check(found: str, ok: bool) -> None:
    from ansible_collections.nornir_portscan.portscan.plugins.module_utils import portscan

    problem = portscan.engine_problem(found, "/site/nornir_portscan/__init__.py", "/py")
    if ok:
        assert problem is None
    else:
        assert problem == (
            f"this collection needs nornir-portscan>=0.1.0,<0.2.0, found nornir-portscan {found} "
            "at /site/nornir_portscan/__init__.py on the host that runs the scan (Python /py; "
            "without delegate_to that is each managed host, see 'Where the scan runs' in "
            "docs/ansible.md): install it with: /py -m pip install "
            "'nornir-portscan>=0.1.0,<0.2.0'")


def test_engine_requirement_is_the_same_everywhere() -> None:
    """module_utils, the execution-environment requirements and the engine's own version."""
    from ansible_collections.nornir_portscan.portscan.plugins.module_utils import portscan

    import nornir_portscan

    ee = (REPO / "meta" / "ee-requirements.txt").read_text().split("\n")
    assert portscan.ENGINE_REQUIREMENT in ee
    assert portscan.engine_problem(nornir_portscan.__version__) is None
    low, below = portscan.ENGINE_REQUIRES
    wanted = f"nornir-portscan>={'.'.join(map(str, low))},<{'.'.join(map(str, below))}"
    assert wanted == portscan.ENGINE_REQUIREMENT


def test_a_name_seen_twice_is_keyed_with_its_address() -> None:
    from ansible_collections.nornir_portscan.portscan.plugins.module_utils.portscan import (
        task_result,
    )

    ports = (PortResult(22, PortState.OPEN, "syn-ack", 0.1, 1),)
    report = ScanReport(
        hosts=(HostResult("localhost", "127.0.0.1", HostStatus.UP, ports, scanned=(22,)),
               HostResult("localhost", "::1", HostStatus.UP, ports, scanned=(22,))),
        options=ScanOptions(), started=0.0, finished=1.0, probes_sent=2)
    hosts = task_result(Audit(report))["hosts"]
    assert {k: (h["address"], h["all_open"]) for k, h in hosts.items()} == {
        "localhost": ("127.0.0.1", True), "localhost@::1": ("::1", True)}


# -- audits: expectations, fail_on_violation, wait, baseline, reports -----------------------------
def verdicts(result: dict[str, Any]) -> dict[str, tuple[Any, ...]]:
    return {name: (h["compliant"], h["violations"], h["passed"], h["failure"])
            for name, h in result["hosts"].items()}


def test_expectations_apply_to_every_target_and_a_dict_target_replaces_keys(
        listeners: Listeners, capsys) -> None:
    web = listeners.open("127.0.0.21")
    shut = closed_port("127.0.0.22")
    result = run_module({
        "targets": ["127.0.0.21",
                    # expect_open replaced, allowed_open null: no allow-list for this one
                    {"name": "db", "address": "127.0.0.22", "expect_open": shut,
                     "allowed_open": None}],
        "ports": web, "expect_open": web, "allowed_open": web, "timeout": 0.5}, capsys)
    assert "failed" not in result
    assert {name: h["policy"] for name, h in result["hosts"].items()} == {
        "127.0.0.21": {"expect_open": str(web), "expect_closed": "", "expect_filtered": "",
                       "allowed_open": str(web)},
        "db": {"expect_open": str(shut), "expect_closed": "", "expect_filtered": "",
               "allowed_open": None},
    }
    assert result["hosts"]["127.0.0.21"]["scanned_ports"] == str(web)  # ports and expectations
    assert result["hosts"]["db"]["scanned_ports"] == ",".join(map(str, sorted([web, shut])))
    assert verdicts(result) == {
        "127.0.0.21": (True, [], True, ""),
        "db": (False, [{"port": shut, "expected": "open", "actual": "closed",
                        "reason": "conn-refused"}], False,
               f"db (127.0.0.22): port {shut} closed (expected open)"),
    }
    assert result["failed_hosts"] == ["db"]
    assert result["compliance"] == {"compliant": 1, "non_compliant": 1, "error": 0,
                                    "violations": 1}


def test_allowed_open_breach_and_fail_on_violation(listeners: Listeners, capsys) -> None:
    allowed = listeners.open("127.0.0.23")
    rogue = listeners.open("127.0.0.23")
    ports = ",".join(map(str, sorted([allowed, rogue])))
    result = run_module({"targets": [{"name": "web", "address": "127.0.0.23"}, "127.0.0.24"],
                         "ports": ports, "allowed_open": allowed, "fail_on_violation": True},
                        capsys)
    assert result["failed"] is True
    assert result["msg"] == f"1 of 2 hosts did not pass: web (127.0.0.23): port {rogue} open " \
                            f"(not in allowed_open)"
    assert verdicts(result)["web"] == (
        False, [{"port": rogue, "expected": "not open", "actual": "open", "reason": "syn-ack"}],
        False, f"web (127.0.0.23): port {rogue} open (not in allowed_open)")
    assert result["hosts"]["127.0.0.24"]["passed"] is True  # the result is all there


def test_fail_on_violation_with_one_host_says_why(capsys) -> None:
    shut = closed_port("127.0.0.25")
    result = run_module({"targets": ["127.0.0.25"], "expect_open": shut,
                         "fail_on_violation": True}, capsys)
    assert result["msg"] == f"127.0.0.25: port {shut} closed (expected open)"
    assert result["failed_hosts"] == ["127.0.0.25"]


def test_wait_converges_when_the_port_opens_late(listeners: Listeners, capsys,
                                                monkeypatch) -> None:
    from ansible_collections.nornir_portscan.portscan.plugins.module_utils import portscan

    port = closed_port("127.0.0.26")
    real, rounds = portscan.scan, []

    def scan_then_open(request, **kwargs):  # the port opens after the first round
        report = real(request, **kwargs)
        rounds.append(request)
        if len(rounds) == 1:
            listeners.open("127.0.0.26", port)
        return report

    monkeypatch.setattr(portscan, "scan", scan_then_open)
    result = run_module({"targets": ["127.0.0.26"], "expect_open": port, "ports": port,
                         "wait": True, "wait_timeout": 30, "interval": 0.1,
                         "fail_on_violation": True}, capsys)
    assert "failed" not in result, result.get("msg")
    wait = result["wait"]
    assert (wait["converged"], wait["unmet"], wait["rounds"]) == (True, [], 2)
    host = result["hosts"]["127.0.0.26"]
    assert (host["open_ports"], host["wait"], host["passed"]) == (
        [port], {"converged": True, "elapsed": wait["elapsed"], "rounds": wait["rounds"],
                 "unmet": []}, True)


def test_wait_that_never_converges_fails_the_host(capsys) -> None:
    port = closed_port("127.0.0.27")
    result = run_module({"targets": ["127.0.0.27"], "expect_open": port, "ports": port,
                         "wait": True, "wait_timeout": 0.6, "interval": 0.2}, capsys)
    assert "failed" not in result  # without fail_on_violation
    assert result["wait"]["converged"] is False
    assert result["wait"]["unmet"] == [
        {"host": "127.0.0.27", "port": port, "expected": "open", "actual": "closed"}]
    assert result["wait"]["rounds"] >= 1  # how many fit: the fake clock's tests (tests/unit)
    host = result["hosts"]["127.0.0.27"]
    assert host["wait"] == {"converged": False, "elapsed": result["wait"]["elapsed"],
                            "rounds": result["wait"]["rounds"], "unmet": [
        {"port": port, "expected": "open", "actual": "closed"}]}
    assert (host["passed"], host["failure"]) == (
        False, f"127.0.0.27: did not converge within 0.6 s: port {port} closed (expected open)")
    assert result["failed_hosts"] == ["127.0.0.27"]


@pytest.mark.parametrize(("expect_open", "unexpected"), [(False, True), (True, False)])
def test_baseline_drift_fails_unless_expected(listeners: Listeners, tmp_path: Path, capsys,
                                              expect_open: bool, unexpected: bool) -> None:
    kept = listeners.open("127.0.0.28")
    later = closed_port("127.0.0.28")
    ports = ",".join(map(str, sorted([kept, later])))
    baseline = tmp_path / "baseline.json"
    run_module({"targets": ["127.0.0.28"], "ports": ports, "report": str(baseline)}, capsys)
    listeners.open("127.0.0.28", later)
    args: dict[str, Any] = {"targets": ["127.0.0.28"], "ports": ports,
                            "baseline": str(baseline), "recheck": 1}
    if expect_open:
        args["expect_open"] = later
    result = run_module(args, capsys)
    assert result["drift"] == {"drifted": True, "hosts_changed": 1, "appeared": [],
                               "disappeared": [], "rechecked": 1, "confirmed": 1}
    host = result["hosts"]["127.0.0.28"]
    assert host["drift"] == {"opened": [later], "closed": [], "changed": [],
                             "unexpected": [later] if unexpected else [], "in_baseline": True}
    assert (host["passed"], host["failure"]) == (
        (False, f"127.0.0.28: unexpected drift since the baseline: port {later} not open -> "
                "open") if unexpected else (True, ""))


def test_audit_reports_are_written(listeners: Listeners, tmp_path: Path, capsys) -> None:
    port = listeners.open("127.0.0.29")
    shut = closed_port("127.0.0.29")
    paths = {key: tmp_path / f"r.{ext}" for key, ext in [
        ("report", "json"), ("report_table", "txt"), ("report_xml", "xml"),
        ("report_markdown", "md"), ("report_html", "html")]}
    result = run_module({"targets": [{"name": "web", "address": "127.0.0.29"}],
                         "ports": port, "expect_open": f"{port},{shut}",
                         **{k: str(v) for k, v in paths.items()}}, capsys)
    assert result["failed_hosts"] == ["web"]
    report = json.loads(paths["report"].read_text())
    assert report["compliance"] == result["compliance"]
    assert report["hosts"][0]["violations"] == result["hosts"]["web"]["violations"]
    assert f"  web (127.0.0.29): port {shut} closed (expected open)" in \
        paths["report_table"].read_text().splitlines()
    root = ElementTree.fromstring(paths["report_xml"].read_text())
    assert root.tag == "nmaprun"
    assert [(p.get("portid"), p.find("state").get("state"))  # type: ignore[union-attr]
            for p in root.iter("port")] == sorted([(str(port), "open"), (str(shut), "closed")])
    markdown = paths["report_markdown"].read_text()
    assert markdown.startswith("# Port exposure audit\n")
    assert "| web | 127.0.0.29 | up |" in markdown
    page = paths["report_html"].read_text()
    assert page.startswith("<!DOCTYPE html>")
    assert "<title>Port exposure audit</title>" in page


