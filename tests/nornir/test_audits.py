"""Audits with the ``portscan`` Nornir task: expectations from the call and the inventory,
wait-until and baselines, each host judged on its own scan, against real SimpleInventories and
real loopback listeners."""

from __future__ import annotations

import json
import pickle
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from conftest import FAST
from nornir.core.task import AggregatedResult
from support import Listeners, closed_port

from nornir_portscan.errors import InputError, OptionError, PortSpecError
from nornir_portscan.nornir.tasks import PortscanResult, portscan, scan_inventory

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


def listen_once(
    socks: list[socket.socket], address: str, port: int, ready: Callable[[], bool]
) -> threading.Thread:
    """Start listening on ``address:port`` (the kernel accepts) as soon as ``ready()``, polled
    for 30 s at most."""

    def start() -> None:
        deadline = time.monotonic() + 30
        while not ready():
            if time.monotonic() > deadline:
                return  # the test's assertions say what went wrong
            time.sleep(0.01)
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address, port))
        sock.listen(16)
        socks.append(sock)
        opened.append(time.monotonic())

    opened: list[float] = []
    thread = threading.Thread(target=start, daemon=True)
    thread.opened = opened  # type: ignore[attr-defined]
    thread.start()
    return thread


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


def joined(*ports: int) -> str:
    return ",".join(map(str, sorted(ports)))


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
        "allowed_open": joined(o1, o2),
    }
    assert result["y"][0].result["policy"]["expect_closed"] == str(o2)
    # a scan per host; the ports a policy names are scanned although `ports` lists only o2
    assert {t.name: t.ports for r in engine_calls for t in r.targets} == {
        "d": tuple(sorted([o1, o2])),
        "w": tuple(sorted([o1, o2, c])),
        "x": tuple(sorted([o1, o2])),
        "y": tuple(sorted([o1, o2])),
    }
    assert len(engine_calls) == 4
    assert lines(result) == {
        "d": f"127.0.0.12 up: open {o1}; closed 1; compliant",
        "w": f"127.0.0.11 up: open {joined(o1, o2)}; closed 1; compliant",
        "x": f"127.0.0.11 up: open {joined(o1, o2)}; closed 0; "
        f"FAILED: port {o2} open (not in allowed_open)",
        "y": f"127.0.0.11 up: open {joined(o1, o2)}; closed 0; "
        f"FAILED: port {o2} open (expected closed)",
    }
    assert result["x"][0].result["failure"] == (
        f"x (127.0.0.11): port {o2} open (not in allowed_open)"
    )


def test_task_expectations_beat_the_inventory_key_by_key(
    make_nornir: MakeNornir, lab: dict[str, int]
) -> None:
    o1, o2, c = lab["o1"], lab["o2"], lab["c"]
    hosts = {
        "a": {"hostname": "127.0.0.11"},
        # the inventory's expect_open is replaced; its allowed_open still holds
        "own": {
            "hostname": "127.0.0.11",
            "data": {"portscan": {"expect_open": str(c), "allowed_open": f"{o1},{c}"}},
        },
        "unset": {"hostname": "127.0.0.12", "data": {"portscan": {"expect_open": None}}},
        "filt": {"hostname": "127.0.0.13", "data": {"portscan": {"expect_filtered": str(c)}}},
        "clash": {"hostname": "127.0.0.13", "data": {"portscan": {"expect_closed": str(o1)}}},
        "gone": {"hostname": "gone.test"},
    }
    nr = make_nornir(hosts)
    result = nr.run(task=portscan, ports=f"{c},{o2}", expect_open=o1, **FAST)
    assert audit(result) == {
        "a": (False, True, []),
        "own": (True, False, [(o2, "not open", "open", "syn-ack")]),
        "unset": (False, True, []),  # the task's expect_open wins over a null too
        "filt": (True, False, [(c, "filtered", "closed", "conn-refused")]),
        "clash": (
            True,
            f"policy of 'clash': port {o1} is in both expect_open and expect_closed; give each "
            "port one expected state, e.g. expect_open: '22' and expect_closed: '23'",
        ),
        "gone": (True, None, []),  # not judged: a host error
    }
    assert result["own"][0].result["policy"] == {
        "expect_open": str(o1),
        "expect_closed": "",
        "expect_filtered": "",
        "allowed_open": joined(o1, c),
    }
    assert isinstance(result["clash"][0].exception, InputError)
    assert str(result["gone"][0].result) == (
        "gone unresolved: Name or service not known; "
        "FAILED: host unresolved: Name or service not known"
    )
    assert str(result["filt"][0].result) == (
        f"127.0.0.13 up: open {o1}; closed 2; FAILED: port {c} closed (expected filtered)"
    )
    # without the task's, a null in the inventory drops an inherited expectation
    result = nr.run(task=portscan, ports=f"{c},{o2}", on_failed=True, **FAST)
    assert audit(result)["unset"] == (False, "no expectations")
    assert audit(result)["own"] == (
        True,
        False,
        sorted([(c, "open", "closed", "conn-refused"), (o2, "not open", "open", "syn-ack")]),
    )


def test_a_bad_expectation_argument_fails_every_host(
    make_nornir: MakeNornir, lab: dict[str, int], engine_calls: EngineCalls
) -> None:
    own = {"hostname": "127.0.0.11", "data": {"portscan": {"allowed_open": str(lab["o1"])}}}
    nr = make_nornir({"own": own, "plain": {"hostname": "127.0.0.12"}})
    result = nr.run(task=portscan, ports=str(lab["o1"]), allowed_open="90-80", **FAST)
    message = (
        "allowed_open: invalid port range '90-80' in '90-80': start must be <= end, e.g. '80-90'"
    )
    assert audit(result) == {"own": (True, message), "plain": (True, message)}
    assert type(result["plain"][0].exception) is PortSpecError
    assert engine_calls == []


def test_hosts_without_expectations_have_no_verdict(
    make_nornir: MakeNornir, lab: dict[str, int]
) -> None:
    nr = make_nornir({"a": {"hostname": "127.0.0.11"}})
    entry = nr.run(task=portscan, ports=str(lab["o1"]), **FAST)["a"][0].result
    assert sorted(entry) == [
        "address",
        "closed_count",
        "error",
        "error_ports",
        "failure",
        "filtered_ports",
        "name",
        "open_ports",
        "passed",
        "ports",
        "scanned_ports",
        "status",
        "unscanned_ports",
        "up",
        "vantage",
        "warnings",
    ]
    assert (entry["passed"], entry["failure"]) == (True, "")


def test_every_violation_is_in_the_failure_line(
    make_nornir: MakeNornir, lab: dict[str, int]
) -> None:
    closed = closed_ports("127.0.0.12", 7)
    nr = make_nornir({"a": {"hostname": "127.0.0.12"}})
    result = nr.run(
        task=portscan, ports=str(lab["o1"]), expect_open=",".join(map(str, closed)), **FAST
    )
    entry = result["a"][0].result
    assert [v["port"] for v in entry["violations"]] == closed
    shown = ", ".join(f"port {p} closed (expected open)" for p in closed)
    assert entry["failure"] == f"a (127.0.0.12): {shown}"
    assert str(entry) == f"127.0.0.12 up: open {lab['o1']}; closed 7; FAILED: {shown}"
    again = pickle.loads(pickle.dumps(entry))
    assert isinstance(again, PortscanResult)
    assert again == entry
    assert str(again) == str(entry)


# -- wait until ----------------------------------------------------------------------------------
def test_each_host_waits_for_its_own_expectations(
    make_nornir: MakeNornir,
    lab: dict[str, int],
    late: list[socket.socket],
    engine_calls: EngineCalls,
) -> None:
    port = closed_port("127.0.0.14")
    hosts = {
        "late": {"hostname": "127.0.0.14", "data": {"portscan": {"expect_open": str(port)}}},
        "steady": {"hostname": "127.0.0.11", "data": {"portscan": {"expect_open": lab["o1"]}}},
        "plain": {"hostname": "127.0.0.12"},  # nothing to wait for: scanned once
    }
    nr = make_nornir(hosts)
    # the port opens once the host's first scan has found it closed: the wait must see it
    opener = listen_once(late, "127.0.0.14", port, lambda: engine_calls.scanned("late"))
    result = nr.run(
        task=portscan, ports=str(lab["c"]), wait=True, wait_timeout=20, interval=0.2, **FAST
    )
    opener.join(30)
    assert audit(result) == {
        "late": (False, True, []),
        "steady": (False, True, []),
        "plain": (False, "no expectations"),
    }
    wait = result["late"][0].result["wait"]
    assert (wait["converged"], wait["unmet"]) == (True, [])
    assert wait["elapsed"] < 20
    assert wait["rounds"] >= 2
    steady = result["steady"][0].result["wait"]
    assert (steady["converged"], steady["rounds"], steady["unmet"]) == (True, 1, [])
    assert "wait" not in result["plain"][0].result
    assert re.fullmatch(
        rf"127\.0\.0\.14 up: open {port}; closed 1; compliant; wait: converged in \d\.\d s",
        str(result["late"][0].result),
    )
    # each host's own scan; the rounds after the first re-scan only the unmet port
    late_calls = [r for _, r in engine_calls.of("late")]
    assert [t.ports for t in late_calls[0].targets] == [tuple(sorted([port, lab["c"]]))]
    assert [[(t.name, t.ports) for t in r.targets] for r in late_calls[1:]] == [
        [("late", (port,))]
    ] * (wait["rounds"] - 1)
    assert len(engine_calls.of("steady")) == len(engine_calls.of("plain")) == 1


def test_a_wait_that_never_converges_fails_that_host(
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
    assert result["fine"][0].result["wait"]["converged"] is True
    assert result["never"][0].result["failure"] == (
        "never (127.0.0.15): did not converge within 1 s: "
        f"port {never} closed (expected open)"
    )
    assert str(result["never"][0].result) == (
        "127.0.0.15 up: open none; closed 2; FAILED: did not converge within 1 s: "
        f"port {never} closed (expected open)"
    )
    assert sorted(result.failed_hosts) == ["never"]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (
            {"wait": True, "expect_open": "22", "wait_timeout": 0},
            "invalid wait_timeout 0: use a number of seconds > 0, e.g. wait_timeout=60",
        ),
        ({"wait": "yes", "expect_open": "22"}, None),
        (
            {"recheck": -1},
            "invalid recheck -1: use how many times to re-probe a difference from the "
            "baseline, 0 to 10, e.g. recheck=3",
        ),
    ],
    ids=["wait_timeout", "wait", "recheck"],
)
def test_bad_audit_arguments_fail_every_host(
    make_nornir: MakeNornir,
    engine_calls: EngineCalls,
    arguments: dict[str, Any],
    message: str | None,
) -> None:
    nr = make_nornir({"a": {"hostname": "127.0.0.11"}, "b": {"hostname": "127.0.0.12"}})
    result = nr.run(task=portscan, ports="22", **arguments, **FAST)
    messages = {n: (r[0].failed, type(r[0].exception)) for n, r in result.items()}
    assert messages == {"a": (True, OptionError), "b": (True, OptionError)}
    if message is not None:
        assert {r[0].result for r in result.values()} == {message}
    assert engine_calls == []


# -- baselines and drift -------------------------------------------------------------------------
def test_a_whole_inventory_report_then_a_baseline_shows_confirmed_drift(
    make_nornir: MakeNornir,
    lab: dict[str, int],
    listeners: Listeners,
    tmp_path: Path,
    engine_calls: EngineCalls,
) -> None:
    o1, new = lab["o1"], closed_port("127.0.0.12")
    nr = make_nornir({"a": {"hostname": "127.0.0.11"}, "b": {"hostname": "127.0.0.12"}})
    saved = tmp_path / "before.json"
    before = scan_inventory(nr, ports=f"{o1},{new}", reports={"json": saved}, **FAST)
    assert before.failed is False
    report = json.loads(saved.read_text())
    assert [(h["name"], h["address"], h["open_ports"]) for h in report["hosts"]] == [
        ("a", "127.0.0.11", [o1]),
        ("b", "127.0.0.12", [o1]),
    ]
    listeners.open("127.0.0.12", new)
    engine_calls.clear()
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
    # the change was probed again, recheck=3 times, before it counted; a's scan had none
    assert [[t.ports for t in r.targets] for _, r in engine_calls.of("b")][1:] == [[(new,)]] * 3
    assert len(engine_calls.of("a")) == 1
    assert "compliant" not in after["b"][0].result
    assert after["b"][0].result["failure"] == (
        f"b (127.0.0.12): unexpected drift since the baseline: port {new} not open -> open"
    )
    assert lines(after) == {
        "a": f"127.0.0.11 up: open {o1}; closed 1; no drift",
        "b": f"127.0.0.12 up: open {joined(o1, new)}; closed 0; FAILED: unexpected drift "
        f"since the baseline: port {new} not open -> open; drift: opened {new}",
    }


def test_drift_that_meets_expectations_does_not_fail(
    make_nornir: MakeNornir, listeners: Listeners, tmp_path: Path
) -> None:
    p, q = closed_ports("127.0.0.14", 2)
    nr = make_nornir({"x": {"hostname": "127.0.0.14"}, "y": {"hostname": "127.0.0.15"}})
    saved = tmp_path / "before.json"
    assert scan_inventory(nr, ports=f"{p},{q}", reports={"json": saved}, **FAST).failed is False
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
        "x": f"127.0.0.14 up: open {pq}; closed 0; FAILED: unexpected drift since the "
        f"baseline: port {q} not open -> open; drift: opened {pq} (unexpected: {q})",
        "y": f"127.0.0.15 up: open {p}; closed 1; compliant; drift: opened {p}, as expected",
    }


def test_a_cli_baseline_matches_hosts_by_address(
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
        task=portscan, ports=ports, baseline=saved, recheck=0, expect_closed=str(c), **FAST
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
    written = tmp_path / "after.json"
    scan_inventory(
        nr,
        ports=ports,
        baseline=saved,
        recheck=0,
        expect_closed=str(c),
        reports={"json": written},
        **FAST,
    )
    report = json.loads(written.read_text())
    assert report["drift"]["appeared"] == ["new (127.0.0.12)"]
    assert report["compliance"] == {
        "compliant": 2,
        "non_compliant": 0,
        "error": 0,
        "violations": 0,
    }


def test_an_unreadable_baseline_fails_every_host(
    make_nornir: MakeNornir, tmp_path: Path, engine_calls: EngineCalls
) -> None:
    nr = make_nornir({"a": {"hostname": "127.0.0.11"}, "b": {"hostname": "127.0.0.12"}})
    missing = tmp_path / "nope" / "x.json"
    result = nr.run(task=portscan, ports="22", baseline=missing, **FAST)
    message = f"cannot read baseline {str(missing)!r}: No such file or directory"
    assert {n: (r[0].failed, r[0].result) for n, r in result.items()} == {
        "a": (True, message),
        "b": (True, message),
    }
    assert engine_calls == []
