"""A long-lived scan service that many threads share: ``ScanService`` and ``shared_service``.

``ScanService.scan`` is ``scan`` for many threads at once. Each call scans its own request,
hands its units to workers only after it began, and returns a report of exactly its own hosts
(its own ``probes_sent``, times and warnings). Calls in flight at the same moment share the
worker processes and their probe pools; one background thread runs the selector loop for all
of them. Calls whose options shape the workers alike (every ``ScanOptions`` field but
``host_timeout``) share a *lane*: up to ``processes`` workers (one per CPU by default), started
as the work needs them and stopped ``idle_timeout`` seconds after the lane's last call. A lane's
``rate`` and ``host_concurrency`` are budgets of the lane, shared by the calls in it::

    service = shared_service()           # or: with ScanService() as service:
    report = service.scan(build_request(["127.0.0.1"], "22,443"))  # from any thread

Ctrl-C. A ``KeyboardInterrupt`` in a calling thread ends that call, and no other, with
``ScanInterrupted`` (its partial report) within a second. A terminal's Ctrl-C (SIGINT to the
foreground process group) reaches only the main thread, which under Nornir's ``ThreadedRunner``
waits for the task threads; so while it has workers the service keeps a watcher process in the
caller's process group that does nothing but die of that SIGINT. When it does, every call in
flight ends with ``ScanInterrupted``, every worker is killed, and calls that start in the next
``INTERRUPT_HOLD`` seconds are refused with ``ScanInterrupted`` (an interrupted report, nothing
scanned): a runner that drains its queue after Ctrl-C starts no new scans. A SIGINT sent to
this process alone (``kill -INT <pid>``) is only a ``KeyboardInterrupt`` in the main thread.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import os
import signal
import subprocess
import sys
import threading
import time
import weakref
from collections import deque

from nornir_portscan.engine.executor import (
    _TICK,
    ProgressCallback,
    _Engine,
    _Lane,
    _Run,
)
from nornir_portscan.engine.processes import cpu_count
from nornir_portscan.errors import OptionError, ScanError, ScanInterrupted
from nornir_portscan.models import Progress, ScanOptions, ScanReport, ScanRequest

__all__ = ["IDLE_TIMEOUT", "INTERRUPT_HOLD", "ScanService", "shared_service"]

INTERRUPT_HOLD = 3.0
"""Seconds after a process-group Ctrl-C during which new calls are refused."""
IDLE_TIMEOUT = 5.0
"""Seconds a lane's workers stay after its last call, by default and for ``shared_service``."""

_WAIT = 0.1  # a caller's wait slice: how soon it sees a KeyboardInterrupt, its progress period
_CANCEL_WAIT = 1.0  # how long a caller waits for the loop to hand back its partial report
_CLOSE_WAIT = 5.0
_LANE_HOSTS = 1 << 16  # workers keep state per address: a lane that saw this many is renewed
# The watcher: dies of a SIGINT (unless this process ignores SIGINT, then so does it), exits
# when its stdin closes. No site, no environment: it starts in a few milliseconds.
_WATCHER = (
    "import os, signal\n"
    "if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:\n"
    "    signal.signal(signal.SIGINT, signal.SIG_DFL)\n"
    "os.read(0, 1)\n"
)


class ScanService:
    """Scans for many threads at once, on shared worker processes.

    ``scan`` may be called from any number of threads; ``close`` (or the end of a ``with``
    block, or the interpreter's exit) stops every worker. ``idle_timeout``: seconds the
    workers of a set of options stay after its last call ends.
    """

    def __init__(self, *, idle_timeout: float = IDLE_TIMEOUT) -> None:
        if (
            isinstance(idle_timeout, bool)
            or not isinstance(idle_timeout, int | float)
            or not 0 < idle_timeout < math.inf
        ):
            raise OptionError(
                f"invalid idle_timeout {idle_timeout!r}: use a number of seconds > 0, "
                "e.g. idle_timeout=5"
            )
        self._core = _Dispatcher(idle_timeout)
        # a service dropped without close() still stops its workers; at exit too
        self._finalizer = weakref.finalize(self, self._core.close)

    def scan(self, request: ScanRequest, *, progress: ProgressCallback | None = None) -> ScanReport:
        """Scan ``request`` and return its report, blocking this thread until its hosts are done.

        ``progress`` is called in this thread. Raises ``ScanInterrupted`` (with the partial
        report) on a KeyboardInterrupt in this thread or a Ctrl-C of the process group, and
        ``ScanError`` when the service is closed or no worker can start.
        """
        return self._core.scan(request, progress)

    def close(self) -> None:
        """Stop the workers and the loop thread; calls still in flight raise ``ScanError``."""
        self._finalizer()

    def __enter__(self) -> ScanService:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


_shared: ScanService | None = None
_shared_lock = threading.Lock()


def shared_service() -> ScanService:
    """The process-wide ``ScanService``, created on first use (a new one in a forked child).

    Its workers stop ``IDLE_TIMEOUT`` seconds after the last call and at interpreter exit.
    """
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = ScanService()
        return _shared


def _forget_shared() -> None:
    # A forked child must not use, nor stop, its parent's workers: it starts afresh.
    global _shared, _shared_lock
    _shared = None
    _shared_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_shared)


class _Call:
    """One ``scan`` call; ended exactly once, by the loop thread (or by its caller's fallback)."""

    __slots__ = ("cancelled", "done", "error", "interrupted", "lane", "report", "run", "submitted")

    def __init__(self, run: _Run) -> None:
        self.run = run
        self.done = threading.Event()
        self.report: ScanReport | None = None
        self.error: ScanError | None = None
        self.interrupted = False
        self.cancelled = False  # the caller gave up (set by the caller's thread)
        self.submitted = False
        self.lane: _Lane | None = None

    def end(self, *, interrupted: bool) -> None:
        if not self.done.is_set():
            self.report = self.run.report(interrupted=interrupted)
            self.interrupted = interrupted
            self.done.set()

    def fail(self, exc: BaseException) -> None:
        if not self.done.is_set():
            failed = f"the scan service failed: {exc!r}"
            self.error = ScanError(str(exc) if isinstance(exc, ScanError) else failed)
            self.error.__cause__ = exc
            self.done.set()


class _Dispatcher:
    """What callers share with the loop thread: the inbox, the wake-up pipe, the hold."""

    def __init__(self, idle_timeout: float) -> None:
        self.idle_timeout = idle_timeout
        self.pid = os.getpid()
        self.lock = threading.Lock()
        self.inbox: deque[_Call] = deque()  # submitted or cancelled calls, for the loop
        self.thread: threading.Thread | None = None  # the loop; None when it has left
        self.closed = False
        self.hold_until = 0.0
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.pipe_open = True

    # -- the callers' side -------------------------------------------------------------------
    def scan(self, request: ScanRequest, progress: ProgressCallback | None) -> ScanReport:
        if os.getpid() != self.pid:
            raise ScanError(
                "this ScanService belongs to the process that created it: after a fork, use "
                "shared_service() or a new ScanService"
            )
        call = _Call(_Run(request))
        try:
            self._submit(call)
            while not call.done.wait(_WAIT):
                call.run.report_progress(progress)
        except KeyboardInterrupt:
            raise ScanInterrupted(self._cancel(call)) from None
        except BaseException:
            self._cancel(call)
            raise
        if call.error is not None:
            raise call.error
        assert call.report is not None
        if call.interrupted:
            raise ScanInterrupted(call.report)
        if progress is not None:
            run = call.run
            elapsed = time.monotonic() - run.started_mono
            progress(Progress(run.total_ports, run.total_ports, elapsed))
        return call.report

    def _submit(self, call: _Call) -> None:
        if not call.run.has_work():  # unresolved hosts only: nothing to send
            call.end(interrupted=False)
        with self.lock:
            if self.closed:
                raise ScanError("the scan service is closed: use a new ScanService")
            if time.monotonic() < self.hold_until:
                call.end(interrupted=True)
            if call.done.is_set():
                return
            call.submitted = True  # first: a cancel from here on goes through the loop
            self.inbox.append(call)
            if self.thread is None:
                loop = _Loop(self)
                thread = threading.Thread(target=loop.run, name="portscan-service", daemon=True)
                try:
                    thread.start()
                except RuntimeError as exc:  # can't start new thread
                    loop.engine.close()
                    self.inbox.remove(call)
                    call.submitted = False
                    raise ScanError(f"cannot start the scan service's thread: {exc}") from exc
                self.thread = thread
        self.wake()

    def _cancel(self, call: _Call) -> ScanReport:
        """End ``call`` for a caller that gives up; return its report so far."""
        call.cancelled = True
        if call.submitted and not call.done.is_set():
            with self.lock:
                self.inbox.append(call)
            self.wake()
            deadline = time.monotonic() + _CANCEL_WAIT
            while not call.done.is_set() and (left := deadline - time.monotonic()) > 0:
                with contextlib.suppress(KeyboardInterrupt):  # a second Ctrl-C: same answer
                    call.done.wait(left)
        if call.report is not None:
            return call.report
        # The loop did not answer in time (it should): a report from the caller's side.
        return call.run.report(interrupted=True)

    def wake(self) -> None:
        with contextlib.suppress(OSError):  # full: a wake-up is pending anyway; closed: gone
            os.write(self.wake_w, b"\0")

    def drain(self) -> None:
        with contextlib.suppress(OSError):
            os.read(self.wake_r, 4096)

    def close(self) -> None:
        if os.getpid() != self.pid:
            return  # a forked child: the workers and the loop are the parent's
        with self.lock:
            self.closed = True
            thread = self.thread
        self.wake()
        if thread is not None and thread is not threading.current_thread():
            thread.join(_CLOSE_WAIT)
        if thread is None or not thread.is_alive():
            self.close_pipe()

    def close_pipe(self) -> None:
        with self.lock:
            if self.pipe_open:
                self.pipe_open = False
                os.close(self.wake_r)
                os.close(self.wake_w)


class _Loop:
    """The loop thread's state: one engine for every lane; lives until the service is idle."""

    def __init__(self, service: _Dispatcher) -> None:
        self.service = service
        self.engine = _Engine()
        self.calls: set[_Call] = set()
        self.lanes: dict[ScanOptions, _Lane] = {}  # by the options that shape the workers
        self.renewed: list[_Lane] = []  # replaced in ``lanes``, draining their last calls
        self.watcher: subprocess.Popen[bytes] | None = None
        self.engine.watch(service.wake_r, service.drain)

    def run(self) -> None:
        service = self.service
        try:
            while self._turn():
                pass
        except BaseException as exc:  # the loop must not leave its callers waiting
            with service.lock:
                waiting = [*service.inbox, *self.calls]
                service.inbox.clear()
                service.thread = None
            for call in waiting:
                call.fail(exc)
        finally:
            self._stop_watcher()
            self.engine.close()
            if service.closed:
                service.close_pipe()

    def _turn(self) -> bool:
        service = self.service
        with service.lock:
            taken = list(service.inbox)
            service.inbox.clear()
            closed = service.closed
            if not taken and not closed and self._idle():
                service.thread = None  # a later call starts a new loop
                return False
        if closed:
            for call in [*taken, *self.calls]:
                call.fail(ScanError("the scan service was closed during the scan"))
            self.calls.clear()
            self.engine.stop()
            return False
        try:
            for call in taken:
                self._take(call)
            self.engine.step(_TICK)
        except Exception as exc:  # e.g. no worker can start: every call says so
            self._fail_all(exc)
        self._reap_lanes()
        return True

    def _idle(self) -> bool:
        return not (self.calls or self.engine.lanes or self.engine.stopping or self.watcher)

    def _take(self, call: _Call) -> None:
        if call.done.is_set():
            return
        if call.cancelled:
            if call.lane is not None:
                call.lane.cancel(call.run)
            self.calls.discard(call)
            call.end(interrupted=True)
            return
        if call in self.calls:
            return
        if time.monotonic() < self.service.hold_until:
            call.end(interrupted=True)  # submitted just before the Ctrl-C was seen
            return
        lane = self._lane(call.run.options)
        call.lane = lane
        call.run.on_finish = functools.partial(self._finished, call)
        self.calls.add(call)
        lane.attach(call.run)

    def _finished(self, call: _Call) -> None:
        self.calls.discard(call)
        call.end(interrupted=False)

    def _lane(self, options: ScanOptions) -> _Lane:
        key = dataclasses.replace(options, host_timeout=None)
        lane = self.lanes.get(key)
        if lane is None or len(lane.host_ids) >= _LANE_HOSTS:
            if lane is not None:
                self.renewed.append(lane)
            size = options.processes or cpu_count()
            # With a rate, all workers at once: the rate is divided between all of them.
            lane = self.engine.add_lane(options, size, prestart=options.rate is not None)
            self.lanes[key] = lane
        self._start_watcher()
        return lane

    def _reap_lanes(self) -> None:
        now = time.monotonic()
        for key, lane in list(self.lanes.items()):
            if not lane.runs and now - lane.idle_since >= self.service.idle_timeout:
                del self.lanes[key]
                self.engine.retire(lane)
        for lane in list(self.renewed):
            if not lane.runs:
                self.renewed.remove(lane)
                self.engine.retire(lane)
        if not self.engine.lanes:
            self._stop_watcher()

    def _fail_all(self, exc: BaseException) -> None:
        self.engine.kill()
        self.lanes.clear()
        self.renewed.clear()
        for call in self.calls:
            call.run.finished = True
            call.fail(exc)
        self.calls.clear()

    # -- the Ctrl-C watcher ------------------------------------------------------------------
    def _start_watcher(self) -> None:
        if self.watcher is not None:
            return
        try:
            # Not a new session, unlike the workers: it is here to get the terminal's SIGINT.
            proc = subprocess.Popen(
                [sys.executable, "-I", "-S", "-c", _WATCHER],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
            )
        except OSError:
            return  # the workers cannot start either, and they say so
        assert proc.stdout is not None
        self.watcher = proc
        self.engine.watch(proc.stdout.fileno(), self._watcher_spoke)

    def _watcher_spoke(self) -> None:
        proc = self.watcher
        assert proc is not None
        assert proc.stdout is not None
        with contextlib.suppress(OSError):
            if os.read(proc.stdout.fileno(), 64):
                return  # it never writes; only its end matters
        self._stop_watcher()
        if proc.returncode == -signal.SIGINT:
            self._interrupt_all()
        elif self.engine.lanes:
            self._start_watcher()  # killed some other way: keep watching

    def _stop_watcher(self) -> None:
        proc, self.watcher = self.watcher, None
        if proc is None:
            return
        assert proc.stdin is not None
        assert proc.stdout is not None
        self.engine.unwatch(proc.stdout.fileno())
        with contextlib.suppress(OSError):
            proc.stdin.close()  # its read returns: it leaves
        try:
            proc.wait(timeout=1)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=1)
        proc.stdout.close()

    def _interrupt_all(self) -> None:
        with self.service.lock:
            self.service.hold_until = time.monotonic() + INTERRUPT_HOLD
        self.engine.kill()
        self.lanes.clear()
        self.renewed.clear()
        for call in self.calls:
            call.run.finished = True
            call.end(interrupted=True)
        self.calls.clear()
