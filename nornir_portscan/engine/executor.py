"""The scan engine's entry points: ``scan`` and ``WorkerPool``.

``scan`` spreads (host, port-chunk) units over worker processes, one per CPU by default. Each
worker is its own interpreter (``python -m nornir_portscan.engine.worker``) talking over pipes, so
this process never imports gevent, never forks with threads running and never re-imports the
caller's ``__main__``. Units are handed out as workers have room, so one big host keeps every
worker busy and thousands of small hosts interleave. A worker that dies has its units re-run
once, then reported as errors; Ctrl-C kills every worker and raises ``ScanInterrupted`` with the
partial report.
"""

from __future__ import annotations

import contextlib
import math
import os
import selectors
import subprocess
import sys
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
from nornir_portscan.errors import (
    OptionError,
    ScanError,
    ScanInterrupted,
)
from nornir_portscan.models import (
    HostResult,
    HostStatus,
    PortResult,
    PortState,
    Progress,
    ScanReport,
    ScanRequest,
    Target,
)

__all__ = ["WorkerPool", "scan"]

ProgressCallback = Callable[[Progress], None]

_MAX_CHUNK = 4096
_MIN_CHUNK = 256
_PROGRESS_EVERY = 0.1
_UNIT_TRIES = 2
_PACKAGE_ROOT = str(Path(__file__).resolve().parent.parent)
WORKER_COMMAND = ["-m", "nornir_portscan.engine.worker"]
"""Arguments to ``sys.executable`` that start a worker; a seam for the scheduler's unit tests."""


def scan(
    request: ScanRequest,
    *,
    progress: ProgressCallback | None = None,
    workers: WorkerPool | None = None,
) -> ScanReport:
    """Run the scan; return the report. Ctrl-C raises ``ScanInterrupted`` with partial results.

    With ``workers``, the scan takes its worker processes from that pool while it has some.
    """
    return _Executor(request, progress, workers).run()


class WorkerPool:
    """Worker processes started before the scan is known, so that their start-up (a fresh
    interpreter importing gevent, about 0.1 s) overlaps the caller's own work, such as walking
    an inventory of a thousand hosts::

        with WorkerPool() as workers:
            request = build_request(targets_from_inventory(), ports="22,443")
            report = scan(request, workers=workers)

    ``scan`` takes the workers it needs; ``close`` (the end of the ``with`` block) stops the
    others. Idle workers only wait for their orders: nothing is sent before ``scan``.
    """

    def __init__(self, processes: int | None = None) -> None:
        if processes is not None and processes < 1:
            raise OptionError(f"invalid processes {processes}: use 1 or more, e.g. processes=2")
        self._idle: list[_Worker] = []
        # a pool dropped without close() still stops its workers when it is collected
        self._finalizer = weakref.finalize(self, _kill_workers, self._idle)
        env = _worker_env()
        try:
            for _ in range(processes or _cpu_count()):
                self._idle.append(_Worker(env))
        except BaseException:
            self.close()
            raise

    def take(self) -> _Worker | None:
        """An idle worker that is still running, or None when none is left."""
        while self._idle:
            worker = self._idle.pop()
            if worker.proc.poll() is None:
                return worker
            worker.kill()  # died while idle: reap it, try the next
        return None

    def close(self) -> None:
        """Stop the workers no scan took."""
        self._finalizer()

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _kill_workers(workers: list[_Worker]) -> None:
    while workers:
        workers.pop().kill()


def _cpu_count() -> int:
    return len(os.sched_getaffinity(0)) or 1


def _worker_env() -> dict[str, str]:
    """The environment of a worker: this one, with this copy of the package first."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([_PACKAGE_ROOT, *filter(None, [env.get("PYTHONPATH")])])
    return env


@dataclass(slots=True)
class _HostTally:
    ports: list[PortResult] = field(default_factory=list)
    closed: int = 0
    unscanned: list[int] = field(default_factory=list)
    finished: list[tuple[int, int]] = field(default_factory=list)  # index ranges of done units
    srtt: float | None = None
    rttvar: float | None = None
    deadline: float | None = None


@dataclass(slots=True)
class _Work:
    host_id: int
    start: int  # index of ports[0] in the host's port list
    ports: tuple[int, ...]
    tries: int = 0


class _Worker:
    def __init__(self, env: Mapping[str, str]) -> None:
        try:
            self.proc = subprocess.Popen(
                # -P: never the caller's working directory first on sys.path, so the worker
                # runs this copy of the package (PYTHONPATH below), not one that happens to be
                # in the current directory.
                [sys.executable, "-P", *WORKER_COMMAND],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env=env,
                start_new_session=True,
            )
        except OSError as exc:
            raise ScanError(
                f"cannot start a worker process with {sys.executable!r}: {exc}"
            ) from exc
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.stdin = self.proc.stdin.fileno()
        self.stdout = self.proc.stdout.fileno()
        os.set_blocking(self.stdout, False)
        self.reader = FrameReader()
        self.units: dict[int, _Work] = {}
        self.load = 0  # ports handed out and not yet reported finished
        self.heard = time.monotonic()
        self.alive = True

    def send(self, message: Any) -> bool:
        data = frame(message)
        try:
            while data:
                data = data[os.write(self.stdin, data) :]
        except OSError:
            return False
        return True

    def kill(self) -> None:
        self.alive = False
        with contextlib.suppress(OSError):
            self.proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=1)
        for pipe in (self.proc.stdin, self.proc.stdout):
            with contextlib.suppress(OSError):
                if pipe is not None:
                    pipe.close()

    def ask_to_stop(self) -> None:
        self.send(STOP)
        with contextlib.suppress(OSError):
            if self.proc.stdin is not None:
                self.proc.stdin.close()

    def stop(self) -> None:
        """Wait for the worker to leave after ``ask_to_stop``; kill it if it does not."""
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=2)
        self.kill()


class _Executor:
    def __init__(
        self,
        request: ScanRequest,
        progress: ProgressCallback | None,
        pool: WorkerPool | None = None,
    ) -> None:
        self.request = request
        self.options = request.options
        self.progress = progress
        self.pool = pool
        self.tallies = [_HostTally() for _ in request.targets]
        self.retry: deque[_Work] = deque()
        self.fresh = self._plan()
        self.next_unit_id = 0
        self.probes_sent = 0
        self.done_ports = 0
        self.total_ports = request.probe_count
        self.warnings: list[str] = []
        self.workers: list[_Worker] = []
        self.selector = selectors.DefaultSelector()
        self.started_mono = time.monotonic()
        self.last_progress = 0.0

    # -- planning ----------------------------------------------------------------------------
    def _worker_count(self) -> int:
        wanted = self.options.processes or _cpu_count()
        units = sum(
            math.ceil(len(self.request.ports_for(t)) / self._chunk_size(t))
            for t in self.request.targets
            if t.address
        )
        return max(0, min(wanted, units))

    def _chunk_size(self, target: Target) -> int:
        cpus = self.options.processes or _cpu_count()
        wanted = math.ceil(len(self.request.ports_for(target)) / (cpus * 4))
        return max(_MIN_CHUNK, min(_MAX_CHUNK, wanted))

    def _plan(self) -> Iterator[_Work]:
        for host_id, target in enumerate(self.request.targets):
            if not target.address:
                continue
            ports = self.request.ports_for(target)
            size = self._chunk_size(target)
            for start in range(0, len(ports), size):
                yield _Work(host_id, start, ports[start : start + size])

    def _worker_config(self, count: int) -> WorkerConfig:
        options = self.options
        concurrency = options.concurrency
        ephemeral = _ephemeral_ports()
        cap = max(1, (ephemeral - 1024) // count)
        if concurrency > cap:
            self.warnings.append(
                f"concurrency lowered from {concurrency} to {cap} per worker: {ephemeral} "
                f"ephemeral ports are shared by {count} workers"
            )
            concurrency = cap
        host_cap = options.host_concurrency
        return WorkerConfig(
            concurrency=concurrency,
            rate=options.rate / count if options.rate else None,
            host_concurrency=max(1, host_cap // count) if host_cap else None,
            min_timeout=options.min_timeout,
            max_timeout=options.timeout,
            adaptive=options.adaptive,
            retries=options.retries,
            include_closed=options.include_closed,
        )

    # -- running -----------------------------------------------------------------------------
    def run(self) -> ScanReport:
        started = time.time()
        try:
            count = self._worker_count()
            if count:
                self.config = self._worker_config(count)
                self.respawns_left = count * 2
                self.env = _worker_env()
                for _ in range(count):
                    self._spawn()
                self._loop()
        except KeyboardInterrupt:
            self._kill_all()
            raise ScanInterrupted(self._report(started, interrupted=True)) from None
        except BaseException:
            self._kill_all()
            raise
        self._stop_all()
        return self._report(started, interrupted=False)

    def _spawn(self) -> None:
        worker = (self.pool.take() if self.pool else None) or _Worker(self.env)
        worker.heard = time.monotonic()
        worker.send(self.config)
        self.workers.append(worker)
        self.selector.register(worker.stdout, selectors.EVENT_READ, worker)

    def _has_work(self) -> bool:
        if self.retry:
            return True
        try:
            self.retry.append(next(self.fresh))
        except StopIteration:
            return False
        return True

    def _dispatch(self) -> None:
        credit = 2 * self.config.concurrency
        for worker in self.workers:
            while worker.alive and worker.load < credit and self._has_work():
                work = self.retry.popleft()
                tally = self.tallies[work.host_id]
                if tally.deadline is None and self.options.host_timeout:
                    tally.deadline = time.monotonic() + self.options.host_timeout
                unit = Unit(
                    self.next_unit_id,
                    work.host_id,
                    self.request.targets[work.host_id].address or "",
                    work.ports,
                    tally.srtt,
                    tally.rttvar,
                    tally.deadline,
                )
                self.next_unit_id += 1
                worker.units[unit.unit_id] = work
                worker.load += len(work.ports)
                worker.heard = time.monotonic()
                if not worker.send(unit):
                    self._lost(worker)
                    break

    def _loop(self) -> None:
        options = self.options
        stall_limit = (options.retries + 1) * options.timeout * 2 + 10
        if options.rate:
            stall_limit += 2 * len(self.workers) * _MAX_CHUNK / options.rate
        while True:
            self._dispatch()
            busy = [w for w in self.workers if w.alive and w.units]
            if not busy and not self._has_work():
                return
            if not any(w.alive for w in self.workers):
                if self.respawns_left <= 0:
                    self._fail_remaining("no worker process left")
                    return
                self.respawns_left -= 1
                self._spawn()
                continue
            for key, _ in self.selector.select(timeout=0.2):
                self._read(key.data)
            now = time.monotonic()
            for worker in busy:
                if worker.alive and now - worker.heard > stall_limit:
                    self.warnings.append(
                        f"a worker stopped answering for {stall_limit:.0f} s; its ports were re-run"
                    )
                    self._lost(worker, "worker-hung")
            self._report_progress(now)

    def _read(self, worker: _Worker) -> None:
        try:
            data = os.read(worker.stdout, 1 << 20)
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
                self.done_ports += message.ports
                worker.load -= message.ports
            elif (
                isinstance(message, WorkerReady)
                and message.warning
                and message.warning not in self.warnings
            ):
                self.warnings.append(message.warning)

    def _merge(self, worker: _Worker, done: UnitDone) -> None:
        work = worker.units.pop(done.unit_id)
        tally = self.tallies[work.host_id]
        tally.ports.extend(PortResult(p, PortState(s), r, rtt, a) for p, s, r, rtt, a in done.ports)
        tally.closed += done.closed_count
        tally.unscanned.extend(done.unscanned)
        tally.finished.append((work.start, work.start + len(work.ports)))
        if done.srtt is not None:
            tally.srtt, tally.rttvar = done.srtt, done.rttvar
        self.probes_sent += done.probes_sent

    def _lost(self, worker: _Worker, reason: str = "worker-died") -> None:
        """A worker died or hung: re-run its units once, then report their ports as errors."""
        if not worker.alive:
            return
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(worker.stdout)
        worker.kill()
        self.workers.remove(worker)
        for work in worker.units.values():
            work.tries += 1
            if work.tries < _UNIT_TRIES:
                self.retry.appendleft(work)
            else:
                self._fail(work, reason)
        worker.units.clear()
        if self.respawns_left > 0 and self._has_work():
            self.respawns_left -= 1
            self._spawn()

    def _fail(self, work: _Work, reason: str) -> None:
        tally = self.tallies[work.host_id]
        tally.finished.append((work.start, work.start + len(work.ports)))
        tally.ports.extend(PortResult(p, PortState.ERROR, reason, None, 0) for p in work.ports)
        self.done_ports += len(work.ports)

    def _fail_remaining(self, reason: str) -> None:
        while self._has_work():
            self._fail(self.retry.popleft(), reason)

    def _report_progress(self, now: float) -> None:
        if self.progress is not None and now - self.last_progress >= _PROGRESS_EVERY:
            self.last_progress = now
            self.progress(
                Progress(
                    min(self.done_ports, self.total_ports),
                    self.total_ports,
                    now - self.started_mono,
                )
            )

    def _stop_all(self) -> None:
        for worker in self.workers:  # all at once: they exit in parallel
            worker.ask_to_stop()
        for worker in self.workers:
            worker.stop()
        self.selector.close()
        if self.progress is not None:
            self.progress(
                Progress(self.total_ports, self.total_ports, time.monotonic() - self.started_mono)
            )

    def _kill_all(self) -> None:
        for worker in self.workers:
            worker.kill()
        self.selector.close()

    # -- the report --------------------------------------------------------------------------
    def _report(self, started: float, *, interrupted: bool) -> ScanReport:
        hosts = tuple(
            self._host_result(target, tally, self.request.ports_for(target))
            for target, tally in zip(self.request.targets, self.tallies, strict=True)
        )
        return ScanReport(
            hosts=hosts,
            options=self.options,
            started=started,
            finished=time.time(),
            probes_sent=self.probes_sent,
            warnings=tuple(self.warnings),
            interrupted=interrupted,
        )

    @staticmethod
    def _host_result(target: Target, tally: _HostTally, scanned: tuple[int, ...]) -> HostResult:
        if not target.address:
            return HostResult(target.name, None, HostStatus.UNRESOLVED, error=target.error)
        ports = tuple(sorted(tally.ports, key=lambda p: p.port))
        answered = tally.closed or any(p.state in (PortState.OPEN, PortState.CLOSED) for p in ports)
        if tally.unscanned:
            status = HostStatus.TIMED_OUT
        elif answered:
            status = HostStatus.UP
        elif ports and all(p.state is PortState.ERROR for p in ports):
            status = HostStatus.ERROR
        else:
            status = HostStatus.NO_RESPONSE
        error = None
        if tally.unscanned:
            error = f"host timeout: {len(tally.unscanned)} ports not scanned"
        if tally.unscanned or sum(b - a for a, b in tally.finished) != len(scanned):
            # A partial host (timed out, interrupted): list exactly what was scanned. A whole
            # one shares the request's tuple, so memory stays flat.
            skipped = set(tally.unscanned)
            scanned = tuple(
                p for a, b in sorted(tally.finished) for p in scanned[a:b] if p not in skipped
            )
        return HostResult(target.name, target.address, status, ports, tally.closed, error, scanned)


def _ephemeral_ports() -> int:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(high) - int(low) + 1
    except (OSError, ValueError):
        return 28232
