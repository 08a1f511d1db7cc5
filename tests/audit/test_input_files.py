"""Input files (baselines, policy files, target files): checked completely when read, before the
first packet, and refused with one line that names the file, the place in it and a valid form."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from nornir_portscan import (
    HostResult,
    HostStatus,
    InputError,
    PortResult,
    PortState,
    ScanOptions,
    ScanReport,
    TargetSpecError,
    parse_targets,
)
from nornir_portscan.audit.drift import compare, load_baseline
from nornir_portscan.reports.data import REPORT_VERSION, report_to_dict

# -- baselines ------------------------------------------------------------------------------

SAVE = "save a baseline with 'portscan --json baseline.json ...'"
OPTIONS = ScanOptions(timeout=1.0, retries=0, rate=100, concurrency=10)


def scan() -> ScanReport:
    web1 = HostResult(
        "web1",
        "127.0.0.11",
        HostStatus.UP,
        (
            PortResult(22, PortState.OPEN, "syn-ack", 0.1, 1),
            PortResult(443, PortState.FILTERED, "no-response", None, 2),
        ),
        1,
        None,
        (22, 23, 443),
    )
    db1 = HostResult(
        "db1",
        "127.0.0.12",
        HostStatus.UP,
        (PortResult(5432, PortState.OPEN, "syn-ack", 0.1, 1),),
        0,
        None,
        (5432,),
    )
    gone = HostResult("gone.invalid", None, HostStatus.UNRESOLVED, error="Name not known")
    return ScanReport((web1, db1, gone), OPTIONS, 1_700_000_000.0, 1_700_000_001.0, 4)


SAVED = report_to_dict(scan())
Edit = Callable[[dict[str, Any]], object]


def setting(*keys: str | int, value: Any = None, delete: bool = False) -> Edit:
    """An edit of the saved report: set (or delete) the item at ``keys``."""

    def edit(data: dict[str, Any]) -> None:
        inner: Any = data
        for key in keys[:-1]:
            inner = inner[key]
        if delete:
            del inner[keys[-1]]
        else:
            inner[keys[-1]] = value

    return edit


def host_twice(data: dict[str, Any]) -> None:
    data["hosts"].append(copy.deepcopy(data["hosts"][0]))


def port_twice(data: dict[str, Any]) -> None:
    data["hosts"][0]["ports"].append(dict(data["hosts"][0]["ports"][0]))


WEB1 = "baseline '{path}': host 1 ('web1')"
PORT2 = f"{WEB1} port entry 2"


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        # port entries: everything compare() reads
        (setting("hosts", 0, "ports", 1, "port", value="abc"),
         f"{PORT2}: 'port' must be a whole number 1-65535, not 'abc'; {SAVE}"),
        (setting("hosts", 0, "ports", 1, "port", value="443"),
         f"{PORT2}: 'port' must be a whole number 1-65535, not '443'; {SAVE}"),
        (setting("hosts", 0, "ports", 1, "port", value=0),
         f"{PORT2}: 'port' must be a whole number 1-65535, not 0; {SAVE}"),
        (setting("hosts", 0, "ports", 1, "port", value=65536),
         f"{PORT2}: 'port' must be a whole number 1-65535, not 65536; {SAVE}"),
        (setting("hosts", 0, "ports", 1, "port", value=443.0),
         f"{PORT2}: 'port' must be a whole number 1-65535, not 443.0; {SAVE}"),
        (setting("hosts", 0, "ports", 1, "port", value=True),
         f"{PORT2}: 'port' must be a whole number 1-65535, not true; {SAVE}"),
        (setting("hosts", 0, "ports", 1, "port", delete=True),
         f"{PORT2}: 'port' is missing; {SAVE}"),
        (setting("hosts", 0, "ports", 1, "state", delete=True),
         f"{PORT2}: 'state' is missing; {SAVE}"),
        (setting("hosts", 0, "ports", 1, "state", value="up"),
         f"{PORT2}: 'state' must be open, closed, filtered or error, not 'up'; {SAVE}"),
        (setting("hosts", 0, "ports", 1, "state", value=None),
         f"{PORT2}: 'state' must be open, closed, filtered or error, not null; {SAVE}"),
        (setting("hosts", 0, "ports", value=[5]),
         f"{WEB1} port entry 1 must be an object with 'port' and 'state', not 5; {SAVE}"),
        (port_twice,
         f"{WEB1} port entry 3: port 22 is listed twice (also port entry 1); {SAVE}"),
        # host entries
        (setting("hosts", 0, "ports", value={"5": {}}),
         f"{WEB1}: 'ports' must be a list of port entries, not {{\"5\": {{}}}}; {SAVE}"),
        (setting("hosts", 0, "ports", delete=True),
         f"{WEB1}: 'ports' is missing; {SAVE}"),
        (setting("hosts", 0, "scanned_ports", value="abc"),
         f"{WEB1}: 'scanned_ports' must be a port spec such as '22,80-90', not 'abc'; {SAVE}"),
        (setting("hosts", 0, "scanned_ports", value="90-80"),
         f"{WEB1}: 'scanned_ports' must be a port spec such as '22,80-90', not '90-80'; {SAVE}"),
        (setting("hosts", 0, "scanned_ports", value="0,70000"),
         f"{WEB1}: 'scanned_ports' must be a port spec such as '22,80-90', not '0,70000'; "
         f"{SAVE}"),
        (setting("hosts", 0, "scanned_ports", value="ssh"),
         f"{WEB1}: 'scanned_ports' must be a port spec such as '22,80-90', not 'ssh'; {SAVE}"),
        (setting("hosts", 0, "scanned_ports", value=[22]),
         f"{WEB1}: 'scanned_ports' must be a port spec such as '22,80-90', not [22]; {SAVE}"),
        (setting("hosts", 0, "scanned_ports", delete=True),
         f"{WEB1}: 'scanned_ports' is missing; {SAVE}"),
        (setting("hosts", 0, "address", value=5),
         f"{WEB1}: 'address' must be an IP address or null, not 5; {SAVE}"),
        (setting("hosts", 0, "address", value="web1.example"),
         f"{WEB1}: 'address' must be an IP address or null, not 'web1.example'; {SAVE}"),
        (setting("hosts", 0, "address", delete=True),
         f"{WEB1}: 'address' is missing; {SAVE}"),
        (setting("hosts", 1, "name", delete=True),
         f"baseline '{{path}}': host 2: 'name' is missing; {SAVE}"),
        (setting("hosts", 1, "name", value=5),
         f"baseline '{{path}}': host 2: 'name' must be a non-empty string, not 5; {SAVE}"),
        (setting("hosts", 1, "name", value=""),
         f"baseline '{{path}}': host 2: 'name' must be a non-empty string, not ''; {SAVE}"),
        (setting("hosts", 1, value=["db1"]),
         "baseline '{path}': host 2 must be an object with name, address, scanned_ports and "
         f"ports, not [\"db1\"]; {SAVE}"),
        (host_twice,
         "baseline '{path}': host 4 ('web1'): listed twice (also host 1, with the same name and "
         f"address); {SAVE}"),
        # the report
        (setting("version", value="99"),
         "baseline '{path}': report version '99' is not supported: this nornir-portscan reads "
         f"report versions 1.x; {SAVE}"),
        (setting("version", value="2.0"),
         "baseline '{path}': report version '2.0' is not supported: this nornir-portscan reads "
         f"report versions 1.x; {SAVE}"),
        (setting("version", value=1.0),
         f"baseline '{{path}}': 'version' must be a string such as '1.0', not 1.0; {SAVE}"),
        (setting("version", delete=True),
         f"baseline '{{path}}': 'version' is missing; {SAVE}"),
    ],
)  # fmt: skip
def test_bad_baseline_entries_are_one_line(tmp_path: Path, edit: Edit, message: str) -> None:
    data = copy.deepcopy(SAVED)
    edit(data)
    path = tmp_path / "b.json"
    path.write_text(json.dumps(data))
    with pytest.raises(InputError) as raised:
        load_baseline(path)
    assert str(raised.value) == message.replace("{path}", str(path))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[" * 100_000 + "]" * 100_000,
         f"baseline '{{path}}': its JSON nests too deeply to be a report; {SAVE}"),
        (b"\x89PNG\r\n\x1a\n\x00\x00",
         "cannot read baseline '{path}': not UTF-8 text (byte 0x89 at line 1, offset 0); save "
         "it as UTF-8"),
        (b'{"version": "1.0",\n "hosts": "\x00"}',
         "cannot read baseline '{path}': a binary file, not text (a NUL byte at line 2, offset "
         f"30); {SAVE}"),
        (json.dumps(SAVED).encode("utf-16"),
         "cannot read baseline '{path}': UTF-16 text, not UTF-8; save it as UTF-8"),
        # JSON syntax errors already said where; kept
        ('{\n  "version": "1.0",\n  "hosts": [\n}\n',
         "baseline '{path}' is not JSON: Expecting value: line 4 column 1 (char 35)"),
    ],
)  # fmt: skip
def test_unreadable_baselines_are_one_line(
    tmp_path: Path, content: str | bytes, message: str
) -> None:
    path = tmp_path / "b.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    with pytest.raises(InputError) as raised:
        load_baseline(path)
    assert str(raised.value) == message.replace("{path}", str(path))


def test_baseline_that_is_a_directory(tmp_path: Path) -> None:
    with pytest.raises(InputError) as raised:
        load_baseline(tmp_path)
    assert str(raised.value) == f"cannot read baseline '{tmp_path}': Is a directory"


def test_huge_baseline_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "b.json"
    with path.open("wb") as file:
        file.truncate(128 * 2**20 + 1)  # sparse: refused from its size, not read
    with pytest.raises(InputError) as raised:
        load_baseline(path)
    assert str(raised.value) == (
        f"cannot read baseline '{path}': larger than 128 MiB, the most a baseline may be"
    )


def unresolved_only(data: dict[str, Any]) -> None:
    data["hosts"] = [data["hosts"][2]]


@pytest.mark.parametrize(
    "edit",
    [
        setting("version", value=REPORT_VERSION),
        setting("version", value="1.7"),  # a later minor version only adds keys
        setting("hosts", 0, "ports", 0, "extra", value="ignored"),
        setting("hosts", 0, "address", value="::1"),
        setting("hosts", 0, "scanned_ports", value=""),
        setting("hosts", 0, "ports", value=[]),
        unresolved_only,
    ],
)
def test_good_baselines_load_and_compare(tmp_path: Path, edit: Edit) -> None:
    data = copy.deepcopy(SAVED)
    edit(data)
    path = tmp_path / "b.json"
    path.write_text(json.dumps(data))
    assert load_baseline(path) == data
    compare(load_baseline(path), scan())  # nothing left to fail after the scan


def test_baseline_with_a_byte_order_mark(tmp_path: Path) -> None:
    path = tmp_path / "b.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(SAVED).encode())
    assert load_baseline(path) == SAVED


def test_baseline_reader_knows_the_report_version() -> None:
    assert REPORT_VERSION.startswith("1.")  # load_baseline reads 1.x


# -- target files ---------------------------------------------------------------------------

TARGETS = "give a text file of targets, e.g. one '127.0.0.1' a line"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"127.0.0.1\n\x00\x00\x00",
         f"cannot read target file '{{path}}': a binary file, not text (a NUL byte at line 2, "
         f"offset 10); {TARGETS}"),
        (b"127.0.0.1\n\xff\xfe\n",
         "cannot read target file '{path}': not UTF-8 text (byte 0xff at line 2, offset 10); "
         "save it as UTF-8"),
        ("127.0.0.1\n".encode("utf-16"),
         "cannot read target file '{path}': UTF-16 text, not UTF-8; save it as UTF-8"),
    ],
)  # fmt: skip
def test_unreadable_target_files_are_one_line(
    tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "t.txt"
    path.write_bytes(content)
    with pytest.raises(TargetSpecError) as raised:
        parse_targets([], files=[path])
    assert str(raised.value) == message.replace("{path}", str(path))


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d, "cannot read target file '{path}': Is a directory"),
        (lambda d: d / "missing.txt",
         "cannot read target file '{path}': No such file or directory"),
    ],
)  # fmt: skip
def test_target_file_paths_that_are_not_files(
    tmp_path: Path, make: Callable[[Path], Path], message: str
) -> None:
    path = make(tmp_path)
    with pytest.raises(TargetSpecError) as raised:
        parse_targets([], files=[path])
    assert str(raised.value) == message.replace("{path}", str(path))


def test_huge_target_file_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "t.txt"
    with path.open("wb") as file:
        file.truncate(64 * 2**20 + 1)
    with pytest.raises(TargetSpecError) as raised:
        parse_targets([], files=[path])
    assert str(raised.value) == (
        f"cannot read target file '{path}': larger than 64 MiB, the most a target file may be"
    )


def test_target_file_with_a_byte_order_mark(tmp_path: Path) -> None:
    path = tmp_path / "t.txt"
    path.write_bytes(b"\xef\xbb\xbf127.0.0.1\r\n127.0.0.2\r\n")
    assert [t.address for t in parse_targets([], files=[path])] == ["127.0.0.1", "127.0.0.2"]


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="no /dev/zero")
def test_endless_target_file_is_bounded() -> None:
    with pytest.raises(TargetSpecError) as raised:
        parse_targets([], files=["/dev/zero"])
    assert str(raised.value) == (
        "cannot read target file '/dev/zero': larger than 64 MiB, the most a target file may be"
    )
