"""The worker's scheduling policy: which probe starts when, with what timeout, how many attempts
a silent port gets, and what each outcome means. Pure: the clock is injected and the socket side
is a few callbacks, so unit tests drive it with a fake clock and fake outcomes.

The socket side (``engine/prober.py``) owns the sockets and the loop. It hands the schedule its
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

Drops that pass (loss, a full accept queue, a policer) show as answers to retries. Then a silent
port's remaining attempts (``attempts_for``) go out as ``Copies``, spread over one timeout of
the host (so that a drop lasting a moment, a full accept queue, does not meet them all), the
first answer counts and the rest are moot; a host that drops a quarter of its probes gets a
congestion ``Window``, and from then on every host of the worker that showed drops of its own
gets single attempts, spaced out by the windows and the other ports. A port silent at every
attempt it was allowed is held, not called filtered, until its unit is done: if drops show
meanwhile (nmap's retransmission cap also grows while a host is scanned), it gets the attempts
they allow. Ports silent on one host go first on the next.
"""

from __future__ import annotations

import contextlib
import heapq
import time
from collections import deque
from collections.abc import Callable, Sequence
from socket import AF_INET, AF_INET6
from typing import Generic, TypeVar

from nornir_portscan.classify import errno_name
from nornir_portscan.engine.protocol import Progressed, Unit, UnitDone, WirePort, WorkerConfig
from nornir_portscan.engine.timing import (
    RoundTrip,
    Window,
    attempts_for,
    probe_timeout,
    retry_timeout,
)
from nornir_portscan.states import PortState

MAX_LOCAL_FAILURES = 8  # of one probe, before its port is reported as an error
FORGET_AFTER = 5.0  # seconds idle, after which what the worker learnt of drops is forgotten
BACKOFF = 0.005  # seconds, doubled per local failure of the same probe
_CLOSED = PortState.CLOSED


class Host(RoundTrip):
    """Per-host state in this worker: the round-trip estimate, probes in flight, the
    congestion window and the latest attempt at which a port of the host answered."""

    __slots__ = ("answered_attempt", "inflight", "window")

    def __init__(self, srtt: float | None, rttvar: float | None, cap: int | None) -> None:
        super().__init__(srtt, rttvar)
        self.inflight = 0
        self.window = Window(cap)
        self.answered_attempt = 1


class Job:
    """A unit being worked on."""

    __slots__ = (
        "address",
        "closed",
        "copies",
        "deadline",
        "family",
        "held",
        "host",
        "later",
        "loopback",
        "outstanding",
        "pending",
        "probes",
        "replied",
        "results",
        "sent",
        "unit",
        "unscanned",
        "zoned",
    )

    def __init__(self, unit: Unit, host: Host, ports: Sequence[int]) -> None:
        self.unit = unit
        self.host = host
        self.address = unit.address
        self.family = AF_INET6 if ":" in unit.address else AF_INET  # for the socket side
        self.zoned = "%" in unit.address  # fe80::1%eth0: the socket side needs a scope id
        self.loopback = unit.address.startswith("127.") or unit.address == "::1"
        self.deadline = unit.deadline
        # (port, attempt, local failures so far)
        self.pending: deque[tuple[int, int, int]] = deque([(p, 1, 0) for p in ports])
        self.outstanding = 0
        self.probes = 0
        self.closed = 0
        self.unscanned: list[int] = []
        self.sent = False
        self.results: list[WirePort] = []
        self.copies: dict[int, Copies] = {}  # ports in their extra attempts
        self.later = 0  # copies waiting in ``Schedule.later``
        self.held: list[tuple[int, int, int]] = []  # silent at every attempt allowed so far
        self.replied = False  # an ICMP error came from the target address itself


class Copies:
    """A port's extra attempts ``first`` to ``top``, sent together: how many are pending or in
    flight, and whether one answered (the rest are then discarded)."""

    __slots__ = ("answered", "expired", "first", "left", "top")

    def __init__(self, first: int, top: int) -> None:
        self.left = top - first + 1
        self.answered = False
        self.expired = False  # some were never sent: the host deadline passed
        self.first = first
        self.top = top


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
        self.regular = config.retries + 1  # attempts of a port without signs of drops
        self.silent: set[int] = set()  # ports whose first attempt went unanswered, any host
        # copies not yet due: (when, sequence, job, port, attempt, local failures)
        self.later: list[tuple[float, int, Job, int, int, int]] = []
        self.later_seq = 0
        self.holding: set[Job] = set()  # jobs with held ports
        self.evidence = self.revisited = 0  # drops seen, and when the held ports were revisited
        self.idle_since = now()  # when the last job was done
        # Some host's window was cut: drops here come in bursts (accept queues that many hosts
        # share, a policer), which would drop attempts sent together all at once.
        self.bursty = False
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
        idle = not self.jobs and not self.later and len(self.idle) == len(self.probes)
        if idle and self.now() - self.idle_since > FORGET_AFTER:
            self._forget()
        host = self.hosts.get(unit.host_id)
        if host is None:
            host = self.hosts[unit.host_id] = Host(
                unit.srtt, unit.rttvar, self.config.host_concurrency
            )
        ports: Sequence[int] = unit.ports
        if self.silent:
            # Ports that were silent on other hosts first: their timeouts and retries then
            # run while the rest of the host is probed, not after it.
            silent = self.silent
            ports = sorted(ports, key=lambda port: port not in silent)
        self.jobs.append(Job(unit, host, ports))
        self.pump()

    def pump(self) -> None:
        """Start probes on idle slots, round-robin over the jobs so hosts interleave."""
        # One function, not a guard around a helper: every answer calls it.
        if self.pumping:  # a probe that finished at once, inside start(): the loop goes on
            return
        self.pumping = True
        try:
            idle, jobs, config = self.idle, self.jobs, self.config
            start, clock = self.start, self.now
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
                deadline = job.deadline
                if deadline is not None and now >= deadline:
                    self._expire(job)
                    continue
                host = job.host
                if host.inflight >= host.window.limit:  # the host cap, or fewer after drops
                    jobs.rotate(-1)
                    skipped += 1
                    if skipped >= len(jobs):
                        return  # every host is at its limit; a finishing probe pumps again
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
                if attempt > 1 and port in job.copies and job.copies[port].answered:
                    self._drop_copy(job, port)  # another copy answered: this one is moot
                    continue
                probe = idle.pop()
                probe.job, probe.port, probe.attempt, probe.failures = job, port, attempt, failures
                job.outstanding += 1
                host.inflight += 1
                if start(probe):
                    self._set_deadline(probe, host, attempt)
        finally:
            self.pumping = False

    def _set_deadline(self, probe: P, host: Host, attempt: int) -> None:
        config = self.config
        srtt = host.srtt
        if attempt == 1 and srtt is not None and config.adaptive:
            # retry_timeout's common case, inline (most probes): srtt + 4 rttvar, bounded
            timeout = srtt + 4 * host.rttvar  # type: ignore[operator]
            low, high = config.min_timeout, config.max_timeout
            timeout = low if timeout < low else high if timeout > high else timeout
            probe.guessing = False
        else:
            timeout, probe.guessing = retry_timeout(
                config, host, self.overall, attempt, backoff=self._congested(host)
            )
        probe.deadline = probe.started + timeout

    def _congested(self, host: Host) -> bool:
        """Drops come in bursts here (some host's window was cut: accept queues that many hosts
        share, a policer) and ``host`` showed drops of its own: its silent ports get
        ``MAX_ATTEMPTS``, one at a time, backing off. A host that never answered a retry (one
        that is down, a firewall) pays nothing for the others' drops."""
        return self.bursty and (host.answered_attempt > 1 or host.window.cuts > 0)

    # -- outcomes ----------------------------------------------------------------------------
    def answered(
        self, probe: P, state: PortState, reason: str, rtt: float, *, by_target: bool = False
    ) -> None:
        """``probe`` got an answer (``reason``) ``rtt`` seconds after it started; ``by_target``:
        an ICMP error that the target address itself sent (the host is up)."""
        job = probe.job
        assert job is not None
        if by_target:
            job.replied = True
        host = job.host
        host.sample(rtt)
        self.overall.sample(rtt)
        attempt = tried = probe.attempt  # tried: the attempt it counts as, for the policy
        if attempt > 1:
            copies = job.copies.get(probe.port)
            if copies is not None:
                if copies.answered:  # a sibling answered first: nothing new
                    host.window.answered(0, probe.started, probe.started + rtt, host.inflight - 1)
                    self._release(probe, job)
                    self._drop_copy(job, probe.port)
                    self._maybe_done(job)
                    self.pump()
                    return
                copies.answered = True
                self._drop_copy(job, probe.port)
                tried = copies.first  # the copies went out together: as if the first answered
            host.answered_attempt = max(host.answered_attempt, tried)
            self.answered_attempt = max(self.answered_attempt, tried)
            self.evidence += 1
        window = host.window
        if tried == 1 and not window.cuts:
            window.answers += 1  # the common case, inline: nothing else changes
        else:
            cuts = window.cuts
            window.answered(tried - 1, probe.started, probe.started + rtt, host.inflight - 1)
            if window.cuts != cuts:
                self.bursty = True
                self.evidence += 1
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
            if probe.port in job.copies:
                if not self._last_copy(probe, job):
                    self.pump()
                    return
                del job.copies[probe.port]
            self._record(probe, job, (probe.port, "error", errno_name(err), None, probe.attempt))
            return
        self.resume_at = self.now() + BACKOFF * (1 << min(failures, 7))
        self._requeue(probe, job, probe.attempt, failures, front=True)

    def refused(self, probe: P, reason: str) -> None:
        """The local kernel refused the probe (a route, a local firewall): ``error`` at once,
        neither retried nor a round-trip sample (a copy whose siblings are still out, or one
        answered, is only dropped)."""
        job = probe.job
        assert job is not None
        if probe.port in job.copies:
            if not self._last_copy(probe, job):
                self.pump()
                return
            del job.copies[probe.port]
        self._record(probe, job, (probe.port, "error", reason, None, probe.attempt))

    def sweep(self) -> None:
        """Time out probes past their deadline; retry them or call them filtered."""
        now = self.now()
        config, overall = self.config, self.overall
        if self.later or self.holding:
            self._catch_up(now)
        for probe in self.probes:
            job = probe.job
            if job is None:
                continue
            if probe.guessing:  # an estimate may have come since: shorten the stopgap
                timeout, probe.guessing = retry_timeout(
                    config, job.host, overall, probe.attempt, backoff=self._congested(job.host)
                )
                probe.deadline = probe.started + timeout
            if now < probe.deadline or self.settle(probe):
                continue
            attempt = probe.attempt
            if attempt == 1:
                self.silent.add(probe.port)
            elif probe.port in job.copies:
                if not self._last_copy(probe, job):
                    continue  # a sibling is still out, or answered
                copies = job.copies.pop(probe.port)
                if copies.expired:  # not every attempt went out: not scanned, not filtered
                    job.unscanned.append(probe.port)
                    self.finished_ports += 1
                    self._release(probe, job)
                    self._maybe_done(job)
                    continue
                attempt = copies.top
            host = job.host
            congested = self._congested(host)
            allowed = attempts_for(
                config, host.answered_attempt, self.answered_attempt, congested=congested
            )
            if attempt >= allowed:  # filtered, unless drops show before the unit is done
                job.held.append((probe.port, attempt, probe.failures))
                self.holding.add(job)
                self._release(probe, job)
                self._maybe_done(job)
            elif congested or allowed <= self.regular:
                # one at a time: no sign of drops, or a congested host, whose drops come in
                # bursts (a full accept queue, a policer) and whose window spaces them out
                self._requeue(probe, job, attempt + 1, probe.failures, front=False)
            else:  # drops show: every attempt left, the regular ones included, in one timeout
                self._release(probe, job)
                self._send_copies(job, probe.port, probe.failures, attempt + 1, allowed)
        self.pump()

    def _catch_up(self, now: float) -> None:
        """Queue the copies now due, and more attempts for held ports if drops showed."""
        if self.later and self.later[0][0] <= now:
            self._release_copies(now)
        if self.holding and self.evidence != self.revisited:
            self.revisited = self.evidence
            for job in list(self.holding):
                self._revisit(job)

    def _revisit(self, job: Job) -> bool:
        """Give ``job``'s held ports the attempts that the drops seen since allow; True if
        some port got more."""
        deadline = job.deadline
        if deadline is not None and self.now() >= deadline:
            return False
        host, config = job.host, self.config
        congested = self._congested(host)
        allowed = attempts_for(
            config, host.answered_attempt, self.answered_attempt, congested=congested
        )
        more = [item for item in job.held if item[1] < allowed]
        if not more:
            return False
        job.held = [item for item in job.held if item[1] >= allowed]
        if not job.held:
            self.holding.discard(job)
        for port, attempt, failures in more:
            if congested or allowed <= self.regular:
                job.pending.append((port, attempt + 1, failures))
            else:
                self._send_copies(job, port, failures, attempt + 1, allowed)
        if job not in self.jobs:
            self.jobs.append(job)
        return True

    # -- extra attempts ----------------------------------------------------------------------
    def _send_copies(self, job: Job, port: int, failures: int, first: int, last: int) -> None:
        """Queue attempts ``first`` to ``last`` of a silent port, spread evenly over
        one timeout of the host: what they look for is a lost packet, so they need not wait
        for each other, but not all in the same moment, which a full accept queue or a
        policer's empty bucket drops as one (the host's window still spaces them out). The
        first extra attempt waits twice that timeout, so they all end about when it does."""
        job.copies[port] = Copies(first, last)
        job.pending.append((port, first, failures))
        count = last - first + 1
        step = probe_timeout(self.config, job.host, self.overall, 1)[0] / count
        now = self.now()
        for i, attempt in enumerate(range(first + 1, last + 1), 1):
            self.later_seq += 1
            item = (now + i * step, self.later_seq, job, port, attempt, failures)
            heapq.heappush(self.later, item)
        job.later += count - 1
        if job not in self.jobs:
            self.jobs.append(job)

    def _release_copies(self, now: float) -> None:
        """Queue the copies now due (one whose port was answered meanwhile is moot)."""
        later, jobs = self.later, self.jobs
        while later and later[0][0] <= now:
            _, _, job, port, attempt, failures = heapq.heappop(later)
            job.later -= 1
            copies = job.copies.get(port)
            if copies is None or copies.answered:
                if copies is not None:
                    self._drop_copy(job, port)
                self._maybe_done(job)
                continue
            job.pending.append((port, attempt, failures))
            if job not in jobs:
                jobs.append(job)

    def _drop_copy(self, job: Job, port: int) -> None:
        """One copy of ``port`` is done with (answered or moot)."""
        copies = job.copies[port]
        copies.left -= 1
        if not copies.left:
            del job.copies[port]

    def _last_copy(self, probe: P, job: Job) -> bool:
        """A copy of ``probe``'s port ended without an answer: True if it was the last one
        out and none answered (the caller decides the port); else it is released here."""
        copies = job.copies[probe.port]
        if copies.answered or copies.left > 1:
            self._release(probe, job)
            self._drop_copy(job, probe.port)
            self._maybe_done(job)
            return False
        copies.left = 0
        return True

    def _expire(self, job: Job) -> None:
        """The host deadline passed: the pending ports are not scanned (each port once; one
        whose copy is still out is decided by that copy: by its answer, else unscanned)."""
        unscanned = []
        for port, attempt, _ in job.pending:
            if attempt > 1 and port in job.copies:
                copies = job.copies[port]
                copies.expired = True
                self._drop_copy(job, port)
                if copies.answered or copies.left or port in unscanned:
                    continue
            unscanned.append(port)
        job.pending.clear()
        job.unscanned.extend(unscanned)
        self.finished_ports += len(unscanned)

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
        if job.pending or job.outstanding or job.later or job.sent:
            return
        if job.held:
            if self._revisit(job):
                return
            self.holding.discard(job)
            for port, attempt, _ in job.held:
                job.results.append((port, "filtered", "no-response", None, attempt))
            self.finished_ports += len(job.held)
            job.held = []
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
                replied=job.replied,
            )
        )
        job.sent = True
        with contextlib.suppress(ValueError):
            self.jobs.remove(job)
        if not self.jobs:
            self.idle_since = self.now()

    def _forget(self) -> None:
        """A long-lived worker (the scan service) between scans: drops, windows and silent
        ports seen then say little about the next scan. The round-trip estimates come back
        with the units."""
        self.hosts.clear()
        self.answered_attempt = 1
        self.silent.clear()
        self.bursty = False  # (no copy is waiting, no port held: the worker is idle)

    def report_progress(self) -> None:
        """Send the ports finished since the last report, if any."""
        if self.finished_ports:
            self.send(Progressed(self.finished_ports))
            self.finished_ports = 0
