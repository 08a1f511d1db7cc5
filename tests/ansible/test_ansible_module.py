"""The module with patched arguments: its main() against real listeners on loopback."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest
from support import Listeners, closed_port

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
        "name": "web1", "address": "127.0.0.1", "status": "up", "up": True,
        "open_ports": [open_port], "filtered_ports": [], "closed_count": 1, "error_ports": [],
        "error": None, "scanned_ports": ",".join(map(str, sorted([open_port, shut]))),
        "ports": [{"port": open_port, "state": "open", "reason": "syn-ack", "attempts": 1}],
        "resolved": True, "timed_out": False, "any_open": True, "all_open": False,
    }
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
     "invalid timeout -1.0: use a number of seconds > 0, e.g. timeout=1.5"),
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
     "invalid target {'name': 'web1', 'port': 22}: unknown key 'port', use name, address and "
     "ports, e.g. '127.0.0.1' or {name: web1, address: 127.0.0.2, ports: '22,80'}"),
    ({"targets": [{"ports": "22"}]},
     "invalid target {'ports': '22'}: give a name (a string), e.g. '127.0.0.1' or "
     "{name: web1, address: 127.0.0.2, ports: '22,80'}"),
    ({"targets": ["127.0.0.1"], "address_family": "ipx"},
     "value of address_family must be one of: ipv4, ipv6, both, got: ipx"),
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
    assert result["changed"] is False
    assert not (tmp_path / "r.json").exists()


def test_unwritable_report_fails(tmp_path: Path, capsys) -> None:
    path = tmp_path / "missing" / "r.json"
    result = run_module({"targets": ["127.0.0.1"], "ports": closed_port(),
                         "report": str(path)}, capsys)
    assert result["msg"] == f"cannot write the report to '{path}': No such file or directory"


def test_missing_engine_names_the_library(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    from ansible_collections.nornir_portscan.portscan.plugins.modules import portscan

    monkeypatch.setattr(portscan, "ENGINE_IMPORT_ERROR", "ModuleNotFoundError: nornir_portscan")
    result = run_module({"targets": ["127.0.0.1"]}, capsys)
    assert result["msg"].startswith("Failed to import the required Python library "
                                    "(nornir-portscan) on ")
    assert "This is required to scan ports (pip install nornir-portscan)." in result["msg"]
    assert "ansible_python_interpreter" in result["msg"]


def test_a_name_seen_twice_is_keyed_with_its_address() -> None:
    from ansible_collections.nornir_portscan.portscan.plugins.module_utils.portscan import (
        hosts_by_name,
    )

    ports = (PortResult(22, PortState.OPEN, "syn-ack", 0.1, 1),)
    report = ScanReport(
        hosts=(HostResult("localhost", "127.0.0.1", HostStatus.UP, ports, scanned=(22,)),
               HostResult("localhost", "::1", HostStatus.UP, ports, scanned=(22,))),
        options=ScanOptions(), started=0.0, finished=1.0, probes_sent=2)
    assert {k: (h["address"], h["all_open"]) for k, h in hosts_by_name(report).items()} == {
        "localhost": ("127.0.0.1", True), "localhost@::1": ("::1", True)}
