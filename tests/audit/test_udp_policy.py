"""UDP ports in policies, verdicts, drift and baselines: open|filtered proves no state."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nornir_portscan.audit.drift import (
    Drift,
    HostDrift,
    PortChange,
    compare,
    confirm_with,
    load_baseline,
    report_spec_keys,
    unexpected_changes,
)
from nornir_portscan.audit.gates import Audit, _merge, unconfirmed_text, violation_text
from nornir_portscan.audit.policy import Violation, evaluate, parse_policy, port_text
from nornir_portscan.errors import InputError
from nornir_portscan.models import (
    HostResult,
    HostStatus,
    Policy,
    PortResult,
    PortState,
    ScanOptions,
    ScanReport,
)
from nornir_portscan.ports import udp_key
from nornir_portscan.reports.data import report_to_json

OPEN, CLOSED, FILTERED, SILENT = (
    PortState.OPEN,
    PortState.CLOSED,
    PortState.FILTERED,
    PortState.OPEN_FILTERED,
)
U = udp_key


def udp(number: int, state: PortState, reason: str) -> PortResult:
    rtt = None if state is SILENT else 0.3
    return PortResult(number, state, reason, rtt, 2 if state is SILENT else 1, "udp")


def host(*udp_ports: PortResult, scanned: tuple[int, ...] = ()) -> HostResult:
    """TCP 22 open and 80 closed; the UDP ports given, and UDP 123 closed."""
    ports = (PortResult(22, OPEN, "syn-ack", 0.2, 1), *udp_ports)
    keys = (22, 80, *sorted({U(123), *(p.key for p in udp_ports), *scanned}))
    return HostResult(
        "web1",
        "127.0.0.10",
        HostStatus.UP,
        tuple(sorted(ports, key=lambda p: p.key)),
        closed_count=2,
        scanned=keys,
    )


def test_port_text_shows_udp_ports_with_their_protocol_and_tcp_ports_as_always():
    assert [port_text(p) for p in (22, U(53), U(65535), 65535)] == [
        "22",
        "53/udp",
        "65535/udp",
        "65535",
    ]


@pytest.mark.parametrize("expected", ["open", "closed", "filtered"])
def test_open_filtered_meets_no_expectation(expected):
    policy = Policy(**{f"expect_{expected}": frozenset({U(161)})})
    violation = Violation(U(161), expected, "open|filtered", "no-response")
    verdict = evaluate(host(udp(161, SILENT, "no-response")), policy)
    assert (verdict.compliant, verdict.violations, verdict.unconfirmed) == (False, (violation,), ())


def test_udp_states_that_the_network_showed_meet_their_expectations():
    policy = Policy(
        expect_open=frozenset({22, U(53)}),
        expect_closed=frozenset({80, U(123)}),
        expect_filtered=frozenset({U(137)}),
        allowed_open=frozenset({22, U(53)}),
    )
    found = host(udp(53, OPEN, "udp-response"), udp(137, FILTERED, "admin-prohibited"))
    verdict = evaluate(found, policy)
    assert (verdict.compliant, verdict.violations, verdict.unconfirmed) == (True, (), ())


def test_tcp_expectations_say_nothing_of_the_udp_port_of_the_same_number():
    # UDP 22 open does not make TCP 22 open, and TCP 80 closed does not make UDP 80 closed
    found = host(udp(80, OPEN, "udp-response"))
    verdict = evaluate(found, Policy(expect_open=frozenset({80}), expect_closed=frozenset({U(22)})))
    assert verdict.violations == (
        Violation(80, "open", "closed", "conn-refused"),
        Violation(U(22), "closed", "not scanned", "not-scanned"),
    )


def test_an_open_udp_port_outside_the_allow_list_is_a_violation_a_silent_one_unconfirmed():
    found = host(udp(53, OPEN, "udp-response"), udp(161, SILENT, "no-response"))
    verdict = evaluate(found, Policy(allowed_open=frozenset({22})))
    assert verdict.compliant is False
    assert verdict.violations == (Violation(U(53), "not open", "open", "udp-response"),)
    assert verdict.unconfirmed == (Violation(U(161), "not open", "open|filtered", "no-response"),)
    assert violation_text(verdict.violations[0]) == "port 53/udp open (not in allowed_open)"
    assert unconfirmed_text(verdict.unconfirmed[0]) == (
        "port 161/udp open|filtered (no response; not in allowed_open, not proven open)"
    )


def test_an_unconfirmed_port_alone_passes_and_is_not_a_failure():
    found = host(udp(161, SILENT, "no-response"))
    verdict = evaluate(found, Policy(allowed_open=frozenset({22})))
    assert (verdict.compliant, verdict.violations) == (True, ())
    assert len(verdict.unconfirmed) == 1
    report = ScanReport((found,), ScanOptions(), 0.0, 1.0, 5)
    audit = Audit(report, (verdict,))
    assert (audit.failed(0), audit.failure(0), audit.violated) == (False, "", False)


def test_the_failure_line_names_udp_ports_and_says_no_response():
    found = host(udp(161, SILENT, "no-response"))
    verdict = evaluate(found, Policy(expect_open=frozenset({22, U(161)})))
    audit = Audit(ScanReport((found,), ScanOptions(), 0.0, 1.0, 5), (verdict,))
    assert audit.failure(0) == (
        "web1 (127.0.0.10): port 161/udp open|filtered (no response; expected open)"
    )


def test_policy_errors_name_udp_ports_as_people_write_them():
    with pytest.raises(InputError) as caught:
        parse_policy({"expect_open": [22], "allowed_open": [443]})
    assert "port 22 is in expect_open but not in allowed_open" in str(caught.value)
    policy = Policy(expect_open=frozenset({U(161)}), allowed_open=frozenset({22}))
    from nornir_portscan.audit.policy import _check_consistent

    with pytest.raises(InputError) as caught:
        _check_consistent(policy, "policy")
    assert str(caught.value) == (
        "policy: port 161/udp is in expect_open but not in allowed_open; allow what you expect "
        "open, e.g. allowed_open: 'U:161'"
    )
    both = Policy(expect_open=frozenset({U(53)}), expect_filtered=frozenset({U(53)}))
    with pytest.raises(InputError, match=r"port 53/udp is in both expect_open and expect_filtered"):
        _check_consistent(both, "policy")


def test_a_wait_round_replaces_the_udp_port_it_probed_again_and_not_the_tcp_one():
    old = HostResult(
        "web1",
        "127.0.0.10",
        HostStatus.UP,
        (PortResult(161, OPEN, "syn-ack", 0.1, 1), udp(161, SILENT, "no-response")),
        scanned=(161, U(161)),
    )
    new = HostResult(
        "web1", "127.0.0.10", HostStatus.UP, (udp(161, OPEN, "udp-response"),), scanned=(U(161),)
    )
    merged = _merge(old, new)
    assert [(p.key, p.state) for p in merged.ports] == [(161, OPEN), (U(161), OPEN)]
    assert merged.state_of(161) is OPEN
    assert merged.state_of(U(161)) is OPEN


# Drift


def states_after(*udp_ports: PortResult) -> ScanReport:
    """UDP 53, 123, 137 and 161 scanned: the ports given, the others closed."""
    scanned = (U(53), U(137), U(161))
    return ScanReport((host(*udp_ports, scanned=scanned),), ScanOptions(), 10.0, 11.0, 5)


@pytest.fixture
def baseline(tmp_path: Path) -> dict:
    before = states_after(
        udp(53, OPEN, "udp-response"),
        udp(161, SILENT, "no-response"),
        udp(137, FILTERED, "admin-prohibited"),
    )
    path = tmp_path / "baseline.json"
    path.write_text(report_to_json(before))
    return load_baseline(path)


def test_a_baseline_with_udp_ports_loads_and_keeps_tcp_and_udp_apart(baseline):
    entry = baseline["hosts"][0]
    assert entry["scanned_ports"] == "22,80,U:53,123,137,161"
    assert report_spec_keys(entry["scanned_ports"]) == [22, 80, U(53), U(123), U(137), U(161)]
    assert not compare(baseline, states_after(
        udp(53, OPEN, "udp-response"),
        udp(161, SILENT, "no-response"),
        udp(137, FILTERED, "admin-prohibited"),
    ))  # fmt: skip


def test_open_to_open_filtered_is_a_change_not_a_closed_port_and_the_reverse_opens(baseline):
    drift = compare(
        baseline,
        states_after(
            udp(53, SILENT, "no-response"),  # open -> open|filtered
            udp(161, OPEN, "udp-response"),  # open|filtered -> open: a new exposure
            udp(123, SILENT, "no-response"),  # closed -> open|filtered
            # 137 filtered -> closed
        ),
    )
    (changed,) = drift.hosts
    assert changed.opened == (U(161),)
    assert changed.closed == ()
    assert changed.changed == (
        PortChange(U(53), "open", "open|filtered"),
        PortChange(U(123), "closed", "open|filtered"),
        PortChange(U(137), "filtered", "closed"),
    )
    # no expectation foresees a silence: every change counts
    policy = Policy(expect_closed=frozenset({U(53), U(123)}), expect_filtered=frozenset({U(137)}))
    assert unexpected_changes(changed, policy) == (U(53), U(123), U(137), U(161))


def test_a_recheck_that_hears_the_port_again_dismisses_open_to_open_filtered():
    drift = Drift(
        (HostDrift("web1", "127.0.0.10", changed=(PortChange(U(53), "open", "open|filtered"),)),)
    )
    key = ("web1", "127.0.0.10", None)
    assert not confirm_with(drift, {key: [{U(53): "open"}]}).hosts
    still = confirm_with(drift, {key: [{U(53): "open|filtered"}] * 3})
    assert still.hosts == drift.hosts
    assert still.confirmed == 1


def test_the_drift_failure_line_names_udp_ports(baseline):
    after = states_after(udp(53, SILENT, "no-response"), udp(137, FILTERED, "admin-prohibited"),
                         udp(161, SILENT, "no-response"))  # fmt: skip
    audit = Audit(after, drift=compare(baseline, after))
    assert audit.failure(0) == (
        "web1 (127.0.0.10): unexpected drift since the baseline: port 53/udp open -> open|filtered"
    )


def write_baseline(tmp_path: Path, ports: list[dict], scanned: str = "22") -> Path:
    data = json.loads(report_to_json(ScanReport((host(),), ScanOptions(), 0.0, 1.0, 1)))
    data["hosts"][0]["ports"] = ports
    data["hosts"][0]["scanned_ports"] = scanned
    path = tmp_path / "b.json"
    path.write_text(json.dumps(data))
    return path


SAVE = "save a baseline with 'portscan --json baseline.json ...'"
WHERE = "host 1 ('web1') port entry 2"


@pytest.mark.parametrize(
    ("ports", "scanned", "problem"),
    [
        ([{"port": 53, "state": "open", "protocol": "udp"},
          {"port": 53, "state": "open|filtered", "protocol": "udp"}], "U:53",
         f"{WHERE}: port 53/udp is listed twice (also port entry 1); {SAVE}"),
        ([{"port": 53, "state": "open"}, {"port": 53, "state": "open", "protocol": "sctp"}], "53",
         f"{WHERE}: 'protocol' must be tcp or udp, not 'sctp'; {SAVE}"),
        ([], "U:53,T:53", None),
        ([], "U:53,53", "'scanned_ports' must be a port spec"),
        ([], "U:53,U:53", "'scanned_ports' must be a port spec"),
        ([], "U:0", "'scanned_ports' must be a port spec"),
        ([], "U:domain", "'scanned_ports' must be a port spec"),
    ],
)  # fmt: skip
def test_baseline_udp_entries_are_checked(tmp_path, ports, scanned, problem):
    path = write_baseline(tmp_path, ports, scanned)
    if problem is None:
        load_baseline(path)
        return
    with pytest.raises(InputError) as caught:
        load_baseline(path)
    assert problem in str(caught.value)


def test_tcp_and_udp_entries_of_one_number_are_two_ports(tmp_path):
    path = write_baseline(
        tmp_path,
        [{"port": 53, "state": "open"}, {"port": 53, "state": "open|filtered", "protocol": "udp"}],
        "53,U:53",
    )
    baseline = load_baseline(path)
    now = ScanReport(
        (HostResult("web1", "127.0.0.10", HostStatus.UP, (udp(53, OPEN, "udp-response"),),
                    closed_count=1, scanned=(53, U(53))),),
        ScanOptions(), 0.0, 1.0, 1,
    )  # fmt: skip
    (changed,) = compare(baseline, now).hosts
    assert (changed.opened, changed.closed, changed.changed) == (
        (U(53),),
        (53,),
        (),
    )
