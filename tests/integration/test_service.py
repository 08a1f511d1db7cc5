"""The scan service against real sockets on loopback, from many threads and processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from service_support import in_threads, poll, running
from support import REPO, closed_port, listening_ports

from nornir_portscan import HostStatus, ScanInterrupted, build_request

pytestmark = pytest.mark.usefixtures("no_shared_service")


def tagged(tag: str) -> list[str]:
    """Processes whose environment holds ``tag``."""
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if tag.encode() in environ.read_bytes():
                found.append(environ.parent.name)
        except OSError:
            continue
    return found


def test_twenty_threads_share_one_set_of_workers_and_get_their_own_hosts(listeners, svc, started):
    hosts = [f"127.0.5.{i + 1}" for i in range(20)]
    own = {h: listeners.open(h) for h in hosts}
    closed = closed_port()

    def work(i: int) -> Any:
        host = hosts[i]
        return svc.scan(build_request([host], [own[host], closed, 1, 2], processes=2))

    reports = in_threads(20, work)
    for host, report in zip(hosts, reports, strict=True):
        assert not isinstance(report, BaseException), report
        (result,) = report.hosts
        assert (result.name, result.status, result.open_ports) == (host, HostStatus.UP, [own[host]])
        assert (result.closed_count, report.probes_sent) == (3, 4)
    assert len(started) == 2  # twenty calls in flight at once, two workers
    assert "gevent" not in sys.modules


def test_a_port_opened_between_two_calls_is_open_in_the_second(listeners, svc, started):
    port = closed_port("127.0.0.21")
    request = build_request(["127.0.0.21"], [port], processes=1)
    assert svc.scan(request).hosts[0].open_ports == []
    listeners.open("127.0.0.21", port)
    assert svc.scan(request).hosts[0].open_ports == [port]
    assert len(started) == 1  # the same worker answered both: no result outlives its call


def test_calls_with_different_options_each_get_their_own(listeners, svc):
    port = listeners.open("127.0.0.22")
    closed = closed_port("127.0.0.22")
    plans = [
        {"include_closed": True},
        {"timeout": 0.5, "retries": 0},
        {"host_timeout": 20.0, "concurrency": 50},
    ]

    def work(i: int) -> Any:
        return svc.scan(build_request(["127.0.0.22"], [port, closed], processes=1, **plans[i]))

    listed, quick, capped = in_threads(3, work)
    assert [(p.port, p.state.value) for p in listed.hosts[0].ports] == [
        (min(port, closed), "open" if port < closed else "closed"),
        (max(port, closed), "open" if port > closed else "closed"),
    ]
    for report in (quick, capped):
        assert [p.port for p in report.hosts[0].ports] == [port]
        assert report.hosts[0].closed_count == 1
    assert (quick.options.timeout, capped.options.concurrency) == (0.5, 50)


def test_host_timeout_is_per_call_in_a_shared_lane(listeners, svc, started):
    port = listeners.open("127.0.0.26")
    options = {"rate": 4000, "processes": 1}
    svc.scan(build_request(["127.0.0.26"], [port], **options))  # the lane's worker is up

    def work(i: int) -> Any:
        if i == 0:
            return svc.scan(build_request(["127.0.0.26"], "1-20000", host_timeout=0.5, **options))
        return svc.scan(build_request(["127.0.0.27"], "1-1000", **options))

    timed, whole = in_threads(2, work)
    (host,) = timed.hosts
    assert host.status is HostStatus.TIMED_OUT
    assert 0 < host.closed_count < 20000
    assert host.error == f"host timeout: {20000 - len(host.scanned)} ports not scanned"
    assert (whole.hosts[0].status, len(whole.hosts[0].scanned)) == (HostStatus.UP, 1000)
    assert len(started) == 1  # one lane: host_timeout does not shape the worker


def test_idle_service_leaves_no_process(listeners, svc, started):
    port = listeners.open()
    assert svc.scan(build_request(["127.0.0.1"], [port])).hosts[0].open_ports == [port]
    assert started
    assert poll(lambda: not any(running(p) for p in started))
    assert poll(lambda: not [t for t in threading.enumerate() if t.name == "portscan-service"])


def test_a_worker_killed_mid_call_loses_nothing(listeners, svc, started):
    opened = sorted(listeners.open("127.0.0.23") for _ in range(3))
    scanned = set(range(1, 6001)) | set(opened)
    killed: list[int] = []

    def kill_a_worker(progress: Any) -> None:
        if not killed and progress.done > 1000:
            os.kill(started[0], signal.SIGKILL)
            killed.append(started[0])

    def work(i: int) -> Any:
        request = build_request(
            ["127.0.0.23"], "1-6000," + ",".join(map(str, opened)), rate=8000, processes=2
        )
        return svc.scan(request, progress=kill_a_worker if i == 0 else None)

    reports = in_threads(2, work)
    assert killed
    for report in reports:
        (host,) = report.hosts
        assert host.open_ports == sorted(listening_ports("127.0.0.23") & scanned)
        assert host.error_ports == []
        assert host.closed_count == len(scanned) - len(host.open_ports)


def test_keyboard_interrupt_in_the_calling_thread_ends_only_its_call(listeners, svc):
    port = listeners.open("127.0.0.25")
    other_busy, main_busy = threading.Event(), threading.Event()
    others: list[Any] = []
    sent: list[float] = []
    # One worker, rate-limited, shared by both calls: units of 4096 ports, at most two of
    # the main call's on the worker at once, so past 8192 ports one of them is merged.
    options = {"rate": 8000, "processes": 1}

    def other_calls() -> None:
        request = build_request(["127.0.0.25"], f"1-30000,{port}", **options)
        others.append(svc.scan(request, progress=lambda p: p.done and other_busy.set()))
        others.append(svc.scan(build_request(["127.0.0.25"], [port], **options)))

    def interrupt_main() -> None:
        if main_busy.wait(30):
            sent.append(time.monotonic())
            signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)

    thread = threading.Thread(target=other_calls)
    thread.start()
    assert other_busy.wait(20)
    threading.Thread(target=interrupt_main, daemon=True).start()
    with pytest.raises(ScanInterrupted) as caught:  # this thread is the main thread
        svc.scan(
            build_request(["127.0.0.24"], "1-40000", **options),
            progress=lambda p: p.done > 8192 and main_busy.set(),
        )
    assert time.monotonic() - sent[0] < 1.0
    assert not others  # the other call was still in flight
    report = caught.value.report
    assert report.interrupted
    (host,) = report.hosts
    assert 0 < len(host.scanned) < 40000
    assert set(host.open_ports) <= listening_ports("127.0.0.24")
    thread.join(60)
    assert [r.hosts[0].open_ports for r in others] == [
        sorted(listening_ports("127.0.0.25") & {*range(1, 30001), port}),
        [port],
    ]
    assert not any(r.interrupted or r.hosts[0].error_ports for r in others)


# A Nornir-like run: tasks on a thread pool, Ctrl-C in the main thread only.
PROCESS_GROUP_CTRL_C = """
import json, sys, threading, time
from concurrent.futures import ThreadPoolExecutor
from nornir_portscan import ScanInterrupted, build_request
from nornir_portscan.engine.service import shared_service

TASKS, THREADS = 30, 10
busy = [threading.Event() for _ in range(TASKS)]
outcome = {}

def task(i):
    request = build_request([f"127.0.6.{i + 1}"], "1-3000", rate=3000, concurrency=5000)
    try:
        shared_service().scan(request, progress=lambda p: p.done and busy[i].set())
        outcome[i] = "done"
    except ScanInterrupted as exc:
        report = exc.report
        assert report.interrupted and len(report.hosts[0].scanned) < 3000
        if busy[i].is_set():  # in flight
            outcome[i] = "interrupted"
        elif report.probes_sent == 0 and report.hosts[0].scanned == ():
            outcome[i] = "refused"

try:
    with ThreadPoolExecutor(THREADS) as pool:
        futures = [pool.submit(task, i) for i in range(TASKS)]
        deadline = time.monotonic() + 60
        while not all(e.is_set() for e in busy[:THREADS]) and time.monotonic() < deadline:
            time.sleep(0.01)
        print("busy", flush=True)
        for future in futures:
            future.result()
except KeyboardInterrupt:
    pass
try:
    shared_service().scan(build_request(["127.0.0.1"], "1-10"))
    after = "scanned"
except ScanInterrupted:
    after = "refused"
print(json.dumps({"outcome": sorted(outcome.values()), "after": after}))
"""


def test_ctrl_c_to_the_process_group_ends_every_call_and_leaves_no_process(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(PROCESS_GROUP_CTRL_C)
    tag = f"PORTSCAN_TEST_TAG_{os.getpid()}_{time.monotonic_ns()}"
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        env={**os.environ, tag: "1", "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, like a terminal's foreground job
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == "busy\n"
    os.killpg(proc.pid, signal.SIGINT)
    sent = time.monotonic()
    out, err = proc.communicate(timeout=30)
    assert time.monotonic() - sent < 2.0
    assert (proc.returncode, err) == (0, "")
    result = json.loads(out)
    # ten calls in flight, interrupted; twenty queued calls, refused; one more, refused
    assert result == {"outcome": ["interrupted"] * 10 + ["refused"] * 20, "after": "refused"}
    assert poll(lambda: not tagged(tag), 5)


AT_EXIT = """
import os, sys
from nornir_portscan import build_request
from nornir_portscan.engine.service import shared_service

port = int(sys.argv[1])
service = shared_service()
assert shared_service() is service
assert service.scan(build_request(["127.0.0.1"], [port])).hosts[0].open_ports == [port]
child = os.fork()
if child == 0:  # a forked child gets its own service and never touches the parent's workers
    mine = shared_service()
    assert mine is not service
    assert mine.scan(build_request(["127.0.0.1"], [port])).hosts[0].open_ports == [port]
    sys.exit(0)
assert os.waitpid(child, 0)[1] == 0
assert service.scan(build_request(["127.0.0.1"], [port])).hosts[0].open_ports == [port]
print("ok")
"""


def test_the_shared_service_stops_its_workers_at_exit_and_after_fork(tmp_path, listeners):
    port = listeners.open()
    script = tmp_path / "at_exit.py"
    script.write_text(AT_EXIT)
    tag = f"PORTSCAN_TEST_TAG_{os.getpid()}_{time.monotonic_ns()}"
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, str(script), str(port)],
        env={**os.environ, tag: "1", "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "ok\n", "")
    assert time.monotonic() - started < 5 + 3  # it did not wait for the idle timeout
    assert tagged(tag) == []  # stopped at exit, not left to notice on their own
