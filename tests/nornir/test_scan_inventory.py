"""``scan_inventory``: the explicit whole-inventory form, one engine run over every host of a
(filtered) Nornir object, each host its own Result, one set of report files."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from conftest import FAST, script_env
from support import Listeners, closed_port

from nornir_portscan.errors import InputError, OptionError, ScopeError, TargetSpecError
from nornir_portscan.nornir.tasks import PortscanResult, scan_inventory

if TYPE_CHECKING:
    from conftest import EngineCalls, MakeNornir


@pytest.fixture
def lab(listeners: Listeners) -> dict[str, int]:
    """o1 open on 127.0.0.11-13, o2 open on .11 only, c closed everywhere."""
    o1 = listeners.open("127.0.0.11")
    for address in ("127.0.0.12", "127.0.0.13"):
        listeners.open(address, o1)
    o2 = listeners.open("127.0.0.11")
    return {"o1": o1, "o2": o2, "c": closed_port("127.0.0.11")}


HOSTS = {
    "h1": {"hostname": "127.0.0.11", "data": {"site": "x"}},
    "h2": {"hostname": "127.0.0.12", "data": {"site": "x"}},
    "h3": {"hostname": "127.0.0.13", "data": {"site": "y"}},
}


def test_one_engine_run_gives_every_host_its_own_result_and_one_report(
    make_nornir: MakeNornir, lab: dict[str, int], engine_calls: EngineCalls, tmp_path: Path
) -> None:
    o1, o2, c = lab["o1"], lab["o2"], lab["c"]
    hosts = {**HOSTS, "h3": {**HOSTS["h3"], "data": {"portscan": {"expect_open": str(o2)}}}}
    nr = make_nornir(hosts)
    saved = tmp_path / "scan.json"
    result = scan_inventory(nr, ports=f"{o1},{c}", reports={"json": saved}, **FAST)
    assert engine_calls.targets() == [["h1", "h2", "h3"]]
    assert result.name == "scan_inventory"
    assert {n: (len(m), m[0].name, m[0].failed) for n, m in result.items()} == {
        "h1": (1, "scan_inventory", False),
        "h2": (1, "scan_inventory", False),
        "h3": (1, "scan_inventory", True),
    }
    assert sorted(result.failed_hosts) == ["h3"]
    assert str(result["h3"][0].result) == (
        f"127.0.0.13 up: open {o1}; closed 2; FAILED: port {o2} closed (expected open)"
    )
    report = json.loads(saved.read_text())
    for name, entry in zip(("h1", "h2", "h3"), report["hosts"], strict=True):
        mine = result[name][0].result
        assert isinstance(mine, PortscanResult)
        assert {k: v for k, v in mine.items() if k != "warnings"} == entry  # the same entry
        assert mine["warnings"] == report["warnings"]
    assert report["compliance"] == {"compliant": 0, "non_compliant": 1, "error": 0, "violations": 1}
    assert nr.data.failed_hosts == set()  # nr.run records failed hosts; this does not


def test_filter_the_nornir_object_to_choose_the_hosts(
    make_nornir: MakeNornir, lab: dict[str, int], engine_calls: EngineCalls
) -> None:
    nr = make_nornir(HOSTS)
    result = scan_inventory(nr.filter(site="x"), ports=str(lab["o1"]), **FAST)
    assert sorted(result) == ["h1", "h2"]
    assert engine_calls.targets() == [["h1", "h2"]]


def test_exclude_and_max_hosts_count_every_host(
    make_nornir: MakeNornir, lab: dict[str, int], engine_calls: EngineCalls
) -> None:
    nr = make_nornir(HOSTS)
    result = scan_inventory(nr, ports=str(lab["o1"]), exclude="127.0.0.12", **FAST)
    assert {n: (m[0].failed, str(m[0].result)) for n, m in result.items()} == {
        "h1": (False, f"127.0.0.11 up: open {lab['o1']}; closed 0"),
        "h2": (False, "127.0.0.12 excluded: not scanned"),
        "h3": (False, f"127.0.0.13 up: open {lab['o1']}; closed 0"),
    }
    assert engine_calls.targets() == [["h1", "h3"]]
    with pytest.raises(ScopeError) as caught:
        scan_inventory(nr, ports="22", max_hosts=2, **FAST)
    assert str(caught.value) == (
        "the targets add up to 3 hosts by '127.0.0.13' (address of target 'h3'), more than "
        "the limit of 2; raise max_hosts or give fewer targets, e.g. split them across scans"
    )
    assert len(engine_calls) == 1  # nothing sent for the refused scan


@pytest.mark.parametrize(
    ("settings", "error", "message"),
    [
        (
            {"reports": {"json": "{tmp}/nope/scan.json"}},
            InputError,
            "cannot write the JSON report to '{tmp}/nope/scan.json': no such directory "
            "'{tmp}/nope'; give a path in an existing directory, e.g. 'scan.json'",
        ),
        (
            {"report": "scan.json"},
            OptionError,
            "unknown option 'report': name the files with reports=, "
            "e.g. reports={'json': 'scan.json'}",
        ),
        (
            {"family": "both"},
            OptionError,
            "invalid family 'both': the Nornir task scans one address per host, use 'ipv4' "
            "or 'ipv6', e.g. family='ipv4'",
        ),
        (
            {"reports": {"pdf": "scan.pdf"}},
            OptionError,
            "unknown report format 'pdf': use json, xml, table, markdown, html, "
            "e.g. reports={'json': 'scan.json'}",
        ),
    ],
    ids=["missing-directory", "report", "family", "format"],
)
def test_bad_settings_raise_before_anything_is_sent(
    make_nornir: MakeNornir,
    engine_calls: EngineCalls,
    tmp_path: Path,
    settings: dict[str, Any],
    error: type[Exception],
    message: str,
) -> None:
    nr = make_nornir(HOSTS)
    filled = json.loads(json.dumps(settings).replace("{tmp}", str(tmp_path)))
    with pytest.raises(error) as caught:
        scan_inventory(nr, ports="22", **filled, **FAST)
    assert str(caught.value) == message.replace("{tmp}", str(tmp_path))
    assert engine_calls == []


def test_bad_inventory_data_raises_naming_the_host(
    make_nornir: MakeNornir, engine_calls: EngineCalls
) -> None:
    nr = make_nornir({**HOSTS, "r": {"hostname": "127.0.0.1-5"}})
    with pytest.raises(TargetSpecError) as caught:
        scan_inventory(nr, ports="22", **FAST)
    assert str(caught.value) == (
        "invalid address '127.0.0.1-5' of target 'r': give one address or hostname, not a "
        "range or block, e.g. '127.0.0.1'"
    )
    assert engine_calls == []


FULL_DISK = """\
import json, sys
from pathlib import Path
from nornir import InitNornir
from nornir_portscan import ReportError, scan_inventory

nr = InitNornir(inventory={"plugin": "SimpleInventory", "options": {"host_file": sys.argv[1]}},
                logging={"enabled": False})
path = sys.argv[2]
scan_inventory(nr.filter(name="h1"), ports="%(port)d", reports={"json": path}, timeout=0.5)
before = Path(path).read_text()
try:  # every closed port listed: a report too big for the disk
    scan_inventory(nr, ports="1-300", include_closed=True, reports={"json": path}, timeout=0.5)
except ReportError as exc:
    results = exc.results
    print(json.dumps({
        "error": str(exc),
        "results": {n: m[0].result["scanned_ports"] for n, m in sorted(results.items())},
        "kept": Path(path).read_text() == before,
    }))
"""


def full_disk(tmp_path: Path, port: int) -> dict[str, Any]:
    """Run ``FULL_DISK`` in a mount namespace of its own with an 8 KiB tmpfs for the report."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("a tmpfs in a private mount namespace needs root and unshare")
    disk = tmp_path / "disk"
    disk.mkdir()
    hosts = tmp_path / "hosts.yaml"
    hosts.write_text("h1: {hostname: 127.0.0.11}\nh2: {hostname: 127.0.0.12}\n")
    script = tmp_path / "full_disk.py"
    script.write_text(FULL_DISK % {"port": port})
    command = textwrap.dedent(f"""\
        mount -t tmpfs -o size=8k tmpfs {disk} || exit 77
        exec {sys.executable} -W error {script} {hosts} {disk}/scan.json
        """)
    done = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", command],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=script_env(),
    )
    if done.returncode == 77:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    assert (done.returncode, done.stderr) == (0, "")
    outcome: dict[str, Any] = json.loads(done.stdout)
    outcome["disk"] = str(disk)
    return outcome


def test_a_full_disk_raises_report_error_after_the_scan(
    tmp_path: Path, lab: dict[str, int]
) -> None:
    outcome = full_disk(tmp_path, lab["o1"])
    assert outcome["error"] == (
        f"cannot write the JSON report '{outcome['disk']}/scan.json': No space left on device"
    )
    assert outcome["results"] == {"h1": "1-300", "h2": "1-300"}  # the scan's results stand


def test_a_full_disk_keeps_the_previous_report(tmp_path: Path, lab: dict[str, int]) -> None:
    assert full_disk(tmp_path, lab["o1"])["kept"] is True


def test_an_empty_inventory_with_allow_empty_is_no_result_and_an_empty_report(
    make_nornir: MakeNornir, tmp_path: Path
) -> None:
    """A filter that leaves no host: with ``allow_empty``, no Result and a report of no hosts
    (as ``portscan --shard`` of an empty shard), not "no targets given"."""
    nr = make_nornir(HOSTS).filter(site="nowhere")
    saved = tmp_path / "scan.json"
    result = scan_inventory(nr, ports="9", reports={"json": saved}, allow_empty=True, **FAST)
    assert dict(result) == {}
    report = json.loads(saved.read_text())
    assert report["hosts"] == []
    assert report["summary"]["hosts"] == 0
    with pytest.raises(TargetSpecError, match="no targets given"):  # without it: an error
        scan_inventory(nr, ports="9", **FAST)
