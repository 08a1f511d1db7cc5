"""The scan service's dispatcher with the fake worker process (no sockets)."""

from __future__ import annotations

import ctypes
import itertools
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from service_support import in_threads, poll, running

from nornir_portscan import (
    HostStatus,
    OptionError,
    PortState,
    Progress,
    ScanError,
    ScanInterrupted,
    ScanOptions,
    ScanRequest,
    Target,
)
from nornir_portscan.engine import processes, service
from nornir_portscan.engine.service import ScanService

FAKE = str(Path(__file__).resolve().parent.parent / "unit" / "fake_worker.py")
HANG = 999  # FAKE_HANG_ON_PORT: a unit holding this port is never answered


@pytest.fixture(autouse=True)
def fake_worker(monkeypatch):
    monkeypatch.setattr(processes, "WORKER_COMMAND", [FAKE])


pytestmark = pytest.mark.usefixtures("no_shared_service")


def address(n: int) -> str:
    return f"127.0.{n // 250}.{n % 250 + 1}"


def request(first: int, hosts: int, ports: range, **options: Any) -> ScanRequest:
    targets = tuple(Target(f"h{first + i}", address(first + i)) for i in range(hosts))
    return ScanRequest(targets, tuple(ports), ScanOptions(**options))


def half_hung(n: int, **options: Any) -> ScanRequest:
    """Host ``h<n>`` answers ports 1-20; host ``x<n>`` holds only the port that never answers.

    Progress reaches 20 once ``h<n>`` is merged: a unit's last port counts only when it is.
    """
    targets = (Target(f"h{n}", address(n)), Target(f"x{n}", address(n + 500), (HANG,)))
    return ScanRequest(targets, tuple(range(1, 21)), ScanOptions(**options))


def opened(ports: range) -> list[int]:
    return [p for p in ports if p % 7 == 0]


def watcher_pids() -> set[int]:
    """The watcher processes of every service of this process (the shared one of other tests'
    Nornir runs too)."""
    found = set()
    for task in Path("/proc/self/task").iterdir():
        for pid in (task / "children").read_text().split():
            if b"SIG_DFL" in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.add(int(pid))
    return found


def loop_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "portscan-service"]


def test_concurrent_calls_each_get_exactly_their_own_hosts(svc, started):
    sizes = itertools.cycle([(1, range(1, 11)), (3, range(1, 301)), (2, range(5, 1500))])
    plans = [(i * 3, *next(sizes)) for i in range(60)]

    def work(t: int) -> list[Any]:
        return [
            svc.scan(request(first, hosts, ports, processes=2))
            for first, hosts, ports in plans[t::12]
        ]

    results = in_threads(12, work)
    for t, reports in enumerate(results):
        assert not isinstance(reports, BaseException), reports
        for (first, hosts, ports), report in zip(plans[t::12], reports, strict=True):
            assert [h.name for h in report.hosts] == [f"h{first + i}" for i in range(hosts)]
            for host in report.hosts:
                assert host.open_ports == opened(ports)
                assert host.closed_count == len(ports) - len(opened(ports))
                assert host.scanned == tuple(ports)
            assert report.probes_sent == hosts * len(ports)
            assert not report.interrupted
    assert len(started) == 2  # sixty calls, one lane of two workers


def test_a_unit_that_kills_its_worker_once_is_rerun_for_every_call_aboard(
    monkeypatch, tmp_path, svc
):
    monkeypatch.setenv("FAKE_DIE_ON_PORT", "700")
    monkeypatch.setenv("FAKE_DIE_ONCE", str(tmp_path / "died"))
    reports = in_threads(10, lambda i: svc.scan(request(i, 1, range(1, 1001), processes=2)))
    assert (tmp_path / "died").exists()
    for report in reports:
        (host,) = report.hosts
        assert (host.error_ports, host.open_ports) == ([], opened(range(1, 1001)))


def test_a_unit_that_always_kills_its_worker_becomes_errors_of_its_call(monkeypatch, svc):
    monkeypatch.setenv("FAKE_DIE_ON_PORT", "5")
    (host,) = svc.scan(request(0, 1, range(1, 301), processes=2)).hosts
    assert host.error_ports == list(range(1, 257))
    assert {p.reason for p in host.ports if p.state is PortState.ERROR} == {"worker-died"}
    assert host.open_ports == opened(range(257, 301))
    # the service goes on: the next call gets fresh workers
    (host,) = svc.scan(request(1, 1, range(6, 100), processes=2)).hosts
    assert (host.error_ports, host.open_ports) == ([], opened(range(6, 100)))


def test_keyboard_interrupt_in_one_calling_thread_ends_that_call_only(monkeypatch, svc):
    monkeypatch.setenv("FAKE_HANG_ON_PORT", str(HANG))
    halfway = threading.Event()
    box: dict[str, Any] = {}

    def victim() -> None:
        box["ident"] = threading.get_ident()
        try:
            svc.scan(half_hung(0, processes=1), progress=lambda p: p.done >= 20 and halfway.set())
        except ScanInterrupted as exc:
            box["when"] = time.monotonic()
            box["report"] = exc.report

    thread = threading.Thread(target=victim)
    thread.start()
    assert halfway.wait(10)
    others = in_threads(4, lambda i: svc.scan(request(10 + i, 2, range(1, 200), processes=1)))
    sent = time.monotonic()
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(box["ident"]), ctypes.py_object(KeyboardInterrupt)
    )
    thread.join(5)
    assert box["when"] - sent < 1.0
    report = box["report"]
    assert report.interrupted
    done, hung = report.hosts
    assert (done.open_ports, done.scanned) == (opened(range(1, 21)), tuple(range(1, 21)))
    assert (hung.ports, hung.scanned) == ((), ())
    for other in others:  # calls sharing the worker, before and after, are whole
        assert [h.open_ports for h in other.hosts] == [opened(range(1, 200))] * 2
    after = svc.scan(request(20, 1, range(1, 50), processes=1))  # no hold for one caller
    assert after.hosts[0].open_ports == opened(range(1, 50))


def test_a_process_group_ctrl_c_interrupts_every_call_then_holds(monkeypatch, svc, started):
    monkeypatch.setenv("FAKE_HANG_ON_PORT", str(HANG))
    monkeypatch.setattr(service, "INTERRUPT_HOLD", 0.5)
    halfway = [threading.Event() for _ in range(5)]

    def work(i: int) -> Any:
        try:
            request = half_hung(i, processes=2)
            svc.scan(request, progress=lambda p: p.done >= 20 and halfway[i].set())
        except ScanInterrupted as exc:
            return exc.report, time.monotonic()
        return None

    box: list[Any] = []
    others = watcher_pids()
    callers = threading.Thread(target=lambda: box.extend(in_threads(5, work)))
    callers.start()
    assert all(e.wait(10) for e in halfway)
    (pid,) = watcher_pids() - others  # this service's
    sent = time.monotonic()
    os.kill(pid, signal.SIGINT)  # what a terminal's Ctrl-C does to the whole group
    callers.join(10)
    assert len(box) == 5
    for i, (report, when) in enumerate(box):
        assert when - sent < 1.0
        assert report.interrupted
        assert [h.name for h in report.hosts] == [f"h{i}", f"x{i}"]
        assert report.hosts[0].open_ports == opened(range(1, 21))
    assert poll(lambda: not any(running(p) for p in started))
    with pytest.raises(ScanInterrupted) as refused:  # the hold: not scanned at all
        svc.scan(request(30, 1, range(1, 10)))
    assert refused.value.report.interrupted
    assert refused.value.report.probes_sent == 0
    assert refused.value.report.hosts[0].scanned == ()

    def scans_again() -> bool:
        try:
            return svc.scan(request(31, 1, range(1, 10))).hosts[0].open_ports == [7]
        except ScanInterrupted:
            return False

    assert poll(scans_again, 5)


def test_close_ends_calls_in_flight_with_a_scan_error(monkeypatch, started):
    monkeypatch.setenv("FAKE_HANG_ON_PORT", str(HANG))
    scanner = ScanService()
    halfway = threading.Event()
    box: list[BaseException] = []

    def work() -> None:
        try:
            scanner.scan(half_hung(0), progress=lambda p: p.done >= 20 and halfway.set())
        except ScanError as exc:
            box.append(exc)

    thread = threading.Thread(target=work)
    thread.start()
    assert halfway.wait(10)
    scanner.close()
    thread.join(5)
    assert [str(e) for e in box] == ["the scan service was closed during the scan"]
    assert not any(running(p) for p in started)
    assert not loop_threads()
    with pytest.raises(ScanError, match="the scan service is closed: use a new ScanService"):
        scanner.scan(request(0, 1, range(1, 10)))


def test_idle_workers_stop_and_the_loop_leaves(svc, started):
    assert svc.scan(request(0, 1, range(1, 100))).hosts[0].open_ports == opened(range(1, 100))
    first = list(started)
    assert first
    assert poll(lambda: not any(running(p) for p in first) and not loop_threads())
    assert svc.scan(request(1, 1, range(1, 100))).hosts[0].open_ports == opened(range(1, 100))
    assert len(started) > len(first)  # a new loop, new workers


def test_options_that_shape_workers_get_their_own_lane_and_its_warnings(svc, started):
    plans = [
        {"processes": 1, "concurrency": 100_000},  # more than the ephemeral ports allow
        {"processes": 1},
        {"processes": 1, "host_timeout": 30.0},  # not a worker setting: shares a lane
    ]
    reports = in_threads(3, lambda i: svc.scan(request(i, 2, range(1, 500), **plans[i])))
    lowered, plain, timed = (r.warnings for r in reports)
    assert len(lowered) == 1
    assert lowered[0].startswith("concurrency lowered from 100000 to ")
    assert (plain, timed) == ((), ())
    for report, options in zip(reports, plans, strict=True):
        assert report.options == ScanOptions(**options)
        assert all(h.status is HostStatus.UP for h in report.hosts)
    assert len(started) == 2


def test_progress_is_per_call(svc):
    seen: list[list[Progress]] = [[], []]
    sizes = [range(1, 3000), range(1, 200)]
    in_threads(2, lambda i: svc.scan(request(i, 4, sizes[i]), progress=seen[i].append))
    for progress, ports in zip(seen, sizes, strict=True):
        assert progress[-1].done == progress[-1].total == 4 * len(ports)
        assert all(a.done <= b.done for a, b in itertools.pairwise(progress))


def test_unresolved_hosts_need_no_worker(svc, started):
    req = ScanRequest((Target("nowhere.invalid", None, error="no such name"),), (80,))
    (host,) = svc.scan(req).hosts
    assert (host.status, started) == (HostStatus.UNRESOLVED, [])


@pytest.mark.parametrize("value", [0, -1, float("inf"), True, "5"])
def test_a_bad_idle_timeout_is_refused(value):
    with pytest.raises(OptionError, match=r"invalid idle_timeout .*: use a number of seconds > 0"):
        ScanService(idle_timeout=value)
