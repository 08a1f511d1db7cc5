"""A worker process: drives a pool of connect probes on a gevent hub.

Started by the executor as its own interpreter (``python -m nornir_portscan.engine.worker``), so the
caller's process never imports gevent and its ``__main__`` is never re-imported. It reads a
``WorkerConfig`` and then ``Unit`` messages on stdin and writes results on stdout.

The pool is a fixed set of ``concurrency`` slots. Each slot owns a non-blocking socket and a
libev io watcher; a probe is a callback, not a greenlet, so the per-probe cost is a few
syscalls. A socket whose connect was refused is reused for the next probe (Linux allows a new
connect on it after one ``ECONNABORTED``), which halves the kernel work on closed ports.
"""

from __future__ import annotations

import contextlib
import errno
import os
import resource
import signal
import socket
import struct
import sys
import time
from collections import deque
from typing import Any

from gevent import get_hub
from gevent.event import Event

from nornir_portscan.classify import classify_errno, classify_icmp, errno_name
from nornir_portscan.engine.protocol import (
    STOP,
    FrameReader,
    Progressed,
    Unit,
    UnitDone,
    WirePort,
    WorkerConfig,
    WorkerReady,
    frame,
)
from nornir_portscan.engine.timing import RoundTrip, attempts_for, probe_timeout
from nornir_portscan.models import PortState

_EINPROGRESS = errno.EINPROGRESS
_ECONNABORTED = errno.ECONNABORTED
_ECONNREFUSED = errno.ECONNREFUSED
# Errors an ICMP message can cause; the error queue tells which one came (Linux reports an
# ICMPv6 admin-prohibited as EACCES, which can also be a local firewall: the queue decides).
_ICMP_ERRORS = frozenset({errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EACCES, errno.EPERM})
_SOL_SOCKET = socket.SOL_SOCKET
_SO_ERROR = socket.SO_ERROR
_LINGER_RESET = struct.pack("ii", 1, 0)  # close() sends RST: no TIME_WAIT on either side
_IP_RECVERR = 11
_IPV6_RECVERR = 25
_EE_FORMAT = struct.Struct("=IBBBBII")  # struct sock_extended_err
_MAX_LOCAL_FAILURES = 8
_BACKOFF = 0.005  # seconds, doubled per local failure of the same probe
_FD_RESERVE = 24  # stdio, the pipes, libev; 1000 probes + 24 fit the common 1024
_PROGRESS_INTERVAL = 0.1


class _Host(RoundTrip):
    """Per-host state in this worker: the round-trip estimate and probes in flight."""

    __slots__ = ("inflight",)

    def __init__(self, srtt: float | None, rttvar: float | None) -> None:
        super().__init__(srtt, rttvar)
        self.inflight = 0


class _Job:
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

    def __init__(self, unit: Unit, host: _Host) -> None:
        self.unit = unit
        self.host = host
        self.address = unit.address
        self.family = socket.AF_INET6 if ":" in unit.address else socket.AF_INET
        # (port, attempt, local failures so far)
        self.pending: deque[tuple[int, int, int]] = deque((p, 1, 0) for p in unit.ports)
        self.outstanding = 0
        self.probes = 0
        self.closed = 0
        self.unscanned: list[int] = []
        self.sent = False
        self.results: list[WirePort] = []


class _Slot:
    """One probe in flight at a time."""

    __slots__ = (
        "attempt",
        "deadline",
        "failures",
        "guessing",
        "job",
        "port",
        "sock",
        "started",
        "watcher",
    )

    def __init__(self) -> None:
        self.sock: socket.socket | None = None
        self.watcher: Any = None
        self.job: _Job | None = None
        self.port = 0
        self.attempt = 0
        self.failures = 0
        self.started = 0.0
        self.deadline = 0.0
        self.guessing = False  # the deadline is the full timeout for want of any estimate


class Prober:
    """The probe pool of one worker."""

    def __init__(self, config: WorkerConfig, send: Any) -> None:
        self.config = config
        self.send = send
        self.loop = get_hub().loop
        self.slots = [_Slot() for _ in range(config.concurrency)]
        self.idle = list(self.slots)
        self.jobs: deque[_Job] = deque()
        self.hosts: dict[int, _Host] = {}
        self.overall = RoundTrip()  # every answer this worker has had, all hosts
        self.answered_attempt = 1  # the latest attempt of a probe that any host answered
        self.finished_ports = 0
        self.progress_batch = max(1, config.concurrency // 4)
        self.tokens = 1.0
        self.refilled = time.monotonic()
        self.resume_at = 0.0
        self.pumping = False
        self.wakeup = self.loop.timer(0.0)
        tick = max(0.002, min(0.02, config.min_timeout / 5))
        self.sweeper = self.loop.timer(tick, tick)
        self.sweeper.start(self._sweep)
        self.reporter = self.loop.timer(_PROGRESS_INTERVAL, _PROGRESS_INTERVAL)
        self.reporter.start(self._report_progress)

    # -- work intake ------------------------------------------------------------------------
    def add(self, unit: Unit) -> None:
        host = self.hosts.get(unit.host_id)
        if host is None:
            host = self.hosts[unit.host_id] = _Host(unit.srtt, unit.rttvar)
        self.jobs.append(_Job(unit, host))
        self.pump()

    def pump(self) -> None:
        """Start probes on idle slots, round-robin over the jobs so hosts interleave."""
        if self.pumping:  # a probe that finished at once, inside _start: the loop goes on
            return
        self.pumping = True
        try:
            self._pump()
        finally:
            self.pumping = False

    def _pump(self) -> None:
        idle, jobs, config = self.idle, self.jobs, self.config
        cap = config.host_concurrency
        rate = config.rate
        now = time.monotonic()
        skipped = 0
        while idle and jobs:
            if now < self.resume_at:  # backing off after a local failure
                self._wake_at(self.resume_at - now)
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
            if cap is not None and job.host.inflight >= cap:
                jobs.rotate(-1)
                skipped += 1
                if skipped >= len(jobs):
                    return  # every host is at its cap; a finishing probe pumps again
                continue
            if rate is not None:
                self.tokens = min(max(1.0, rate / 50), self.tokens + (now - self.refilled) * rate)
                self.refilled = now
                if self.tokens < 1.0:
                    self._wake_at((1.0 - self.tokens) / rate)
                    return
                self.tokens -= 1.0
            skipped = 0
            port, attempt, failures = job.pending.popleft()
            jobs.rotate(-1)
            self._start(idle.pop(), job, port, attempt, failures)

    def _wake_at(self, delay: float) -> None:
        if not self.wakeup.active:
            self.wakeup = self.loop.timer(delay)
            self.wakeup.start(self.pump)

    # -- one probe ---------------------------------------------------------------------------
    def _start(self, slot: _Slot, job: _Job, port: int, attempt: int, failures: int) -> None:
        slot.job, slot.port, slot.attempt, slot.failures = job, port, attempt, failures
        job.outstanding += 1
        job.host.inflight += 1
        sock = slot.sock
        if sock is not None and sock.family != job.family:
            self._discard(slot)
            sock = None
        if sock is None:
            try:
                sock = socket.socket(job.family, socket.SOCK_STREAM)
            except OSError as exc:
                self._local_failure(slot, exc.errno or 0)
                return
            sock.setblocking(False)
            with contextlib.suppress(OSError):
                if job.family == socket.AF_INET:
                    sock.setsockopt(socket.IPPROTO_IP, _IP_RECVERR, 1)
                else:
                    sock.setsockopt(socket.IPPROTO_IPV6, _IPV6_RECVERR, 1)
            slot.sock = sock
            slot.watcher = self.loop.io(sock.fileno(), 2)
        address = (job.address, port)
        # the clock of this probe, not of the pump pass: a pass can start a thousand probes
        slot.started = started = time.monotonic()
        err = sock.connect_ex(address)
        if err == _ECONNABORTED:  # the reused socket's previous connect failed: connect again
            err = sock.connect_ex(address)
        job.probes += 1
        if err == _EINPROGRESS:
            timeout, slot.guessing = probe_timeout(self.config, job.host, self.overall, attempt)
            slot.deadline = started + timeout
            slot.watcher.start(self._on_writable, slot)
        else:
            self._finish(slot, err)

    def _on_writable(self, slot: _Slot) -> None:
        slot.watcher.stop()
        sock = slot.sock
        assert sock is not None
        self._finish(slot, sock.getsockopt(_SOL_SOCKET, _SO_ERROR))

    def _finish(self, slot: _Slot, err: int) -> None:
        """A connect finished with ``err`` (0 for connected)."""
        job = slot.job
        assert job is not None
        sock = slot.sock
        assert sock is not None
        rtt = time.monotonic() - slot.started
        reason = None
        if err == 0:
            try:
                self_connect = sock.getsockname()[:2] == sock.getpeername()[:2]
            except OSError:
                self_connect = False
            self._discard(slot, reset=True)
            if self_connect:
                # The kernel picked the target port as our source port and connected the
                # socket to itself: that says nothing about the port. Probe it again.
                self._local_failure(slot, errno.EADDRINUSE)
                return
        elif err in _ICMP_ERRORS:
            reason = self._icmp_reason(sock, job.family)
            self._discard(slot)
        elif err != _ECONNREFUSED:
            self._discard(slot)
        answer = (PortState.FILTERED, reason) if reason else classify_errno(err)
        if answer is None:
            self._local_failure(slot, err)
            return
        state, default_reason = answer
        job.host.sample(rtt)
        self.overall.sample(rtt)
        self.answered_attempt = max(self.answered_attempt, slot.attempt)
        self._record(
            slot,
            job,
            (slot.port, state.value, reason or default_reason, round(rtt * 1000, 3), slot.attempt),
        )

    def _icmp_reason(self, sock: socket.socket, family: int) -> str | None:
        """The reason carried by the ICMP error in the socket's error queue, if any."""
        reason = None
        with contextlib.suppress(OSError):
            while True:
                _, ancdata, _, _ = sock.recvmsg(0, 512, socket.MSG_ERRQUEUE)
                for _level, _type, data in ancdata:
                    if len(data) >= _EE_FORMAT.size:
                        _, origin, icmp_type, icmp_code, _, _, _ = _EE_FORMAT.unpack_from(data)
                        if origin in (2, 3):  # SO_EE_ORIGIN_ICMP, SO_EE_ORIGIN_ICMP6
                            reason = (
                                classify_icmp(family == socket.AF_INET6, icmp_type, icmp_code)
                                or reason
                            )
        return reason

    def _sweep(self) -> None:
        """Time out probes past their deadline; retry them or call them filtered."""
        now = time.monotonic()
        for slot in self.slots:
            if slot.job is None:
                continue
            if slot.guessing:
                timeout, slot.guessing = probe_timeout(
                    self.config, slot.job.host, self.overall, slot.attempt
                )
                slot.deadline = slot.started + timeout
            if now < slot.deadline:
                continue
            sock = slot.sock
            assert sock is not None
            # The loop may have stalled (a slow parent, a busy machine): look at the socket
            # itself before blaming the network.
            err = sock.getsockopt(_SOL_SOCKET, _SO_ERROR)
            if err == 0:
                try:
                    sock.getpeername()
                except OSError:
                    pass
                else:
                    slot.watcher.stop()
                    self._finish(slot, 0)
                    continue
            else:
                slot.watcher.stop()
                self._finish(slot, err)
                continue
            slot.watcher.stop()
            self._discard(slot)
            job = slot.job
            if slot.attempt < attempts_for(self.config, job.host, self.answered_attempt):
                self._requeue(slot, job, slot.attempt + 1, slot.failures, front=False)
            else:
                self._record(slot, job, (slot.port, "filtered", "no-response", None, slot.attempt))
        self.pump()

    # -- bookkeeping -------------------------------------------------------------------------
    def _discard(self, slot: _Slot, *, reset: bool = False) -> None:
        sock = slot.sock
        if sock is None:
            return
        slot.watcher.stop()
        slot.watcher.close()
        if reset:
            with contextlib.suppress(OSError):
                sock.setsockopt(_SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
        sock.close()
        slot.sock = None

    def _release(self, slot: _Slot, job: _Job) -> None:
        slot.job = None
        job.outstanding -= 1
        job.host.inflight -= 1
        self.idle.append(slot)

    def _requeue(self, slot: _Slot, job: _Job, attempt: int, failures: int, *, front: bool) -> None:
        self._release(slot, job)
        item = (slot.port, attempt, failures)
        if front:
            job.pending.appendleft(item)
        else:
            job.pending.append(item)
        if job not in self.jobs:
            self.jobs.append(job)
        self.pump()

    def _local_failure(self, slot: _Slot, err: int) -> None:
        """EMFILE, ENOBUFS, EADDRNOTAVAIL, ...: back off and retry; never a port state."""
        job = slot.job
        assert job is not None
        self._discard(slot)
        failures = slot.failures + 1
        if failures >= _MAX_LOCAL_FAILURES:
            self._record(slot, job, (slot.port, "error", errno_name(err), None, slot.attempt))
            return
        self.resume_at = time.monotonic() + _BACKOFF * (1 << min(failures, 7))
        self._requeue(slot, job, slot.attempt, failures, front=True)

    def _record(self, slot: _Slot, job: _Job, result: WirePort) -> None:
        if result[1] == "closed" and not self.config.include_closed:
            job.closed += 1
        else:
            job.results.append(result)
        self.finished_ports += 1
        if self.finished_ports >= self.progress_batch:  # the parent hands out work by it
            self._report_progress()
        self._release(slot, job)
        if not job.pending:
            self._maybe_done(job)
        self.pump()

    def _maybe_done(self, job: _Job) -> None:
        if job.pending or job.outstanding or job.sent:
            return
        host = job.host
        closed = job.closed
        if self.config.include_closed:
            closed = sum(1 for r in job.results if r[1] == "closed")
        self._report_progress()  # every port of a unit is reported finished before the unit
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

    def _report_progress(self) -> None:
        if self.finished_ports:
            self.send(Progressed(self.finished_ports))
            self.finished_ports = 0

    def close(self) -> None:
        self._report_progress()
        for slot in self.slots:
            self._discard(slot)


def _raise_fd_limit(wanted: int) -> tuple[int, str | None]:
    """Raise the soft open-file limit toward the hard one; return the usable concurrency."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = wanted + _FD_RESERVE
    if soft != resource.RLIM_INFINITY and soft < need:
        target = need if hard == resource.RLIM_INFINITY else min(need, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
    usable = wanted if soft == resource.RLIM_INFINITY else max(1, min(wanted, soft - _FD_RESERVE))
    if usable < wanted:
        return usable, (
            f"concurrency lowered from {wanted} to {usable} per worker: the open-file "
            f"limit is {soft} (raise it with 'ulimit -n')"
        )
    return usable, None


class _Channel:
    """Non-blocking framed messages over stdin/stdout, on the hub."""

    def __init__(self, on_message: Any, on_eof: Any) -> None:
        self.loop = get_hub().loop
        self.reader = FrameReader()
        self.out = bytearray()
        self.on_message = on_message
        self.on_eof = on_eof
        os.set_blocking(0, False)
        os.set_blocking(1, False)
        self.read_watcher = self.loop.io(0, 1)
        self.read_watcher.start(self._readable)
        self.write_watcher = self.loop.io(1, 2)

    def _readable(self) -> None:
        try:
            data = os.read(0, 1 << 16)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.read_watcher.stop()
            self.on_eof()
            return
        for message in self.reader.feed(data):
            self.on_message(message)

    def send(self, message: Any) -> None:
        self.out += frame(message)
        self._writable()

    def _writable(self) -> None:
        try:
            written = os.write(1, self.out)
        except BlockingIOError:
            written = 0
        except BrokenPipeError:
            self.out.clear()
            self.on_eof()
            return
        del self.out[:written]
        if self.out and not self.write_watcher.active:
            self.write_watcher.start(self._writable)
        elif not self.out and self.write_watcher.active:
            self.write_watcher.stop()

    def flush(self) -> None:
        os.set_blocking(1, True)
        with contextlib.suppress(OSError):
            while self.out:
                del self.out[: os.write(1, self.out)]


def main() -> None:
    """Serve one executor over stdin/stdout until it says stop or goes away."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent owns Ctrl-C
    finished = Event()
    state: dict[str, Prober] = {}

    def on_message(message: Any) -> None:
        if isinstance(message, Unit):
            state["prober"].add(message)
        elif isinstance(message, WorkerConfig):
            concurrency, warning = _raise_fd_limit(message.concurrency)
            config = WorkerConfig(**{**_fields(message), "concurrency": concurrency})
            state["prober"] = Prober(config, channel.send)
            channel.send(WorkerReady(concurrency, warning))
        elif message == STOP:
            finished.set()

    channel = _Channel(on_message, finished.set)
    finished.wait()
    if "prober" in state:
        state["prober"].close()
    channel.flush()


def _fields(config: WorkerConfig) -> dict[str, Any]:
    return {name: getattr(config, name) for name in config.__dataclass_fields__}


if __name__ == "__main__":
    main()
    # Everything is written: leave now, without the interpreter's teardown (tens of ms that
    # the executor would wait for).
    sys.stderr.flush()
    os._exit(0)
