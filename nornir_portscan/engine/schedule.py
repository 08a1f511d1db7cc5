"""The worker's scheduling policy: which probe starts when, with what timeout, how many attempts
a silent port gets, and what each outcome means. Pure: the clock is injected and the socket side
is a few callbacks, so unit tests drive it with a fake clock and fake outcomes.

The socket side (``engine/worker.py``) owns the sockets and the loop. It hands the schedule its
probe slots (``Probe`` or a subclass) and these callbacks:

- ``start(probe) -> bool``: connect to ``probe.job.address`` port ``probe.port``, stamping
  ``probe.started`` with the schedule's clock right before and counting it in
  ``probe.job.probes``. True while the connect is in flight (the schedule then sets its
  deadline); False when it ended at once, already reported with ``answered`` or ``failed``.
- ``settle(probe) -> bool``: ``probe`` is past its deadline. True if it had an answer after all
  (a stalled loop; reported), False if it is silent (its socket is gone; the schedule retries
  it or calls it filtered).
- ``wake(delay)``: call ``pump()`` in ``delay`` seconds, unless such a call is already due.
- ``send(message)``: a ``Progressed`` or ``UnitDone`` for the executor.

The socket side reports each outcome with ``answered``, ``failed`` or ``refused``, and its timer
calls ``sweep`` every ``tick`` seconds; every such call starts the probes that may start now.
"""

from __future__ import annotations

import contextlib
import time
from collections import deque
from collections.abc import Callable, Sequence
from socket import AF_INET, AF_INET6
from typing import Generic, TypeVar

from nornir_portscan.classify import errno_name
from nornir_portscan.engine.protocol import Progressed, Unit, UnitDone, WirePort, WorkerConfig
from nornir_portscan.engine.timing import RoundTrip, attempts_for, probe_timeout
from nornir_portscan.models import PortState

MAX_LOCAL_FAILURES = 8  # of one probe, before its port is reported as an error
BACKOFF = 0.005  # seconds, doubled per local failure of the same probe
_CLOSED = PortState.CLOSED


class Host(RoundTrip):
    """Per-host state in this worker: the round-trip estimate and probes in flight."""

    __slots__ = ("inflight",)

    def __init__(self, srtt: float | None, rttvar: float | None) -> None:
        super().__init__(srtt, rttvar)
        self.inflight = 0


class Job:
    """A unit being worked on."""

    __slots__ = (
        "address",
        "closed",
        "family",
        "host",
        "outstanding",
        "pending",
        "probes",
        "results",
        "sent",
        "unit",
        "unscanned",
    )

    def __init__(self, unit: Unit, host: Host) -> None:
        self.unit = unit
        self.host = host
        self.address = unit.address
        self.family = AF_INET6 if ":" in unit.address else AF_INET  # for the socket side
        # (port, attempt, local failures so far)
        self.pending: deque[tuple[int, int, int]] = deque((p, 1, 0) for p in unit.ports)
        self.outstanding = 0
        self.probes = 0
        self.closed = 0
        self.unscanned: list[int] = []
        self.sent = False
        self.results: list[WirePort] = []


class Probe:
    """A probe slot: one probe in flight at a time. The socket side subclasses it."""

    __slots__ = ("attempt", "deadline", "failures", "guessing", "job", "port", "started")

    def __init__(self) -> None:
        self.job: Job | None = None  # None while idle
        self.port = 0
        self.attempt = 0
        self.failures = 0
        self.started = 0.0
        self.deadline = 0.0
        self.guessing = False  # the deadline is the full timeout for want of any estimate


P = TypeVar("P", bound=Probe)


class Schedule(Generic[P]):
    """The scheduling policy of one worker's probe slots (see the module docstring)."""

    def __init__(
        self,
        config: WorkerConfig,
        probes: Sequence[P],
        *,
        start: Callable[[P], bool],
        settle: Callable[[P], bool],
        wake: Callable[[float], None],
        send: Callable[[object], None],
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.probes = probes
        self.idle = list(probes)
        self.start = start
        self.settle = settle
        self.wake = wake
        self.send = send
        self.now = now
        self.jobs: deque[Job] = deque()
        self.hosts: dict[int, Host] = {}
        self.overall = RoundTrip()  # every answer this worker has had, all hosts
        self.answered_attempt = 1  # the latest attempt of a probe that any host answered
        self.finished_ports = 0
        self.progress_batch = max(1, config.concurrency // 4)
        self.tokens = 1.0
        self.burst = max(1.0, config.rate / 50) if config.rate else 1.0  # 20 ms of the rate
        self.refilled = now()
        self.resume_at = 0.0
        self.pumping = False
        # how often to look for expired probes: a fraction of the shortest timeout
        self.tick = max(0.002, min(0.02, config.min_timeout / 5))

    # -- work intake ------------------------------------------------------------------------
    def add(self, unit: Unit) -> None:
        host = self.hosts.get(unit.host_id)
        if host is None:
            host = self.hosts[unit.host_id] = Host(unit.srtt, unit.rttvar)
        self.jobs.append(Job(unit, host))
        self.pump()

    def pump(self) -> None:
        """Start probes on idle slots, round-robin over the jobs so hosts interleave."""
        # One function, not a guard around a helper: every answer calls it.
        if self.pumping:  # a probe that finished at once, inside start(): the loop goes on
            return
        self.pumping = True
        try:
            idle, jobs, config = self.idle, self.jobs, self.config
            start, overall, clock = self.start, self.overall, self.now
            cap = config.host_concurrency
            rate = config.rate
            now = clock()  # not self.now(): a method call on an attribute is slower
            skipped = 0
            while idle and jobs:
                if now < self.resume_at:  # backing off after a local failure
                    self.wake(self.resume_at - now)
                    return
                job = jobs[0]
                if not job.pending:
                    jobs.popleft()
                    self._maybe_done(job)
                    continue
                deadline = job.unit.deadline
                if deadline is not None and now >= deadline:
                    job.unscanned.extend(item[0] for item in job.pending)
                    self.finished_ports += len(job.pending)
                    job.pending.clear()
                    continue
                host = job.host
                if cap is not None and host.inflight >= cap:
                    jobs.rotate(-1)
                    skipped += 1
                    if skipped >= len(jobs):
                        return  # every host is at its cap; a finishing probe pumps again
                    continue
                if rate is not None:
                    self.tokens = min(self.burst, self.tokens + (now - self.refilled) * rate)
                    self.refilled = now
                    if self.tokens < 1.0:
                        self.wake((1.0 - self.tokens) / rate)
                        return
                    self.tokens -= 1.0
                skipped = 0
                port, attempt, failures = job.pending.popleft()
                jobs.rotate(-1)
                probe = idle.pop()
                probe.job, probe.port, probe.attempt, probe.failures = job, port, attempt, failures
                job.outstanding += 1
                host.inflight += 1
                if start(probe):
                    timeout, probe.guessing = probe_timeout(config, host, overall, attempt)
                    probe.deadline = probe.started + timeout
        finally:
            self.pumping = False

    # -- outcomes ----------------------------------------------------------------------------
    def answered(self, probe: P, state: PortState, reason: str, rtt: float) -> None:
        """``probe`` got an answer (``reason``) ``rtt`` seconds after it started."""
        job = probe.job
        assert job is not None
        job.host.sample(rtt)
        self.overall.sample(rtt)
        attempt = probe.attempt
        self.answered_attempt = max(self.answered_attempt, attempt)
        if state is _CLOSED and not self.config.include_closed:
            self._record(probe, job, None)  # most answers: skip the result (round() is dear)
        else:
            result = (probe.port, state.value, reason, round(rtt * 1000, 3), attempt)
            self._record(probe, job, result)

    def failed(self, probe: P, err: int) -> None:
        """EMFILE, ENOBUFS, EADDRNOTAVAIL, ...: back off and retry; never a port state."""
        job = probe.job
        assert job is not None
        failures = probe.failures + 1
        if failures >= MAX_LOCAL_FAILURES:
            self._record(probe, job, (probe.port, "error", errno_name(err), None, probe.attempt))
            return
        self.resume_at = self.now() + BACKOFF * (1 << min(failures, 7))
        self._requeue(probe, job, probe.attempt, failures, front=True)

    def refused(self, probe: P, reason: str) -> None:
        """The local kernel refused the probe (a route, a local firewall): ``error`` at once,
        neither retried nor a round-trip sample."""
        job = probe.job
        assert job is not None
        self._record(probe, job, (probe.port, "error", reason, None, probe.attempt))

    def sweep(self) -> None:
        """Time out probes past their deadline; retry them or call them filtered."""
        now = self.now()
        config, overall = self.config, self.overall
        for probe in self.probes:
            job = probe.job
            if job is None:
                continue
            if probe.guessing:  # an estimate may have come since: shorten the stopgap
                timeout, probe.guessing = probe_timeout(config, job.host, overall, probe.attempt)
                probe.deadline = probe.started + timeout
            if now < probe.deadline or self.settle(probe):
                continue
            if probe.attempt < attempts_for(config, job.host, self.answered_attempt):
                self._requeue(probe, job, probe.attempt + 1, probe.failures, front=False)
            else:
                port, attempt = probe.port, probe.attempt
                self._record(probe, job, (port, "filtered", "no-response", None, attempt))
        self.pump()

    # -- bookkeeping -------------------------------------------------------------------------
    def _release(self, probe: P, job: Job) -> None:
        probe.job = None
        job.outstanding -= 1
        job.host.inflight -= 1
        self.idle.append(probe)

    def _requeue(self, probe: P, job: Job, attempt: int, failures: int, *, front: bool) -> None:
        self._release(probe, job)
        item = (probe.port, attempt, failures)
        if front:
            job.pending.appendleft(item)
        else:
            job.pending.append(item)
        if job not in self.jobs:
            self.jobs.append(job)
        self.pump()

    def _record(self, probe: P, job: Job, result: WirePort | None) -> None:
        """``probe``'s port is done: with ``result``, or None for a closed port only counted."""
        if result is None:
            job.closed += 1
        else:
            job.results.append(result)
        self.finished_ports += 1
        if self.finished_ports >= self.progress_batch:  # the parent hands out work by it
            self.report_progress()
        self._release(probe, job)
        if not job.pending:
            self._maybe_done(job)
        self.pump()

    def _maybe_done(self, job: Job) -> None:
        if job.pending or job.outstanding or job.sent:
            return
        host = job.host
        closed = job.closed
        if self.config.include_closed:
            closed = sum(1 for r in job.results if r[1] == "closed")
        self.report_progress()  # every port of a unit is reported finished before the unit
        self.send(
            UnitDone(
                job.unit.unit_id,
                job.results,
                closed,
                job.probes,
                host.srtt,
                host.rttvar,
                job.unscanned,
            )
        )
        job.sent = True
        with contextlib.suppress(ValueError):
            self.jobs.remove(job)

    def report_progress(self) -> None:
        """Send the ports finished since the last report, if any."""
        if self.finished_ports:
            self.send(Progressed(self.finished_ports))
            self.finished_ports = 0
