"""A worker's UDP probes: connected, non-blocking UDP sockets on the gevent hub.

Each probe is its own socket (``IP_RECVERR``/``IPV6_RECVERR`` set, connected to the port, one
datagram of ``udp_payloads.payload_for(port)``), watched for reading until its deadline. What
comes back:

=======================================  =============================  =====================
the socket gets                          state / reason                 when
=======================================  =============================  =====================
a datagram                               open / udp-response            a service answered
ICMP port-unreachable from the network   closed / port-unreach          the host has no such
                                                                        socket
another ICMP unreachable or time         filtered / ``host-unreach``,   a router or firewall
exceeded from the network                ``admin-prohibited``, ...      (``classify_icmp``)
nothing, after ``clean_needed`` clean    open|filtered / no-response    see ``udp_pacing``:
attempts                                                                rate limits
an ICMP error this host sent about its   error / ``local-<ERRNO>``      a local firewall's
own datagram, a refused connect or send                                 reject, a route,
(``EPERM``: a local firewall's drop)                                    ``nft drop`` on output
=======================================  =============================  =====================

TFTP (``REPLIES_FROM_ANOTHER_PORT``) answers from a new port, so its probe's socket is bound to
the routed source address, not connected, and takes a datagram from any port of the target. A
host that never answered may be an on-link address no one has, whose datagrams the kernel fails
only after ``UNRESOLVED_WAIT``: its later attempts wait that long.

A local shortage (EMFILE, ENOBUFS, EAGAIN) is retried with back-off, as on the TCP side. The
pacing rule that keeps a rate-limited closed port from reading ``open|filtered`` is
``udp_pacing``'s; this module applies it per host (``host_id``) within this worker, so every
unit of one host must come to the same worker.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections import deque
from typing import Any

from gevent import get_hub

from nornir_portscan.classify import classify_icmp, errno_name, is_transient, local_reason
from nornir_portscan.engine.errqueue import EE_FORMAT, ask_for_errors, offender, packed
from nornir_portscan.engine.protocol import Progressed, Unit, UnitDone, WirePort, WorkerConfig
from nornir_portscan.engine.protocol import sockaddr as _sockaddr
from nornir_portscan.engine.timing import RoundTrip, probe_timeout
from nornir_portscan.engine.udp_pacing import (
    MAX_SCALE,
    IcmpHistory,
    clean_needed,
    icmp_gap,
    next_round,
)
from nornir_portscan.engine.udp_payloads import payload_for

_ORIGIN_ICMP, _ORIGIN_ICMP6 = 2, 3
_PORT_UNREACH = {False: (3, 3), True: (1, 4)}  # (type, code): ICMP, ICMPv6
_MAX_LOCAL_FAILURES = 8
_BACKOFF = 0.005
_PROGRESS_INTERVAL = 0.1
# TFTP answers from a new port (its transfer id, RFC 1350 4): a connected socket never sees it
REPLIES_FROM_ANOTHER_PORT = frozenset({69})
UNRESOLVED_WAIT = 3.2  # s: neighbour resolution gives up after ucast_solicit 3 x 1 s
FORGET_AFTER = 10.0  # s idle, after which what the worker knows of hosts is dropped
_HOLD = object()  # the worker-wide round holds back every other probe
_VERIFY_AFTER = 30.0  # seconds a suspect waits at most for its worker-wide round
_RECV_SIZE = 65535
_now = time.monotonic


def _bind_as_routed(sock: socket.socket, address: tuple[Any, ...]) -> int:
    """Bind ``sock`` to the source address a datagram to ``address`` gets (so that an ICMP
    error this host sends about it names our own address, as on a connected socket)."""
    try:
        with socket.socket(sock.family, socket.SOCK_DGRAM) as router:
            router.connect(address)
            source = router.getsockname()
        sock.bind((source[0], 0, *source[2:]))
    except OSError as exc:
        return exc.errno or 0
    return 0


class _Port:
    """A port not yet decided: its attempts so far and how many were clean silences."""

    __slots__ = ("attempts", "clean", "clean_at", "failures", "number", "silent_before")

    def __init__(self, number: int) -> None:
        self.number = number
        self.attempts = 0
        self.clean = 0
        self.clean_at = 0.0  # when the latest clean silence started
        self.failures = 0
        self.silent_before = False


class _Host(RoundTrip):
    __slots__ = ("history", "inflight", "limited", "scale", "slowed_at")

    def __init__(self, srtt: float | None, rttvar: float | None) -> None:
        super().__init__(srtt, rttvar)
        self.history = IcmpHistory()
        self.inflight: set[_Slot] = set()
        self.limited = False
        self.scale = 1  # ICMP intervals per gap: doubled when a clean silence was wrong
        self.slowed_at = float("-inf")


class _Job:
    __slots__ = (
        "address",
        "candidates",
        "closed",
        "family",
        "fresh",
        "host",
        "outstanding",
        "probes",
        "rate_limited",
        "resolved",
        "results",
        "round",
        "round_size",
        "sent",
        "suspects",
        "unit",
        "unscanned",
    )

    def __init__(self, unit: Unit, host: _Host) -> None:
        self.unit = unit
        self.host = host
        self.address = unit.address
        self.family = socket.AF_INET6 if ":" in unit.address else socket.AF_INET
        self.fresh: deque[_Port] = deque([_Port(p) for p in unit.ports])  # first attempts
        self.candidates: deque[_Port] = deque()  # silent so far, waiting for a round
        self.round: deque[_Port] = deque()  # the current round, not yet sent
        self.round_size: int | None = None
        self.resolved = 0  # ports decided by the current round
        self.outstanding = 0
        self.probes = 0
        self.closed = 0
        self.results: list[WirePort] = []
        self.unscanned: list[int] = []
        self.rate_limited = False
        self.suspects = 0  # ports in the worker's verification queue
        self.sent = False

    def waiting(self) -> bool:
        return bool(self.fresh or self.candidates or self.round or self.suspects)


class _Slot:
    __slots__ = ("deadline", "guessing", "job", "port", "sock", "started", "watcher")

    def __init__(self) -> None:
        self.job: _Job | None = None
        self.port: _Port | None = None
        self.sock: socket.socket | None = None
        self.watcher: Any = None
        self.started = 0.0
        self.deadline = 0.0
        self.guessing = False


class UdpProber:
    """The UDP socket side of one worker: ``add(unit)`` for a unit whose ``protocol`` is
    ``"udp"``, ``close()`` at the end. Sends ``Progressed`` and ``UnitDone`` as ``Prober``."""

    def __init__(self, config: WorkerConfig, send: Any) -> None:
        self.config = config
        self.send = send
        self.loop = get_hub().loop
        self.slots = [_Slot() for _ in range(config.concurrency)]
        self.idle = list(self.slots)
        self.jobs: deque[_Job] = deque()
        self.hosts: dict[int, _Host] = {}
        self.overall = RoundTrip()
        # Every ICMP error any host drew: addresses of one machine share its bucket, so a
        # silence is final only when no host drew one just before it (see ``_verify``).
        self.history = IcmpHistory()
        self.suspects: deque[tuple[_Job, _Port]] = deque()
        self.verify_round: deque[tuple[_Job, _Port]] = deque()  # sent before anything else
        self.suspect_since = 0.0
        self.verifying = False
        self.inflight = 0
        self.idle_since = _now()
        self.need = clean_needed(config)
        self.finished_ports = 0
        self.progress_batch = max(1, config.concurrency // 4)
        self.tokens = 1.0
        self.burst = max(1.0, config.rate / 50) if config.rate else 1.0
        self.refilled = _now()
        self.resume_at = 0.0
        self.pumping = False
        self.wakeup = self.loop.timer(0.0)
        tick = max(0.002, min(0.02, config.min_timeout / 5))
        self.sweeper = self.loop.timer(tick, tick)
        self.sweeper.start(self.sweep)
        self.reporter = self.loop.timer(_PROGRESS_INTERVAL, _PROGRESS_INTERVAL)
        self.reporter.start(self.report_progress)

    def add(self, unit: Unit) -> None:
        if not self.jobs and _now() - self.idle_since > FORGET_AFTER:
            # A long-lived worker between scans: every bucket is full again by now, and the
            # first gap of each host is unclean anyway. Memory stays flat.
            self.hosts.clear()
            self.history = IcmpHistory()
        host = self.hosts.get(unit.host_id)
        if host is None:
            host = self.hosts[unit.host_id] = _Host(unit.srtt, unit.rttvar)
        self.jobs.append(_Job(unit, host))
        self.pump()

    def _gap(self, host: _Host) -> float:
        return icmp_gap(self.config, host.srtt, host.rttvar, host.scale)

    def _wake(self, delay: float) -> None:
        if not self.wakeup.active:
            self.wakeup = self.loop.timer(max(0.0, delay))
            self.wakeup.start(self.pump)

    # -- what goes next ----------------------------------------------------------------------
    def pump(self) -> None:
        """Start probes on idle slots, round-robin over the jobs."""
        if self.pumping:
            return
        self.pumping = True
        try:
            self._pump()
        finally:
            self.pumping = False

    def _pump(self) -> None:
        jobs, idle, config = self.jobs, self.idle, self.config
        cap = config.host_concurrency or 1 << 30
        skipped = 0
        while idle and jobs:
            now = _now()
            if now < self.resume_at:
                self._wake(self.resume_at - now)
                return
            step = self._verification_step(now)
            if step is _HOLD:
                return
            if isinstance(step, tuple):
                self._start(idle.pop(), *step)
                continue
            job = jobs[0]
            jobs.rotate(-1)
            deadline = job.unit.deadline
            if deadline is not None and now >= deadline and job.waiting():
                self._expire(job)
                continue
            if not job.waiting():
                if job.outstanding and not job.sent:  # a silent one may be sent again
                    skipped += 1
                    if skipped >= len(jobs):
                        return
                    continue
                jobs.remove(job)
                self._maybe_done(job)
                skipped = 0
                continue
            port = self._next_port(job, now, cap)
            if port is None:
                skipped += 1
                if skipped >= len(jobs):
                    return
                continue
            if not self._token(now):
                self._putback(job, port)
                return
            skipped = 0
            self._start(idle.pop(), job, port)

    def _verification_step(self, now: float) -> tuple[_Job, _Port] | object | None:
        """The next probe of the worker-wide round, ``_HOLD`` while it holds back the rest,
        None when there is none."""
        if not self.verify_round and (not self.suspects or self._verify(now)):
            return _HOLD if self.suspects else None
        if not self.verify_round:
            return None
        cap = self.config.host_concurrency
        if cap is not None and len(self.verify_round[0][0].host.inflight) >= cap:
            return _HOLD  # its host's probes come back within their timeouts
        if not self._token(now):
            return _HOLD
        job, port = self.verify_round.popleft()
        job.suspects -= 1
        return job, port

    def _token(self, now: float) -> bool:
        """Whether the global rate allows a probe now (then it is spent); else a wake-up."""
        rate = self.config.rate
        if rate is None:
            return True
        self.tokens = min(self.burst, self.tokens + (now - self.refilled) * rate)
        self.refilled = now
        if self.tokens < 1.0:
            self._wake((1.0 - self.tokens) / rate)
            return False
        self.tokens -= 1.0
        return True

    def _verify(self, now: float) -> bool:
        """The worker-wide round for the ports that were silent only by their own host's
        rule: True while it holds back every other probe.

        It starts when nothing but suspects is left, or when the oldest suspect has waited
        ``_VERIFY_AFTER``; it waits until no probe is in flight and no ICMP error was drawn
        for a gap, then moves every suspect to ``verify_round``, sent before anything else.
        """
        if not self.verifying:
            # all that is left is suspects: a worker-wide round holds every host back for a
            # gap, so it waits for the rest (or ``_VERIFY_AFTER``)
            blocked = all(not (job.fresh or job.round or job.candidates) for job in self.jobs)
            if not blocked and now - self.suspect_since < _VERIFY_AFTER:
                return False
            self.verifying = True
        if self.inflight:
            return True
        quiet_at = self.history.quiet_at(self._global_gap())
        if now < quiet_at:
            self._wake(quiet_at - now)
            return True
        self.verify_round, self.suspects = self.suspects, self.verify_round
        self.verifying = False
        self.suspect_since = now
        return False

    def _global_gap(self) -> float:
        return icmp_gap(self.config, self.overall.srtt, self.overall.rttvar)

    def _next_port(self, job: _Job, now: float, cap: int) -> _Port | None:
        host = job.host
        if len(host.inflight) >= cap:
            return None
        if job.fresh:
            return job.fresh.popleft()
        if job.round:
            return job.round.popleft()
        # A new round: only when the host is quiet, so that its first probe finds a token.
        if not job.candidates or job.outstanding or host.inflight:
            return None
        quiet_at = host.history.quiet_at(self._gap(host))
        if now < quiet_at:
            self._wake(quiet_at - now)
            return None
        size = next_round(len(job.candidates), job.round_size)
        job.round_size = size
        job.resolved = 0
        for _ in range(size):
            job.round.append(job.candidates.popleft())
        return job.round.popleft()

    def _putback(self, job: _Job, port: _Port) -> None:
        if port.attempts == 0:
            job.fresh.appendleft(port)
        else:
            job.round.appendleft(port)

    # -- one probe ---------------------------------------------------------------------------
    def _start(self, slot: _Slot, job: _Job, port: _Port) -> None:
        slot.job, slot.port = job, port
        job.outstanding += 1
        try:
            sock = socket.socket(job.family, socket.SOCK_DGRAM)
        except OSError as exc:
            self._local_error(slot, exc.errno or 0)
            return
        sock.setblocking(False)
        ask_for_errors(sock, job.family)
        slot.sock = sock
        address = _sockaddr(job.address, port.number)
        unconnected = port.number in REPLIES_FROM_ANOTHER_PORT
        err = _bind_as_routed(sock, address) if unconnected else sock.connect_ex(address)
        if err:  # a route refused it, or no route: nothing was sent
            self._local_error(slot, err)
            return
        slot.started = started = _now()
        try:
            if unconnected:
                sock.sendto(payload_for(port.number), address)
            else:
                sock.send(payload_for(port.number))
        except OSError as exc:  # EPERM: a local firewall dropped it; ENOBUFS, EAGAIN: short
            self._local_error(slot, exc.errno or 0)
            return
        host = job.host
        host.history.sent(started)
        self.history.sent(started)
        host.inflight.add(slot)
        self.inflight += 1
        port.attempts += 1
        job.probes += 1
        slot.deadline = started + self._timeout(slot, host, port)
        slot.watcher = self.loop.io(sock.fileno(), 1)
        slot.watcher.start(self._readable, slot)

    def _timeout(self, slot: _Slot, host: _Host, port: _Port) -> float:
        """The probe's timeout (``probe_timeout``; the last clean attempt waits longest).

        A host that never answered may be an on-link address no one has: its datagrams wait
        for a neighbour that never resolves, and only after ``UNRESOLVED_WAIT`` does the
        kernel fail them (ICMP host-unreachable from this host: a local error). A later
        attempt of such a host waits that long, so that its silence is the network's.
        """
        attempt = 1 if port.attempts == 1 else port.clean + 2
        timeout, slot.guessing = probe_timeout(self.config, host, self.overall, attempt)
        if port.attempts > 1 and host.srtt is None:
            slot.guessing = True  # shortened once the host answers anything
            return max(timeout, UNRESOLVED_WAIT)
        return timeout

    def _readable(self, slot: _Slot) -> None:
        answer = self._answer(slot)
        if answer is not None:
            self._answered(slot, *answer)

    def _answer(self, slot: _Slot) -> tuple[str, str, bool] | None:
        """(state, reason, drew an ICMP error) if the socket has one; ``error`` states are
        local refusals."""
        sock, job = slot.sock, slot.job
        assert sock is not None
        assert job is not None
        icmp = self._icmp(sock, job.address)
        if icmp is not None:
            return icmp
        try:
            _, peer = sock.recvfrom(_RECV_SIZE)
        except BlockingIOError:
            return None
        except OSError as exc:  # an error without an ICMP from the network behind it
            return ("error", local_reason(exc.errno or 0), False)
        # a connected socket gets the target port's datagrams only; an unconnected one
        # (REPLIES_FROM_ANOTHER_PORT) any port's of the target, and nobody else's
        if packed(peer[0]) != packed(job.address):
            return None
        return ("open", "udp-response", False)

    def _icmp(self, sock: socket.socket, target: str) -> tuple[str, str, bool] | None:
        """The socket's queued ICMP error as an answer: the network's, or this host's own."""
        answer = None
        own: bytes | None = b""
        while True:
            try:
                _, ancdata, _, _ = sock.recvmsg(0, 512, socket.MSG_ERRQUEUE)
            except OSError:
                return answer
            for _level, _type, data in ancdata:
                if len(data) < EE_FORMAT.size:
                    continue
                ee_errno, origin, icmp_type, icmp_code, _, _, _ = EE_FORMAT.unpack_from(data)
                if origin not in (_ORIGIN_ICMP, _ORIGIN_ICMP6):
                    answer = ("error", local_reason(ee_errno), False)  # EMSGSIZE, ...
                    continue
                if own == b"":
                    try:
                        own = packed(sock.getsockname()[0])
                    except OSError:
                        own = None
                sender = offender(data)
                if sender is not None and sender == own and sender != packed(target):
                    answer = ("error", local_reason(ee_errno), False)
                    continue
                ipv6 = origin == _ORIGIN_ICMP6
                if (icmp_type, icmp_code) == _PORT_UNREACH[ipv6]:
                    answer = ("closed", "port-unreach", True)
                else:
                    answer = ("filtered", classify_icmp(ipv6, icmp_type, icmp_code), True)

    # -- outcomes ----------------------------------------------------------------------------
    def _answered(self, slot: _Slot, state: str, reason: str, drew: bool) -> None:
        job, port = slot.job, slot.port
        assert job is not None
        assert port is not None
        host = job.host
        now = _now()
        if state == "error":
            self._release(slot)
            self._record(job, port, state, reason, None)
            return
        rtt = now - slot.started
        host.sample(rtt)
        self.overall.sample(rtt)
        if drew:
            gap = self._gap(host)
            keep = 2 * gap + self.config.max_timeout
            host.history.drew(slot.started, now, keep=keep)
            self.history.drew(slot.started, now, keep=2 * self._global_gap() + keep)
            if port.silent_before:  # an earlier attempt met an empty bucket (or was lost)
                host.limited = job.rate_limited = True
            # it met an empty bucket when the rule said a token was there; once per episode:
            # a silence before the last slow-down was under the old gap (as nmap's boosts)
            if port.clean and port.clean_at > host.slowed_at:
                self._slow_down(host, now)
        self._release(slot)
        self._record(job, port, state, reason, rtt)

    def _slow_down(self, host: _Host, now: float) -> None:
        """The host's bucket is slower than the rule assumed: double its gap, and its clean
        silences so far count for nothing."""
        host.scale = min(MAX_SCALE, host.scale * 2)
        host.slowed_at = now
        for job in self.jobs:
            if job.host is host:
                for port in (*job.candidates, *job.round):
                    port.clean = 0

    def _silent(self, slot: _Slot) -> None:
        job, port = slot.job, slot.port
        assert job is not None
        assert port is not None
        host = job.host
        unresolved = [s.started for s in host.inflight if s is not slot]
        clean = host.history.clean(slot.started, self._gap(host), unresolved)
        self._release(slot)
        port.silent_before = True
        if clean:
            port.clean = min(self.need, port.clean + 1)
            port.clean_at = slot.started
            if port.clean >= self.need:
                unresolved = [s.started for s in self.slots if s.sock is not None]
                if self.history.clean(slot.started, self._global_gap(), unresolved):
                    self._record(job, port, "open|filtered", "no-response", None)
                    return
                # another host drew an ICMP error just before: if it is the same machine,
                # this silence may be its empty bucket
                if not self.suspects:
                    self.suspect_since = _now()
                self.suspects.append((job, port))
                job.suspects += 1
                self._round_progress(job)
                self.pump()
                return
            job.candidates.appendleft(port)  # first in the next round: clean for sure
        else:
            job.candidates.append(port)
        self._round_progress(job)
        self.pump()

    def _local_error(self, slot: _Slot, err: int) -> None:
        job, port = slot.job, slot.port
        assert job is not None
        assert port is not None
        self._release(slot)
        if is_transient(err) and port.failures + 1 < _MAX_LOCAL_FAILURES:
            port.failures += 1
            self.resume_at = _now() + _BACKOFF * (1 << min(port.failures, 7))
            if port.attempts == 0:
                job.fresh.appendleft(port)
            else:
                job.candidates.appendleft(port)
            self.pump()
            return
        reason = errno_name(err) if is_transient(err) else local_reason(err)
        self._record(job, port, "error", reason, None)

    def sweep(self) -> None:
        """Time out the probes past their deadline, oldest first (a probe's cleanness
        depends on the ones sent before it)."""
        if not self.jobs:  # idle (a job leaves only once none of its probes is out)
            return
        now = _now()
        due = []
        for slot in self.slots:
            job = slot.job
            if job is None or slot.sock is None:
                continue
            if slot.guessing:  # an estimate may have come since: shorten the stopgap
                port = slot.port
                assert port is not None
                slot.deadline = slot.started + self._timeout(slot, job.host, port)
            if now >= slot.deadline:
                due.append(slot)
        due.sort(key=lambda s: s.started)
        for slot in due:
            if slot.job is None:
                continue
            answer = self._answer(slot)  # the loop may have stalled: look before blaming
            if answer is not None:
                self._answered(slot, *answer)
            else:
                self._silent(slot)
        self.pump()

    # -- bookkeeping -------------------------------------------------------------------------
    def _release(self, slot: _Slot) -> None:
        job = slot.job
        assert job is not None
        if slot in job.host.inflight:
            job.host.inflight.discard(slot)
            self.inflight -= 1
        job.outstanding -= 1
        if slot.watcher is not None:
            slot.watcher.stop()
            slot.watcher.close()
            slot.watcher = None
        if slot.sock is not None:
            slot.sock.close()
            slot.sock = None
        slot.job = slot.port = None
        self.idle.append(slot)

    def _record(self, job: _Job, port: _Port, state: str, reason: str, rtt: float | None) -> None:
        if state == "closed" and not self.config.include_closed:
            job.closed += 1
        else:
            rtt_ms = None if rtt is None else round(rtt * 1000, 3)
            job.results.append((port.number, state, reason, rtt_ms, port.attempts))
        self.finished_ports += 1
        if self.finished_ports >= self.progress_batch:
            self.report_progress()
        if port.attempts > 1 or port.silent_before:
            job.resolved += 1
        self._round_progress(job)
        self._maybe_done(job)
        self.pump()

    def _round_progress(self, job: _Job) -> None:
        """A round ends when its probes are all back: the next one's size follows from what
        it resolved."""
        if job.round or job.outstanding or job.fresh:
            return
        if job.round_size is not None:
            job.round_size = job.resolved if job.resolved else 0

    def _expire(self, job: _Job) -> None:
        """The host timeout passed: what is not decided is not scanned."""
        ports = [*job.fresh, *job.round, *job.candidates]
        for queue in (self.suspects, self.verify_round):
            ports += [port for owner, port in queue if owner is job]
        self.suspects = deque([item for item in self.suspects if item[0] is not job])
        self.verify_round = deque([item for item in self.verify_round if item[0] is not job])
        job.suspects = 0
        job.fresh.clear()
        job.round.clear()
        job.candidates.clear()
        job.unscanned.extend(sorted(p.number for p in ports))
        self.finished_ports += len(ports)
        self._maybe_done(job)

    def _maybe_done(self, job: _Job) -> None:
        if job.waiting() or job.outstanding or job.sent:
            return
        job.sent = True
        host = job.host
        closed = job.closed
        if self.config.include_closed:
            closed = sum(1 for r in job.results if r[1] == "closed")
        self.report_progress()
        self.send(
            UnitDone(
                job.unit.unit_id,
                job.results,
                closed,
                job.probes,
                host.srtt,
                host.rttvar,
                job.unscanned,
                rate_limited=job.rate_limited,
            )
        )
        with contextlib.suppress(ValueError):
            self.jobs.remove(job)
        if not self.jobs:
            self.idle_since = _now()

    def report_progress(self) -> None:
        if self.finished_ports:
            self.send(Progressed(self.finished_ports))
            self.finished_ports = 0

    def close(self) -> None:
        self.report_progress()
        self.sweeper.stop()
        self.reporter.stop()
        self.wakeup.stop()
        for slot in self.slots:
            if slot.job is not None:
                self._release(slot)
