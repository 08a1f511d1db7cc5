
"""Policies: parsing, layering, policy files and the verdict of a host against its policy."""

from __future__ import annotations

import pytest

from nornir_portscan import HostResult, HostStatus, InputError, PortResult, PortSpecError, PortState
from nornir_portscan.audit.policy import (
    HostVerdict,
    Policy,
    PolicyBook,
    Violation,
    evaluate,
    load_policy_file,
    merge_policies,
    parse_policy,
)
from nornir_portscan.reports.data import policy_to_dict

F = frozenset


def opened(port: int) -> PortResult:
    return PortResult(port, PortState.OPEN, "syn-ack", 0.1, 1)


def filtered(port: int, reason: str = "no-response") -> PortResult:
    return PortResult(port, PortState.FILTERED, reason, None, 2)


def up(*ports: PortResult, scanned: tuple[int, ...], name: str = "web1") -> HostResult:
    closed = len(set(scanned) - {p.port for p in ports})
    return HostResult(name, "127.0.0.11", HostStatus.UP, ports, closed, scanned=scanned)


# -- parse_policy ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "policy"),
    [
        (None, Policy()),
        ({}, Policy()),
        ({"expect_open": "22,80-82"}, Policy(expect_open=F({22, 80, 81, 82}))),
        ({"expect_open": 22}, Policy(expect_open=F({22}))),
        ({"expect_closed": [23, "8000-8001"]}, Policy(expect_closed=F({23, 8000, 8001}))),
        ({"expect_filtered": "ssh"}, Policy(expect_filtered=F({22}))),
        ({"allowed_open": "22,443"}, Policy(allowed_open=F({22, 443}))),
        # an empty allow-list allows nothing; no allow-list (None) allows everything
        ({"allowed_open": ""}, Policy(allowed_open=F())),
        ({"allowed_open": []}, Policy(allowed_open=F())),
        ({"allowed_open": None}, Policy()),
        ({"expect_open": "", "expect_closed": None}, Policy()),
        (
            {
                "expect_open": "22",
                "expect_closed": "23",
                "expect_filtered": "24",
                "allowed_open": "22",
            },
            Policy(F({22}), F({23}), F({24}), F({22})),
        ),
    ],
)
def test_parse_policy(data, policy):
    assert parse_policy(data) == policy


@pytest.mark.parametrize(
    ("data", "error", "message"),
    [
        (
            ["22"],
            InputError,
            "invalid policy of 'web1': expected a mapping of port specs, "
            "e.g. {expect_open: '22,443'}",
        ),
        (
            {"expect_opn": "22", "zz": 1},
            InputError,
            "unknown key 'expect_opn' in policy of 'web1': use expect_open, expect_closed, "
            "expect_filtered, allowed_open, e.g. {expect_open: '22,443'}",
        ),
        (
            {"expect_open": "22,90-80"},
            PortSpecError,
            "policy of 'web1' expect_open: invalid port range '90-80' in '22,90-80': start must "
            "be <= end, e.g. '80-90'",
        ),
        (
            {"allowed_open": "0"},
            PortSpecError,
            "policy of 'web1' allowed_open: invalid port '0' in '0': ports are 1-65535, "
            "e.g. '22,80,443'",
        ),
        (
            {"expect_open": "22", "expect_closed": "20-30"},
            InputError,
            "policy of 'web1': port 22 is in both expect_open and expect_closed; give each port "
            "one expected state, e.g. expect_open: '22' and expect_closed: '23'",
        ),
        (
            {"expect_open": "25,22", "expect_filtered": "22-25"},
            InputError,
            "policy of 'web1': port 22 is in both expect_open and expect_filtered; give each "
            "port one expected state, e.g. expect_open: '22' and expect_filtered: '23'",
        ),
        (
            {"expect_closed": "5", "expect_filtered": "1-9"},
            InputError,
            "policy of 'web1': port 5 is in both expect_closed and expect_filtered; give each "
            "port one expected state, e.g. expect_closed: '22' and expect_filtered: '23'",
        ),
        (
            {"expect_open": "22,80,81", "allowed_open": "22"},
            InputError,
            "policy of 'web1': port 80 is in expect_open but not in allowed_open; allow what you "
            "expect open, e.g. allowed_open: '80'",
        ),
        (
            {"expect_open": "22", "allowed_open": ""},
            InputError,
            "policy of 'web1': port 22 is in expect_open but not in allowed_open; allow what you "
            "expect open, e.g. allowed_open: '22'",
        ),
    ],
)
def test_parse_policy_errors_name_the_token(data, error, message):
    with pytest.raises(error) as raised:
        parse_policy(data, where="policy of 'web1'")
    assert str(raised.value) == message
    assert isinstance(raised.value, ValueError)


def test_default_where_is_policy():
    with pytest.raises(InputError, match=r"^unknown key 'x' in policy: "):
        parse_policy({"x": "1"})


def test_policy_ports_expected_bool_and_dict():
    policy = Policy(F({443, 22}), F({23}), F({8000, 8001, 8002}), F({22, 443, 8443}))
    assert policy.ports == F({22, 23, 443, 8000, 8001, 8002})
    assert [policy.expected(p) for p in (22, 23, 8001, 8443, 9)] == [
        PortState.OPEN,
        PortState.CLOSED,
        PortState.FILTERED,
        None,
        None,
    ]
    assert policy_to_dict(policy) == {
        "expect_open": "22,443",
        "expect_closed": "23",
        "expect_filtered": "8000-8002",
        "allowed_open": "22,443,8443",
    }
    assert policy_to_dict(Policy()) == {
        "expect_open": "",
        "expect_closed": "",
        "expect_filtered": "",
        "allowed_open": None,
    }
    assert not Policy()
    assert Policy(allowed_open=F())  # "nothing may be open" is a policy
    assert Policy(expect_closed=F({23}))


# -- merge_policies -------------------------------------------------------------------------


def test_merge_later_layers_replace_whole_keys():
    merged = merge_policies(
        [
            {"expect_closed": "23", "allowed_open": "22"},
            None,
            {},
            {"allowed_open": "22,443", "expect_open": "443"},
            {"expect_closed": "25"},
        ]
    )
    assert merged == {"expect_closed": "25", "allowed_open": "22,443", "expect_open": "443"}
    assert merge_policies([]) == {}


def test_merge_keeps_an_explicit_none():
    """A host may switch an inherited allow-list off with ``allowed_open: null``."""
    merged = merge_policies([{"allowed_open": "22"}, {"allowed_open": None}])
    assert parse_policy(merged) == Policy()


# -- evaluate -------------------------------------------------------------------------------


def test_compliant_host():
    host = up(opened(22), opened(443), filtered(8080), scanned=(22, 23, 443, 8080))
    policy = parse_policy(
        {
            "expect_open": "22,443",
            "expect_closed": "23",
            "expect_filtered": "8080",
            "allowed_open": "22,443",
        }
    )
    assert evaluate(host, policy) == HostVerdict("web1", True, (), None, policy)


def test_every_kind_of_violation_sorted_by_port():
    host = up(
        opened(22),
        opened(80),
        filtered(443, "admin-prohibited"),
        opened(3306),
        PortResult(8080, PortState.ERROR, "EMFILE", None, 1),
        scanned=(22, 23, 25, 80, 443, 3306, 8080),
    )
    policy = parse_policy(
        {
            "expect_open": "23,443,8080,9000",
            "expect_closed": "22",
            "expect_filtered": "25",
            "allowed_open": "23,80,443,8080,9000",
        }
    )
    verdict = evaluate(host, policy)
    assert verdict.compliant is False
    assert verdict.error is None
    assert verdict.violations == (
        Violation(22, "closed", "open", "syn-ack"),
        Violation(22, "not open", "open", "syn-ack"),
        Violation(23, "open", "closed", "conn-refused"),
        Violation(25, "filtered", "closed", "conn-refused"),
        Violation(443, "open", "filtered", "admin-prohibited"),
        Violation(3306, "not open", "open", "syn-ack"),
        Violation(8080, "open", "error", "EMFILE"),
        Violation(9000, "open", "not scanned", "not-scanned"),
    )


def test_closed_port_listed_on_request_keeps_its_reason():
    closed = PortResult(23, PortState.CLOSED, "conn-refused", 0.1, 1)
    host = up(closed, scanned=(23,))
    verdict = evaluate(host, parse_policy({"expect_open": "23"}))
    assert verdict.violations == (Violation(23, "open", "closed", "conn-refused"),)


def test_allow_list_only_judges_open_ports():
    host = up(opened(22), filtered(25), scanned=(22, 23, 25))
    assert evaluate(host, parse_policy({"allowed_open": "22"})).compliant is True
    verdict = evaluate(host, parse_policy({"allowed_open": ""}))
    assert verdict.violations == (Violation(22, "not open", "open", "syn-ack"),)


def test_no_response_host_can_be_compliant():
    host = HostResult(
        "fw", "127.0.0.12", HostStatus.NO_RESPONSE, (filtered(22), filtered(23)), 0, None, (22, 23)
    )
    verdict = evaluate(host, parse_policy({"expect_filtered": "22,23"}))
    assert (verdict.name, verdict.compliant, verdict.violations) == ("fw", True, ())


@pytest.mark.parametrize(
    ("host", "error"),
    [
        (
            HostResult("ghost.invalid", None, HostStatus.UNRESOLVED, error="Name not known"),
            "Name not known",
        ),
        (HostResult("ghost.invalid", None, HostStatus.UNRESOLVED), "unresolved"),
        (
            HostResult(
                "web1",
                "127.0.0.11",
                HostStatus.ERROR,
                (PortResult(22, PortState.ERROR, "EMFILE", None, 1),),
                scanned=(22,),
            ),
            "error",
        ),
    ],
)
def test_hosts_that_cannot_be_judged(host, error):
    policy = parse_policy({"expect_open": "22"})
    assert evaluate(host, policy) == HostVerdict(host.name, None, (), error, policy)


def test_timed_out_host_is_judged_only_by_what_it_shows():
    policy = parse_policy({"expect_open": "22", "allowed_open": "22"})
    partial = HostResult(
        "web1", "127.0.0.11", HostStatus.TIMED_OUT, (opened(22),), 0, "host timeout", (22,)
    )
    assert evaluate(partial, policy) == HostVerdict("web1", None, (), "host timeout", policy)
    breach = HostResult(
        "web1", "127.0.0.11", HostStatus.TIMED_OUT, (opened(23),), 0, "host timeout", (23,)
    )
    verdict = evaluate(breach, policy)
    assert verdict.compliant is False
    assert verdict.violations == (
        Violation(22, "open", "not scanned", "not-scanned"),
        Violation(23, "not open", "open", "syn-ack"),
    )


def test_empty_policy_is_compliant():
    host = up(opened(22), scanned=(22,))
    assert evaluate(host, Policy()).compliant is True


# -- PolicyBook and policy files ------------------------------------------------------------

BOOK = PolicyBook(
    defaults={"expect_closed": "23", "allowed_open": "22"},
    groups={
        "web": {"hosts": ["web1", "127.0.0.12"], "expect_open": "443", "allowed_open": "22,443"},
        "db": {"expect_open": "5432", "allowed_open": "22,5432", "expect_closed": "25"},
        "late": {"hosts": ["web1"], "allowed_open": "22,443,8443"},
    },
    hosts={
        "web1": {"expect_filtered": "8080"},
        "db1": {"groups": ["db"]},
        "127.0.0.13": {"groups": ["web"], "expect_closed": "23,24"},
    },
)


@pytest.mark.parametrize(
    ("name", "address", "policy"),
    [
        # defaults, then both groups in file order, then the host's own keys
        ("web1", "127.0.0.11", Policy(F({443}), F({23}), F({8080}), F({22, 443, 8443}))),
        # a group lists the host by address
        ("web2", "127.0.0.12", Policy(F({443}), F({23}), F(), F({22, 443}))),
        # the host names its group; the group's expect_closed replaces the default one
        ("db1", "127.0.0.20", Policy(F({5432}), F({25}), F(), F({22, 5432}))),
        # the host entry is found by address
        ("gw", "127.0.0.13", Policy(F({443}), F({23, 24}), F(), F({22, 443}))),
        # nothing matches: the defaults
        ("other", "127.0.0.99", Policy(F(), F({23}), F(), F({22}))),
        ("other", None, Policy(F(), F({23}), F(), F({22}))),
    ],
)
def test_policy_book_layers(name, address, policy):
    assert BOOK.policy_for(name, address) == policy


def test_host_entry_by_name_wins_over_entry_by_address():
    book = PolicyBook({}, {}, {"web1": {"expect_open": "1"}, "127.0.0.11": {"expect_open": "2"}})
    assert book.policy_for("web1", "127.0.0.11") == Policy(expect_open=F({1}))
    assert book.policy_for("x", "127.0.0.11") == Policy(expect_open=F({2}))


def test_conflict_made_by_layering_names_the_host():
    book = PolicyBook({}, {"web": {"hosts": ["web1"], "expect_open": "22"}}, {})
    book = PolicyBook({}, book.groups, {"web1": {"expect_closed": "22"}})
    with pytest.raises(InputError) as raised:
        book.policy_for("web1", "127.0.0.11")
    assert str(raised.value) == (
        "policy of 'web1': port 22 is in both expect_open and expect_closed; give each port one "
        "expected state, e.g. expect_open: '22' and expect_closed: '23'"
    )


POLICY_FILE = """\
defaults:
  expect_closed: "23"
  allowed_open: "22"
groups:
  web:
    hosts: [web1, 127.0.0.12]
    expect_open: "443"
    allowed_open: "22,443"
  db:
    expect_open: [5432]
    allowed_open: "22,5432"
hosts:
  web1:
    expect_filtered: "8080"
  db1:
    groups: [db]
"""


def test_load_policy_file(tmp_path):
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY_FILE)
    book = load_policy_file(path)
    assert book == PolicyBook(
        {"expect_closed": "23", "allowed_open": "22"},
        {
            "web": {
                "hosts": ["web1", "127.0.0.12"],
                "expect_open": "443",
                "allowed_open": "22,443",
            },
            "db": {"expect_open": [5432], "allowed_open": "22,5432"},
        },
        {"web1": {"expect_filtered": "8080"}, "db1": {"groups": ["db"]}},
    )
    assert book.policy_for("web1", "127.0.0.11") == Policy(
        F({443}), F({23}), F({8080}), F({22, 443})
    )
    assert book.policy_for("db1", "127.0.0.20") == Policy(F({5432}), F({23}), F(), F({22, 5432}))


@pytest.mark.parametrize("text", ["{}\n", "defaults:\ngroups:\nhosts:\n"])
def test_empty_policy_file_is_an_empty_book(tmp_path, text):
    path = tmp_path / "empty.yaml"
    path.write_text(text)
    book = load_policy_file(path)
    assert book == PolicyBook({}, {}, {})
    assert book.policy_for("web1", "127.0.0.1") == Policy()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "defaults: [\n",
            "policy file '{path}' is not valid YAML: line 2, column 1: expected the node "
            "content, but found '<stream end>'; e.g. 'defaults: {{allowed_open: \"22,443\"}}'",
        ),
        (
            "- 22\n",
            "policy file '{path}': the document is a list, not a mapping; use the top-level "
            "keys defaults, groups and hosts, "
            "e.g. 'defaults: {{allowed_open: \"22,443\"}}'",
        ),
        (
            "defaults: {}\nhost: {}\n",
            "policy file '{path}': unknown key 'host': use the top-level keys defaults, groups "
            "and hosts, e.g. 'defaults: {{allowed_open: \"22,443\"}}'",
        ),
        (
            "defaults: [22]\n",
            "policy file '{path}': defaults must map policy keys to port specs, "
            "e.g. 'defaults: {{allowed_open: \"22,443\"}}'",
        ),
        (
            "defaults: '22'\n",
            "policy file '{path}': defaults must map policy keys to port specs, "
            "e.g. 'defaults: {{allowed_open: \"22,443\"}}'",
        ),
        (
            "groups: [web]\n",
            "policy file '{path}': groups must map names to settings, "
            "e.g. 'groups: {{web: {{expect_open: \"443\"}}}}'",
        ),
        (
            "hosts:\n  web1: '22'\n",
            "policy file '{path}': hosts must map names to settings, "
            "e.g. 'hosts: {{web: {{expect_open: \"443\"}}}}'",
        ),
        (
            "defaults:\n  expect_opn: '22'\n",
            "unknown key 'expect_opn' in {path} defaults: use expect_open, expect_closed, "
            "expect_filtered, allowed_open, e.g. {{expect_open: '22,443'}}",
        ),
        (
            "groups:\n  web:\n    hosts: [web1]\n    expect_open: '22,90-80'\n",
            "{path} group 'web' expect_open: invalid port range '90-80' in '22,90-80': start "
            "must be <= end, e.g. '80-90'",
        ),
        (
            "hosts:\n  web1:\n    expect_open: '22'\n    expect_closed: '22'\n",
            "{path} host 'web1': port 22 is in both expect_open and expect_closed; give each "
            "port one expected state, e.g. expect_open: '22' and expect_closed: '23'",
        ),
        (
            "groups:\n  web:\n    hosts: web1\n    expect_open: '443'\n",
            "policy file '{path}' group 'web': hosts must be a list of names, not 'web1', "
            "e.g. 'hosts: [web1, 127.0.0.1]'",
        ),
        (
            "groups:\n  web: {expect_open: '443'}\nhosts:\n  web1: {groups: web}\n",
            "policy file '{path}' host 'web1': groups must be a list of names, not 'web', "
            "e.g. 'groups: [web]'",
        ),
        (
            "groups:\n  web: {expect_open: '443'}\nhosts:\n  web1: {groups: [web, wbe]}\n",
            "policy file '{path}' host 'web1': unknown group 'wbe': define it under groups, "
            "e.g. 'groups: {{wbe: {{expect_open: \"443\"}}}}'",
        ),
    ],
)
def test_bad_policy_files_name_the_token(tmp_path, text, message):
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    with pytest.raises(InputError) as raised:
        load_policy_file(path)
    assert str(raised.value) == message.format(path=path)


def test_missing_policy_file(tmp_path):
    path = tmp_path / "missing.yaml"
    with pytest.raises(InputError) as raised:
        load_policy_file(str(path))
    assert str(raised.value) == f"cannot read policy file '{path}': No such file or directory"


ODD_SPELLINGS = """\
groups:
  edge:
    hosts: ["::FFFF:127.0.0.13", "0:0:0:0:0:0:0:1"]
    expect_closed: "23"
hosts:
  "::ffff:127.0.0.12":
    expect_open: "443"
  "2001:DB8:0:0::5":
    expect_open: "22"
"""


def test_policy_file_addresses_match_in_any_spelling(tmp_path):
    """Issue 12, item 9's rule for policies: a host entry or group member spelt as a mapped,
    upper-case or uncompressed address is the target's address (it applied to no target)."""
    path = tmp_path / "policy.yaml"
    path.write_text(ODD_SPELLINGS)
    book = load_policy_file(path)
    assert book.policy_for("127.0.0.12", "127.0.0.12").expect_open == F({443})
    assert book.policy_for("db", "2001:db8::5").expect_open == F({22})
    assert book.policy_for("127.0.0.13", "127.0.0.13").expect_closed == F({23})
    assert book.policy_for("::1", "::1").expect_closed == F({23})


def test_two_spellings_of_one_host_in_a_policy_file_are_refused(tmp_path):
    path = tmp_path / "policy.yaml"
    path.write_text('hosts:\n  "127.0.0.12": {expect_open: "22"}\n'
                    '  "::ffff:127.0.0.12": {expect_open: "443"}\n')  # fmt: skip
    with pytest.raises(InputError) as raised:
        load_policy_file(path)
    assert str(raised.value) == (
        f"policy file '{path}': hosts '127.0.0.12' and '::ffff:127.0.0.12' are the same "
        "address 127.0.0.12: give it one entry, e.g. 'hosts: {\"127.0.0.12\": {expect_open: "
        "\"22\"}}'"
    )
