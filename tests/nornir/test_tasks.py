"""The ``portscan`` Nornir task against real SimpleInventories, real runners and real loopback
listeners: each host is scanned by its own call, now, with its own arguments."""

from __future__ import annotations

import io
import logging
import pickle
import re
import threading
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from conftest import FAST, scans_of
from nornir.core.task import AggregatedResult, Result, Task
from nornir_utils.plugins.functions import print_result
from process_runner import open_then_close
from support import Listeners, closed_port

from nornir_portscan.errors import (
    InputError,
    OptionError,
    PortSpecError,
    ScanError,
    TargetSpecError,
)
from nornir_portscan.nornir import tasks
from nornir_portscan.nornir.processors import ProgressBar
from nornir_portscan.nornir.tasks import PortscanResult, portscan
from nornir_portscan.ports import format_ports, parse_ports

if TYPE_CHECKING:
    from conftest import EngineCalls, MakeNornir, Services

FLEET = [f"127.0.2.{i}" for i in range(1, 41)]  # the 40 hosts of the change tests


def brief(result: AggregatedResult) -> dict[str, tuple[Any, ...]]:
    """Per host: (failed, status, open ports, filtered ports, closed count)."""
    out = {}
    for name, multi in result.items():
        r = multi[0]
        if isinstance(r.result, dict):
            out[name] = (
                r.failed,
                r.result["status"],
                r.result["open_ports"],
                r.result["filtered_ports"],
                r.result["closed_count"],
            )
        else:
            out[name] = (r.failed, r.result)
    return out


def one_target_each(engine_calls: EngineCalls) -> dict[str, tuple[int, ...]]:
    """``{host: ports}`` of the engine calls, checking that each call scanned one host and
    each host was scanned once."""
    assert [len(request.targets) for request in engine_calls] == [1] * len(engine_calls)
    scanned = {request.targets[0].name: request.targets[0].ports for request in engine_calls}
    assert len(scanned) == len(engine_calls)
    return scanned


def fleet(addresses: list[str]) -> dict[str, Any]:
    return {f"n{i:02}": {"hostname": address} for i, address in enumerate(addresses, 1)}


@pytest.fixture
def lab(listeners: Listeners) -> dict[str, int]:
    """Three hosts on 127.0.0.11-13: o1 open everywhere, o2 open on .11 only, c closed."""
    o1 = listeners.open("127.0.0.11")
    for address in ("127.0.0.12", "127.0.0.13"):
        listeners.open(address, o1)
    o2 = listeners.open("127.0.0.11")
    return {"o1": o1, "o2": o2, "c": closed_port("127.0.0.11")}


def three_hosts() -> dict[str, Any]:
    return {f"h{i}": {"hostname": f"127.0.0.1{i}"} for i in (1, 2, 3)}


def test_each_host_gets_its_own_entry_from_its_own_scan(
    make_nornir: MakeNornir, lab: dict[str, int], engine_calls: EngineCalls
) -> None:
    nr = make_nornir(three_hosts())
    ports = f"{lab['o1']},{lab['o2']},{lab['c']}"
    result = nr.run(task=portscan, ports=ports, **FAST)
    assert brief(result) == {
        "h1": (False, "up", sorted([lab["o1"], lab["o2"]]), [], 1),
        "h2": (False, "up", [lab["o1"]], [], 2),
        "h3": (False, "up", [lab["o1"]], [], 2),
    }
    h1 = result["h1"][0].result
    assert (h1["name"], h1["address"], h1["up"], h1["error"], h1["error_ports"]) == (
        "h1",
        "127.0.0.11",
        True,
        None,
        [],
    )
    assert (h1["passed"], h1["failure"], h1["warnings"]) == (True, "", [])
    assert [(p["port"], p["state"], p["reason"]) for p in h1["ports"]] == [
        (port, "open", "syn-ack") for port in sorted([lab["o1"], lab["o2"]])
    ]
    wanted = tuple(sorted([lab["o1"], lab["o2"], lab["c"]]))
    assert one_target_each(engine_calls) == {"h1": wanted, "h2": wanted, "h3": wanted}
    assert result.failed is False


# -- a host's result comes from probes sent after its own call began --------------------------
def stop_service(task: Task, services: Services, port: int) -> None:
    services.stop(task.host.hostname, port)


def start_service(task: Task, services: Services, port: int) -> None:
    services.start(task.host.hostname, port)


def change_then_verify(
    task: Task,
    change: Any,
    services: Services,
    port: int,
    slow: str,
    expect: dict[str, str],
) -> None:
    if task.host.name == slow:
        time.sleep(1)  # this host's change takes a second longer than the others'
    task.run(task=change, services=services, port=port)
    task.run(task=portscan, ports=str(port), **expect, **FAST)


def test_a_stopped_service_fails_every_host(
    make_nornir: MakeNornir, services: Services, engine_calls: EngineCalls
) -> None:
    """40 hosts, 20 threads: each host stops its own listener, then checks it is open. Every
    host fails: none is handed a result scanned before its own service stopped."""
    port = services.common_port(FLEET)
    for address in FLEET:
        services.start(address, port)
    nr = make_nornir(fleet(FLEET), runner=("threaded", 20))
    result = nr.run(
        task=change_then_verify,
        change=stop_service,
        services=services,
        port=port,
        slow="n07",
        expect={"expect_open": str(port)},
    )
    assert sorted(result.failed_hosts) == sorted(fleet(FLEET))
    for name, address in zip(fleet(FLEET), FLEET, strict=True):
        (scanned,) = scans_of(result[name])
        assert scanned.failed is True
        assert scanned.result["open_ports"] == []
        assert (
            scanned.result["failure"] == f"{name} ({address}): port {port} closed (expected open)"
        )
        assert str(scanned.result).endswith(f"; FAILED: port {port} closed (expected open)")
    for name, address in zip(fleet(FLEET), FLEET, strict=True):
        ((began, request),) = engine_calls.of(name)
        assert [t.name for t in request.targets] == [name]
        assert began > services.changed[address]  # probed after its own service stopped


def test_a_started_service_passes_every_host(
    make_nornir: MakeNornir, services: Services, engine_calls: EngineCalls
) -> None:
    port = services.common_port(FLEET)
    nr = make_nornir(fleet(FLEET), runner=("threaded", 20))
    result = nr.run(
        task=change_then_verify,
        change=start_service,
        services=services,
        port=port,
        slow="n33",
        expect={"expect_open": str(port), "allowed_open": str(port)},
    )
    assert result.failed is False
    for name in fleet(FLEET):
        (scanned,) = scans_of(result[name])
        assert (scanned.failed, scanned.result["open_ports"], scanned.result["compliant"]) == (
            False,
            [port],
            True,
        )
        assert str(scanned.result).endswith("; compliant")
    for name, address in zip(fleet(FLEET), FLEET, strict=True):
        ((began, _),) = engine_calls.of(name)
        assert began > services.changed[address]


def pre_stop_post(task: Task, services: Services, port: int) -> None:
    task.run(task=portscan, name="pre", ports=str(port), expect_open=str(port), **FAST)
    task.run(task=stop_service, services=services, port=port)
    task.run(task=portscan, name="post", ports=str(port), expect_closed=str(port), **FAST)


@pytest.mark.parametrize(
    ("runner", "count"),
    [(("serial",), 6), (("threaded", 1), 6), (("threaded", 20), 40)],
    ids=["serial", "threaded-1", "threaded-20"],
)
def test_pre_check_and_post_check_in_one_grouped_task(
    make_nornir: MakeNornir,
    services: Services,
    engine_calls: EngineCalls,
    runner: tuple[Any, ...],
    count: int,
) -> None:
    addresses = FLEET[:count]
    port = services.common_port(addresses)
    for address in addresses:
        services.start(address, port)
    nr = make_nornir(fleet(addresses), runner=runner)
    result = nr.run(task=pre_stop_post, services=services, port=port)
    assert result.failed is False
    for name in fleet(addresses):
        (pre,) = scans_of(result[name], "pre")
        (post,) = scans_of(result[name], "post")
        assert (pre.result["open_ports"], pre.result["compliant"]) == ([port], True)
        assert (post.result["open_ports"], post.result["closed_count"]) == ([], 1)
        assert post.result["compliant"] is True
    for name, address in zip(fleet(addresses), addresses, strict=True):
        (pre_began, _), (post_began, _) = engine_calls.of(name)
        assert pre_began < services.changed[address] < post_began


def test_each_host_is_probed_only_on_its_own_port(
    make_nornir: MakeNornir, services: Services, engine_calls: EngineCalls
) -> None:
    addresses = [f"127.0.5.{i}" for i in range(1, 13)]
    own = {f"s{i:02}": services.start(address) for i, address in enumerate(addresses, 1)}
    hosts = {
        name: {"hostname": address, "data": {"service_port": own[name]}}
        for name, address in zip(own, addresses, strict=True)
    }
    nr = make_nornir(hosts, runner=("threaded", 12))

    def own_port(task: Task) -> None:
        port = str(task.host["service_port"])
        task.run(task=portscan, ports=port, expect_open=port, **FAST)

    result = nr.run(task=own_port)
    assert result.failed is False
    assert {name: scans_of(multi)[0].result["open_ports"] for name, multi in result.items()} == {
        name: [port] for name, port in own.items()
    }
    assert one_target_each(engine_calls) == {name: (port,) for name, port in own.items()}


def test_a_subtask_of_some_hosts_scans_only_those_and_keeps_nothing(
    make_nornir: MakeNornir, services: Services, engine_calls: EngineCalls
) -> None:
    """h0, first in the inventory, does not call the scan; when a later run asks, it is
    scanned then, and sees the port opened in between."""
    hosts = {"h0": "127.0.3.3", "h1": "127.0.3.1", "h2": "127.0.3.2"}
    port = services.common_port(list(hosts.values()))
    services.start("127.0.3.1", port)
    services.start("127.0.3.2", port)
    nr = make_nornir({n: {"hostname": a} for n, a in hosts.items()}, runner=("serial",))

    def some_hosts(task: Task) -> None:
        if task.host.name != "h0":
            task.run(task=portscan, ports=str(port), **FAST)

    result = nr.run(task=some_hosts)
    assert [scans_of(result[h])[0].result["open_ports"] for h in ("h1", "h2")] == [[port]] * 2
    assert scans_of(result["h0"]) == []
    first = engine_calls.targets()
    services.start("127.0.3.3", port)  # opened between the runs
    again = nr.run(task=portscan, ports=str(port), **FAST)
    assert {name: multi[0].result["open_ports"] for name, multi in again.items()} == {
        "h0": [port],
        "h1": [port],
        "h2": [port],
    }
    assert first == [["h1"], ["h2"]]  # h0 did not ask
    ((began, _),) = engine_calls.of("h0")
    assert began > services.changed["127.0.3.3"]


def test_a_process_runner_pickles_each_host_to_its_own_interpreter(
    make_nornir: MakeNornir, services: Services
) -> None:
    """A runner plugin that pickles the task and runs it in a ``multiprocessing`` pool: each
    child opens its host's listener, checks it, closes it and checks again."""
    addresses = ["127.0.4.1", "127.0.4.2", "127.0.4.3"]
    port = services.common_port(addresses)
    nr = make_nornir(
        {f"p{i}": {"hostname": a} for i, a in enumerate(addresses, 1)}, runner=("process", 3)
    )
    result = nr.run(task=open_then_close, port=port, **FAST)
    assert result.failed is False
    for name in ("p1", "p2", "p3"):
        (pre,) = scans_of(result[name], "pre")
        (post,) = scans_of(result[name], "post")
        assert isinstance(pre.result, PortscanResult)
        assert (pre.result["open_ports"], pre.result["passed"]) == ([port], True)
        assert (post.result["open_ports"], post.result["closed_count"]) == ([], 1)


def test_repeated_and_concurrent_runs_do_not_mix(
    make_nornir: MakeNornir, lab: dict[str, int], engine_calls: EngineCalls
) -> None:
    nr = make_nornir(three_hosts(), runner=("threaded", 3))
    for _ in range(2):
        assert brief(nr.run(task=portscan, ports=str(lab["o2"]), **FAST))["h1"] == (
            False,
            "up",
            [lab["o2"]],
            [],
            0,
        )
    assert len(engine_calls) == 6
    results: dict[int, AggregatedResult] = {}

    def run(port: int) -> None:
        results[port] = nr.run(task=portscan, ports=str(port), **FAST)

    threads = [threading.Thread(target=run, args=(p,)) for p in (lab["o1"], lab["o2"], lab["c"])]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert {h: r[0].result["open_ports"] for h, r in results[lab["o1"]].items()} == {
        "h1": [lab["o1"]],
        "h2": [lab["o1"]],
        "h3": [lab["o1"]],
    }
    assert {h: r[0].result["open_ports"] for h, r in results[lab["o2"]].items()} == {
        "h1": [lab["o2"]],
        "h2": [],
        "h3": [],
    }
    assert {h: r[0].result["closed_count"] for h, r in results[lab["c"]].items()} == {
        "h1": 1,
        "h2": 1,
        "h3": 1,
    }
    assert len(engine_calls) == 15


# -- precedence: the call, then the inventory, then the defaults -------------------------------
def test_task_ports_beat_inventory_ports_which_beat_the_default(
    make_nornir: MakeNornir, lab: dict[str, int], engine_calls: EngineCalls
) -> None:
    o1, o2, c = lab["o1"], lab["o2"], lab["c"]
    defaults = {"data": {"portscan": {"ports": f"{o1},{c}"}}}
    groups = {
        "base": {"data": {"portscan": {"exclude_ports": str(c)}}},
        "web": {"groups": ["base"], "data": {"portscan": {"ports": f"{o1},{o2},{c}"}}},
    }
    hosts = {
        "d": {"hostname": "127.0.0.11"},  # the defaults: o1, c
        "w": {"hostname": "127.0.0.11", "groups": ["web"]},  # web's ports, base's exclusion
        "x": {
            "hostname": "127.0.0.11",
            "groups": ["web"],
            "data": {"portscan": {"exclude_ports": str(o1)}},
        },  # its own exclusion replaces base's
    }
    nr = make_nornir(hosts, groups, defaults)
    result = nr.run(task=portscan, **FAST)
    assert brief(result) == {
        "d": (False, "up", [o1], [], 1),
        "w": (False, "up", sorted([o1, o2]), [], 0),
        "x": (False, "up", [o2], [], 1),
    }
    assert one_target_each(engine_calls) == {
        "d": tuple(sorted([o1, c])),
        "w": tuple(sorted([o1, o2])),
        "x": tuple(sorted([o2, c])),
    }
    engine_calls.clear()
    # the task's ports win; the inventory's exclusions still hold, key by key
    result = nr.run(task=portscan, ports=f"{o1},{o2}", **FAST)
    assert brief(result) == {
        "d": (False, "up", sorted([o1, o2]), [], 0),
        "w": (False, "up", sorted([o1, o2]), [], 0),
        "x": (False, "up", [o2], [], 0),
    }
    assert one_target_each(engine_calls) == {
        "d": tuple(sorted([o1, o2])),
        "w": tuple(sorted([o1, o2])),
        "x": (o2,),
    }
    engine_calls.clear()
    # and the task's exclusions replace the inventory's
    result = nr.run(task=portscan, ports=f"{o1},{o2},{c}", exclude_ports=str(o2), **FAST)
    assert one_target_each(engine_calls) == {n: tuple(sorted([o1, c])) for n in ("d", "w", "x")}
    assert result.failed is False


def test_without_ports_anywhere_a_host_scans_the_top_1000(make_nornir: MakeNornir) -> None:
    nr = make_nornir({"plain": {"hostname": "127.0.0.11"}})
    (plan,) = (r[0].result for r in nr.run(task=portscan, dry_run=True).values())
    assert plan == {
        "dry_run": True,
        "name": "plain",
        "address": "127.0.0.11",
        "ports": format_ports(sorted(parse_ports("top1000"))),
        "probes": 1000,
    }


def test_the_connection_port_of_a_host_is_not_scanned_unless_asked(
    make_nornir: MakeNornir, lab: dict[str, int], engine_calls: EngineCalls
) -> None:
    """Nornir's ``port`` is the management connection's port: the task leaves it alone;
    ``ports=str(task.host.port)`` scans it."""
    nr = make_nornir({"r1": {"hostname": "127.0.0.11", "port": lab["o2"]}})
    assert brief(nr.run(task=portscan, ports=str(lab["c"]), **FAST)) == {
        "r1": (False, "up", [], [], 1)
    }

    def connection_port(task: Task) -> Result:
        return portscan(task, ports=str(task.host.port), **FAST)

    assert brief(nr.run(task=connection_port)) == {"r1": (False, "up", [lab["o2"]], [], 0)}
    assert [t.ports for r in engine_calls for t in r.targets] == [(lab["c"],), (lab["o2"],)]


# -- scope: exclude, max_hosts, dry run, report= -----------------------------------------------
def test_an_excluded_host_is_not_scanned(
    make_nornir: MakeNornir, lab: dict[str, int], engine_calls: EngineCalls
) -> None:
    nr = make_nornir(three_hosts())
    result = nr.run(
        task=portscan, ports=str(lab["o1"]), exclude=["127.0.0.12", "127.0.0.13/32"], **FAST
    )
    assert brief(result) == {
        "h1": (False, "up", [lab["o1"]], [], 0),
        "h2": (False, "127.0.0.12 excluded: not scanned"),
        "h3": (False, "127.0.0.13 excluded: not scanned"),
    }
    assert engine_calls.targets() == [["h1"]]
    assert result["h2"][0].changed is False


def test_max_hosts_holds(make_nornir: MakeNornir, engine_calls: EngineCalls) -> None:
    nr = make_nornir(three_hosts())
    result = nr.run(task=portscan, ports="22", max_hosts=0, **FAST)
    assert {
        n: (r[0].failed, type(r[0].exception), r[0].result) for n, r in result.items()
    } == dict.fromkeys(
        ("h1", "h2", "h3"),
        (True, OptionError, "invalid max_hosts 0: use a whole number >= 1, e.g. max_hosts=65536"),
    )
    assert engine_calls == []


def test_a_dry_run_says_what_would_be_probed_and_sends_nothing(
    make_nornir: MakeNornir, lab: dict[str, int], engine_calls: EngineCalls
) -> None:
    hosts = {
        "a": {"hostname": "127.0.0.11", "data": {"portscan": {"expect_open": str(lab["o1"])}}},
        "b": {"hostname": "127.0.0.12"},
        "bad": {"hostname": "127.0.0.13", "data": {"portscan": {"port": 22}}},
    }
    nr = make_nornir(hosts, dry_run=True)
    result = nr.run(task=portscan, ports=f"{lab['c']},22", **FAST)
    o1, c = lab["o1"], lab["c"]
    assert {
        n: (r[0].failed, r[0].changed, r[0].result) for n, r in result.items() if n != "bad"
    } == {
        "a": (
            False,
            False,
            {
                "dry_run": True,
                "name": "a",
                "address": "127.0.0.11",
                "ports": format_ports(sorted({22, o1, c})),
                "probes": 3,
            },
        ),
        "b": (
            False,
            False,
            {
                "dry_run": True,
                "name": "b",
                "address": "127.0.0.12",
                "ports": format_ports(sorted({22, c})),
                "probes": 2,
            },
        ),
    }
    assert result["bad"][0].failed is True  # bad input is still bad in a dry run
    assert type(result["bad"][0].exception) is InputError
    assert engine_calls == []
    # the task's dry_run overrides Nornir's either way
    assert brief(nr.run(task=portscan, ports=str(o1), dry_run=False, **FAST))["b"][:2] == (
        False,
        "up",
    )
    assert sorted(engine_calls.targets()) == [["a"], ["b"]]  # "bad" failed: skipped
    nr.data.dry_run = False
    engine_calls.clear()
    planned = nr.run(task=portscan, ports=str(o1), dry_run=True, on_failed=True, **FAST)
    assert planned["b"][0].result["dry_run"] is True
    assert engine_calls == []


@pytest.mark.parametrize("option", ["report", "reports"])
def test_a_report_of_one_host_is_refused(
    make_nornir: MakeNornir, engine_calls: EngineCalls, tmp_path: Path, option: str
) -> None:
    nr = make_nornir({"a": {"hostname": "127.0.0.11"}})
    out = tmp_path / "out"
    out.mkdir()
    value = out / "a.json" if option == "report" else {"json": out / "a.json"}
    result = nr.run(task=portscan, ports="22", **{option: value}, **FAST)
    assert (result["a"][0].failed, type(result["a"][0].exception), result["a"][0].result) == (
        True,
        OptionError,
        "report= is for a whole run: scan the inventory in one call with "
        "scan_inventory(nr, ..., reports={'json': 'scan.json'})",
    )
    assert engine_calls == []
    assert list(out.iterdir()) == []


# -- failures ----------------------------------------------------------------------------------
def test_host_errors_fail_and_closed_ports_do_not(
    make_nornir: MakeNornir, lab: dict[str, int]
) -> None:
    hosts = {
        "up": {"hostname": "127.0.0.11"},
        "closed": {"hostname": "127.0.0.12"},
        "gone": {"hostname": "gone.test"},
    }
    nr = make_nornir(hosts)
    result = nr.run(task=portscan, ports=str(lab["c"]), **FAST)
    assert brief(result) == {
        "up": (False, "up", [], [], 1),
        "closed": (False, "up", [], [], 1),
        "gone": (True, "unresolved", [], [], 0),
    }
    assert result["gone"][0].result["failure"] == (
        "gone: host unresolved: Name or service not known"
    )
    assert result["gone"][0].exception is None  # a host error is data, not an exception
    assert sorted(result.failed_hosts) == ["gone"]
    assert sorted(nr.data.failed_hosts) == ["gone"]


def test_bad_inventory_fails_only_that_host(
    make_nornir: MakeNornir, lab: dict[str, int], engine_calls: EngineCalls
) -> None:
    hosts = {
        "good": {"hostname": "127.0.0.11", "data": {"portscan": {"ports": str(lab["o1"])}}},
        "badports": {"hostname": "127.0.0.12", "data": {"portscan": {"ports": "90-80"}}},
        "empty": {"hostname": "127.0.0.12", "data": {"portscan": {"ports": ""}}},
        "typo": {"hostname": "127.0.0.13", "data": {"portscan": {"port": 22}}},
        "notmap": {"hostname": "127.0.0.13", "data": {"portscan": "22"}},
        "range": {"hostname": "127.0.0.1-5"},
    }
    nr = make_nornir(hosts)
    result = nr.run(task=portscan, **FAST)
    assert brief(result)["good"] == (False, "up", [lab["o1"]], [], 0)
    messages = {
        name: (type(r[0].exception), r[0].result) for name, r in result.items() if name != "good"
    }
    assert messages == {
        "badports": (
            PortSpecError,
            "ports of target 'badports': invalid port range "
            "'90-80' in '90-80': start must be <= end, e.g. '80-90'",
        ),
        "empty": (
            PortSpecError,
            "host 'empty' (inventory data): empty port list '': give ports, e.g. '22,80,443' "
            "or '1-1024'",
        ),
        "typo": (
            InputError,
            "host 'typo': unknown key 'port' in the portscan data of the "
            "host: use ports, exclude_ports, expect_open, expect_closed, expect_filtered or "
            "allowed_open, e.g. portscan: {ports: '22'}",
        ),
        "notmap": (
            InputError,
            "host 'notmap': the portscan data of the host must be a "
            "mapping, e.g. portscan: {ports: '22,443'}",
        ),
        "range": (
            TargetSpecError,
            "invalid address '127.0.0.1-5' of target 'range': give one address or hostname, "
            "not a range or block, e.g. '127.0.0.1'",
        ),
    }
    assert all(r[0].failed for name, r in result.items() if name != "good")
    assert engine_calls.targets() == [["good"]]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"timeout": -1}, "invalid timeout -1: use a number of seconds > 0, e.g. timeout=1.5"),
        (
            {"family": "both"},
            "invalid family 'both': the Nornir task scans one address per host, use 'ipv4' or "
            "'ipv6', e.g. family='ipv4'",
        ),
        ({"ports": ""}, "host 'a': empty port list '': give ports, e.g. '22,80,443' or '1-1024'"),
        (
            {"target_files": ["hosts.txt"]},
            "unknown option 'target_files': the task scans its own host; scan many with "
            "scan_inventory(nr.filter(...), ...)",
        ),
    ],
    ids=["timeout", "family", "empty-ports", "target_files"],
)
def test_bad_task_arguments_fail_every_host(
    make_nornir: MakeNornir, engine_calls: EngineCalls, arguments: dict[str, Any], message: str
) -> None:
    nr = make_nornir({"a": {"hostname": "127.0.0.11"}, "b": {"hostname": "127.0.0.12"}})
    result = nr.run(task=portscan, **{"ports": "22", **arguments})
    messages = {n: (r[0].failed, r[0].result) for n, r in result.items()}
    assert messages == {
        "a": (True, message),
        "b": (True, message.replace("host 'a'", "host 'b'")),
    }
    assert all(isinstance(r[0].exception, InputError) for r in result.values())
    assert engine_calls == []


def test_bad_task_ports_fail_every_host_even_those_with_their_own(
    make_nornir: MakeNornir, lab: dict[str, int], engine_calls: EngineCalls
) -> None:
    own = {"hostname": "127.0.0.11", "data": {"portscan": {"ports": str(lab["o1"])}}}
    nr = make_nornir({"own": own, "plain": {"hostname": "127.0.0.12"}})
    result = nr.run(task=portscan, ports="90-80", **FAST)
    assert brief(result) == {
        name: (
            True,
            f"ports of target {name!r}: invalid port range '90-80' in '90-80': start must be "
            "<= end, e.g. '80-90'",
        )
        for name in ("own", "plain")
    }
    assert engine_calls == []


def test_an_engine_failure_fails_each_host_and_is_logged_once(
    make_nornir: MakeNornir, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    message = f"cannot start a worker process ({uuid.uuid4().hex[:8]})"
    raised: list[ScanError] = []

    def broken(*_: Any, **__: Any) -> None:
        raised.append(ScanError(message))
        raise raised[-1]

    monkeypatch.setattr(tasks, "_scanner", lambda: broken)
    nr = make_nornir({f"e{i}": {"hostname": f"127.0.6.{i}"} for i in range(1, 11)})
    with caplog.at_level(logging.WARNING):
        result = nr.run(task=portscan, ports="22")
    assert {n: (r[0].failed, r[0].result) for n, r in result.items()} == {
        f"e{i}": (True, message) for i in range(1, 11)
    }
    assert sorted(id(r[0].exception) for r in result.values()) == sorted(map(id, raised))
    assert [(r.name, r.levelno, r.getMessage()) for r in caplog.records] == [
        ("nornir_portscan", logging.WARNING, message)
    ]  # once for ten hosts, and no traceback from Nornir


def test_filter_and_failed_hosts_choose_what_is_scanned(
    make_nornir: MakeNornir, lab: dict[str, int], engine_calls: EngineCalls
) -> None:
    hosts = {
        "a": {"hostname": "127.0.0.11", "data": {"site": "x"}},
        "b": {"hostname": "127.0.0.12", "data": {"site": "x"}},
        "c": {"hostname": "127.0.0.13", "data": {"site": "y"}},
        "bad": {"hostname": "gone.test", "data": {"site": "x"}},
    }
    nr = make_nornir(hosts)
    ports = str(lab["o1"])
    first = nr.filter(site="x").run(task=portscan, ports=ports, **FAST)
    assert sorted(first) == ["a", "b", "bad"]
    assert sorted(first.failed_hosts) == ["bad"]
    second = nr.run(task=portscan, ports=ports, **FAST)  # skips the failed host
    assert sorted(second) == ["a", "b", "c"]
    third = nr.run(task=portscan, ports=ports, on_good=False, on_failed=True, **FAST)
    assert sorted(third) == ["bad"]
    assert [sorted(t for (t,) in engine_calls.targets()[i:j]) for i, j in ((0, 3), (3, 6))] == [
        ["a", "b", "bad"],
        ["a", "b", "c"],
    ]
    assert engine_calls.targets()[6:] == [["bad"]]


# -- what a result looks like ------------------------------------------------------------------
def test_print_result_shows_one_line_per_host(
    make_nornir: MakeNornir, lab: dict[str, int], capsys: pytest.CaptureFixture[str]
) -> None:
    nr = make_nornir({"h1": {"hostname": "127.0.0.11"}, "gone": {"hostname": "gone.test"}})
    result = nr.run(task=portscan, ports=f"{lab['o1']},{lab['o2']},{lab['c']}", **FAST)
    print_result(result)
    out = re.sub(r"\x1b\[[0-9;]*m", "", capsys.readouterr().out)
    o1, o2 = sorted([lab["o1"], lab["o2"]])
    shown = f"{o1}-{o2}" if o2 == o1 + 1 else f"{o1},{o2}"
    assert f"\n127.0.0.11 up: open {shown}; closed 1\n" in out
    assert (
        "\ngone unresolved: Name or service not known; FAILED: host unresolved: Name or service "
        "not known\n"
    ) in out
    assert "'ports'" not in out  # not the pprint of the whole dict


def test_results_pickle_and_compare_as_dicts(make_nornir: MakeNornir, lab: dict[str, int]) -> None:
    nr = make_nornir({"h1": {"hostname": "127.0.0.11"}})
    result = nr.run(task=portscan, ports=str(lab["o1"]), **FAST)
    entry = result["h1"][0].result
    assert isinstance(entry, PortscanResult)
    again = pickle.loads(pickle.dumps(entry))
    assert again == entry == dict(entry)
    assert str(again) == str(entry) == f"127.0.0.11 up: open {lab['o1']}; closed 0"
    whole = pickle.loads(pickle.dumps(result))
    assert whole["h1"][0].result == entry


def test_progress_bar_processor_counts_hosts_and_a_callable_gets_probes(
    make_nornir: MakeNornir, lab: dict[str, int]
) -> None:
    nr = make_nornir(three_hosts())
    stream = io.StringIO()
    ports = f"{lab['o1']},{lab['c']}"
    nr.with_processors([ProgressBar(stream, force=True)]).run(task=portscan, ports=ports, **FAST)
    drawn = stream.getvalue().splitlines()
    assert [re.findall(r"\d+/\d+ hosts", line) for line in drawn] == [
        ["1/3 hosts"],
        ["2/3 hosts"],
        ["3/3 hosts"],
    ]
    assert drawn[-1].startswith("portscan [##############################] 100%  3/3 hosts  ")
    seen: dict[str, list[tuple[int, int]]] = {}

    def own_progress(task: Task) -> Result:
        mine = seen[task.host.name] = []
        return portscan(
            task, ports=ports, progress=lambda p: mine.append((p.done, p.total)), **FAST
        )

    nr.run(task=own_progress)
    # each host's callback follows its own scan (2 probes) to its end
    assert {name: (progress[-1], {t for _, t in progress}) for name, progress in seen.items()} == {
        name: ((2, 2), {2}) for name in ("h1", "h2", "h3")
    }
    quiet = io.StringIO()  # not a terminal and not forced: nothing drawn
    nr.with_processors([ProgressBar(quiet)]).run(task=portscan, ports=ports, **FAST)
    assert quiet.getvalue() == ""
