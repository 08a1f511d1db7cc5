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
from nornir_portscan.audit.policy import Policy, PolicyBook, load_policy_file
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
STATES = "open, closed, filtered, open|filtered or error"


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
         f"{PORT2}: 'state' must be {STATES}, not 'up'; {SAVE}"),
        (setting("hosts", 0, "ports", 1, "state", value=None),
         f"{PORT2}: 'state' must be {STATES}, not null; {SAVE}"),
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
         "baseline '{path}': host 4 ('web1'): listed twice (also host 1, with the same name, "
         f"address and vantage); {SAVE}"),
        (setting("hosts", 0, "vantage", value=7),
         "baseline '{path}': host 1 ('web1'): 'vantage' must be a vantage label or null, not 7; "
         f"{SAVE}"),
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


# -- policy files ---------------------------------------------------------------------------

E = "e.g. 'defaults: {allowed_open: \"22,443\"}'"


def bomb(levels: int) -> str:
    """Billion laughs under a valid key: each level is ten aliases of the one before."""
    lines = ["groups:", "  g0: {hosts: &g0 [a, a, a, a, a, a, a, a, a, a]}"]
    for level in range(1, levels):
        items = ", ".join([f"*g{level - 1}"] * 10)
        lines.append(f"  g{level}: {{hosts: &g{level} [{items}]}}")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        # what the document is
        ("", f"policy file '{{path}}' is empty: give defaults, groups or hosts, {E}"),
        ("# nothing yet\n",
         f"policy file '{{path}}' is empty: give defaults, groups or hosts, {E}"),
        ("---\n", f"policy file '{{path}}' is empty: give defaults, groups or hosts, {E}"),
        ("0\n", "policy file '{path}': the document is 0, not a mapping; use the top-level keys "
                f"defaults, groups and hosts, {E}"),
        ("web1\n", "policy file '{path}': the document is 'web1', not a mapping; use the "
                   f"top-level keys defaults, groups and hosts, {E}"),
        ("- 22\n", "policy file '{path}': the document is a list, not a mapping; use the "
                   f"top-level keys defaults, groups and hosts, {E}"),
        ("defaults: {}\n---\nhosts: {}\n",
         "policy file '{path}' line 2: a second YAML document; keep one document, a mapping "
         f"of defaults, groups and hosts, {E}"),
        # keys and names are strings
        ("{1: {}}\n",
         "policy file '{path}' line 1: key 1 is not a string (YAML reads it as a number); "
         "quote it, e.g. '\"1\":'"),
        ("hosts: {10: {expect_open: '22'}}\n",
         "policy file '{path}' line 1: key 10 is not a string (YAML reads it as a number); "
         "quote it, e.g. '\"10\":'"),
        ("hosts:\n  web1: {}\n  yes: {expect_open: '22'}\n",
         "policy file '{path}' line 3: key yes is not a string (YAML reads it as a boolean); "
         "quote it, e.g. '\"yes\":'"),
        ("hosts:\n  ~: {}\n",
         "policy file '{path}' line 2: key ~ is not a string (YAML reads it as null); "
         "quote it, e.g. '\"~\":'"),
        ("defaults: {1: '22', expect_opn: '2'}\n",
         "policy file '{path}' line 1: key 1 is not a string (YAML reads it as a number); "
         "quote it, e.g. '\"1\":'"),
        ("hosts:\n  ? [web1, web2]\n  : {}\n",
         "policy file '{path}' line 2: a list as a key; keys are names, e.g. 'web1:'"),
        ("groups:\n  web: {hosts: [web1, 10], expect_open: '443'}\n",
         "policy file '{path}' group 'web': hosts item 2 must be a name (a string), not 10; "
         "quote it, e.g. '\"10\"'"),
        ("groups: {web: {}}\nhosts:\n  web1: {groups: [[web]]}\n",
         "policy file '{path}' host 'web1': groups item 1 must be a name (a string), not "
         "[\"web\"]; e.g. 'groups: [web]'"),
        ("hosts:\n  web1: {expect_open: '22'}\n  web1: {expect_open: '23'}\n",
         "policy file '{path}' line 3: duplicate key 'web1' (first on line 2); give each key "
         "once"),
        # numbers YAML 1.1 reads otherwise than they look
        ("defaults: {expect_open: 0022}\n",
         "policy file '{path}' line 1: YAML reads 0022 as the number 18; write ports as plain "
         "numbers, e.g. 22, or quote the text"),
        ("defaults: {expect_open: [22, 1:30]}\n",
         "policy file '{path}' line 1: YAML reads 1:30 as the number 90; write ports as plain "
         "numbers, e.g. 22, or quote the text"),
        ("defaults: {expect_open: 0x1bb}\n",
         "policy file '{path}' line 1: YAML reads 0x1bb as the number 443; write ports as "
         "plain numbers, e.g. 22, or quote the text"),
        # bounded: nesting, aliases
        ("defaults: " + "[" * 5000 + "]" * 5000 + "\n",
         "policy file '{path}' line 1: nested more than 32 levels deep; a policy nests a few, "
         "e.g. 'hosts: {web1: {expect_open: [22]}}'"),
        ("hosts:\n" + "".join(f"{'  ' * (i + 1)}k{i}:\n" for i in range(40)),
         "policy file '{path}' line 32: nested more than 32 levels deep; a policy nests a few, "
         "e.g. 'hosts: {web1: {expect_open: [22]}}'"),
        (bomb(9),
         "policy file '{path}' line 6: aliases expand the document to more than 100000 values; "
         "write the values out instead"),
        ("groups:\n  web: &web\n    hosts: [*web]\n",
         "policy file '{path}' line 2: a value holds an alias of itself (*name inside &name); "
         "write the values out instead"),
        # unreadable characters: now with the line
        ("defaults: {expect_open: '2\x012'}\n",
         "policy file '{path}' is not valid YAML: line 1, column 27: unacceptable character "
         f"#x0001: special characters are not allowed; {E}"),
    ],
)  # fmt: skip
def test_bad_policy_files_are_one_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(text)
    with pytest.raises(InputError) as raised:
        load_policy_file(path)
    assert str(raised.value) == message.replace("{path}", str(path))


HINT = f"write YAML text, {E}"
CAFE = b"defaults: {expect_open: '22'}\n# caf\xe9\n"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\x00\x01\x02\x03",
         f"cannot read policy file '{{path}}': a binary file, not text (a NUL byte at line 1, "
         f"offset 0); {HINT}"),
        (CAFE,
         f"cannot read policy file '{{path}}': not UTF-8 text (byte 0xe9 at line 2, offset "
         f"{CAFE.index(0xE9)}); save it as UTF-8"),
        ("defaults: {expect_open: '22'}\n".encode("utf-16"),
         "cannot read policy file '{path}': UTF-16 text, not UTF-8; save it as UTF-8"),
    ],
)  # fmt: skip
def test_unreadable_policy_files_are_one_line(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "p.yaml"
    path.write_bytes(content)
    with pytest.raises(InputError) as raised:
        load_policy_file(path)
    assert str(raised.value) == message.replace("{path}", str(path))


def test_policy_file_that_is_a_directory(tmp_path: Path) -> None:
    with pytest.raises(InputError) as raised:
        load_policy_file(tmp_path)
    assert str(raised.value) == f"cannot read policy file '{tmp_path}': Is a directory"


def test_huge_policy_file_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    with path.open("wb") as file:
        file.truncate(4 * 2**20 + 1)
    with pytest.raises(InputError) as raised:
        load_policy_file(path)
    assert str(raised.value) == (
        f"cannot read policy file '{path}': larger than 4 MiB, the most a policy file may be"
    )


MERGED = """\
groups:
  web: &web {expect_open: '443', allowed_open: '22,443'}
  web2:
    <<: *web
    hosts: [web2]
    expect_closed: '23'
hosts:
  web1: {groups: [web]}
"""


@pytest.mark.parametrize(
    ("text", "book"),
    [
        ("{}\n", PolicyBook({}, {}, {})),
        ("defaults:\ngroups:\nhosts:\n", PolicyBook({}, {}, {})),
        ("\ufeffdefaults: {expect_open: '22'}\n", PolicyBook({"expect_open": "22"}, {}, {})),
        ("---\ndefaults: {expect_open: [22, +23]}\n...\n",
         PolicyBook({"expect_open": [22, 23]}, {}, {})),
        ('hosts: {"10": {expect_open: "22"}, web1: {}}\n',
         PolicyBook({}, {}, {"10": {"expect_open": "22"}, "web1": {}})),
    ],
)  # fmt: skip
def test_good_policy_files(tmp_path: Path, text: str, book: PolicyBook) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(text, encoding="utf-8")
    assert load_policy_file(path) == book


def test_aliases_and_merge_keys_are_allowed(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(MERGED)
    book = load_policy_file(path)
    assert book.policy_for("web1") == Policy(
        frozenset({443}), allowed_open=frozenset({22, 443})
    )
    assert book.policy_for("web2") == Policy(
        frozenset({443}), frozenset({23}), allowed_open=frozenset({22, 443})
    )


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
