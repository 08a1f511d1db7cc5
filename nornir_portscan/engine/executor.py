"""The scan engine's entry points: ``scan`` and ``WorkerPool``.

``scan`` spreads (host, port-chunk) units over worker processes, one per CPU by default. Each
worker is its own interpreter (``python -S -P -m nornir_portscan.engine.worker``) talking over
pipes, so this process never imports gevent, never forks with threads running and never
re-imports the caller's ``__main__``. Units are handed out as workers have room, so one big
host keeps every worker busy and thousands of small hosts interleave. A worker that dies has
its units re-run once, then reported as errors; Ctrl-C kills every worker and raises
``ScanInterrupted`` with the partial report.

Inside, a ``_Run`` is one call (its units, tallies and report), a ``_Lane`` a set of workers with
one ``WorkerConfig`` that runs share unit by unit, and ``_Engine`` the selector loop over lanes.
``scan`` drives one lane for one run in the caller's thread; ``service.ScanService`` drives many
from a background thread.
"""

from __future__ import annotations

import contextlib
import functools
import math
import operator
import os
import select
import selectors
import subprocess
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nornir_portscan.engine.processes import (
    WorkerPool,
    cpu_count,
    start_worker,
    stop_process,
    worker_env,
)
from nornir_portscan.engine.protocol import (
    STOP,
    FrameReader,
    Progressed,
    Unit,
    UnitDone,
    WorkerConfig,
    WorkerReady,
    frame,
)
from nornir_portscan.errors import InputError, ScanInterrupted
from nornir_portscan.models import (
    HostResult,
    HostStatus,
    PortResult,
    PortState,
    Progress,
    ScanOptions,
    ScanReport,
    ScanRequest,
    Target,
)
from nornir_portscan.ports import UDP

__all__ = ["WorkerPool", "scan"]

ProgressCallback = Callable[[Progress], None]

_MAX_CHUNK = 4096
_MIN_CHUNK = 256
_PROGRESS_EVERY = 0.1
_TICK = 0.2  # the longest the loop waits: stall checks, progress, Ctrl-C
_UNIT_TRIES = 2
_READ_SIZE = 1 << 16  # a pipe's capacity; a 1 MiB buffer cost an mmap and munmap per read
# A UDP unit can wait this much longer than a TCP one between finished ports: a rate-limited
# host's gap grows to 32 s, a worker-wide round waits up to 30 s (engine/udp.py).
_UDP_STALL_EXTRA = 2 * 32 + 30
_BY_KEY = operator.attrgetter("protocol", "port")  # "tcp" < "udp": TCP first, as port keys
_EXAMPLE = "e.g. scan(build_request(['127.0.0.1'], '22'))"


def scan(
    request: ScanRequest,
    *,
    progress: ProgressCallback | None = None,
    workers: WorkerPool | None = None,
) -> ScanReport:
    """Run the scan; return the report. Ctrl-C raises ``ScanInterrupted`` with partial results.

    With ``workers``, the scan takes its worker processes from that pool while it has some.
    Each call starts and stops its own workers; to share them between concurrent calls, use
    ``nornir_portscan.engine.service.ScanService``.
    """
    if not isinstance(request, ScanRequest):  # its own checks ran when it was made
        raise InputError(f"invalid request {request!r:.60}: give a ScanRequest, {_EXAMPLE}")
    run = _Run(request)
    units = run.unit_count()
    if not units:
        return run.report(interrupted=False)
    engine = _Engine()
    try:
        wanted = request.options.processes or cpu_count()
        # All of the lane's workers at once: they start in parallel, and the rate and the
        # ephemeral ports are divided between exactly this many.
        lane = engine.add_lane(request.options, min(wanted, units), pool=workers, prestart=True)
        lane.attach(run)
        # The loop runs in the caller's thread: a one-shot scan needs no dispatcher thread.
        while not run.finished:
            engine.step(_TICK)
            run.report_progress(progress)
        engine.stop()
        if progress is not None:
            elapsed = time.monotonic() - run.started_mono
            progress(Progress(run.total_ports, run.total_ports, elapsed))
        # in the try: a Ctrl-C while a big report is made still gives ScanInterrupted
        return run.report(interrupted=False)
    except KeyboardInterrupt:
        engine.kill()
        raise ScanInterrupted(run.report(interrupted=True)) from None
    finally:
        engine.close()  # kills whatever is left after an error


@dataclass(slots=True)
class _HostTally:
    """What the units of one host found so far. Lists are made on first use: a scan of
    65,536 hosts keeps 65,536 tallies, most of which only count one closed port."""

    ports: list[PortResult] | None = None
    closed: int = 0
    rate_limited: bool = False  # UDP: the host's ICMP rate limit held back its scan
    unscanned: list[int] | None = None  # left by the host timeout
    done: int = 0  # ports of finished units
    finished: list[tuple[int, int]] | None = None  # index ranges of done units, if not whole
    srtt: float | None = None
    rttvar: float | None = None
    deadline: float | None = None
    replied: bool = False  # the host itself sent an ICMP error (a reject on the host)

    def finish(self, work: _Work) -> None:
        """Count the ports of ``work`` as done."""
        self.done += len(work.ports)
        if not work.whole:
            if self.finished is None:
                self.finished = []
            self.finished.append((work.start, work.start + len(work.ports)))

    def add(self, results: list[PortResult]) -> None:
        if results:
            if self.ports is None:
                self.ports = []
            self.ports.extend(results)


@dataclass(slots=True, eq=False)
class _Work:
    run: _Run
    host_id: int  # index of the target in the run's request
    start: int  # index of ports[0] in the host's port list
    ports: tuple[int, ...]  # port keys
    whole: bool  # the unit is every port of its host
    udp: bool = False  # UDP ports (keys): the unit holds all of its host's, one worker paces them
    tries: int = 0
    progressed: int = 0  # ports of this unit counted in the run's progress so far


class _Worker:
    def __init__(self, env: Mapping[str, str], proc: subprocess.Popen[bytes] | None = None) -> None:
        self.proc = proc or start_worker(env)  # ``proc``: one a ``WorkerPool`` started
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.stdin = self.proc.stdin.fileno()
        self.stdout = self.proc.stdout.fileno()
        # Both ends non-blocking: a worker that stops reading must not block the loop, whose
        # stall check is what finds such a worker.
        os.set_blocking(self.stdin, False)
        os.set_blocking(self.stdout, False)
        self.reader = FrameReader()
        self.out = bytearray()  # frames not yet written to the worker's stdin
        self.writing = False  # stdin is registered for EVENT_WRITE
        self.units: dict[int, _Work] = {}
        self.load = 0  # ports handed out and not yet reported finished
        self.heard = time.monotonic()
        self.alive = True
        self.ready = False  # said WorkerReady: its probe pool runs

    def send(self, message: Any) -> bool:
        """Queue ``message`` and write what the pipe takes; False when the pipe is broken."""
        self.out += frame(message)
        return self.flush()

    def flush(self) -> bool:
        try:
            while self.out:
                del self.out[: os.write(self.stdin, self.out)]
        except BlockingIOError:
            pass
        except OSError:
            return False
        return True

    def kill(self) -> None:
        self.alive = False
        stop_process(self.proc)

    def ask_to_stop(self) -> None:
        self.alive = False
        self.send(STOP)  # best effort: the end of its stdin says the same
        with contextlib.suppress(OSError):
            if self.proc.stdin is not None:
                self.proc.stdin.close()

    def stop(self) -> None:
        """Wait for the worker to leave after ``ask_to_stop``; kill it if it does not."""
        _wait_for_exit(self.proc, 2.0)
        self.kill()


def _wait_for_exit(proc: subprocess.Popen[bytes], timeout: float) -> None:
    """Wait at most ``timeout`` seconds for ``proc`` to exit, woken by its pidfd as it exits
    (``Popen.wait`` with a timeout polls, with sleeps that grow to 50 ms)."""
    try:
        pidfd = os.pidfd_open(proc.pid)
    except OSError:  # gone and reaped already, or a kernel before 5.3
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=timeout)
        return
    try:
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        poller.poll(timeout * 1000)
    finally:
        os.close(pidfd)
    proc.poll()


Callback = Callable[[], None]


class _Run:
    """One call's share of the engine: its units, its tallies and its report.

    Owned by the thread that runs the loop; the caller's thread only reads ``done_ports`` and
    ``finished``.
    """

    def __init__(self, request: ScanRequest) -> None:
        self.request = request
        self.options = request.options
        self.tallies = [_HostTally() for _ in request.targets]
        self.cpus = self.options.processes or cpu_count()  # once: a syscall, 2 per target
        # id(ports tuple) -> (that tuple, its keys in scan order, how many are TCP)
        self._layouts: dict[int, tuple[tuple[int, ...], tuple[int, ...], int]] = {}
        self.retry: deque[_Work] = deque()
        self.fresh = self.plan()
        self.inflight = 0  # units on a worker, not yet merged
        self.queued = False  # in its lane's queue
        self.finished = False
        self.on_finish: Callback | None = None
        self.probes_sent = 0
        self.done_ports = 0
        self.total_ports = request.probe_count
        self.warnings: list[str] = []
        self.started = time.time()
        self.started_mono = time.monotonic()
        self.last_progress = 0.0

    # -- planning ----------------------------------------------------------------------------
    def layout(self, target: Target) -> tuple[tuple[int, ...], int]:
        """The port keys of ``target`` in scan order, and how many of them (first) are TCP.

        Targets share their port tuples, so each tuple is looked at once; a TCP-only tuple (or
        a sorted mixed one) is kept as it is."""
        ports = self.request.ports_for(target)
        found = self._layouts.get(id(ports))
        if found is None or found[0] is not ports:
            if not ports or max(ports) < UDP:
                ordered, cut = ports, len(ports)
            else:
                tcp = tuple(p for p in ports if p < UDP)
                cut = len(tcp)
                ordered = ports if ports[:cut] == tcp else tcp + tuple(p for p in ports if p > UDP)
            found = self._layouts[id(ports)] = (ports, ordered, cut)
        return found[1], found[2]

    def chunk_size(self, tcp_ports: int) -> int:
        wanted = math.ceil(tcp_ports / (self.cpus * 4))
        return max(_MIN_CHUNK, min(_MAX_CHUNK, wanted))

    def unit_count(self) -> int:
        count = 0
        for target in self.request.targets:
            if target.address:
                ports, cut = self.layout(target)
                count += math.ceil(cut / self.chunk_size(cut)) + (cut < len(ports))
        return count

    def plan(self) -> Iterator[_Work]:
        for host_id, target in enumerate(self.request.targets):
            if not target.address:
                continue
            ports, cut = self.layout(target)
            size = self.chunk_size(cut)
            whole = size >= cut == len(ports)
            for start in range(0, cut, size):
                yield _Work(self, host_id, start, ports[start : min(start + size, cut)], whole)
            if cut < len(ports):  # every UDP port of the host in one unit: one worker paces them
                yield _Work(self, host_id, cut, ports[cut:], cut == 0, udp=True)

    def has_work(self) -> bool:
        """Whether a unit waits to be handed out (then ``retry[0]`` is the next one)."""
        if self.retry:
            return True
        try:
            self.retry.append(next(self.fresh))
        except StopIteration:
            return False
        return True

    def warn(self, text: str) -> None:
        if text not in self.warnings:
            self.warnings.append(text)

    def report_progress(self, callback: ProgressCallback | None) -> None:
        now = time.monotonic()
        if callback is not None and now - self.last_progress >= _PROGRESS_EVERY:
            self.last_progress = now
            done = min(self.done_ports, self.total_ports)
            callback(Progress(done, self.total_ports, now - self.started_mono))

    # -- the report --------------------------------------------------------------------------
    def report(self, *, interrupted: bool) -> ScanReport:
        hosts = tuple(
            self._host_result(target, tally, self.layout(target)[0])
            for target, tally in zip(self.request.targets, self.tallies, strict=True)
        )
        return ScanReport(
            hosts=hosts,
            options=self.options,
            started=self.started,
            # the start's wall clock plus the monotonic time since: a clock step (NTP) during
            # the scan changes neither the duration nor the rate
            finished=self.started + (time.monotonic() - self.started_mono),
            probes_sent=self.probes_sent,
            warnings=tuple(self.warnings),
            interrupted=interrupted,
        )

    @staticmethod
    def _host_result(target: Target, tally: _HostTally, wanted: tuple[int, ...]) -> HostResult:
        if not target.address:
            return HostResult(target.name, None, HostStatus.UNRESOLVED, error=target.error)
        ports = tuple(sorted(tally.ports, key=_BY_KEY)) if tally.ports else ()
        answered = (
            tally.closed
            or tally.replied
            or any(p.state in (PortState.OPEN, PortState.CLOSED) for p in ports)
        )
        timed_out = tally.unscanned or ()
        whole = tally.done == len(wanted)
        # a whole host shares the request's tuple: memory stays flat
        scanned, unscanned = wanted, wanted[:0]
        if timed_out or not whole:
            # A partial host (timed out, interrupted): list exactly what was and was not scanned.
            done = bytearray(len(wanted))
            for a, b in tally.finished or ([(0, len(wanted))] if whole else []):
                done[a:b] = b"\1" * (b - a)
            skipped = set(timed_out)
            scanned = tuple(p for p, d in zip(wanted, done, strict=True) if d and p not in skipped)
            unscanned = tuple(p for p, d in zip(wanted, done, strict=True) if not d or p in skipped)
        error = None
        if not whole:  # the interrupt came first: its ports were never probed to the end
            status = HostStatus.INTERRUPTED if tally.done or ports else HostStatus.NOT_SCANNED
            error = (
                f"{len(unscanned)} of {len(wanted)} ports not scanned"
                if status is HostStatus.INTERRUPTED
                else "interrupted before any result of this host came in"
            )
        elif timed_out:
            status = HostStatus.TIMED_OUT
            error = f"host timeout: {len(timed_out)} ports not scanned"
        elif answered:
            status = HostStatus.UP
        elif ports and all(p.state is PortState.ERROR for p in ports):
            status = HostStatus.ERROR
        else:
            status = HostStatus.NO_RESPONSE
        return HostResult(
            target.name,
            target.address,
            status,
            ports,
            tally.closed,
            error,
            scanned,
            unscanned=unscanned,
            rate_limited=tally.rate_limited,
        )


class _Lane:
    """A set of workers with one ``WorkerConfig``, shared by every run attached to it.

    Runs take turns unit by unit (round robin over ``queue``), so a big run never holds back
    a small one; each unit goes to the least loaded worker that has credit left.
    """

    def __init__(
        self,
        engine: _Engine,
        options: ScanOptions,
        size: int,
        pool: WorkerPool | None,
        *,
        prestart: bool,
    ) -> None:
        self.engine = engine
        self.size = size
        self.pool = pool
        self.prestart = prestart  # all workers at once, not as the queue grows
        self.config, warning = _worker_config(options, size)
        self.warnings = [warning] if warning else []
        self.stall_limit = (options.retries + 1) * options.timeout * 2 + 10
        if options.rate:
            self.stall_limit += 2 * size * _MAX_CHUNK / options.rate
        self.workers: list[_Worker] = []
        self.queue: deque[_Run] = deque()  # runs with a unit to hand out
        self.runs: set[_Run] = set()  # attached and not finished
        self.units = 0  # units on a worker, of any run
        self.spawned = 0
        self.respawns_left = 2 * size
        # The worker keeps per-host state by host id: one id per address, so that two runs
        # scanning the same address share its round-trip estimate and host_concurrency cap.
        self.host_ids: dict[str, int] = {}
        self.next_unit_id = 0
        self.idle_since = time.monotonic()

    # -- runs --------------------------------------------------------------------------------
    def attach(self, run: _Run) -> None:
        self.runs.add(run)
        for text in self.warnings:
            run.warn(text)
        self.respawns_left = max(self.respawns_left, 2 * self.size)
        self._enqueue(run)
        self._settle(run)

    def cancel(self, run: _Run) -> None:
        """Drop ``run`` (its caller gave up): its units still on a worker are discarded."""
        self._finish(run, notify=False)
        for worker in list(self.workers):
            if worker.units and all(w.run.finished for w in worker.units.values()):
                # Busy only for runs nobody waits for: a fresh worker is cheaper than the
                # probes (and the rate budget) it would spend on them.
                self._drop(worker)
                self.units -= len(worker.units)
                worker.units.clear()

    def _enqueue(self, run: _Run) -> None:
        if not run.queued and not run.finished and run.has_work():
            run.queued = True
            self.queue.append(run)

    def _settle(self, run: _Run) -> None:
        if not run.finished and run.inflight == 0 and not run.has_work():
            self._finish(run, notify=True)

    def _finish(self, run: _Run, *, notify: bool) -> None:
        run.finished = True
        self.runs.discard(run)
        if not self.runs:
            self.idle_since = time.monotonic()
        if notify and run.on_finish is not None:
            run.on_finish()

    # -- workers -----------------------------------------------------------------------------
    def spawn(self) -> None:
        worker = _Worker(self.engine.env, self.pool.take() if self.pool else None)
        self.spawned += 1
        worker.heard = time.monotonic()
        self.workers.append(worker)
        self.engine.watch(worker.stdout, functools.partial(self._read, worker))
        if not worker.send(self.config):
            self._lost(worker)

    def _drop(self, worker: _Worker) -> None:
        self.engine.unwatch(worker.stdout)
        if worker.writing:
            self.engine.unwatch(worker.stdin)
        worker.kill()
        self.workers.remove(worker)

    def pump(self) -> None:
        """Start the workers the queue needs and hand out units."""
        if not self.queue:
            return
        wanted = self.size if self.prestart else min(self.size, self.units + len(self.queue))
        while len(self.workers) < wanted:
            if self.spawned >= self.size:
                if self.respawns_left <= 0:
                    break
                self.respawns_left -= 1
            self.spawn()
        if not self.workers:
            self._fail_queued("no worker process left")
            return
        self._dispatch()

    def _dispatch(self) -> None:
        credit = 2 * self.config.concurrency
        queue = self.queue
        # Units go to workers that are ready, so that a host timeout counts from when its
        # probes can start, not from a worker still importing gevent.
        ready = [w for w in self.workers if w.ready]
        while queue and ready:
            worker = min(ready, key=lambda w: w.load)
            if worker.load >= credit:
                return
            run = queue.popleft()
            if run.finished or not run.has_work():
                run.queued = False
                continue
            work = run.retry.popleft()
            if run.has_work():
                queue.append(run)
            else:
                run.queued = False
            tally = run.tallies[work.host_id]
            if tally.deadline is None and run.options.host_timeout:
                tally.deadline = time.monotonic() + run.options.host_timeout
            address = run.request.targets[work.host_id].address or ""
            host_id = self.host_ids.setdefault(address, len(self.host_ids))
            unit = Unit(
                self.next_unit_id,
                host_id,
                address,
                tuple(p - UDP for p in work.ports) if work.udp else work.ports,
                tally.srtt,
                tally.rttvar,
                tally.deadline,
                "udp" if work.udp else "tcp",
            )
            self.next_unit_id += 1
            worker.units[unit.unit_id] = work
            worker.load += len(work.ports)
            worker.heard = time.monotonic()
            run.inflight += 1
            self.units += 1
            if not worker.send(unit):
                self._lost(worker)
                ready.remove(worker)
            elif worker.out and not worker.writing:
                worker.writing = True
                self.engine.watch(worker.stdin, functools.partial(self._write, worker), write=True)

    def _write(self, worker: _Worker) -> None:
        if not worker.flush():
            self._lost(worker)
        elif not worker.out:
            worker.writing = False
            self.engine.unwatch(worker.stdin)

    def _read(self, worker: _Worker) -> None:
        try:
            data = os.read(worker.stdout, _READ_SIZE)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._lost(worker)
            return
        worker.heard = time.monotonic()
        for message in worker.reader.feed(data):
            if isinstance(message, UnitDone):
                self._merge(worker, message)
            elif isinstance(message, Progressed):
                self._progressed(worker, message.ports)
            elif isinstance(message, WorkerReady):
                worker.ready = True
                if message.warning:
                    self._warn(message.warning)

    def _warn(self, text: str) -> None:
        if text not in self.warnings:
            self.warnings.append(text)
        for run in self.runs:
            run.warn(text)

    def _progressed(self, worker: _Worker, ports: int) -> None:
        # A worker counts finished ports over all its units, and probes its units in turn:
        # credit them evenly, each short of its size by one port, which only its ``UnitDone``
        # credits: a run's progress reaches its total only when every unit is merged.
        worker.load -= ports
        units = [w for w in worker.units.values() if w.progressed < len(w.ports) - 1]
        while ports > 0 and units:
            share = max(1, ports // len(units))
            left = []
            for work in units:
                take = min(share, len(work.ports) - 1 - work.progressed, ports)
                work.progressed += take
                work.run.done_ports += take
                ports -= take
                if work.progressed < len(work.ports) - 1:
                    left.append(work)
                if ports <= 0:
                    break
            units = left

    def _merge(self, worker: _Worker, done: UnitDone) -> None:
        work = worker.units.pop(done.unit_id)
        self.units -= 1
        run = work.run
        if run.finished:
            return
        run.inflight -= 1
        tally = run.tallies[work.host_id]
        if work.udp:
            tally.add(
                [PortResult(p, PortState(s), r, rtt, a, "udp") for p, s, r, rtt, a in done.ports]
            )
            tally.rate_limited = tally.rate_limited or done.rate_limited
        else:
            tally.add([PortResult(p, PortState(s), r, rtt, a) for p, s, r, rtt, a in done.ports])
        tally.closed += done.closed_count
        tally.replied = tally.replied or done.replied
        if done.unscanned:
            if tally.unscanned is None:
                tally.unscanned = []
            offset = UDP if work.udp else 0
            tally.unscanned.extend(p + offset for p in done.unscanned)
        tally.finish(work)
        if done.srtt is not None and not work.udp:  # the TCP estimate: what TCP units start with
            tally.srtt, tally.rttvar = done.srtt, done.rttvar
        run.probes_sent += done.probes_sent
        run.done_ports += len(work.ports) - work.progressed
        self._settle(run)

    def _lost(self, worker: _Worker, reason: str = "worker-died") -> None:
        """A worker died or hung: re-run its units once, then report their ports as errors."""
        if worker not in self.workers:
            return
        self._drop(worker)
        for work in worker.units.values():
            self.units -= 1
            run = work.run
            if run.finished:
                continue
            run.inflight -= 1
            work.tries += 1
            if work.tries < _UNIT_TRIES:
                run.retry.appendleft(work)
                self._enqueue(run)
            else:
                self._fail(work, reason)
                self._settle(run)
        worker.units.clear()

    def _fail(self, work: _Work, reason: str) -> None:
        run = work.run
        tally = run.tallies[work.host_id]
        tally.finish(work)
        protocol = "udp" if work.udp else "tcp"
        tally.add(
            [PortResult(p % UDP, PortState.ERROR, reason, None, 0, protocol) for p in work.ports]
        )
        run.done_ports += len(work.ports) - work.progressed

    def _fail_queued(self, reason: str) -> None:
        while self.queue:
            run = self.queue.popleft()
            run.queued = False
            while not run.finished and run.has_work():
                self._fail(run.retry.popleft(), reason)
            self._settle(run)

    def check_stalls(self, now: float) -> None:
        for worker in list(self.workers):
            limit = self.stall_limit
            if any(work.udp for work in worker.units.values()):
                limit += _UDP_STALL_EXTRA
            if (worker.units or not worker.ready) and now - worker.heard > limit:
                text = (
                    f"a worker stopped answering for {self.stall_limit:.0f} s; "
                    "its ports were re-run"
                )
                for work in worker.units.values():
                    work.run.warn(text)
                self._lost(worker, "worker-hung")

    def kill(self) -> None:
        for worker in list(self.workers):
            self._drop(worker)

    def detach_workers(self) -> list[_Worker]:
        """Take the workers away from the loop, asked to stop; the caller reaps them."""
        workers, self.workers = self.workers, []
        for worker in workers:
            self.engine.unwatch(worker.stdout)
            if worker.writing:
                self.engine.unwatch(worker.stdin)
        for worker in workers:  # all at once: they exit in parallel
            worker.ask_to_stop()
        return workers


class _Engine:
    """The selector loop over lanes of workers; one thread calls ``step`` at a time."""

    def __init__(self) -> None:
        self.selector = selectors.DefaultSelector()
        self.lanes: list[_Lane] = []
        self.env = worker_env()
        self.stopping: list[tuple[_Worker, float]] = []  # asked to stop, not yet gone

    def add_lane(
        self,
        options: ScanOptions,
        size: int,
        *,
        pool: WorkerPool | None = None,
        prestart: bool = False,
    ) -> _Lane:
        lane = _Lane(self, options, size, pool, prestart=prestart)
        self.lanes.append(lane)
        if prestart:
            for _ in range(size):
                lane.spawn()
        return lane

    def watch(self, fd: int, callback: Callback, *, write: bool = False) -> None:
        """Call ``callback`` when ``fd`` is readable (writable with ``write``)."""
        self.selector.register(
            fd, selectors.EVENT_WRITE if write else selectors.EVENT_READ, callback
        )

    def unwatch(self, fd: int) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(fd)

    def step(self, timeout: float) -> None:
        """Hand out units, wait up to ``timeout`` for the workers, take in what they say."""
        for lane in self.lanes:
            lane.pump()
        for key, _ in self.selector.select(timeout):
            key.data()
        now = time.monotonic()
        for lane in self.lanes:
            lane.check_stalls(now)
        if self.stopping:
            self._reap(now)

    def retire(self, lane: _Lane) -> None:
        """Stop ``lane``'s workers without waiting for them; ``step`` reaps them."""
        self.lanes.remove(lane)
        deadline = time.monotonic() + 2
        self.stopping.extend((worker, deadline) for worker in lane.detach_workers())

    def _reap(self, now: float) -> None:
        left = []
        for worker, deadline in self.stopping:
            if worker.proc.poll() is not None or now > deadline:
                worker.kill()
            else:
                left.append((worker, deadline))
        self.stopping = left

    def stop(self) -> None:
        """Stop every worker and wait for them (bounded)."""
        workers = [w for lane in self.lanes for w in lane.detach_workers()]
        workers.extend(w for w, _ in self.stopping)
        self.lanes.clear()
        self.stopping.clear()
        for worker in workers:
            worker.stop()

    def kill(self) -> None:
        """Kill every worker now."""
        for lane in self.lanes:
            lane.kill()
        self.lanes.clear()
        for worker, _ in self.stopping:
            worker.kill()
        self.stopping.clear()

    def close(self) -> None:
        self.kill()
        self.selector.close()


def _worker_config(options: ScanOptions, count: int) -> tuple[WorkerConfig, str | None]:
    """The config of each of ``count`` workers sharing ``options``; a warning if lowered."""
    concurrency = options.concurrency
    warning = None
    ephemeral = _ephemeral_ports()
    cap = max(1, (ephemeral - 1024) // count)
    if concurrency > cap:
        warning = (
            f"concurrency lowered from {concurrency} to {cap} per worker: {ephemeral} "
            f"ephemeral ports are shared by {count} workers"
        )
        concurrency = cap
    host_cap = options.host_concurrency
    config = WorkerConfig(
        concurrency=concurrency,
        rate=options.rate / count if options.rate else None,
        host_concurrency=max(1, host_cap // count) if host_cap else None,
        min_timeout=options.min_timeout,
        max_timeout=options.timeout,
        adaptive=options.adaptive,
        retries=options.retries,
        include_closed=options.include_closed,
    )
    return config, warning


def _ephemeral_ports() -> int:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(high) - int(low) + 1
    except (OSError, ValueError):
        return 28232
