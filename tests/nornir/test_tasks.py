"""The ``portscan`` Nornir task against real SimpleInventories and real loopback listeners."""

from __future__ import annotations

import io
import pickle
import re
import threading
from typing import TYPE_CHECKING, Any

import pytest
from nornir.core.task import AggregatedResult, Task
from nornir_utils.plugins.functions import print_result
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

if TYPE_CHECKING:
    from conftest import EngineCalls, MakeNornir

FAST = {"timeout": 0.5, "processes": 2}
RUNNERS = [("serial",), ("threaded", 1), ("threaded", 5), ("threaded", 100)]


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


@pytest.fixture
def lab(listeners: Listeners) -> dict[str, int]:
    """Three hosts on 127.0.0.11-13: o1 open everywhere, o2 open on .11 only, c closed."""
    o1 = listeners.open("127.0.0.11")
    for address in ("127.0.0.12", "127.0.0.13"):
        listeners.open(address, o1)
    o2 = listeners.open("127.0.0.11")
    return {"o1": o1, "o2": o2, "c": closed_port("127.0.0.11")}


def three_hosts(lab: dict[str, int]) -> dict[str, Any]:
    return {f"h{i}": {"hostname": f"127.0.0.1{i}"} for i in (1, 2, 3)}


def test_each_host_gets_its_own_entry(
    make_nornir: MakeNornir, lab: dict[str, int], engine_calls: EngineCalls
) -> None:
    nr = make_nornir(three_hosts(lab))
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
    assert [(p["port"], p["state"], p["reason"]) for p in h1["ports"]] == [
        (port, "open", "syn-ack") for port in sorted([lab["o1"], lab["o2"]])
    ]
    assert engine_calls.targets() == [["h1", "h2", "h3"]]
    assert result.failed is False


@pytest.mark.parametrize("runner", RUNNERS, ids=lambda r: "-".join(map(str, r)))
def test_one_engine_run_for_all_hosts_with_any_runner(
    make_nornir: MakeNornir,
    listeners: Listeners,
    engine_calls: EngineCalls,
    runner: tuple[Any, ...],
) -> None:
    port = listeners.open("127.0.0.1")
    hosts = {f"n{i:02}": {"hostname": f"127.0.1.{i}"} for i in range(1, 31)}
    hosts["n01"]["hostname"] = "127.0.0.1"
    nr = make_nornir(hosts, runner=runner)
    result = nr.run(task=portscan, ports=str(port), **FAST)
    assert len(engine_calls) == 1
    assert sorted(engine_calls.targets()[0]) == sorted(hosts)
    assert brief(result)["n01"] == (False, "up", [port], [], 0)
    assert [brief(result)[f"n{i:02}"] for i in range(2, 31)] == [(False, "up", [], [], 1)] * 29
    assert tasks._BATCHES.get(nr) is None


def test_inventory_settings_inherit_and_override_task_arguments(
    make_nornir: MakeNornir, lab: dict[str, int], engine_calls: EngineCalls
) -> None:
    o1, o2, c = lab["o1"], lab["o2"], lab["c"]
    defaults = {"data": {"portscan": {"ports": f"{o1},{c}"}}}
    groups = {
        "base": {"data": {"portscan": {"exclude_ports": str(c)}}},
        "web": {"groups": ["base"], "data": {"portscan": {"ports": f"{o1},{o2},{c}"}}},
    }
    hosts = {
        "d": {"hostname": "127.0.0.11"},  # defaults: o1, c
        "w": {"hostname": "127.0.0.11", "groups": ["web"]},  # web ports, base exclusion
        "x": {
            "hostname": "127.0.0.11",
            "groups": ["web"],
            "data": {"portscan": {"exclude_ports": str(o1)}},
        },  # own exclusion wins
    }
    nr = make_nornir(hosts, groups, defaults)
    result = nr.run(task=portscan, ports="1", **FAST)
    assert brief(result) == {
        "d": (False, "up", [o1], [], 1),
        "w": (False, "up", sorted([o1, o2]), [], 0),
        "x": (False, "up", [o2], [], 1),
    }
    assert len(engine_calls) == 1


def test_task_arguments_are_the_default(make_nornir: MakeNornir, lab: dict[str, int]) -> None:
    nr = make_nornir({"h": {"hostname": "127.0.0.11"}, "nohostname": {}})
    result = nr.run(
        task=portscan, ports=[lab["o1"], lab["o2"], lab["c"]], exclude_ports=lab["o2"], **FAST
    )
    assert brief(result)["h"] == (False, "up", [lab["o1"]], [], 1)
    # without a hostname the host name is the address, here an unresolvable one
    assert brief(result)["nohostname"][:2] == (True, "unresolved")


def test_host_errors_fail_and_closed_ports_do_not(
    make_nornir: MakeNornir, lab: dict[str, int]
) -> None:
    hosts = {
        "up": {"hostname": "127.0.0.11"},
        "closed": {"hostname": "127.0.0.12"},
        "gone": {"hostname": "no-such-host.invalid"},
    }
    nr = make_nornir(hosts)
    result = nr.run(task=portscan, ports=str(lab["c"]), **FAST)
    assert brief(result) == {
        "up": (False, "up", [], [], 1),
        "closed": (False, "up", [], [], 1),
        "gone": (True, "unresolved", [], [], 0),
    }
    assert sorted(result.failed_hosts) == ["gone"]
    assert sorted(nr.data.failed_hosts) == ["gone"]


def test_bad_inventory_fails_only_that_host(make_nornir: MakeNornir, lab: dict[str, int]) -> None:
    hosts = {
        "good": {"hostname": "127.0.0.11"},
        "badports": {"hostname": "127.0.0.12", "data": {"portscan": {"ports": "90-80"}}},
        "typo": {"hostname": "127.0.0.13", "data": {"portscan": {"port": 22}}},
        "notmap": {"hostname": "127.0.0.13", "data": {"portscan": "22"}},
        "range": {"hostname": "127.0.0.1-5"},
    }
    nr = make_nornir(hosts)
    result = nr.run(task=portscan, ports=str(lab["o1"]), **FAST)
    assert brief(result)["good"] == (False, "up", [lab["o1"]], [], 0)
    messages = {
        name: (type(r[0].exception), r[0].result) for name, r in result.items() if name != "good"
    }
    assert messages == {
        "badports": (
            PortSpecError,
            "host 'badports' (inventory data): invalid port range "
            "'90-80' in '90-80': start must be <= end, e.g. '80-90'",
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
        "range": (TargetSpecError, messages["range"][1]),
    }
    assert messages["range"][1].startswith("host 'range': hostname '127.0.0.1-5' is not one host: ")
    assert all(r[0].failed for name, r in result.items() if name != "good")


def test_bad_task_arguments_fail_every_host(
    make_nornir: MakeNornir, engine_calls: EngineCalls
) -> None:
    nr = make_nornir({"a": {"hostname": "127.0.0.11"}, "b": {"hostname": "127.0.0.12"}})
    result = nr.run(task=portscan, ports="22", timeout=-1)
    message = "invalid timeout -1: use a number of seconds > 0, e.g. timeout=1.5"
    assert {n: (r[0].failed, type(r[0].exception), r[0].result) for n, r in result.items()} == {
        "a": (True, OptionError, message),
        "b": (True, OptionError, message),
    }
    result = nr.run(task=portscan, ports="22", family="both", on_failed=True)
    assert {r[0].result for r in result.values()} == {
        "invalid family 'both': the Nornir task scans one address per host, use 'ipv4' or "
        "'ipv6', e.g. family='ipv4'"
    }
    assert engine_calls == []


def test_filter_and_failed_hosts_choose_what_is_scanned(
    make_nornir: MakeNornir, lab: dict[str, int], engine_calls: EngineCalls
) -> None:
    hosts = {
        "a": {"hostname": "127.0.0.11", "data": {"site": "x"}},
        "b": {"hostname": "127.0.0.12", "data": {"site": "x"}},
        "c": {"hostname": "127.0.0.13", "data": {"site": "y"}},
        "bad": {"hostname": "no-such-host.invalid", "data": {"site": "x"}},
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
    assert engine_calls.targets() == [["a", "b", "bad"], ["a", "b", "c"], ["bad"]]
    both = nr.run(task=portscan, ports=ports, on_failed=True, **FAST)
    assert sorted(both) == ["a", "b", "bad", "c"]
    assert sorted(engine_calls.targets()[3:]) == [["a", "b", "c"], ["bad"]]  # good; failed


def test_repeated_and_concurrent_runs_do_not_mix(
    make_nornir: MakeNornir, lab: dict[str, int], engine_calls: EngineCalls
) -> None:
    nr = make_nornir(three_hosts(lab), runner=("threaded", 3))
    for _ in range(2):
        assert brief(nr.run(task=portscan, ports=str(lab["o2"]), **FAST))["h1"] == (
            False,
            "up",
            [lab["o2"]],
            [],
            0,
        )
    assert len(engine_calls) == 2
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
    assert len(engine_calls) == 5
    assert len(tasks._BATCHES) == 0


def test_print_result_shows_one_line_per_host(
    make_nornir: MakeNornir, lab: dict[str, int], capsys: pytest.CaptureFixture[str]
) -> None:
    nr = make_nornir(
        {"h1": {"hostname": "127.0.0.11"}, "gone": {"hostname": "no-such-host.invalid"}}
    )
    result = nr.run(task=portscan, ports=f"{lab['o1']},{lab['o2']},{lab['c']}", **FAST)
    print_result(result)
    out = re.sub(r"\x1b\[[0-9;]*m", "", capsys.readouterr().out)
    o1, o2 = sorted([lab["o1"], lab["o2"]])
    shown = f"{o1}-{o2}" if o2 == o1 + 1 else f"{o1},{o2}"
    assert f"\n127.0.0.11 up: open {shown}; closed 1\n" in out
    assert "\ngone unresolved: " in out
    assert "'ports'" not in out  # not the pprint of the whole dict


def test_results_pickle_and_compare_as_dicts(make_nornir: MakeNornir, lab: dict[str, int]) -> None:
    nr = make_nornir({"h1": {"hostname": "127.0.0.11"}})
    entry = nr.run(task=portscan, ports=str(lab["o1"]), **FAST)["h1"][0].result
    assert isinstance(entry, PortscanResult)
    again = pickle.loads(pickle.dumps(entry))
    assert again == entry == dict(entry)
    assert str(again) == str(entry) == f"127.0.0.11 up: open {lab['o1']}; closed 0"


def test_progress_bar_processor_and_callable(make_nornir: MakeNornir, lab: dict[str, int]) -> None:
    nr = make_nornir(three_hosts(lab))
    stream = io.StringIO()
    ports = f"{lab['o1']},{lab['c']}"
    nr.with_processors([ProgressBar(stream, force=True)]).run(task=portscan, ports=ports, **FAST)
    assert (
        stream.getvalue()
        .splitlines()[-1]
        .startswith("portscan [##############################] 100%  6/6 probes  ")
    )
    seen: list[tuple[int, int]] = []
    nr.run(task=portscan, ports=ports, progress=lambda p: seen.append((p.done, p.total)), **FAST)
    assert seen[-1] == (6, 6)
    quiet = io.StringIO()  # not a terminal and not forced: nothing drawn
    nr.with_processors([ProgressBar(quiet)]).run(task=portscan, ports=ports, **FAST)
    assert quiet.getvalue() == ""


def test_engine_failure_reaches_every_host(
    make_nornir: MakeNornir, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_: Any, **__: Any) -> None:
        raise ScanError("cannot start a worker process")

    monkeypatch.setattr(tasks, "scan", broken)
    nr = make_nornir({"a": {"hostname": "127.0.0.11"}, "b": {"hostname": "127.0.0.12"}})
    result = nr.run(task=portscan, ports="22")
    message = "the scan of this run failed: cannot start a worker process"
    assert {n: str(r[0].exception) for n, r in result.items()} == {"a": message, "b": message}
    assert len(tasks._BATCHES) == 0


def test_subtask_of_some_hosts_is_dropped_when_stale(
    make_nornir: MakeNornir, lab: dict[str, int], engine_calls: EngineCalls
) -> None:
    nr = make_nornir(three_hosts(lab), runner=("serial",))

    def some_hosts(task: Task) -> None:
        if task.host.name != "h3":
            task.run(task=portscan, ports=str(lab["o1"]), **FAST)

    result = nr.run(task=some_hosts)
    assert [result[h][1].result["open_ports"] for h in ("h1", "h2")] == [[lab["o1"]]] * 2
    assert engine_calls.targets() == [["h1", "h2", "h3"]]  # h3 could not be known in advance
    (waiting,) = tasks._BATCHES[nr].values()  # for h3
    assert waiting.pending == {"h3"}
    assert waiting.finished is not None
    waiting.finished -= tasks.FRESH_FOR + 1
    nr.run(task=portscan, ports=str(lab["o2"]), **FAST)
    assert len(engine_calls) == 2
    assert nr not in tasks._BATCHES


def test_bad_task_ports_spare_hosts_with_their_own(
    make_nornir: MakeNornir, lab: dict[str, int]
) -> None:
    own = {"hostname": "127.0.0.11", "data": {"portscan": {"ports": str(lab["o1"])}}}
    nr = make_nornir({"own": own, "plain": {"hostname": "127.0.0.12"}})
    result = nr.run(task=portscan, ports="90-80", **FAST)
    assert brief(result) == {
        "own": (False, "up", [lab["o1"]], [], 0),
        "plain": (
            True,
            "host 'plain': invalid port range '90-80' in '90-80': start must be <= end, "
            "e.g. '80-90'",
        ),
    }
