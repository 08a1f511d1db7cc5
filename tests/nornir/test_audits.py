"""Audits with the ``portscan`` Nornir task: expectations from the inventory, wait-until and
baselines, against real SimpleInventories and real loopback listeners."""

from __future__ import annotations

import json
import pickle
import re
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from nornir.core.task import AggregatedResult
from support import Listeners, closed_port

from nornir_portscan.errors import InputError, OptionError, PortSpecError
from nornir_portscan.nornir.tasks import PortscanResult, portscan

if TYPE_CHECKING:
    from conftest import EngineCalls, MakeNornir

FAST = {"timeout": 0.5, "processes": 2}


@pytest.fixture
def lab(listeners: Listeners) -> dict[str, int]:
    """o1 open on 127.0.0.11-13, o2 open on .11 only, c closed everywhere."""
    o1 = listeners.open("127.0.0.11")
    for address in ("127.0.0.12", "127.0.0.13"):
        listeners.open(address, o1)
    o2 = listeners.open("127.0.0.11")
    return {"o1": o1, "o2": o2, "c": closed_port("127.0.0.11")}


@pytest.fixture
def late() -> Iterator[list[socket.socket]]:
    """Sockets a timer starts listening on mid-run; closed at teardown."""
    socks: list[socket.socket] = []
    yield socks
    for sock in socks:
        sock.close()


def closed_ports(address: str, count: int) -> list[int]:
    """``count`` distinct ports with nothing listening on ``address``, ascending."""
    socks = [socket.socket() for _ in range(count)]
    try:
        for sock in socks:
            sock.bind((address, 0))
        return sorted(int(sock.getsockname()[1]) for sock in socks)
    finally:
        for sock in socks:
            sock.close()


def listen_later(socks: list[socket.socket], address: str, port: int, delay: float) -> None:
    """Start listening on ``address:port`` after ``delay`` seconds (the kernel accepts)."""

    def start() -> None:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address, port))
        sock.listen(16)
        socks.append(sock)

    timer = threading.Timer(delay, start)
    timer.daemon = True
    timer.start()


def audit(result: AggregatedResult) -> dict[str, Any]:
    """Per host: (failed, compliant, violations as (port, expected, actual, reason)); or
    (failed, message) for an input error."""
    out: dict[str, Any] = {}
    for name, multi in result.items():
        r = multi[0]
        if not isinstance(r.result, dict):
            out[name] = (r.failed, r.result)
        elif "compliant" not in r.result:
            out[name] = (r.failed, "no expectations")
        else:
            out[name] = (
                r.failed,
                r.result["compliant"],
                [
                    (v["port"], v["expected"], v["actual"], v["reason"])
                    for v in r.result["violations"]
                ],
            )
    return out


def lines(result: AggregatedResult) -> dict[str, str]:
    return {name: str(multi[0].result) for name, multi in result.items()}


# -- expectations --------------------------------------------------------------------------------
def test_expectations_inherit_defaults_groups_host(
    make_nornir: MakeNornir, lab: dict[str, int], engine_calls: EngineCalls
) -> None:
    o1, o2, c = lab["o1"], lab["o2"], lab["c"]
    defaults = {"data": {"portscan": {"expect_open": str(o1), "allowed_open": str(o1)}}}
    groups = {
        "base": {"data": {"portscan": {"expect_closed": str(c)}}},
        "web": {"groups": ["base"], "data": {"portscan": {"allowed_open": f"{o1},{o2}"}}},
    }
    hosts = {
        "d": {"hostname": "127.0.0.12"},  # the defaults: o1 open and nothing else
        "w": {"hostname": "127.0.0.11", "groups": ["web"]},  # defaults + base + web
        "x": {"hostname": "127.0.0.11"},  # the defaults' allow-list: o2 is a breach
        "y": {  # the host's own expect_closed replaces base's
            "hostname": "127.0.0.11",
            "groups": ["web"],
            "data": {"portscan": {"expect_closed": str(o2)}},
        },
    }
    nr = make_nornir(hosts, groups, defaults)
    result = nr.run(task=portscan, ports=str(o2), **FAST)
    assert audit(result) == {
        "d": (False, True, []),
        "w": (False, True, []),
        "x": (True, False, [(o2, "not open", "open", "syn-ack")]),
        "y": (True, False, [(o2, "closed", "open", "syn-ack")]),
    }
    assert sorted(result.failed_hosts) == ["x", "y"]
    assert result["w"][0].result["policy"] == {
        "expect_open": str(o1),
        "expect_closed": str(c),
        "expect_filtered": "",
        "allowed_open": ",".join(map(str, sorted([o1, o2]))),
    }
    assert result["y"][0].result["policy"]["expect_closed"] == str(o2)
    # one engine run; the ports a policy mentions are scanned although `ports` lists only o2
    assert len(engine_calls) == 1
    assert {t.name: t.ports for t in engine_calls[0].targets} == {
        "d": tuple(sorted([o1, o2])),
        "w": tuple(sorted([o1, o2, c])),
        "x": tuple(sorted([o1, o2])),
        "y": tuple(sorted([o1, o2])),
    }
    shown = ",".join(map(str, sorted([o1, o2])))
    assert lines(result) == {
        "d": f"127.0.0.12 up: open {o1}; closed 1; compliant",
        "w": f"127.0.0.11 up: open {shown}; closed 1; compliant",
        "x": f"127.0.0.11 up: open {shown}; closed 0; violations: {o2} open (not allowed)",
        "y": f"127.0.0.11 up: open {shown}; closed 0; violations: {o2} open (expected closed)",
    }


def test_task_arguments_are_default_expectations(
    make_nornir: MakeNornir, lab: dict[str, int]
) -> None:
    o1, c = lab["o1"], lab["c"]
    hosts = {
        "a": {"hostname": "127.0.0.11"},
        "unset": {"hostname": "127.0.0.12", "data": {"portscan": {"expect_open": None}}},
        "filt": {"hostname": "127.0.0.13", "data": {"portscan": {"expect_filtered": str(c)}}},
        "clash": {"hostname": "127.0.0.13", "data": {"portscan": {"expect_closed": str(o1)}}},
        "gone": {"hostname": "no-such-host.invalid"},
    }
    nr = make_nornir(hosts)
    result = nr.run(task=portscan, ports=str(c), expect_open=o1, **FAST)
    assert audit(result) == {
        "a": (False, True, []),
        "unset": (False, "no expectations"),  # null in the inventory drops the task's default
        "filt": (True, False, [(c, "filtered", "closed", "conn-refused")]),
        "clash": (
            True,
            f"host 'clash' (inventory data): port {o1} is in both expect_open and "
            f"expect_closed; give each port one expected state, e.g. expect_open: '22' and "
            "expect_closed: '23'",
        ),
        "gone": (True, None, []),  # not judged: a host error
    }
    assert isinstance(result["clash"][0].exception, InputError)
    assert str(result["gone"][0].result) == "gone unresolved: Name or service not known"
    assert str(result["filt"][0].result) == (
        f"127.0.0.13 up: open {o1}; closed 1; violations: {c} closed (expected filtered)"
    )


def test_bad_expectation_fails_the_hosts_that_use_it(
    make_nornir: MakeNornir, lab: dict[str, int], engine_calls: EngineCalls
) -> None:
    own = {"hostname": "127.0.0.11", "data": {"portscan": {"allowed_open": str(lab["o1"])}}}
    nr = make_nornir({"own": own, "plain": {"hostname": "127.0.0.12"}})
    ports = f"{lab['o1']},{lab['o2']}"
    result = nr.run(task=portscan, ports=ports, allowed_open="90-80", **FAST)
    assert audit(result) == {
        "own": (True, False, [(lab["o2"], "not open", "open", "syn-ack")]),
        "plain": (
            True,
            "host 'plain' allowed_open: invalid port range '90-80' in '90-80': start must be "
            "<= end, e.g. '80-90'",
        ),
    }
    assert type(result["plain"][0].exception) is PortSpecError
    assert engine_calls.targets() == [["own"]]


def test_hosts_without_expectations_report_as_before(
    make_nornir: MakeNornir, lab: dict[str, int]
) -> None:
    nr = make_nornir({"a": {"hostname": "127.0.0.11"}})
    entry = nr.run(task=portscan, ports=str(lab["o1"]), **FAST)["a"][0].result
    assert sorted(entry) == [
        "address",
        "closed_count",
        "error",
        "error_ports",
        "filtered_ports",
        "name",
        "open_ports",
        "ports",
        "scanned_ports",
        "status",
        "up",
    ]


def test_many_violations_are_cut_short_in_the_summary(
    make_nornir: MakeNornir, lab: dict[str, int]
) -> None:
    closed = closed_ports("127.0.0.12", 7)
    nr = make_nornir({"a": {"hostname": "127.0.0.12"}})
    result = nr.run(
        task=portscan, ports=str(lab["o1"]), expect_open=",".join(map(str, closed)), **FAST
    )
    entry = result["a"][0].result
    assert [v["port"] for v in entry["violations"]] == closed
    shown = ", ".join(f"{p} closed (expected open)" for p in closed[:5])
    assert str(entry) == (
        f"127.0.0.12 up: open {lab['o1']}; closed 7; violations: {shown} and 2 more"
    )
    again = pickle.loads(pickle.dumps(entry))
    assert isinstance(again, PortscanResult)
    assert again == entry
    assert str(again) == str(entry)


# -- wait until ----------------------------------------------------------------------------------
def test_wait_converges_when_a_port_opens_mid_wait(
    make_nornir: MakeNornir,
    lab: dict[str, int],
    late: list[socket.socket],
    engine_calls: EngineCalls,
    audit_calls: list[dict[str, Any]],
) -> None:
    port = closed_port("127.0.0.14")
    hosts = {
        "late": {"hostname": "127.0.0.14", "data": {"portscan": {"expect_open": str(port)}}},
        "steady": {"hostname": "127.0.0.11", "data": {"portscan": {"expect_open": lab["o1"]}}},
        "plain": {"hostname": "127.0.0.12"},
    }
    nr = make_nornir(hosts)
    listen_later(late, "127.0.0.14", port, 0.6)
    result = nr.run(
        task=portscan, ports=str(lab["c"]), wait=True, wait_timeout=5, interval=0.2, **FAST
    )
    assert audit(result) == {
        "late": (False, True, []),
        "steady": (False, True, []),
        "plain": (False, "no expectations"),
    }
    wait = result["late"][0].result["wait"]
    assert (wait["converged"], wait["unmet"]) == (True, [])
    assert 0.6 <= wait["elapsed"] < 5
    assert wait["rounds"] >= 2
    assert result["steady"][0].result["wait"] == wait  # one wait for the whole run
    assert "wait" not in result["plain"][0].result
    assert re.fullmatch(
        rf"127\.0\.0\.14 up: open {port}; closed 1; compliant; wait: converged in \d\.\d s",
        str(result["late"][0].result),
    )
    # one audit for the run; the rounds after the first re-scan only the unmet port
    assert len(audit_calls) == 1
    assert (audit_calls[0]["wait"], audit_calls[0]["wait_timeout"]) == (True, 5)
    assert sorted(engine_calls.targets()[0]) == ["late", "plain", "steady"]
    assert [[(t.name, t.ports) for t in r.targets] for r in engine_calls[1:]] == [
        [("late", (port,))]
    ] * (wait["rounds"] - 1)


def test_wait_that_never_converges_fails_those_hosts(
    make_nornir: MakeNornir, lab: dict[str, int]
) -> None:
    never = closed_port("127.0.0.15")
    hosts = {
        "never": {"hostname": "127.0.0.15", "data": {"portscan": {"expect_open": str(never)}}},
        "fine": {"hostname": "127.0.0.11", "data": {"portscan": {"expect_open": lab["o1"]}}},
    }
    nr = make_nornir(hosts)
    result = nr.run(
        task=portscan, ports=str(lab["c"]), wait=True, wait_timeout=1, interval=0.2, **FAST
    )
    assert audit(result) == {
        "never": (True, False, [(never, "open", "closed", "conn-refused")]),
        "fine": (False, True, []),
    }
    wait = result["never"][0].result["wait"]
    assert (wait["converged"], wait["unmet"]) == (
        False,
        [{"port": never, "expected": "open", "actual": "closed"}],
    )
    assert 0.7 <= wait["elapsed"] < 3  # the timeout, plus the last round
    assert result["fine"][0].result["wait"] == {**wait, "converged": True, "unmet": []}
    assert re.fullmatch(
        rf"127\.0\.0\.15 up: open none; closed 2; wait: NOT converged in \d\.\d s: "
        rf"{never} closed \(expected open\)",
        str(result["never"][0].result),
    )
    assert sorted(result.failed_hosts) == ["never"]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (
            {"wait": True},
            "nothing to wait for: wait=True needs expectations, e.g. expect_open='8080' as a "
            "task argument or portscan: {expect_open: '8080'} in the inventory",
        ),
        (
            {"wait": True, "expect_open": "22", "wait_timeout": 0},
            "invalid wait_timeout 0: use a number of seconds > 0, e.g. wait_timeout=60, interval=2",
        ),
        (
            {"recheck": -1},
            "invalid recheck -1: use how many times to re-probe a difference from the "
            "baseline, 0 or more, e.g. recheck=3",
        ),
    ],
)
def test_bad_audit_arguments_fail_every_host(
    make_nornir: MakeNornir,
    engine_calls: EngineCalls,
    arguments: dict[str, Any],
    message: str,
) -> None:
    nr = make_nornir({"a": {"hostname": "127.0.0.11"}, "b": {"hostname": "127.0.0.12"}})
    result = nr.run(task=portscan, ports="22", **arguments, **FAST)
    assert {n: (r[0].failed, type(r[0].exception), r[0].result) for n, r in result.items()} == {
        "a": (True, OptionError, message),
        "b": (True, OptionError, message),
    }
    assert engine_calls == []


# -- baselines and drift -------------------------------------------------------------------------
def test_report_then_baseline_shows_confirmed_drift(
    make_nornir: MakeNornir,
    lab: dict[str, int],
    listeners: Listeners,
    tmp_path: Path,
    audit_calls: list[dict[str, Any]],
) -> None:
    o1, new = lab["o1"], closed_port("127.0.0.12")
    nr = make_nornir({"a": {"hostname": "127.0.0.11"}, "b": {"hostname": "127.0.0.12"}})
    saved = tmp_path / "before.json"
    before = nr.run(task=portscan, ports=f"{o1},{new}", report=saved, **FAST)
    assert before.failed is False
    report = json.loads(saved.read_text())
    assert [(h["name"], h["address"], h["open_ports"]) for h in report["hosts"]] == [
        ("a", "127.0.0.11", [o1]),
        ("b", "127.0.0.12", [o1]),
    ]
    listeners.open("127.0.0.12", new)
    after = nr.run(task=portscan, ports=f"{o1},{new}", baseline=str(saved), **FAST)
    assert {n: (r[0].failed, r[0].result["drift"]) for n, r in after.items()} == {
        "a": (
            False,
            {"opened": [], "closed": [], "changed": [], "unexpected": [], "in_baseline": True},
        ),
        "b": (
            True,
            {
                "opened": [new],
                "closed": [],
                "changed": [],
                "unexpected": [new],
                "in_baseline": True,
            },
        ),
    }
    assert audit_calls[-1]["recheck"] == 3  # the change was probed again before it counted
    assert "compliant" not in after["b"][0].result
    shown = ",".join(map(str, sorted([o1, new])))
    assert lines(after) == {
        "a": f"127.0.0.11 up: open {o1}; closed 1; no drift",
        "b": f"127.0.0.12 up: open {shown}; closed 0; drift: opened {new}",
    }


def test_drift_that_meets_expectations_does_not_fail(
    make_nornir: MakeNornir, listeners: Listeners, tmp_path: Path
) -> None:
    p, q = closed_ports("127.0.0.14", 2)
    nr = make_nornir({"x": {"hostname": "127.0.0.14"}, "y": {"hostname": "127.0.0.15"}})
    saved = tmp_path / "before.json"
    assert nr.run(task=portscan, ports=f"{p},{q}", report=saved, **FAST).failed is False
    for address, port in (("127.0.0.14", p), ("127.0.0.14", q), ("127.0.0.15", p)):
        listeners.open(address, port)
    after = nr.run(
        task=portscan, ports=f"{p},{q}", baseline=saved, recheck=1, expect_open=str(p), **FAST
    )
    assert {n: (r[0].failed, r[0].result["drift"]) for n, r in after.items()} == {
        "x": (
            True,
            {"opened": [p, q], "closed": [], "changed": [], "unexpected": [q], "in_baseline": True},
        ),
        "y": (
            False,
            {"opened": [p], "closed": [], "changed": [], "unexpected": [], "in_baseline": True},
        ),
    }
    pq = f"{p}-{q}" if q == p + 1 else f"{p},{q}"
    assert lines(after) == {
        "x": f"127.0.0.14 up: open {pq}; closed 0; compliant; drift: opened {pq} (unexpected: {q})",
        "y": f"127.0.0.15 up: open {p}; closed 1; compliant; drift: opened {p}, as expected",
    }


def test_cli_baseline_matches_hosts_by_address(
    make_nornir: MakeNornir,
    lab: dict[str, int],
    tmp_path: Path,
    run_cli: Any,
) -> None:
    o1, o2, c = lab["o1"], lab["o2"], lab["c"]
    saved = tmp_path / "cli.json"
    ports = f"{o1},{o2},{c}"
    done = run_cli("--json", str(saved), "-p", ports, "--timeout", "0.5", "127.0.0.11")
    assert (done.returncode, done.stderr) == (0, "")
    nr = make_nornir({"web1": {"hostname": "127.0.0.11"}, "new": {"hostname": "127.0.0.12"}})
    result = nr.run(
        task=portscan,
        ports=ports,
        baseline=saved,
        recheck=0,
        expect_closed=str(c),
        report=tmp_path / "after.json",
        **FAST,
    )
    assert {n: (r[0].failed, r[0].result["drift"]) for n, r in result.items()} == {
        "web1": (
            False,
            {"opened": [], "closed": [], "changed": [], "unexpected": [], "in_baseline": True},
        ),
        "new": (
            False,
            {"opened": [], "closed": [], "changed": [], "unexpected": [], "in_baseline": False},
        ),
    }
    assert str(result["new"][0].result) == (
        f"127.0.0.12 up: open {o1}; closed 2; compliant; drift: not in the baseline"
    )
    written = json.loads((tmp_path / "after.json").read_text())
    assert written["drift"]["appeared"] == ["new (127.0.0.12)"]
    assert written["compliance"] == {
        "compliant": 2,
        "non_compliant": 0,
        "error": 0,
        "violations": 0,
    }


def test_unreadable_baseline_and_unwritable_report_fail_every_host(
    make_nornir: MakeNornir, tmp_path: Path
) -> None:
    nr = make_nornir({"a": {"hostname": "127.0.0.11"}})
    missing = tmp_path / "nope" / "x.json"
    result = nr.run(task=portscan, ports="22", baseline=missing, **FAST)
    assert (result["a"][0].failed, result["a"][0].result) == (
        True,
        f"cannot read baseline {str(missing)!r}: No such file or directory",
    )
    result = nr.run(task=portscan, ports="22", report=missing, on_failed=True, **FAST)
    assert (result["a"][0].failed, result["a"][0].result) == (
        True,
        f"cannot write the report {str(missing)!r}: No such file or directory",
    )
